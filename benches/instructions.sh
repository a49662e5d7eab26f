#!/usr/bin/env bash
# Instructions per proxied request, counted by valgrind's callgrind: unlike req/s on a shared
# machine, the count is repeatable whatever else the host is doing. Each peer of benches/load.sh
# runs under callgrind (the nginx upstream does not), takes 2,000 warm-up requests uncounted,
# then exactly REQUESTS counted ones. User-space instructions only: the kernel's share (loopback
# TCP, about half of each server's CPU time here) is not in these numbers.
#
# Usage: benches/instructions.sh      (REQUESTS=10000 to change; about 3 minutes)
# Needs valgrind, nginx, haproxy and python3; installs the first three from Debian's packages if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/peers.sh
REQUESTS=${REQUESTS:-10000}

need_tools valgrind nginx haproxy
cargo build --release --locked --bin authgate --example bare_pingora >&2
make_workdir

write_configs
# One nginx process, so callgrind sees the worker.
sed -i 's/^worker_processes 1;/worker_processes 1; master_process off;/' "$work/nginx-proxy.conf"
TOKEN=$(make_token)
"$NGINX" -c "$work/nginx-up.conf" >/dev/null 2>&1 & pids+=($!)
wait_port $UP

declare -A CMD=(
  [authgate]="target/release/authgate run -c $work/authgate.toml"
  [bare-pingora]="target/release/examples/bare_pingora 127.0.0.1:$BARE 127.0.0.1:$UP 1"
  [haproxy-jwt]="$HAPROXY -f $work/haproxy.cfg"
  [nginx-proxy]="$NGINX -c $work/nginx-proxy.conf"
)
declare -A PORT=([authgate]=$AG [bare-pingora]=$BARE [haproxy-jwt]=$HAP [nginx-proxy]=$NGX)
declare -A IR=()
for peer in authgate bare-pingora haproxy-jwt nginx-proxy; do
  echo "counting $peer ..." >&2
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/cg.$peer.%p" \
    ${CMD[$peer]} >"$work/$peer.out" 2>"$work/$peer.err" &
  pid=$!
  pids+=($pid)
  wait_port ${PORT[$peer]} 600  # slow to start under valgrind
  python3 benches/fixed_requests.py ${PORT[$peer]} 2000 4 "$TOKEN"
  callgrind_control -i on $pid >/dev/null 2>&1
  python3 benches/fixed_requests.py ${PORT[$peer]} "$REQUESTS" 4 "$TOKEN"
  callgrind_control -d $pid >/dev/null 2>&1
  IR[$peer]=$(awk '/^totals:/ {print $2}' "$work/cg.$peer.$pid.1")
  kill $pid; wait $pid 2>/dev/null || true
done

python3 - "$REQUESTS" "${IR[authgate]}" "${IR[bare-pingora]}" "${IR[haproxy-jwt]}" "${IR[nginx-proxy]}" <<'PY'
import sys
n = int(sys.argv[1])
peers = ["authgate", "bare-pingora", "haproxy-jwt", "nginx-proxy"]
per = {p: int(v) / n for p, v in zip(peers, sys.argv[2:])}
print(f"user-space instructions per request (callgrind, {n} requests after 2,000 warm-up)\n")
print("| peer | instructions / request | relative to authgate |")
print("|---|---:|---:|")
for p in peers:
    print(f"| {p} | {per[p]:,.0f} | {per[p] / per['authgate']:.2f} |")
PY
