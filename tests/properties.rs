//! Property tests for the target check and the router: for targets built from the spellings an
//! attacker would try (case changes, percent-encodings, dot segments, `;`, `\`, NULs, empty
//! segments), either the gateway refuses the target, or it routes it exactly as an upstream that
//! normalises every one of those spellings would, and what it forwards is byte for byte what it
//! received. The same for Host spellings.

use authgate::config::RouteConfig;
use authgate::routes::{check_host, check_target, Miss, Router};
use proptest::prelude::*;

fn route(name: &str, prefix: &str, host: Option<&str>) -> RouteConfig {
    RouteConfig {
        host: host.map(str::to_string),
        ..RouteConfig::new(name, prefix, "app")
    }
}

fn routes() -> Vec<RouteConfig> {
    vec![
        route("root", "/", None),
        route("api", "/api", None),
        route("admin", "/api/admin", None),
        route("app", "/app", None),
        route("panel", "/Admin/Panel", None),
        route("admin-host", "/", Some("admin.example")),
        route("admin-host-api", "/api", Some("admin.example")),
    ]
}

/// How a lenient upstream reads a path: percent-decoded once, `\` as `/`, `;` parameters
/// dropped, file streams (`::$DATA`) and trailing dots and spaces dropped (Windows), empty and
/// `.` segments removed, `..` applied, Unicode folded to ASCII where it can be (NFKC, Java's
/// case-insensitive compare), case folded.
fn upstream_view(path: &[u8]) -> Vec<String> {
    let mut decoded = Vec::new();
    let mut i = 0;
    while i < path.len() {
        if path[i] == b'%' && i + 2 < path.len() {
            if let Ok(b) = u8::from_str_radix(&String::from_utf8_lossy(&path[i + 1..i + 3]), 16) {
                decoded.push(b);
                i += 3;
                continue;
            }
        }
        decoded.push(path[i]);
        i += 1;
    }
    let text: String = String::from_utf8_lossy(&decoded)
        .chars()
        .flat_map(|c| match u32::from(c) {
            0x131 => vec!['i'],
            0x17F => vec!['s'],
            0x200B => vec![],
            0xFB01 => vec!['f', 'i'],
            cp @ 0xFF01..=0xFF5E => vec![char::from_u32(cp - 0xFEE0).unwrap()],
            _ => vec![c],
        })
        .collect::<String>()
        .replace('\\', "/");
    let mut out: Vec<String> = Vec::new();
    for seg in text.split('/') {
        let seg = seg.split(';').next().unwrap_or("");
        let seg = seg.split("::").next().unwrap_or("");
        let seg = seg.split(":$").next().unwrap_or("");
        let seg = if seg == "." || seg == ".." {
            seg
        } else {
            seg.trim_end_matches(['.', ' '])
        };
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s.to_ascii_lowercase()),
        }
    }
    out
}

/// The route the upstream's reading of the path and host means: the longest prefix (its
/// segments, case folded), a host route before a host-less one.
fn meant(host: Option<&str>, segments: &[String]) -> &'static str {
    let mut best: Option<(usize, bool, &'static str)> = None;
    let table: [(&'static str, &str, Option<&str>); 7] = [
        ("root", "/", None),
        ("api", "/api", None),
        ("admin", "/api/admin", None),
        ("app", "/app", None),
        ("panel", "/Admin/Panel", None),
        ("admin-host", "/", Some("admin.example")),
        ("admin-host-api", "/api", Some("admin.example")),
    ];
    for (name, prefix, route_host) in table {
        if route_host.is_some_and(|h| host != Some(h)) {
            continue;
        }
        let want: Vec<String> = prefix
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_ascii_lowercase)
            .collect();
        if segments.len() >= want.len() && segments[..want.len()] == want[..] {
            let key = (want.len(), route_host.is_some(), name);
            if best.is_none_or(|b| (key.0, key.1) > (b.0, b.1)) {
                best = Some(key);
            }
        }
    }
    best.expect("the root route matches everything").2
}

