//! A bare Pingora forwarder: no auth, one upstream. `benches/load.sh` measures authgate against
//! it to show what authentication costs on top of Pingora itself. With `headers`, it adds the
//! eight headers authgate adds (four `X-User-*`, `X-Request-Id`, `X-Forwarded-For/-Proto/-Host`)
//! with static values, and `X-Request-Id` on the response, the way authgate adds them (the
//! header map edited directly): the cost of the header payload without any authentication. Built with the same release profile and allocator as authgate.
//!
//! Usage: bare_pingora LISTEN UPSTREAM [THREADS] [headers]   (e.g. 127.0.0.1:18081 127.0.0.1:18080)

use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Forward(std::net::SocketAddr, bool);

const STATIC_HEADERS: [(&str, &str); 8] = [
    ("x-user-id", "42"),
    ("x-user-email", "u@example.com"),
    ("x-user-nickname", "bench"),
    ("x-user-provider", "kakao"),
    ("x-request-id", "0123456789abcdef0123456789abcdef"),
    ("x-forwarded-for", "127.0.0.1"),
    ("x-forwarded-proto", "http"),
    ("x-forwarded-host", "127.0.0.1"),
];

#[async_trait]
impl ProxyHttp for Forward {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.0, false, String::new())))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        up: &mut RequestHeader,
        _ctx: &mut (),
    ) -> Result<()> {
        // The cheapest way Pingora offers to add them, the one authgate uses: the header map
        // edited directly (no case map), with room reserved.
        if self.1 {
            let end_stream = up.send_end_stream().unwrap_or(true);
            let blank = RequestHeader::from(http::Request::new(()).into_parts().0);
            let mut parts: http::request::Parts = std::mem::replace(up, blank).into();
            parts.headers.reserve(STATIC_HEADERS.len());
            for (name, value) in STATIC_HEADERS {
                parts.headers.append(
                    http::HeaderName::from_static(name),
                    http::HeaderValue::from_static(value),
                );
            }
            *up = RequestHeader::from(parts);
            up.set_send_end_stream(end_stream);
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        _ctx: &mut (),
    ) -> Result<()> {
        if self.1 {
            let blank = ResponseHeader::from(http::Response::new(()).into_parts().0);
            let mut parts: http::response::Parts = std::mem::replace(resp, blank).into();
            parts.headers.insert(
                http::HeaderName::from_static(STATIC_HEADERS[4].0),
                http::HeaderValue::from_static(STATIC_HEADERS[4].1),
            );
            *resp = ResponseHeader::from(parts);
        }
        Ok(())
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        eprintln!("usage: bare_pingora LISTEN UPSTREAM");
        std::process::exit(2);
    };
    let threads = args.next().and_then(|t| t.parse().ok()).unwrap_or(1);
    let headers = args.next().as_deref() == Some("headers");
    let conf = ServerConf {
        threads,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = pingora::proxy::http_proxy_service(
        &server.configuration,
        Forward(upstream.parse().expect("UPSTREAM is ip:port"), headers),
    );
    proxy.add_tcp(&listen);
    server.add_service(proxy);
    server.run_forever();
}
