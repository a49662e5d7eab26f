#!/usr/bin/env bash
# Where authgate's CPU goes under load: perf samples the proxy (pinned to CPU 0 with its nginx
# upstream, as in benches/load.sh) while wrk drives the protected route from CPU 1, then prints
# the split by binary and the hottest symbols.
#
# Usage: benches/profile.sh        (needs perf, nginx and wrk; builds the release binary)
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/peers.sh
need_tools nginx wrk
command -v perf >/dev/null || { echo "perf is not installed (linux-perf)" >&2; exit 1; }
cargo build --release --locked --bin authgate >&2
make_workdir
write_configs
taskset -c 0 "$NGINX" -c "$work/nginx-up.conf" >/dev/null 2>&1 & pids+=($!)
taskset -c 0 target/release/authgate run -c "$work/authgate.toml" >"$work/ag.out" 2>"$work/ag.err" & pids+=($!)
AG_PID=$!
wait_port $UP; wait_port $AG
TOKEN=$(make_token)
taskset -c 1 wrk -t1 -c64 -d14s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$AG/api/bench" >"$work/wrk.out" &
wrk_pid=$!
sleep 3
perf record -e cpu-clock -F 1999 -g -p "$AG_PID" -o "$work/perf.data" -- sleep 8 >/dev/null 2>&1
wait "$wrk_pid" || true
grep "Requests/sec" "$work/wrk.out"
echo "--- by binary"
perf report -i "$work/perf.data" --stdio --no-children --sort dso -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -6
echo "--- hottest symbols (self)"
perf report -i "$work/perf.data" --stdio --no-children --sort sym -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -25
echo "--- where the kernel's share is entered from (callers of the top kernel symbol)"
perf report -i "$work/perf.data" --stdio --no-children --sort sym -G 2>/dev/null | grep -v '^#' | grep -v '^$' | head -16
