//! Reading one HTTP/1.x request head off the socket before Pingora sees it: the head and
//! keep-alive deadlines (one idle timer per connection), the size cap, and the framing scan that
//! refuses what a front end and a back end could read differently.

use std::time::Duration;

use bytes::BytesMut;
use pingora::prelude::fast_timeout::fast_timeout;
use pingora::protocols::Stream;
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

use super::Refusal;

/// The largest request head accepted (request line and every header): `431` beyond. nginx's
/// default allows 32 KiB of headers as well; 8,192 connections at most hold 256 MiB of heads.
pub const MAX_HEAD: usize = 32 * 1024;
/// As many header lines as Pingora accepts.
const MAX_HEADERS: usize = 256;

/// How long the first byte of a request head may take.
pub(super) enum Wait<'a> {
    /// Until this instant, which also bounds the whole head.
    Head(Instant),
    /// Between requests on a kept-alive connection: this long from now, on the connection's
    /// idle timer.
    Idle(Duration, &'a mut IdleTimer),
}

/// One timer per connection for the idle wait between requests, armed once and moved only when
/// it fires early: registering a fresh timer for every request (what a plain timeout does) was
/// the largest cost the idle limit added to the hot path.
#[derive(Default)]
pub(super) struct IdleTimer(Option<std::pin::Pin<Box<tokio::time::Sleep>>>);

impl IdleTimer {
    /// The next read, or `None` when the connection idled until `until`.
    async fn read(
        &mut self,
        stream: &mut Stream,
        buf: &mut BytesMut,
        until: Instant,
    ) -> Option<std::io::Result<usize>> {
        let timer = self
            .0
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(until)));
        loop {
            tokio::select! {
                biased;
                read = stream.read_buf(buf) => return Some(read),
                _ = timer.as_mut() => {
                    if Instant::now() >= until {
                        return None;
                    }
                    // Armed for an earlier wait: this one ends later.
                    timer.as_mut().reset(until);
                }
            }
        }
    }
}

/// Reads one complete request head (and whatever followed it in the same reads). `Ok(None)`:
/// the client closed or idled out between requests.
pub(super) async fn read_head(
    stream: &mut Stream,
    wait: Wait<'_>,
    header_timeout: Duration,
) -> Result<Option<BytesMut>, Refusal> {
    let mut buf = BytesMut::with_capacity(4096);
    // The first read: usually the whole head arrives in it.
    let mut deadline = match wait {
        Wait::Head(deadline) => match within(deadline, stream.read_buf(&mut buf)).await {
            Some(Ok(n)) if n > 0 => Some(deadline),
            // Nothing at all within the header timeout: close without a word, as nginx.
            _ => return Ok(None),
        },
        Wait::Idle(idle, timer) => {
            match timer.read(stream, &mut buf, Instant::now() + idle).await {
                // The head's own clock starts with its first byte, read only if it is needed.
                Some(Ok(n)) if n > 0 => None,
                _ => return Ok(None),
            }
        }
    };
    let mut scan = HeadScan::default();
    loop {
        // Empty lines before a request line are allowed (RFC 9112 §2.2) and dropped here, so
        // a blank line can only end a head.
        if scan.pos == 0 && matches!(buf.first(), Some(b'\r' | b'\n')) {
            let leading = buf
                .iter()
                .take_while(|b| matches!(b, b'\r' | b'\n'))
                .count();
            let _ = buf.split_to(leading);
        }
        if let Some(end) = scan.feed(&buf)? {
            if end > MAX_HEAD {
                return Err(Refusal::HeadersTooLarge);
            }
            return Ok(Some(buf));
        }
        if buf.len() >= MAX_HEAD {
            return Err(Refusal::HeadersTooLarge);
        }
        let until = *deadline.get_or_insert_with(|| Instant::now() + header_timeout);
        match within(until, stream.read_buf(&mut buf)).await {
            Some(Ok(n)) if n > 0 => {}
            Some(_) => return Err(Refusal::Disconnected),
            None if buf.is_empty() => return Ok(None),
            None => return Err(Refusal::HeaderTimeout),
        }
    }
}

