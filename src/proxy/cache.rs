//! What shared caches may keep of an answer the gateway forwards. Backends that know nothing
//! about login cannot know an answer was personal; the gateway does:
//!
//! - an answer to an authenticated request is `private` (an upstream's `public` and `s-maxage`
//!   removed, its other directives kept), unless its route says `shared_cache = true`;
//! - on `optional` routes the same URL is answered to signed-in and anonymous clients alike,
//!   so the answer varies on `Cookie` and `Authorization` (added to the upstream's `Vary`).
//!
//! Pure: header maps in, header maps out.

use http::header::{CACHE_CONTROL, VARY};
use http::{HeaderMap, HeaderValue};

/// Makes `h` (an answer's headers) `private`: the directives of every `Cache-Control` field but
/// `public`, `s-maxage` and a qualified `private="..."` (which lets a shared cache keep the rest,
/// RFC 9111 §5.2.2.7), then a plain `private` unless already there. The headers CDNs read
/// instead of `Cache-Control` (`CDN-Cache-Control` and its vendors' variants, RFC 9213;
/// `Surrogate-Control`; `Edge-Control`) are removed.
pub fn make_private(h: &mut HeaderMap) {
    remove_cdn_controls(h);
    // The common cases without an allocation: no Cache-Control at all, or one that already
    // says private and nothing shared caches act on.
    let mut fields = h.get_all(CACHE_CONTROL).iter();
    match (fields.next(), fields.next()) {
        (None, _) => {
            h.insert(CACHE_CONTROL, HeaderValue::from_static("private"));
            return;
        }
        (Some(v), None) if is_already_private(v.as_bytes()) => return,
        _ => {}
    }
    let mut kept: Vec<String> = Vec::new();
    let mut private = false;
    for v in h.get_all(CACHE_CONTROL) {
        // A value that is not text cannot be read: dropped, `private` stands alone.
        let Ok(v) = v.to_str() else { continue };
        for d in directives(v.as_bytes()) {
            let d = std::str::from_utf8(d).unwrap_or_default().trim();
            let (name, valued) = name_of(d.as_bytes());
            match (name.to_ascii_lowercase().as_slice(), valued) {
                (b"public" | b"s-maxage", _) | (b"private", true) => {}
                (b"private", false) => {
                    private = true;
                    kept.push(d.to_string());
                }
                _ => kept.push(d.to_string()),
            }
        }
    }
    if !private {
        kept.insert(0, "private".to_string());
    }
    let value = HeaderValue::from_str(&kept.join(", "))
        .unwrap_or_else(|_| HeaderValue::from_static("private"));
    h.insert(CACHE_CONTROL, value);
}

/// Headers a CDN obeys instead of `Cache-Control`.
fn remove_cdn_controls(h: &mut HeaderMap) {
    let cdn: Vec<http::HeaderName> = h
        .keys()
        .filter(|n| {
            let n = n.as_str();
            n == "surrogate-control" || n == "edge-control" || n.ends_with("cdn-cache-control")
        })
        .cloned()
        .collect();
    for n in cdn {
        h.remove(n);
    }
}

/// The directives of one field, split at commas outside quoted strings, not trimmed.
fn directives(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut quoted = false;
    let mut escaped = false;
    let mut start = 0;
    let mut cuts = Vec::new();
    for (i, &b) in v.iter().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b',' if !quoted => {
                cuts.push((start, i));
                start = i + 1;
            }
            _ => {}
        }
    }
    cuts.push((start, v.len()));
    cuts.into_iter()
        .map(move |(a, b)| &v[a..b])
        .filter(|d| !d.trim_ascii().is_empty())
}

/// A directive's name, and whether it has a value (`name=value`).
fn name_of(d: &[u8]) -> (&[u8], bool) {
    let d = d.trim_ascii();
    match d.iter().position(|&b| b == b'=') {
        Some(eq) => (d[..eq].trim_ascii(), true),
        None => (d, false),
    }
}

