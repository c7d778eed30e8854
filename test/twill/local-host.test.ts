// The Twill scenarios on the local runtime in host-process mode (the host's JVM, no runc).
import { localTarget } from './local-target.js';
import { twillScenarios } from './scenarios.js';

twillScenarios('the local runtime (host processes)', () => localTarget('host'));
