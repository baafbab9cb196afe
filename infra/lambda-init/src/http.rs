//! A minimal HTTP/1.1 server-side parser and client, enough for the two local peers of the init:
//! the function's runtime client (hyper, keep-alive, `Content-Length` or chunked bodies) and
//! LocalStack (Python `requests` on one side, a plain POST on the other).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Largest request head (request line and headers) accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Largest body accepted: LocalStack's 6 MB payload limit, JSON-escaped inside `/invoke`, and
/// streamed responses (20 MB on AWS) both fit.
pub const MAX_BODY: usize = 64 * 1024 * 1024;

#[derive(Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Header names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Whether the connection may serve another request after this one.
    pub keep_alive: bool,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Reads one CRLF- (or LF-) terminated line, without its terminator. `Ok(None)` at a clean EOF
/// before any byte.
fn read_line<R: BufRead>(r: &mut R, budget: &mut usize) -> io::Result<Option<String>> {
    let mut buf = Vec::new();
    let n = r.take(*budget as u64 + 1).read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    if n > *budget {
        return Err(invalid("request head too large"));
    }
    *budget -= n;
    if buf.last() != Some(&b'\n') {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed mid-line",
        ));
    }
    buf.pop();
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    String::from_utf8(buf)
        .map(Some)
        .map_err(|_| invalid("non UTF-8 header line"))
}

/// Reads a request (head and body) from a persistent connection. `Ok(None)` when the peer closed
/// the connection between requests. `writer` receives `100 Continue` when the client asks for it.
pub fn read_request<R: BufRead, W: Write>(
    r: &mut R,
    writer: &mut W,
) -> io::Result<Option<Request>> {
    let mut budget = MAX_HEAD;
    // Tolerate empty lines before a request line (RFC 9112 section 2.2).
    let line = loop {
        match read_line(r, &mut budget)? {
            None => return Ok(None),
            Some(l) if l.is_empty() => continue,
            Some(l) => break l,
        }
    };
    let mut parts = line.split(' ');
    let (method, target, version) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v), None) if !m.is_empty() && !t.is_empty() => (m, t, v),
        _ => return Err(invalid(format!("bad request line: {line:?}"))),
    };
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return Err(invalid(format!("unsupported version {version:?}"))),
    };
    let mut headers = Vec::new();
    loop {
        let l = read_line(r, &mut budget)?.ok_or_else(|| {
            io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed in headers")
        })?;
        if l.is_empty() {
            break;
        }
        let (k, v) = l
            .split_once(':')
            .ok_or_else(|| invalid(format!("bad header line: {l:?}")))?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let mut req = Request {
        method: method.to_string(),
        // Only origin-form targets are used here; drop a query string.
        path: target.split('?').next().unwrap_or(target).to_string(),
        headers,
        body: Vec::new(),
        keep_alive: http11,
    };
    if let Some(c) = req.header("connection") {
        let c = c.to_ascii_lowercase();
        if c.split(',').any(|t| t.trim() == "close") {
            req.keep_alive = false;
        } else if c.split(',').any(|t| t.trim() == "keep-alive") {
            req.keep_alive = true;
        }
    }
    if req
        .header("expect")
        .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
        && http11
    {
        writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        writer.flush()?;
    }
    let chunked = req.header("transfer-encoding").is_some_and(|te| {
        te.to_ascii_lowercase()
            .split(',')
            .any(|t| t.trim() == "chunked")
    });
    if chunked {
        req.body = read_chunked(r)?;
    } else if let Some(len) = req.header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| invalid(format!("bad content-length {len:?}")))?;
        if len > MAX_BODY {
            return Err(invalid(format!("body of {len} bytes is too large")));
        }
        let mut body = vec![0; len];
        r.read_exact(&mut body)?;
        req.body = body;
    }
    Ok(Some(req))
}

/// Decodes a chunked body; trailers are read and ignored.
fn read_chunked<R: BufRead>(r: &mut R) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut budget = MAX_HEAD;
        let line = read_line(r, &mut budget)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed in chunked body",
            )
        })?;
        let size_hex = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| invalid(format!("bad chunk size {line:?}")))?;
        if size == 0 {
            // Trailer section, up to the empty line.
            loop {
                let t = read_line(r, &mut budget)?.ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed in trailers",
                    )
                })?;
                if t.is_empty() {
                    return Ok(body);
                }
            }
        }
        if body.len() + size > MAX_BODY {
            return Err(invalid("chunked body too large"));
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..])?;
        let mut crlf = [0u8; 2];
        r.read_exact(&mut crlf[..1])?;
        if crlf[0] == b'\r' {
            r.read_exact(&mut crlf[1..])?;
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        500 => "Internal Server Error",
        _ => "Unknown",
    }
}

/// Writes a complete response with a `Content-Length` body.
pub fn write_response<W: Write>(
    w: &mut W,
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
    keep_alive: bool,
) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (k, v) in headers {
        head.push_str(k);
        head.push_str(": ");
        head.push_str(v);
        head.push_str("\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    if !keep_alive {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    w.write_all(&out)?;
    w.flush()
}

/// A parsed `http://host:port/prefix` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host:port`, for connecting and for the Host header.
    pub authority: String,
    /// The path prefix, without a trailing slash (may be empty).
    pub prefix: String,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("only http:// endpoints are supported: {url:?}"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(format!("no host in {url:?}"));
        }
        let authority = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        Ok(Endpoint {
            authority,
            prefix: path.trim_end_matches('/').to_string(),
        })
    }
}

