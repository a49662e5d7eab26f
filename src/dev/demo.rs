//! The `authgate dev` demo upstream: an app that knows nothing about login and shows which
//! identity headers the gateway forwarded to it.

use serde_json::json;
use tokio::net::TcpListener;

use crate::localhttp::{self, html_escape, Reply};

const SHOWN: &[&str] = &[
    "x-user-id",
    "x-user-email",
    "x-user-nickname",
    "x-user-provider",
    "x-request-id",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
];

/// The demo's routes, in front of an upstream called `demo`: `/` optional (the home page shows
/// who is logged in), `/app` required with browsers sent to login, `/api` required.
pub const ROUTES: &str = r#"[[routes]]
name = "home"
path_prefix = "/"
upstream = "demo"
auth = "optional"
[[routes]]
name = "app"
path_prefix = "/app"
upstream = "demo"
auth = "required"
on_unauthenticated = "redirect"
[[routes]]
name = "api"
path_prefix = "/api"
upstream = "demo"
auth = "required"
"#;

pub async fn serve(listener: TcpListener) {
    localhttp::serve(listener, |req| async move {
        let seen: Vec<(&str, String)> = SHOWN
            .iter()
            .filter_map(|name| {
                req.headers()
                    .get(*name)
                    .map(|v| (*name, String::from_utf8_lossy(v.as_bytes()).into_owned()))
            })
            .collect();
        let html = req
            .headers()
            .get("accept")
            .is_some_and(|a| a.to_str().unwrap_or("").contains("text/html"));
        if html {
            page(req.uri().path(), &seen)
        } else {
            let headers: serde_json::Map<String, serde_json::Value> = seen
                .into_iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect();
            localhttp::json(
                200,
                &json!({"app": "demo", "path": req.uri().path(), "headers": headers}),
            )
        }
    })
    .await
}

fn page(path: &str, seen: &[(&str, String)]) -> Reply {
    let rows: String = seen
        .iter()
        .map(|(k, v)| {
            format!(
                "<tr><th>{}</th><td>{}</td></tr>",
                html_escape(k),
                html_escape(v)
            )
        })
        .collect();
    let nickname = seen
        .iter()
        .find(|(k, _)| *k == "x-user-nickname")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    let who = seen
        .iter()
        .find(|(k, _)| *k == "x-user-id")
        .map(|(_, v)| {
            format!(
                "Signed in as <b>{}</b> (user {}). <button onclick=\"fetch('/api/auth/logout',{{method:'POST'}})\
                 .then(()=>location='/')\">Log out</button>",
                html_escape(nickname),
                html_escape(v)
            )
        })
        .unwrap_or_else(|| {
            "Not signed in: no X-User-* headers arrived. <a href=\"/api/auth/login?next=/app\">Log in</a> \
             or open <a href=\"/app\">/app</a>, which requires a login."
                .into()
        });
    localhttp::reply(
        200,
        "text/html; charset=utf-8",
        format!(
            "<!doctype html><html><head><meta charset=utf-8><title>authgate demo app</title>\
             <style>body{{font-family:sans-serif;max-width:48em;margin:2em auto}}th{{text-align:left;padding-right:1em}}</style>\
             </head><body><h1>Demo upstream app</h1><p>Path <code>{}</code>. {who}</p>\
             <p>Headers the gateway forwarded:</p><table>{rows}</table></body></html>",
            html_escape(path)
        ),
    )
}
