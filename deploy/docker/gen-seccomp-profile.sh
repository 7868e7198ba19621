#!/usr/bin/env bash
# Regenerates deploy/docker/seccomp-io-uring.json: a seccomp profile for the kakigori
# container (Docker `--security-opt seccomp=FILE`, Kubernetes `seccompProfile: Localhost`).
#
# Why a profile of our own: since Docker 25.0 (moby PR #46762) and containerd 2.0's
# RuntimeDefault (containerd PR #9320), the default container profiles deny io_uring_setup,
# io_uring_enter and io_uring_register, so glommio cannot start; the alternative,
# seccomp=unconfined, drops the filter entirely.
#
# How it is derived (no third-party profile is copied):
#   allow  = systemd's "@system-service" set, fully expanded by the systemd-analyze found here.
#            It is the set systemd/kakigori.service uses; it includes "@aio", which holds the
#            three io_uring calls, and "@resources" (sched_setaffinity pins the executors).
#            It also holds what the container runtime itself calls between loading the filter
#            and exec'ing the server (setuid/setgroups/capset/prctl...).
#   minus  = calls kakigori never makes that are favourite kernel attack surface in a
#            container: namespace creation/entry (unshare, setns), the kernel keyring,
#            userfaultfd, cross-process memory access (process_vm_*), kcmp.
#   clone  = allowed only without namespace flags (CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|
#            NEWPID|NEWNET = 0x7E020000 must be clear in the flags argument);
#   clone3 = fails with ENOSYS (its flags sit in memory a filter cannot read), so the C
#            library falls back to clone, as under Docker's own default profile.
#   everything else fails with EPERM; only the native architecture's calls are allowed.
# The result is checked by scripts/validate-deploy.sh, which runs the server under it.
#
# Usage: deploy/docker/gen-seccomp-profile.sh [OUTPUT]   (default: next to this script)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/seccomp-io-uring.json}"
command -v systemd-analyze >/dev/null || { echo "needs systemd-analyze (apt-get install -y systemd)" >&2; exit 1; }

expand() { # prints the system calls of a set, nested sets expanded
    local line
    systemd-analyze syscall-filter "$1" | tail -n +2 | while read -r line; do
        case "$line" in
            ''|'#'*) ;;
            @*) expand "$line" ;;
            *) echo "$line" ;;
        esac
    done
}

allow="$(expand @system-service | sort -u)"
[ -n "$allow" ] || { echo "systemd-analyze listed no @system-service calls" >&2; exit 1; }
for call in io_uring_setup io_uring_enter io_uring_register sched_setaffinity; do
    grep -qx "$call" <<<"$allow" || { echo "@system-service lacks $call on this systemd" >&2; exit 1; }
done

ALLOW="$allow" SYSTEMD_VERSION="$(systemd-analyze --version | head -1)" python3 - "$out" <<'EOF'
import json, os, sys

denied = {"unshare", "setns", "add_key", "keyctl", "request_key", "userfaultfd",
          "process_vm_readv", "process_vm_writev", "kcmp"}
special = {"clone", "clone3"}
names = sorted(set(os.environ["ALLOW"].split()) - denied - special)
clone_namespace_flags = 0x7E020000
profile = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 1,  # EPERM
    "syscalls": [
        {"names": names, "action": "SCMP_ACT_ALLOW"},
        {
            "names": ["clone"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": clone_namespace_flags, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
        },
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},  # ENOSYS
    ],
}
with open(sys.argv[1], "w") as f:
    json.dump(profile, f, indent=2)
    f.write("\n")
print(f"wrote {sys.argv[1]}: {len(names)} calls allowed, from {os.environ['SYSTEMD_VERSION']}")
EOF