/// POSTs `body` to `endpoint.prefix + path` on a fresh connection; returns the status code.
pub fn post(
    endpoint: &Endpoint,
    path: &str,
    content_type: &str,
    body: &[u8],
    timeout: Duration,
) -> io::Result<u16> {
    let addr = endpoint
        .authority
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("cannot resolve {}", endpoint.authority),
            )
        })?;
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;
    let mut out = format!(
        "POST {}{} HTTP/1.1\r\nHost: {}\r\nUser-Agent: mecapy-lambda-init\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        endpoint.prefix,
        path,
        endpoint.authority,
        content_type,
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    (&stream).write_all(&out)?;
    let mut reader = BufReader::new(&stream);
    let mut budget = MAX_HEAD;
    let status_line = read_line(&mut reader, &mut budget)?
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "no response"))?;
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| invalid(format!("bad status line {status_line:?}")))?;
    // Drain the rest (bounded) so that the server sees a clean close.
    let _ = io::copy(&mut reader.take(1024 * 1024), &mut io::sink());
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn parse(raw: &[u8]) -> (Option<Request>, Vec<u8>) {
        let mut r = Cursor::new(raw.to_vec());
        let mut w = Vec::new();
        let req = read_request(&mut r, &mut w).unwrap();
        (req, w)
    }

    #[test]
    fn content_length_body_and_keep_alive() {
        let (req, w) = parse(b"POST /2018-06-01/runtime/invocation/abc/response?x=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
        let req = req.unwrap();
        assert_eq!(req.method, "POST");
        assert_eq!(req.path, "/2018-06-01/runtime/invocation/abc/response");
        assert_eq!(req.body, b"hello");
        assert!(req.keep_alive);
        assert!(w.is_empty());
    }

    #[test]
    fn chunked_body_with_trailers() {
        let (req, _) = parse(b"POST /r HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nLambda-Runtime-Function-Error-Type: X\r\n\r\n");
        assert_eq!(req.unwrap().body, b"hello world");
    }

    #[test]
    fn two_requests_on_one_connection_then_eof() {
        let raw = b"GET /a HTTP/1.1\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
        let mut r = Cursor::new(raw.to_vec());
        let mut w = Vec::new();
        let a = read_request(&mut r, &mut w).unwrap().unwrap();
        assert_eq!(
            (a.method.as_str(), a.path.as_str(), a.body.len()),
            ("GET", "/a", 0)
        );
        let b = read_request(&mut r, &mut w).unwrap().unwrap();
        assert_eq!(b.body, b"ok");
        assert!(!b.keep_alive);
        assert!(read_request(&mut r, &mut w).unwrap().is_none());
    }

    #[test]
    fn expect_continue_is_answered() {
        let (req, w) =
            parse(b"POST /invoke HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n{}");
        assert_eq!(req.unwrap().body, b"{}");
        assert_eq!(w, b"HTTP/1.1 100 Continue\r\n\r\n");
    }

    #[test]
    fn http10_closes_by_default() {
        let (req, _) = parse(b"GET / HTTP/1.0\r\n\r\n");
        assert!(!req.unwrap().keep_alive);
    }

    #[test]
    fn malformed_requests_are_errors() {
        let mut w = Vec::new();
        for raw in [
            &b"GARBAGE\r\n\r\n"[..],
            b"GET / HTTP/2\r\n\r\n",
            b"GET / HTTP/1.1\r\nNoColon\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
        ] {
            assert!(
                read_request(&mut Cursor::new(raw.to_vec()), &mut w).is_err(),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn response_format() {
        let mut out = Vec::new();
        write_response(
            &mut out,
            202,
            &[("Content-Type", "application/json")],
            b"{}",
            false,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
        );
    }

    #[test]
    fn endpoint_parsing() {
        assert_eq!(
            Endpoint::parse("http://172.17.0.1:4566/_localstack_lambda/abc/").unwrap(),
            Endpoint {
                authority: "172.17.0.1:4566".into(),
                prefix: "/_localstack_lambda/abc".into()
            }
        );
        assert_eq!(Endpoint::parse("http://host").unwrap().authority, "host:80");
        assert!(Endpoint::parse("https://x").is_err());
    }

    #[test]
    fn post_round_trip() {
        use std::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut r = BufReader::new(&s);
            let req = read_request(&mut r, &mut (&s)).unwrap().unwrap();
            write_response(&mut (&s), 202, &[], b"", false).unwrap();
            req
        });
        let ep = Endpoint::parse(&format!("http://127.0.0.1:{port}/_localstack_lambda/x")).unwrap();
        let status = post(
            &ep,
            "/status/y/ready",
            "application/json",
            b"{\"a\":1}",
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(status, 202);
        let req = server.join().unwrap();
        assert_eq!(req.path, "/_localstack_lambda/x/status/y/ready");
        assert_eq!(req.body, b"{\"a\":1}");
    }
}
