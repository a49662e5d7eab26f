//! What the gateway writes or forwards itself: its own answers (JSON, `Content-Length`,
//! `Cache-Control: no-store`, the rotated session cookies), log-safe values, the session
//! cookies removed before forwarding, the request's host, and Pingora errors mapped to ours.

use super::*;

/// Writes a complete local response; every gateway-written answer goes through here. A
/// session rotated for this request (`ctx.set_cookies`) goes with it whatever the answer: the
/// old refresh token is spent, and a browser that never heard of the new one would present the
/// old one again and be logged out.
pub(super) async fn write_json(
    session: &mut Session,
    ctx: &mut RequestCtx,
    status: u16,
    body: Vec<u8>,
    extra: &[(&str, &str)],
) -> Result<()> {
    let mut h = ResponseHeader::build(status, Some(6 + extra.len() + ctx.set_cookies.len()))?;
    // The API's login page brings its own type; every other answer is JSON.
    if !extra
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        h.insert_header("content-type", "application/json")?;
    }
    h.insert_header("content-length", body.len().to_string())?;
    h.insert_header("cache-control", "no-store")?;
    if let Some(id) = &ctx.request_id {
        h.insert_header(X_REQUEST_ID, id.clone())?;
    }
    for (k, v) in extra {
        h.append_header(k.to_string(), *v)?;
    }
    for c in ctx.set_cookies.drain(..) {
        h.append_header("set-cookie", c)?;
    }
    // Failing to write is the client's doing (it went away): marked so, it is not logged as ours.
    session
        .write_response_header(Box::new(h), false)
        .await
        .map_err(|e| e.into_down())?;
    session
        .write_response_body(Some(Bytes::from(body)), true)
        .await
        .map_err(|e| e.into_down())?;
    Ok(())
}

pub(super) async fn answer_error(
    session: &mut Session,
    ctx: &mut RequestCtx,
    err: &GatewayError,
) -> Result<PublicError> {
    let public = err.public();
    let headers = err.headers();
    let extra: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    write_json(session, ctx, public.status, public.body(), &extra).await?;
    Ok(public)
}

/// A value safe to log: control characters, quotes, backslashes and bytes that are not UTF-8 are
/// escaped, and it is cut at 512 bytes.
pub fn loggable(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().min(512));
    for chunk in bytes[..bytes.len().min(512)].utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() || c == '"' || c == '\\' {
                out.extend(c.escape_default());
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// The gateway's session cookies are credentials for the gateway, not for the upstream app:
/// an upstream that logs or echoes cookies must not be able to leak them. The header is handled
/// as bytes (`cookies::without`), so other cookies reach the upstream exactly as sent.
pub(super) fn strip_session_cookies(headers: &mut http::HeaderMap) {
    let ours = cookies::is_ours;
    let cookies = headers.get_all(http::header::COOKIE);
    // Most requests carry none of ours in one header: check without copying anything.
    let stripped: Vec<Option<Vec<u8>>> = cookies
        .iter()
        .map(|v| crate::cookies::without(v.as_bytes(), ours))
        .collect();
    if stripped.len() < 2 && stripped.iter().all(Option::is_none) {
        return;
    }
    // What is left goes upstream as one header: HTTP/2 clients split cookies into several
    // fields, which must be joined with "; " for an HTTP/1.1 upstream (RFC 9113 §8.2.3), and an
    // upstream that reads only the first `Cookie` line would miss the rest.
    let mut joined: Vec<u8> = Vec::new();
    for (original, stripped) in cookies.iter().zip(stripped) {
        let kept = stripped.unwrap_or_else(|| original.as_bytes().to_vec());
        if kept.is_empty() {
            continue;
        }
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(&kept);
    }
    headers.remove(http::header::COOKIE);
    // Bytes of valid header values with some pairs taken out, joined by "; ", are still valid.
    if let Ok(value) = http::HeaderValue::from_bytes(&joined) {
        if !joined.is_empty() {
            headers.append(http::header::COOKIE, value);
        }
    }
}

/// The authority the request names, as the client wrote it (routes compare it after
/// `routes::check_host`). A request without one is refused (RFC 9112 §3.2): an upstream would
/// serve its default virtual host, which a host route cannot protect; so are two `Host`
/// headers, of which the upstream might read the other. An HTTP/2 request names it in
/// `:authority`, and Pingora forwards that as the upstream's `Host` whatever `Host` says, so a
/// `Host` beside it must say the same (RFC 9113 §8.3.1 lets a server refuse the pair), or the
/// route would be chosen by one host and the request delivered to the other. An HTTP/1.1
/// request names it in its one `Host` (an absolute-form target is refused by the target check).
pub(super) fn request_authority(req: &RequestHeader) -> Result<&[u8], GatewayError> {
    let mut hosts = req.headers.get_all(http::header::HOST).iter();
    let host = match (hosts.next(), hosts.next()) {
        (_, Some(_)) => return Err(TargetError::BadHost.into()),
        (h, None) => h.map(|h| h.as_bytes()),
    };
    match (req.uri.authority().map(|a| a.as_str().as_bytes()), host) {
        (Some(a), Some(h)) if a != h => Err(TargetError::BadHost.into()),
        (Some(a), _) | (None, Some(a)) => Ok(a),
        (None, None) => Err(TargetError::BadHost.into()),
    }
}

/// Maps a Pingora error that our hooks did not choose to the public error.
pub(super) fn classify(e: &Error) -> GatewayError {
    use pingora::ErrorSource;
    let what = format!("{:?}", e.etype());
    match (e.esource(), e.etype()) {
        (_, ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout)
            if matches!(e.esource(), ErrorSource::Upstream) =>
        {
            GatewayError::UpstreamTimeout(what)
        }
        (ErrorSource::Upstream, _) => GatewayError::UpstreamFailed(what),
        (
            ErrorSource::Downstream,
            ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed,
        ) => GatewayError::ClientGone,
        (ErrorSource::Downstream, ErrorType::ReadTimedout) => GatewayError::RequestTimeout,
        (ErrorSource::Downstream | ErrorSource::Unset, ErrorType::WriteTimedout) => {
            GatewayError::ClientGone
        }
        // Framing, chunk and header errors Pingora finds in what the client sent.
        (ErrorSource::Downstream, _) => GatewayError::BadRequest(what),
        _ => GatewayError::Internal(what),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn logged_values_cannot_forge_lines_or_colours() {
        assert_eq!(
            super::loggable(b"/a\x1b[31m\r\nX: y\"\\\xff"),
            "/a\\u{1b}[31m\\r\\nX: y\\\"\\\\\\xff"
        );
        assert_eq!(super::loggable("/안녕".as_bytes()), "/안녕");
        assert_eq!(super::loggable(&[b'a'; 600]).len(), 512);
    }
}
