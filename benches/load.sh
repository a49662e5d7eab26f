#!/usr/bin/env bash
# End-to-end load benchmark, loopback only. Starts a fast upstream (nginx serving a small JSON
# body), then measures, one at a time and interleaved over ROUNDS rounds:
#   authgate       JWT-protected route (HS256 verify, revocation, rate limit, header rewrite)
#   haproxy-jwt    HAProxy jwt_verify on the same token, X-User-Id from `sub`
#   bare-pingora   Pingora forwarding with no auth (examples/bare_pingora.rs, same profile)
#   nginx-proxy    nginx proxy_pass, no auth: the reference ceiling
#   authgate-eddsa / authgate-assert   authgate with an EdDSA key, the signed identity assertion
#                  off / on (identity.assertion): what the assertion costs
#   authgate-tls / haproxy-tls   the same work behind HTTPS termination (TLS 1.3, one ECDSA
#                  certificate, keep-alive connections): authgate's TLS listener against HAProxy's
# Servers are pinned to CPU 0, wrk (1 thread, 64 connections) to CPU 1. Then authgate's RSS idle,
# with 1,000,000 revoked tokens, and after 1,000,000 distinct client IPs.
#
# Usage: benches/load.sh            (DURATION=10 ROUNDS=3 CONNECTIONS=64 to change)
#        THROUGHPUT_ONLY=1 benches/load.sh   skips the memory and login phases (~3 min)
# Needs nginx, haproxy, wrk and python3; installs the first three from Debian's packages if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/peers.sh
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-64}

need_tools nginx haproxy wrk
cargo build --release --locked --bin authgate --example bare_pingora --example login_load >&2
BIN=target/release/authgate
BARE_BIN=target/release/examples/bare_pingora

make_workdir
start() { # name, command...
  local name=$1; shift
  taskset -c 0 "$@" >"$work/$name.out" 2>"$work/$name.err" &
  pids+=($!)
}

# --- the servers --------------------------------------------------------------------------
write_configs

start nginx-up "$NGINX" -c "$work/nginx-up.conf"
start nginx-proxy "$NGINX" -c "$work/nginx-proxy.conf"
start haproxy "$HAPROXY" -f "$work/haproxy.cfg"
start bare-pingora "$BARE_BIN" "127.0.0.1:$BARE" "127.0.0.1:$UP" 1
start bare-headers "$BARE_BIN" "127.0.0.1:$BAREH" "127.0.0.1:$UP" 1 headers
start haproxy-same "$HAPROXY" -f "$work/haproxy-same.cfg"
start authgate "$BIN" run -c "$work/authgate.toml"
AG_PID=${pids[-1]}
# HTTPS termination, the same work behind it: authgate's TLS listener against HAProxy's.
start haproxy-tls "$HAPROXY" -f "$work/haproxy-tls.cfg"
start authgate-tls "$BIN" run -c "$work/authgate-tls.toml"
# The same gateway verifying every signature (no verified-token cache), to show what it saves.
sed -e "s/:$AG\"/:$AGN\"/; s/:$AG_ADMIN\"/:$AGN_ADMIN\"/; s|authgate.db|authgate-nocache.db|; s/^\[jwt\]/[jwt]\nverified_cache_entries = 0/" \
  "$work/authgate.toml" >"$work/authgate-nocache.toml"
start authgate-nocache "$BIN" run -c "$work/authgate-nocache.toml"
AGN_PID=${pids[-1]}
# The signed identity assertion off and on, both with the EdDSA key it needs.
eddsa_config $AGE $AGE_ADMIN authgate-eddsa "assertion = false" >"$work/authgate-eddsa.toml"
eddsa_config $AGA $AGA_ADMIN authgate-assert "assertion = true" >"$work/authgate-assert.toml"
start authgate-eddsa "$BIN" run -c "$work/authgate-eddsa.toml"
start authgate-assert "$BIN" run -c "$work/authgate-assert.toml"
# Routing scale: the benchmark request taken only by the catch-all, among 3 routes and 10,000.
routes_config $AGR3 $AGR3_ADMIN authgate-r3 3 >"$work/authgate-r3.toml"
routes_config $AGR10K $AGR10K_ADMIN authgate-r10k 10000 >"$work/authgate-r10k.toml"
start authgate-r3 "$BIN" run -c "$work/authgate-r3.toml"
start authgate-r10k "$BIN" run -c "$work/authgate-r10k.toml"
for p in $UP $NGX $HAP $BARE $AG $AGN $AGE $AGA $HAPS $BAREH $AGR3 $HAPT $AGT_TLS; do wait_port $p; done
wait_port $AGR10K 300  # 10,000 routes to check and build

