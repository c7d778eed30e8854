// The Twill scenarios on the local runtime with real runc containers.
import { localTarget } from './local-target.js';
import { twillScenarios } from './scenarios.js';

twillScenarios('the local runtime (runc)', () => localTarget('runc'));
