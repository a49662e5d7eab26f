//! What the fake providers (`fake_kakao.rs`, `fake_oidc.rs`, `fake_naver.rs`) share: serving on
//! a loopback listener, reading a request into its parts, the faults they can be told to make,
//! and the OAuth redirect back to the client with a code or an error.

use std::collections::HashMap;
use std::future::Future;

use base64::Engine;
use http_body_util::BodyExt;
use tokio::net::TcpListener;

use crate::localhttp::{self, Reply};

/// What a fake should do instead of answering normally (its token and user-info endpoints).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    /// A 500 with the provider's own error body.
    ServerError,
    /// 200 with an HTML page, as a captive portal or a misrouted proxy would.
    HtmlBody,
    /// Accept and never answer.
    Hang,
}

impl Fault {
    /// The answer that replaces the normal one, if any; `server_error` is the provider's own
    /// 500 (its error JSON).
    pub(super) async fn answer(self, server_error: impl FnOnce() -> Reply) -> Option<Reply> {
        match self {
            Fault::None => None,
            Fault::ServerError => Some(server_error()),
            Fault::HtmlBody => Some(localhttp::reply(
                200,
                "text/html; charset=utf-8",
                "<html><body>Service maintenance (점검 중)</body></html>",
            )),
            Fault::Hang => {
                tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                None
            }
        }
    }
}

/// A request as a fake reads it.
pub(super) struct Incoming {
    pub path: String,
    pub post: bool,
    pub query: HashMap<String, String>,
    /// The url-encoded body's fields.
    pub form: HashMap<String, String>,
    pub authorization: Option<String>,
}

impl Incoming {
    /// `None` when the body could not be read.
    async fn read(req: hyper::Request<hyper::body::Incoming>) -> Option<Incoming> {
        let path = req.uri().path().to_string();
        let query = url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
        let authorization = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let post = req.method() == hyper::Method::POST;
        let body = req.into_body().collect().await.ok()?.to_bytes();
        Some(Incoming {
            path,
            post,
            query,
            form: url::form_urlencoded::parse(&body).into_owned().collect(),
            authorization,
        })
    }

    pub fn bearer(&self) -> Option<&str> {
        self.authorization.as_deref()?.strip_prefix("Bearer ")
    }
}

/// A fake provider's request handling.
pub(super) trait Fake: Clone + Send + Sync + 'static {
    fn handle(&self, req: Incoming) -> impl Future<Output = Reply> + Send;
    /// The provider's answer to a body that could not be read.
    fn bad_body(&self) -> Reply;
}

/// Serves `fake` on `listener` (spawned on the current runtime).
pub(super) fn spawn<F: Fake>(listener: TcpListener, fake: &F) {
    let fake = fake.clone();
    tokio::spawn(localhttp::serve(listener, move |req| {
        let fake = fake.clone();
        async move {
            match Incoming::read(req).await {
                Some(req) => fake.handle(req).await,
                None => fake.bad_body(),
            }
        }
    }));
}

/// `bytes` random bytes, base64url: codes and tokens.
pub(super) fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::fill(&mut buf[..]);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

pub(super) fn redirect(location: &str) -> Reply {
    let mut r = localhttp::reply(302, "text/plain", "");
    r.headers_mut()
        .insert("location", location.parse().expect("url-encoded location"));
    r
}

/// The authorize request's answer: back to its `redirect_uri` with `pairs` and the unchanged
/// `state`.
pub(super) fn back_to_client(q: &HashMap<String, String>, pairs: &[(&str, &str)]) -> Reply {
    let mut url = url::Url::parse(&q["redirect_uri"]).expect("registered redirect_uri");
    {
        let mut qp = url.query_pairs_mut();
        for (k, v) in pairs {
            qp.append_pair(k, v);
        }
        if let Some(state) = q.get("state") {
            qp.append_pair("state", state);
        }
    }
    redirect(url.as_str())
}
