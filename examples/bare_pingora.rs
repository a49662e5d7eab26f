//! A bare Pingora forwarder: no auth, no header rewriting, one upstream. `benches/load.sh`
//! measures authgate against it to show what authentication costs on top of Pingora itself.
//! Built with the same release profile and allocator as authgate.
//!
//! Usage: bare_pingora LISTEN UPSTREAM   (e.g. 127.0.0.1:18081 127.0.0.1:18080)

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Forward(std::net::SocketAddr);

#[async_trait]
impl ProxyHttp for Forward {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.0, false, String::new())))
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        eprintln!("usage: bare_pingora LISTEN UPSTREAM");
        std::process::exit(2);
    };
    let threads = args.next().and_then(|t| t.parse().ok()).unwrap_or(1);
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
        Forward(upstream.parse().expect("UPSTREAM is ip:port")),
    );
    proxy.add_tcp(&listen);
    server.add_service(proxy);
    server.run_forever();
}