/// `f`'s output, or `None` when `deadline` passes first (Pingora's cheap timer wheel).
pub(super) async fn within<F: std::future::Future>(deadline: Instant, f: F) -> Option<F::Output> {
    let left = deadline.saturating_duration_since(Instant::now());
    fast_timeout(left, f).await.ok()
}

/// The request head read so far, line by line as bytes arrive: where it ends, and whether its
/// framing is one a front end and a back end could read differently.
///
/// Refused (as JSON, connection closed): two `Host`s; more than one `Content-Length`, or one that
/// is not plain digits; `Transfer-Encoding` other than a single `chunked`, on HTTP/1.0, or beside
/// a `Content-Length` (RFC 9112 §6.1 lets a server refuse that pair; two parsers reading it
/// differently is how requests are smuggled); `Content_Length` or `Transfer_Encoding`, which
/// some upstreams read as the real ones while Pingora does not; more than [`MAX_HEADERS`]
/// lines. A head that is not valid HTTP at all is left to Pingora's parser, which refuses it
/// with a bare 400 and closes; a request line with bytes it may not hold raw (a space, a control
/// byte) is percent-encoded by Pingora and then judged by the target checks, while its headers
/// are checked here all the same.
///
/// This runs for every request, so it is a scan, not a parse: line ends come from `memchr`, and
/// a header name is only compared when a `:` stands where one of the three names would end
/// (HTTP allows no space before it).
#[derive(Default)]
struct HeadScan {
    /// Bytes of complete lines already looked at.
    pos: usize,
    seen_request_line: bool,
    http_1_0: bool,
    /// `GET`, `HEAD` or `TRACE`: a request that must carry no content.
    bodiless: bool,
    /// A `Content-Length` other than 0.
    content: bool,
    lines: usize,
    hosts: u8,
    lengths: u8,
    codings: u8,
}

impl HeadScan {
    /// Looks at the lines of `buf` that completed since the last call: `Some(end)` once the
    /// blank line that ends the head is in (`end` just past it).
    fn feed(&mut self, buf: &[u8]) -> Result<Option<usize>, Refusal> {
        while let Some(at) = memchr::memchr(b'\n', &buf[self.pos..]) {
            let lf = self.pos + at;
            let line = &buf[self.pos..lf];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            self.pos = lf + 1;
            if !self.seen_request_line {
                self.seen_request_line = true;
                self.http_1_0 = line.ends_with(b" HTTP/1.0");
                // Methods whose content has no meaning (RFC 9110 §9.3): GET, HEAD, and
                // TRACE, which must carry none. (DELETE and OPTIONS are judged per route.)
                // Any case: an upstream that folds method names reads `get` as GET.
                let method = line.split(|&b| b == b' ').next().unwrap_or(line);
                self.bodiless = [b"GET".as_slice(), b"HEAD", b"TRACE"]
                    .iter()
                    .any(|m| method.eq_ignore_ascii_case(m));
                continue;
            }
            if line.is_empty() {
                let framing = self.hosts <= 1
                    && self.lengths <= 1
                    && self.codings <= 1
                    && (self.codings == 0 || (self.lengths == 0 && !self.http_1_0))
                    // Content on GET or HEAD (RFC 9110 §9.3.1 lets a server refuse it): an
                    // upstream that never reads such a body (Python's http.server, other "CL.0"
                    // servers) would take it as the next request on a pooled connection, one
                    // we never saw.
                    && !(self.bodiless && (self.content || self.codings > 0));
                return framing.then_some(Some(self.pos)).ok_or(Refusal::Malformed);
            }
            self.lines += 1;
            if self.lines > MAX_HEADERS {
                return Err(Refusal::HeadersTooLarge);
            }
            self.header(line)?;
        }
        Ok(None)
    }