TOKEN=$(make_token)
BAD="${TOKEN%.*}.AAAA${TOKEN##*.}"
ED_TOKEN=$(make_eddsa_token)
declare -A TOKEN_OF=([authgate-eddsa]=$ED_TOKEN [authgate-assert]=$ED_TOKEN)
token_of() { echo "${TOKEN_OF[$1]:-$TOKEN}"; }

PEERS="authgate haproxy-same bare-headers authgate-nocache haproxy-jwt bare-pingora nginx-proxy authgate-eddsa authgate-assert authgate-r3 authgate-r10k authgate-tls haproxy-tls"
declare -A PORT=([authgate]=$AG [authgate-nocache]=$AGN [haproxy-jwt]=$HAP [bare-pingora]=$BARE [nginx-proxy]=$NGX
                 [authgate-eddsa]=$AGE [authgate-assert]=$AGA [haproxy-same]=$HAPS [bare-headers]=$BAREH
                 [authgate-r3]=$AGR3 [authgate-r10k]=$AGR10K [authgate-tls]=$AGT_TLS [haproxy-tls]=$HAPT)
url_of() { # peer
  case $1 in *-tls) echo "https://127.0.0.1:${PORT[$1]}/api/bench" ;; *) echo "http://127.0.0.1:${PORT[$1]}/api/bench" ;; esac
}
status() { curl -sk -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $2" "$(url_of "$1")"; }
for peer in $PEERS; do
  s=$(status "$peer" "$(token_of $peer)")
  [ "$s" = 200 ] || { echo "$peer answered $s with a good token" >&2; exit 1; }
done
for peer in authgate authgate-nocache haproxy-jwt haproxy-same authgate-tls haproxy-tls; do
  s=$(status "$peer" "$BAD")
  [ "$s" = 401 ] || [ "$s" = 403 ] || { echo "$peer answered $s to a bad token" >&2; exit 1; }
done
echo "checked: every peer answers 200 with the token; authgate and haproxy-jwt refuse a bad one" >&2

# --- throughput -----------------------------------------------------------------------------
results="$work/results.tsv"
: >"$results"
# wrk's --latency stops at p99: p99.9 from its latency histogram in a done() hook.
cat >"$work/p999.lua" <<'EOF'
done = function(summary, latency, requests)
  io.write(string.format("p999_us %d\n", latency:percentile(99.9)))
end
EOF
run_wrk() { # peer
  taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$work/p999.lua" -H "Authorization: Bearer $(token_of "$1")" \
    "$(url_of "$1")" >"$work/wrk.out"
  python3 - "$1" "$work/wrk.out" >>"$results" <<'EOF'
import re, sys
text = open(sys.argv[2]).read()
def lat(label):
    m = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    v, u = float(m.group(1)), m.group(2)
    return v / 1000 if u == "us" else v if u == "ms" else v * 1000
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
p999 = int(re.search(r"p999_us (\d+)", text).group(1)) / 1000
print(f"{sys.argv[1]}\t{rps}\t{lat('50%')}\t{lat('99%')}\t{errors.group(1) if errors else 0}\t{p999}")
EOF
}
for peer in $PEERS; do  # warm-up
  taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d2s -H "Authorization: Bearer $(token_of $peer)" "$(url_of $peer)" >/dev/null
done
for round in $(seq 1 "$ROUNDS"); do
  for peer in $PEERS; do
    echo "round $round: $peer" >&2
    run_wrk "$peer"
  done
done

rss_mb() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$AG_PID/status"; }
RSS_AFTER_LOAD=$(rss_mb)
# Where authgate's CPU went during the rounds, by thread: the proxy's workers, and the application
# runtime's (health checks, revocation sync, pruning, the admin listener) on the same pinned CPU.
python3 - "$AG_PID" >"$work/threads.txt" <<'EOF'
import glob, os, sys
tick = os.sysconf("SC_CLK_TCK")
rows = {}
for t in glob.glob(f"/proc/{sys.argv[1]}/task/*"):
    name = open(f"{t}/comm").read().strip()
    fields = open(f"{t}/stat").read().rsplit(")", 1)[1].split()
    rows[name] = rows.get(name, 0) + (int(fields[11]) + int(fields[12])) / tick
total = sum(rows.values()) or 1
print("| authgate thread | CPU s | share |")
print("|---|---:|---:|")
for name, cpu in sorted(rows.items(), key=lambda r: -r[1]):
    if cpu > 0:
        print(f"| {name} | {cpu:.2f} | {cpu / total:.1%} |")
EOF
kill "$AGN_PID"
RSS_AFTER_IPS=skipped RSS_AFTER_PRUNE=skipped RSS_IDLE=skipped RSS_REVOKED=skipped
LOGINS_PER_SEC=skipped REFRESHES_PER_SEC=skipped
if [ -z "${THROUGHPUT_ONLY:-}" ]; then

# --- memory: 1,000,000 distinct client IPs (through a trusted proxy: 127.0.0.1) -------------
cat >"$work/ips.lua" <<'EOF'
local n = 0
request = function()
  n = n + 1
  local ip = string.format("10.%d.%d.%d", math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256)
  return wrk.format("GET", "/public/x", {["X-Forwarded-For"] = ip})
end
EOF
echo "1,000,000 distinct client IPs ..." >&2
taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d120s -s "$work/ips.lua" "http://127.0.0.1:$AG/public/x" >"$work/ips.out" &
wrk_pid=$!
# Stop once a million requests went through (the public route counts them).
while kill -0 $wrk_pid 2>/dev/null; do
  n=$(curl -s "http://127.0.0.1:$AG_ADMIN/metrics" | awk '/^authgate_requests_total\{method="GET",route="public",status="200"\}/ {print $2}')
  [ "${n:-0}" -ge 1000000 ] 2>/dev/null && kill $wrk_pid 2>/dev/null && break
  sleep 1
done
wait $wrk_pid 2>/dev/null || true
RSS_AFTER_IPS=$(rss_mb)
sleep 25   # two pruning passes
RSS_AFTER_PRUNE=$(rss_mb)

# --- memory: idle and with 1,000,000 revoked tokens (loaded from the store at start) ---------
kill "$AG_PID"; wait "$AG_PID" 2>/dev/null || true
start authgate-idle "$BIN" run -c "$work/authgate.toml"; AG_PID=${pids[-1]}; wait_port $AG; sleep 2
RSS_IDLE=$(rss_mb)
kill "$AG_PID"; wait "$AG_PID" 2>/dev/null || true
python3 - "$work/authgate.db" <<'EOF'
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1])
exp = int(time.time()) + 3600
db.executemany("INSERT INTO revoked_tokens (jti, user_id, expires_at, revoked_at) VALUES (?, ?, ?, ?)",
               ((f"{i:032x}", i % 5000, exp, exp - 3600) for i in range(1_000_000)))
