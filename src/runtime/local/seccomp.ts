// The seccomp filter of local runc containers: podman's default profile
// (seccomp-profile.ts), resolved for this machine's architecture, kernel and
// the container's capabilities the way containers/common does it: a rule applies
// when every capability and architecture it `includes` is there and none it
// `excludes` is. Everything not allowed fails with ENOSYS/EPERM as in podman.
import os from 'node:os';
import { CONTAINERS_DEFAULT_SECCOMP, type ProfileRule } from './seccomp-profile.js';

const SCMP_ARCH: Record<string, { scmp: string; go: string }> = {
  x64: { scmp: 'SCMP_ARCH_X86_64', go: 'amd64' },
  arm64: { scmp: 'SCMP_ARCH_AARCH64', go: 'arm64' },
};

/** "5.10.0-21-amd64" -> [5, 10]. */
function kernelVersion(release: string): [number, number] {
  const [major, minor] = release.split(/[.-]/).map((x) => Number.parseInt(x, 10));
  return [major || 0, minor || 0];
}

function atLeast(kernel: [number, number], wanted: string): boolean {
  const [major, minor] = kernelVersion(wanted);
  return kernel[0] > major || (kernel[0] === major && kernel[1] >= minor);
}

function applies(rule: ProfileRule, caps: readonly string[], goArch: string, kernel: [number, number]): boolean {
  const inc = rule.includes ?? {};
  const exc = rule.excludes ?? {};
  if (inc.caps && !inc.caps.every((c) => caps.includes(c))) return false;
  if (inc.arches && !inc.arches.includes(goArch)) return false;
  if (inc.minKernel && !atLeast(kernel, inc.minKernel)) return false;
  if (exc.caps && exc.caps.some((c) => caps.includes(c))) return false;
  if (exc.arches && exc.arches.includes(goArch)) return false;
  return true;
}

/** The OCI `linux.seccomp` for a container with `capabilities`, on this machine (undefined on an architecture the profile does not know). */
export function defaultSeccomp(capabilities: readonly string[], arch: string = process.arch, release: string = os.release()): Record<string, unknown> | undefined {
  const target = SCMP_ARCH[arch];
  if (!target) return undefined;
  const profile = CONTAINERS_DEFAULT_SECCOMP;
  const archEntry = profile.archMap.find((a) => a.architecture === target.scmp);
  const kernel = kernelVersion(release);
  return {
    defaultAction: profile.defaultAction,
    defaultErrnoRet: profile.defaultErrnoRet,
    architectures: [target.scmp, ...(archEntry?.subArchitectures ?? [])],
    syscalls: profile.syscalls
      .filter((rule) => applies(rule, capabilities, target.go, kernel))
      .map((rule) => ({
        names: rule.names,
        action: rule.action,
        ...(rule.errnoRet !== undefined ? { errnoRet: rule.errnoRet } : {}),
        ...(rule.args?.length ? { args: rule.args } : {}),
      })),
  };
}
