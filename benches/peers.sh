# Sourced by benches/load.sh and benches/instructions.sh: the peers' configurations and the
# benchmark token. Expects $work, $SECRET and the port variables to be set.

write_configs() {
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
