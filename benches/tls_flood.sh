#!/usr/bin/env bash
# What a TLS handshake flood from one address does to everyone else: plain HTTP through the
# gateway measured by wrk alone, then while one client replays a captured ClientHello as fast as
# it can (benches/tls_flood.py) on the gateway's HTTPS listener. The gateway is pinned to CPU 0,
# wrk and the flood to CPU 1; authgate with an RSA-2048 certificate (the expensive case).
# Usage: benches/tls_flood.sh [BINARY]   (default target/release/authgate; DURATION=10)
# Prints plain HTTP's req/s and latencies without and with the flood, and the handshake counters.
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/peers.sh
BIN=${1:-target/release/authgate}
DURATION=${DURATION:-10}
need_tools wrk nginx
[ "$BIN" != target/release/authgate ] || cargo build --release --locked --bin authgate >&2
make_workdir
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
  -keyout "$work/rsa.key" -out "$work/rsa.pem" 2>/dev/null
# The peers' configurations: the nginx upstream is the same as benches/load.sh's.
write_configs
cat >"$work/flood.toml" <<CONF
[server]
listen = "127.0.0.1:$AG"
admin_listen = "127.0.0.1:$AG_ADMIN"
tls_listen = "127.0.0.1:$AGT_TLS"
threads = 1
[server.tls]
cert_file = "$work/rsa.pem"
key_file = "$work/rsa.key"
[jwt]
secret = "$SECRET"
[log]
level = "warn"
[[upstreams]]
name = "app"
addrs = ["127.0.0.1:$UP"]
[[routes]]
name = "pub"
path_prefix = "/"
upstream = "app"
auth = "public"
CONF
taskset -c 1 "$NGINX" -c "$work/nginx-up.conf" >/dev/null 2>&1 & pids+=($!)
taskset -c 0 "$BIN" run -c "$work/flood.toml" >"$work/authgate.log" 2>&1 & pids+=($!)
wait_port $UP; wait_port $AG; wait_port $AGT_TLS
run_wrk() { taskset -c 1 wrk -t1 -c16 -d"${DURATION}s" --latency "http://127.0.0.1:$AG/" | awk '/Requests\/sec/ {rps=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2} END {printf "%s req/s, p50 %s, p99 %s\n", rps, p50, p99}'; }
echo "plain HTTP alone:       $(run_wrk)"
taskset -c 1 python3 benches/tls_flood.py $AGT_TLS $((DURATION + 2)) > "$work/flood.out" &
flood=$!
sleep 1
echo "plain HTTP under flood: $(run_wrk)"
wait $flood
echo "flood connections opened: $(cat "$work/flood.out")"
curl -s "http://127.0.0.1:$AG_ADMIN/metrics" | grep '^authgate_tls_handshakes_total' || true