fn piece() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "api",
        "API",
        "Api",
        "admin",
        "ADMIN",
        "aDmIn",
        "app",
        "APP",
        "panel",
        "Panel",
        "x",
        "users",
        ".",
        "..",
        "",
        "%2e",
        "%2E",
        "%2e%2e",
        ".%2e",
        "%2f",
        "%2F",
        "%5c",
        "%61pi",
        "%41PP",
        "a%70p",
        ";",
        ";x=1",
        "api;v=1",
        "\\",
        "%00",
        "\u{0}",
        "%252e",
        "%20",
        "%e9",
        "a%2Fb",
        "%",
        "%zz",
        "~",
        "a.b",
        "%7e",
        "+",
        "@",
        "%3b",
        "api.",
        "admin.",
        "app%20",
        "admin::$DATA",
        "api:$i30",
        "adm%C4%B1n",
        "%C5%BFx",
        "%EF%BD%81pi",
        "%EF%BD%81%EF%BD%90%EF%BD%90",
        "ap%EF%BC%B0",
        "%E2%80%8Bapi",
        "api%E2%80%8B",
        "%EC%95%88",
        "caf%C3%A9",
        "%C3",
        "v1.2",
        "a:b",
    ])
    .prop_map(str::to_string)
}

fn target() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(piece(), 0..6),
        prop::option::of(prop::sample::select(vec![
            "?a=1",
            "?next=/admin",
            "?x=%2e%2e/",
        ])),
        any::<bool>(),
    )
        .prop_map(|(segments, query, trailing)| {
            let mut t = format!("/{}", segments.join("/"));
            if trailing {
                t.push('/');
            }
            if let Some(q) = query {
                t.push_str(q);
            }
            t
        })
}

fn host() -> impl Strategy<Value = Option<String>> {
    let name = prop::sample::select(vec![
        "admin.example",
        "ADMIN.example",
        "Admin.Example",
        "www.example",
        "admin",
        "example",
    ]);
    let dots = prop::sample::select(vec!["", ".", "..", ".."]);
    let lead = prop::sample::select(vec!["", ".", "*."]);
    let port = prop::sample::select(vec!["", ":80", ":8443", ":", ":x", ":99999999"]);
    prop::option::of((lead, name, dots, port).prop_map(|(l, n, d, p)| format!("{l}{n}{d}{p}")))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    #[test]
    fn accepted_targets_route_as_the_upstream_reads_them(t in target(), h in host()) {
        let router = Router::new(&routes(), |_| 0);
        let Ok(path) = check_target(t.as_bytes()) else {
            return Ok(());
        };
        // What is routed is the received path itself, and the rest is only the query.
        prop_assert!(t.starts_with(path));
        prop_assert!(t[path.len()..].is_empty() || t[path.len()..].starts_with('?'));
        let host = match h.as_deref().map(|h| check_host(h.as_bytes())) {
            Some(Err(_)) => return Ok(()),
            Some(Ok(name)) => Some(name),
            None => None,
        };
        let canonical_host = host.map(|h| String::from_utf8_lossy(h).to_ascii_lowercase());
        let expected = meant(canonical_host.as_deref(), &upstream_view(path.as_bytes()));
        let got = router
            .find(host, path, &http::Method::GET)
            .map(|(_, r)| r.name.as_str());
        prop_assert_eq!(got, Ok(expected), "target {:?} host {:?}", t, h);
    }

    #[test]
    fn hosts_either_refused_or_one_lower_case_name_without_port_or_trailing_dot(h in host()) {
        let Some(h) = h else { return Ok(()) };
        if let Ok(name) = check_host(h.as_bytes()) {
            let name = std::str::from_utf8(name).unwrap();
            prop_assert!(!name.ends_with('.'));
            prop_assert!(!name.contains(':'));
            prop_assert!(!name.contains(".."));
            prop_assert!(!name.starts_with('.'));
            prop_assert!(h.to_ascii_lowercase().starts_with(&name.to_ascii_lowercase()));
        }
    }
}

#[test]
fn a_method_outside_the_route_is_refused_there_for_every_spelling() {
    let mut writes = route("writes", "/api/items", None);
    writes.methods = vec!["POST".into()];
    let router = Router::new(&[route("root", "/", None), writes], |_| 0);
    for path in [
        "/api/items",
        "/API/ITEMS",
        "/api/Items/",
        "/api/items/7?x=1",
    ] {
        let path = check_target(path.as_bytes()).unwrap();
        assert!(
            matches!(
                router.find(None, path, &http::Method::GET),
                Err(Miss::MethodNotAllowed(_))
            ),
            "{path}"
        );
    }
}
