#!/usr/bin/env bash
# A short load-test run for CI: a fresh release server, then 10 s each of the `meter`,
# `rest` and `confirm` scenarios. Fails on any protocol violation the harness reports;
# timings are printed, never judged.
#
#   scripts/ci-load.sh [SECONDS]     each scenario for SECONDS (default 10)
#   scripts/ci-load.sh --build-only  the release build only (CI builds before it runs)
set -euo pipefail
cd "$(dirname "$0")/.."

build_only=false
if [ "${1:-}" = --build-only ]; then
  build_only=true
  shift
fi
seconds=${1:-10}
# The benches are part of the build so that cargo resolves the dev-dependencies'
# features as `cargo bench` does, and the two share one release build: without them
# cargo would build the server and most of its dependencies a second time.
cargo build --release -q --workspace --bins --bench '*'
if "$build_only"; then
  exit 0
fi
data=$(mktemp -d)
token=ci-load-staff-token-0123456789
port=18099
KAKIGORI_STAFF_TOKEN=$token target/release/kakigori --listen 127.0.0.1:$port --data-dir "$data" --cores 2 \
  2>"$data/server.log" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 100); do
  grep -q "listening on" "$data/server.log" && break
  sleep 0.1
done
grep -q "listening on" "$data/server.log" || { cat "$data/server.log"; exit 1; }

lt=(target/release/kakigori-loadtest)
common=(--url "http://127.0.0.1:$port" --duration-s "$seconds" --cpu none --quiet --server-pid "$server")
"${lt[@]}" meter "${common[@]}" --rooms 4 --clients 50 --probe-rooms 2
"${lt[@]}" rest "${common[@]}" --connections 16
"${lt[@]}" confirm "${common[@]}" --batch 3 --concurrency 4
echo "load test: all scenarios passed their protocol checks"
