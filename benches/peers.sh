# Sourced by benches/load.sh and benches/instructions.sh: the ports, the tools, a scratch
# directory whose servers are stopped on exit, the peers' configurations and the token.

SECRET="load-benchmark-secret-0123456789abcdef0123"
UP=18080 AG=18081 AG_ADMIN=18091 BARE=18082 NGX=18083 HAP=18084 AGN=18085 AGN_ADMIN=18095
AGE=18086 AGE_ADMIN=18096 AGA=18087 AGA_ADMIN=18097 HAPS=18088 BAREH=18089
AGR3=18090 AGR3_ADMIN=18098 AGR10K=18092 AGR10K_ADMIN=18099
# HTTPS termination: authgate's TLS listener and HAProxy's, the same certificate and work.
AGT=18093 AGT_TLS=18443 AGT_ADMIN=18094 HAPT=18444
# EdDSA peers (the signed identity assertion needs a public key): the tests' fixture key.
ED_KEY="$PWD/tests/fixtures/ed25519.pem"

# Installs the named tools from Debian's packages when missing, then the build tools.
need_tools() {
  local missing=()
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || missing+=("$tool")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  NGINX=$(command -v nginx || echo /usr/sbin/nginx)
  HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
  scripts/ensure-tools
}

# $work, removed on exit after every process recorded in $pids is stopped.
make_workdir() {
  work=$(mktemp -d)
  pids=()
  trap cleanup EXIT
}
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}