    fn header(&mut self, line: &[u8]) -> Result<(), Refusal> {
        let named = |canon: &[u8]| {
            line.get(canon.len()) == Some(&b':')
                && line[..canon.len()].iter().zip(canon).all(|(n, c)| {
                    (if *n == b'_' {
                        b'-'
                    } else {
                        n.to_ascii_lowercase()
                    }) == *c
                })
        };
        let underscore = |len: usize| line[..len].contains(&b'_');
        if named(b"host") {
            self.hosts = self.hosts.saturating_add(1);
        } else if named(b"content-length") {
            self.lengths = self.lengths.saturating_add(1);
            let value = line[15..].trim_ascii();
            if underscore(14)
                || value.is_empty()
                || value.len() > 18
                || !value.iter().all(u8::is_ascii_digit)
            {
                return Err(Refusal::Malformed);
            }
            self.content = value.iter().any(|&d| d != b'0');
        } else if named(b"transfer-encoding") {
            self.codings = self.codings.saturating_add(1);
            if underscore(17) || !line[18..].trim_ascii().eq_ignore_ascii_case(b"chunked") {
                return Err(Refusal::Malformed);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_end_at_the_first_blank_line_however_they_arrive() {
        let head = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbody";
        let end = head.len() - 4;
        assert_eq!(HeadScan::default().feed(head), Ok(Some(end)));
        for split in 0..head.len() {
            // Scanning resumes where the last read stopped.
            let mut scan = HeadScan::default();
            let first = scan.feed(&head[..split]).unwrap();
            let found = first.or_else(|| scan.feed(head).unwrap());
            assert_eq!(found, Some(end), "split at {split}");
        }
        assert_eq!(
            HeadScan::default().feed(b"GET / HTTP/1.1\nHost: a\n\n"),
            Ok(Some(24))
        );
        assert_eq!(
            HeadScan::default().feed(b"GET / HTTP/1.1\r\nHost: a\r\n"),
            Ok(None)
        );
    }

    #[test]
    fn framing_that_two_parsers_could_read_differently_is_refused() {
        let check = |head: &str| HeadScan::default().feed(head.as_bytes()).map(|_| ());
        assert_eq!(check("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), Ok(()));
        assert_eq!(check("GET / HTTP/1.1\nHost: a\n\n"), Ok(()));
        assert_eq!(
            check("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n"),
            Ok(())
        );
        assert_eq!(
            check("POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n"),
            Ok(())
        );
        // An empty body said so is no body.
        assert_eq!(check("GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n"), Ok(()));
        assert_eq!(check("HEAD / HTTP/1.1\r\nContent-Length: 00\r\n\r\n"), Ok(()));
        assert_eq!(check("OPTIONS / HTTP/1.1\r\nContent-Length: 5\r\n\r\n"), Ok(()));
        // Not HTTP at all: left to Pingora's parser (a bare 400).
        assert_eq!(check("GET / HTTP/1.1\r\nBad Header: x\r\n\r\n"), Ok(()));
        for bad in [
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: \r\n\r\n",
            "POST / HTTP/1.1\r\ncontent-length: 5\r\nCONTENT-LENGTH: 6\r\n\r\n",
            "POST / HTTP/1.1\r\nContent_Length: 5\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer_Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n",
            // A request line Pingora percent-encodes before parsing: its headers count as well.
            "POST /a b HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST /a\x01b HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n",
            "GET /a b HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "POST /a b HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            // Content on a method that carries none.
            "GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\n",
            "GET / HTTP/1.1\r\nContent-Length: 010\r\n\r\n",
            "HEAD / HTTP/1.1\r\nContent-Length: 1\r\n\r\n",
            "GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HEAD / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n",
            "TRACE / HTTP/1.1\r\nContent-Length: 3\r\n\r\n",
            "get / HTTP/1.1\r\nContent-Length: 3\r\n\r\n",
            "Head / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert_eq!(check(bad), Err(Refusal::Malformed), "{bad:?}");
        }
        let many: String = (0..300).map(|i| format!("X-{i}: v\r\n")).collect();
        assert_eq!(
            check(&format!("GET / HTTP/1.1\r\n{many}\r\n")),
            Err(Refusal::HeadersTooLarge)
        );
    }
}