/// One field whose directives include a plain `private` and neither `public` nor `s-maxage`.
fn is_already_private(v: &[u8]) -> bool {
    let mut private = false;
    for d in directives(v) {
        let (name, valued) = name_of(d);
        if name.eq_ignore_ascii_case(b"public") || name.eq_ignore_ascii_case(b"s-maxage") {
            return false;
        }
        private |= !valued && name.eq_ignore_ascii_case(b"private");
    }
    private
}

/// Adds `Cookie` and `Authorization` to `h`'s `Vary`, keeping what the upstream listed (and
/// `*`, which already varies on everything).
pub fn vary_on_credentials(h: &mut HeaderMap) {
    let mut names: Vec<String> = Vec::new();
    for v in h.get_all(VARY) {
        let Ok(v) = v.to_str() else { continue };
        for n in v.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if n == "*" {
                return;
            }
            if !names.iter().any(|o| o.eq_ignore_ascii_case(n)) {
                names.push(n.to_string());
            }
        }
    }
    for n in ["Cookie", "Authorization"] {
        if !names.iter().any(|o| o.eq_ignore_ascii_case(n)) {
            names.push(n.to_string());
        }
    }
    if let Ok(v) = HeaderValue::from_str(&names.join(", ")) {
        h.insert(VARY, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn shared_caching_is_taken_away_and_the_rest_kept() {
        for (given, made) in [
            (vec![], "private"),
            (vec!["public, max-age=3600"], "private, max-age=3600"),
            (vec!["max-age=60, s-maxage=600"], "private, max-age=60"),
            (vec!["Public", "S-MaxAge=5, no-cache"], "private, no-cache"),
            (vec!["private, max-age=10"], "private, max-age=10"),
            (vec!["no-store"], "private, no-store"),
            (vec!["must-revalidate,public"], "private, must-revalidate"),
            (vec!["x-privately, max-age=5"], "private, x-privately, max-age=5"),
            (vec!["Private, max-age=5"], "Private, max-age=5"),
            // A qualified private lets shared caches keep the rest: made plain.
            (vec!["private=\"Set-Cookie\", max-age=3600"], "private, max-age=3600"),
            // Commas inside quoted strings are not directives.
            (
                vec!["max-age=3600, no-cache=\"X-Debug,private,X-Trace\""],
                "private, max-age=3600, no-cache=\"X-Debug,private,X-Trace\"",
            ),
        ] {
            let mut h = headers(&given.iter().map(|v| ("cache-control", *v)).collect::<Vec<_>>());
            make_private(&mut h);
            assert_eq!(h.get_all(CACHE_CONTROL).iter().count(), 1, "{given:?}");
            assert_eq!(h[CACHE_CONTROL], made, "{given:?}");
        }
    }

    #[test]
    fn the_headers_cdns_obey_instead_go_with_a_private_answer() {
        let mut h = headers(&[
            ("cache-control", "public, max-age=60"),
            ("cdn-cache-control", "max-age=3600"),
            ("cloudflare-cdn-cache-control", "max-age=3600"),
            ("surrogate-control", "max-age=3600"),
            ("edge-control", "cache-maxage=3600"),
            ("content-type", "text/html"),
        ]);
        make_private(&mut h);
        assert_eq!(h.len(), 2, "{h:?}");
        assert_eq!(h[CACHE_CONTROL], "private, max-age=60");
    }

    #[test]
    fn credentials_join_the_vary_list_once() {
        for (given, made) in [
            (vec![], Some("Cookie, Authorization")),
            (vec!["Accept-Encoding"], Some("Accept-Encoding, Cookie, Authorization")),
            (vec!["cookie", "Accept"], Some("cookie, Accept, Authorization")),
            (vec!["*"], Some("*")),
        ] {
            let mut h = headers(&given.iter().map(|v| ("vary", *v)).collect::<Vec<_>>());
            vary_on_credentials(&mut h);
            assert_eq!(h.get(VARY).and_then(|v| v.to_str().ok()), made, "{given:?}");
        }
    }
}