wait_port() { # port [tenths of a second]
  for _ in $(seq 1 "${2:-100}"); do
    (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0
    sleep 0.1
  done
  echo "port $1 never opened" >&2; return 1
}

write_configs() {
# One ECDSA P-256 certificate for both TLS peers; both then agree on TLS 1.3 with wrk's
# (OpenSSL's) first choice, TLS_AES_256_GCM_SHA384.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
  -keyout "$work/tls.key" -out "$work/tls.pem" 2>/dev/null
cat "$work/tls.pem" "$work/tls.key" >"$work/tls-haproxy.pem"
cat >"$work/nginx-up.conf" <<EOF
worker_processes 1; daemon off; pid $work/nginx-up.pid; error_log $work/nginx-up.log;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$UP; location / { default_type application/json; return 200 '{"ok":true,"app":"bench"}'; } } }
EOF
cat >"$work/nginx-proxy.conf" <<EOF
worker_processes 1; daemon off; pid $work/nginx-proxy.pid; error_log $work/nginx-proxy.log;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  upstream app { server 127.0.0.1:$UP; keepalive 128; }
  server { listen 127.0.0.1:$NGX; location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
EOF
cat >"$work/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 1s
  timeout client 30s
  timeout server 30s
frontend fe
  bind 127.0.0.1:$HAP
  http-request set-var(txn.bearer) http_auth_bearer
  http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('\$.alg')
  http-request deny status 401 unless { var(txn.alg) -m str HS256 }
  http-request deny status 401 unless { var(txn.bearer),jwt_verify(txn.alg,"$SECRET") -m int 1 }
  http-request del-header X-User-Id
  http-request set-header X-User-Id %[var(txn.bearer),jwt_payload_query('\$.sub')]
  default_backend be
backend be
  http-reuse always
  server up 127.0.0.1:$UP
EOF
# HAProxy doing authgate's work on a protected route (the performance issue's list): target
# hygiene, alg pinning, the HS256 signature, exp with leeway, iss, aud, type, sub, jti, a
# 1,000-entry revoked-jti list, a per-user request-rate table, forged identity and forwarding
# headers removed, four X-User-* headers from the claims, X-Request-Id on request and response,
# X-Forwarded-For/-Proto/-Host, no logging.
for i in $(seq 1 1000); do echo "revoked-$i 1"; done >"$work/revoked.map"
cat >"$work/haproxy-same.cfg" <<EOF
global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 1s
  timeout client 30s
  timeout server 30s
backend per_user
  stick-table type string len 64 size 100k expire 60s store http_req_rate(60s)
frontend fe
  bind 127.0.0.1:$HAPS
  unique-id-format %{+X}o%ci%cp%Ts%rt%pid
  http-request deny status 400 if { path_sub -i /./ /../ // %2e %2f %5c %25 %00 ; }
  http-request deny status 400 if { path_end /. /.. }
  http-request deny status 400 if { req.hdr_cnt(host) gt 1 }
  http-request set-var(txn.bearer) http_auth_bearer
  http-request deny status 401 unless { var(txn.bearer) -m found }
  http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('\$.alg')
  http-request deny status 401 unless { var(txn.alg) -m str HS256 }
  http-request deny status 401 unless { var(txn.bearer),jwt_verify(txn.alg,"$SECRET") -m int 1 }
  http-request set-var(txn.now) date
  http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('\$.exp','int'),add(30)
  http-request deny status 401 unless { var(txn.exp),sub(txn.now) -m int gt 0 }
  http-request deny status 401 unless { var(txn.bearer),jwt_payload_query('\$.iss') -m str authgate }
  http-request deny status 401 unless { var(txn.bearer),jwt_payload_query('\$.aud') -m str authgate }
  http-request deny status 401 unless { var(txn.bearer),jwt_payload_query('\$.type') -m str access }
  http-request set-var(txn.sub) var(txn.bearer),jwt_payload_query('\$.sub')
  http-request deny status 401 unless { var(txn.sub) -m found }
  http-request set-var(txn.jti) var(txn.bearer),jwt_payload_query('\$.jti')
  http-request deny status 401 unless { var(txn.jti) -m found }
  http-request deny status 401 if { var(txn.jti),map($work/revoked.map) -m found }
  http-request track-sc0 var(txn.sub) table per_user
  http-request deny status 429 if { sc_http_req_rate(0) gt 1000000 }
  http-request del-header X-User-Id
  http-request del-header X-User-Email
  http-request del-header X-User-Nickname
  http-request del-header X-User-Provider
  http-request del-header X-Forwarded-For
  http-request del-header X-Forwarded-Proto
  http-request del-header X-Forwarded-Host
  http-request del-header X-Real-IP
  http-request del-header Forwarded
  http-request set-header X-User-Id %[var(txn.sub)]
  http-request set-header X-User-Email %[var(txn.bearer),jwt_payload_query('\$.email')]
  http-request set-header X-User-Nickname %[var(txn.bearer),jwt_payload_query('\$.nickname')]
  http-request set-header X-User-Provider %[var(txn.bearer),jwt_payload_query('\$.provider')]
  http-request set-header X-Request-Id %[unique-id]
  http-request set-header X-Forwarded-For %[src]
  http-request set-header X-Forwarded-Proto http
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
  http-response set-header X-Request-Id %[unique-id]
  default_backend be
backend be
  http-reuse always
  server up 127.0.0.1:$UP
EOF
cat >"$work/authgate.toml" <<EOF
[server]
listen = "127.0.0.1:$AG"
admin_listen = "127.0.0.1:$AG_ADMIN"
threads = 1
grace_period_seconds = 0
trusted_proxies = ["127.0.0.1/32"]
[jwt]
secret = "$SECRET"
[store]
url = "sqlite://$work/authgate.db"
# Each process its own spool (the per-config copies below rename it with the database).
spool_file = "$work/authgate.db.spool"
[rate_limit]
user_per_minute = 1000000
user_burst = 1000000
ip_per_minute = 1000000
ip_burst = 1000000
[log]
level = "warn"
[[upstreams]]
name = "app"
addrs = ["127.0.0.1:$UP"]
[[routes]]
name = "api"
path_prefix = "/api"
upstream = "app"
auth = "required"
[[routes]]
name = "public"
path_prefix = "/public"
upstream = "app"
auth = "public"
EOF
# The same two on TLS: HAProxy terminating on its bind line (X-Forwarded-Proto https, as
# authgate sets it for its own TLS listener), authgate on its tls_listen.
sed -e "s|^  bind 127.0.0.1:$HAPS\$|  bind 127.0.0.1:$HAPT ssl crt $work/tls-haproxy.pem alpn http/1.1|" \
    -e "s|X-Forwarded-Proto http\$|X-Forwarded-Proto https|" "$work/haproxy-same.cfg" >"$work/haproxy-tls.cfg"
sed -e "s/:$AG\"/:$AGT\"/; s/:$AG_ADMIN\"/:$AGT_ADMIN\"/; s|authgate.db|authgate-tls.db|" \
    -e "s|^\[jwt\]|tls_listen = \"127.0.0.1:$AGT_TLS\"\n[server.tls]\ncert_file = \"$work/tls.pem\"\nkey_file = \"$work/tls.key\"\n[jwt]|" \
    "$work/authgate.toml" >"$work/authgate-tls.toml"
}

# authgate.toml with the EdDSA key on other ports: $1 port, $2 admin port, $3 name, $4 a line
# for [identity].
eddsa_config() {
  sed -e "s/:$AG\"/:$1\"/; s/:$AG_ADMIN\"/:$2\"/; s|authgate.db|$3.db|" \
      -e "s|^secret = .*|algorithm = \"EdDSA\"\nprivate_key_file = \"$ED_KEY\"|" \
      -e "s/^\[log\]/[identity]\n$4\n[log]/" "$work/authgate.toml"
}

# authgate.toml on other ports whose routes are a catch-all `/` (required, so the work is the same)
# that alone takes /api/bench, and $4 - 1 other routes besides it: $1 port, $2 admin, $3 name.
routes_config() {
  python3 - "$work/authgate.toml" "$1" "$2" "$3" "$4" <<'EOF'
import sys
text, port, admin, name, n = open(sys.argv[1]).read(), sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
head = text.split("[[routes]]")[0]
head = head.replace(":18081\"", f":{port}\"").replace(":18091\"", f":{admin}\"").replace("authgate.db", f"{name}.db")
routes = ['[[routes]]\nname = "all"\npath_prefix = "/"\nupstream = "app"\nauth = "required"\n']
routes += [f'[[routes]]\nname = "r{i}"\npath_prefix = "/service-{i}/v1"\nupstream = "app"\n' for i in range(1, n)]
print(head + "".join(routes))
EOF
}

# The benchmark's access token signed with the EdDSA key (OpenSSL signs, Python frames it).
make_eddsa_token() {
python3 - "$ED_KEY" <<'EOF'
import base64, json, subprocess, sys, time
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
now = int(time.time())
h = b64(json.dumps({"alg": "EdDSA", "typ": "JWT"}).encode())
p = b64(json.dumps({"sub": "42", "user_id": 42, "email": "u@example.com", "nickname": "bench", "provider": "kakao",
                    "type": "access", "jti": "bench-ed-1", "iat": now, "exp": now + 3600, "iss": "authgate", "aud": "authgate"}).encode())
# Ed25519 signs in one shot, so OpenSSL needs a file whose size it knows (not a pipe).
import tempfile
with tempfile.NamedTemporaryFile() as f:
    f.write(f"{h}.{p}".encode()); f.flush()
    sig = subprocess.run(["openssl", "pkeyutl", "-sign", "-rawin", "-inkey", sys.argv[1], "-in", f.name],
                         capture_output=True, check=True).stdout
print(f"{h}.{p}.{b64(sig)}")
EOF
}

make_token() {
python3 - "$SECRET" <<'EOF'
import base64, hashlib, hmac, json, sys, time
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
now = int(time.time())
h = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
p = b64(json.dumps({"sub": "42", "user_id": 42, "email": "u@example.com", "nickname": "bench", "provider": "kakao",
                    "type": "access", "jti": "bench-1", "iat": now, "exp": now + 3600, "iss": "authgate", "aud": "authgate"}).encode())
sig = b64(hmac.new(sys.argv[1].encode(), f"{h}.{p}".encode(), hashlib.sha256).digest())
print(f"{h}.{p}.{sig}")
EOF
}