db.commit()
EOF
start authgate-revoked "$BIN" run -c "$work/authgate.toml"; AG_PID=${pids[-1]}; wait_port $AG; sleep 3
RSS_REVOKED=$(rss_mb)
s=$(status $AG "$TOKEN"); [ "$s" = 200 ] || { echo "authgate with 1M revocations answered $s" >&2; exit 1; }

# --- logins and refreshes on SQLite, against the fake Kakao ---------------------------------
kill "$AG_PID"; wait "$AG_PID" 2>/dev/null || true
printf '#!/bin/sh\nexec taskset -c 0 %s "$@"\n' "$PWD/$BIN" >"$work/authgate-cpu0"
chmod +x "$work/authgate-cpu0"
taskset -c 1 target/release/examples/login_load "$work/authgate-cpu0" "${LOGINS:-5000}" 32 >"$work/login.out"
LOGINS_PER_SEC=$(awk '/logins_per_sec/ {print $2}' "$work/login.out")
REFRESHES_PER_SEC=$(awk '/refreshes_per_sec/ {print $2}' "$work/login.out")
fi

# --- report ---------------------------------------------------------------------------------
python3 - "$results" "$RSS_IDLE" "$RSS_REVOKED" "$RSS_AFTER_LOAD" "$RSS_AFTER_IPS" "$RSS_AFTER_PRUNE" "$DURATION" "$ROUNDS" "$CONNECTIONS" "$LOGINS_PER_SEC" "$REFRESHES_PER_SEC" <<'EOF'
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().splitlines()]
peers = ["authgate", "haproxy-same", "bare-headers", "haproxy-jwt", "bare-pingora", "nginx-proxy", "authgate-nocache", "authgate-eddsa", "authgate-assert", "authgate-r3", "authgate-r10k", "authgate-tls", "haproxy-tls"]
med = {}
print(f"wrk -t1 -c{sys.argv[9]} -d{sys.argv[7]}s, {sys.argv[8]} interleaved rounds, servers on CPU 0, wrk on CPU 1; medians\n")
print("| peer | req/s | p50 ms | p99 ms | p99.9 ms | non-2xx |")
print("|---|---:|---:|---:|---:|---:|")
for p in peers:
    r = [x for x in rows if x[0] == p]
    med[p] = {k: statistics.median(float(x[i]) for x in r) for k, i in (("rps", 1), ("p50", 2), ("p99", 3), ("p999", 5))}
    errs = sum(int(x[4]) for x in r)
    print(f"| {p} | {med[p]['rps']:.0f} | {med[p]['p50']:.2f} | {med[p]['p99']:.2f} | {med[p]['p999']:.2f} | {errs} |")
a = med["authgate"]["rps"]
print()
for p in peers[1:]:
    print(f"authgate / {p}: {a / med[p]['rps']:.2f}x req/s")
print(f"p99 authgate vs haproxy-jwt: {med['authgate']['p99']:.2f} ms vs {med['haproxy-jwt']['p99']:.2f} ms")
h = med["haproxy-same"]
print(f"authgate vs HAProxy doing the same work: {a / h['rps']:.2f}x req/s (target >= 1.3x); "
      f"p99 {med['authgate']['p99']:.2f} vs {h['p99']:.2f} ms, p99.9 {med['authgate']['p999']:.2f} vs {h['p999']:.2f} ms (target: no longer)")
print(f"authgate vs the Pingora forwarder adding the same headers: {a / med['bare-headers']['rps']:.2f}x req/s (target >= 0.95x)")
print(f"routing scale, a catch-all request: 10,000 routes / 3 routes: {med['authgate-r10k']['rps'] / med['authgate-r3']['rps']:.3f}x req/s (target within 3%)")
t, ht = med["authgate-tls"], med["haproxy-tls"]
print(f"HTTPS termination, the same work (TLS 1.3, one ECDSA P-256 certificate): authgate / HAProxy {t['rps'] / ht['rps']:.2f}x req/s, "
      f"p99 {t['p99']:.2f} vs {ht['p99']:.2f} ms; TLS costs authgate {t['rps'] / a:.2f}x of its plain req/s, HAProxy {ht['rps'] / h['rps']:.2f}x")
print(f"signed identity assertion on / off (EdDSA both): {med['authgate-assert']['rps'] / med['authgate-eddsa']['rps']:.2f}x req/s, "
      f"p99 {med['authgate-assert']['p99']:.2f} ms vs {med['authgate-eddsa']['p99']:.2f} ms")
print()
print("| authgate RSS | MB |")
print("|---|---:|")
for label, v in (("idle", 2), ("with 1,000,000 revoked tokens", 3), ("after the throughput runs", 4),
                 ("right after 1,000,000 distinct client IPs", 5), ("25 s later (pruned)", 6)):
    print(f"| {label} | {sys.argv[v]} |")
print()
print(f"logins/s (full callback against the fake Kakao, SQLite, 32 clients): {sys.argv[10]}")
print(f"refreshes/s (rotation, SQLite, 32 chains): {sys.argv[11]}")
EOF
echo
cat "$work/threads.txt"
