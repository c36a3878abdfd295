//! Just enough blocking HTTP/1.1 for a test client and a test server:
//! message heads, and bodies framed by `Content-Length`, chunked coding or
//! the end of the connection. Every read is bounded. Header fields and
//! chunk sizes are parsed by `httparse` (hyper's parser); this module only
//! reads bounded lines and decides the framing.

use std::io::{self, BufRead, Read};

/// The most bytes a message head (start line plus headers) may take.
pub const MAX_HEAD: usize = 64 * 1024;
/// The most bytes one chunk-size line or trailer line may take.
const MAX_LINE: usize = 8 * 1024;

/// One header field as received. The name keeps its spelling; compare it
/// case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The field name.
    pub name: String,
    /// The field value, without surrounding spaces and tabs.
    pub value: Vec<u8>,
}

/// A request or response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The request line or status line, without its line ending.
    pub start_line: String,
    /// The header fields, in order.
    pub headers: Vec<Header>,
}

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body at all.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Everything until the peer closes (responses only).
    UntilClose,
}

/// How [`read_body`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEnd {
    /// The whole body was read.
    Complete,
    /// The body is longer than the cap; `cap` bytes were kept and the rest
    /// was left unread.
    CapReached,
}

impl Head {
    /// The values of every header named `name` (case-insensitive).
    pub fn values<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a [u8]> {
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_slice())
    }

    /// The first value of the header named `name` (case-insensitive).
    #[must_use]
    pub fn value(&self, name: &str) -> Option<&[u8]> {
        self.values(name).next()
    }

    /// The status code of a response head (`HTTP/1.1 200 OK`).
    pub fn status(&self) -> io::Result<u16> {
        let mut parts = self.start_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        let code = parts.next().unwrap_or_default();
        if !version.starts_with("HTTP/1.") || code.len() != 3 {
            return Err(malformed(format!("bad status line {:?}", self.start_line)));
        }
        code.parse()
            .map_err(|_| malformed(format!("bad status line {:?}", self.start_line)))
    }

    /// The method and target of a request head (`GET /path HTTP/1.1`).
    pub fn request_line(&self) -> io::Result<(&str, &str)> {
        let mut parts = self.start_line.split(' ');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(method), Some(target), Some(version), None)
                if !method.is_empty() && !target.is_empty() && version.starts_with("HTTP/1.") =>
            {
                Ok((method, target))
            }
            _ => Err(malformed(format!("bad request line {:?}", self.start_line))),
        }
    }

    /// How the body of this request head is delimited: chunked if
    /// `Transfer-Encoding` ends in `chunked`, else by `Content-Length`, else
    /// empty.
    pub fn request_framing(&self) -> io::Result<Framing> {
        match self.transfer_coding() {
            Some(true) => Ok(Framing::Chunked),
            Some(false) => Err(malformed(
                "request Transfer-Encoding does not end in chunked".into(),
            )),
            None => Ok(self
                .content_length()?
                .map_or(Framing::Empty, Framing::Length)),
        }
    }

    /// How the body of this response head is delimited, given the method of
    /// the request it answers (RFC 9112 section 6.3).
    pub fn response_framing(&self, request_method: &str) -> io::Result<Framing> {
        let status = self.status()?;
        if request_method.eq_ignore_ascii_case("HEAD")
            || (100..200).contains(&status)
            || status == 204
            || status == 304
        {
            return Ok(Framing::Empty);
        }
        match self.transfer_coding() {
            Some(true) => Ok(Framing::Chunked),
            Some(false) => Ok(Framing::UntilClose),
            None => Ok(self
                .content_length()?
                .map_or(Framing::UntilClose, Framing::Length)),
        }
    }

    /// `Some(true)` when the last transfer coding is chunked, `Some(false)`
    /// for another coding, `None` without `Transfer-Encoding`.
    fn transfer_coding(&self) -> Option<bool> {
        let mut last = None;
        for value in self.values("transfer-encoding") {
            for coding in value.split(|b| *b == b',') {
                let coding = coding.trim_ascii();
                if !coding.is_empty() {
                    last = Some(coding.eq_ignore_ascii_case(b"chunked"));
                }
            }
        }
        last
    }

    fn content_length(&self) -> io::Result<Option<u64>> {
        let mut length = None;
        for value in self.values("content-length") {
            for item in value.split(|b| *b == b',') {
                let item = item.trim_ascii();
                let parsed = std::str::from_utf8(item)
                    .ok()
                    .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or_else(|| malformed("bad Content-Length".into()))?;
                if length.is_some_and(|l| l != parsed) {
                    return Err(malformed("conflicting Content-Length values".into()));
                }
                length = Some(parsed);
            }
        }
        Ok(length)
    }
}

/// Reads one message head. `Ok(None)` when the peer closed before sending
/// any byte (an idle connection ending), an `UnexpectedEof` error when it
/// closed in the middle. Empty lines before the start line are skipped, as
/// RFC 9112 asks of servers.
pub fn read_head(reader: &mut impl BufRead) -> io::Result<Option<Head>> {
    let mut budget = MAX_HEAD;
    let mut line = Vec::new();
    let start_line = loop {
        if !read_line(reader, &mut line, &mut budget)? {
            if budget == MAX_HEAD {
                return Ok(None);
            }
            return Err(eof("the message head"));
        }
        if !line.is_empty() {
            break String::from_utf8(std::mem::take(&mut line))
                .map_err(|_| malformed("start line is not UTF-8".into()))?;
        }
    };
    // The field lines, re-joined with CRLF (a bare LF was accepted above).
    let mut block = Vec::new();
    let mut count = 0usize;
    loop {
        if !read_line(reader, &mut line, &mut budget)? {
            return Err(eof("the message head"));
        }
        block.extend_from_slice(&line);
        block.extend_from_slice(b"\r\n");
        if line.is_empty() {
            break;
        }
        count += 1;
    }
    let mut fields = vec![httparse::EMPTY_HEADER; count];
    let headers = match httparse::parse_headers(&block, &mut fields) {
        // Also rejects obsolete line folding (httparse's default).
        Err(e) => return Err(malformed(format!("bad header field: {e}"))),
        Ok(httparse::Status::Partial) => return Err(eof("the message head")),
        Ok(httparse::Status::Complete((_, fields))) => fields
            .iter()
            .map(|f| Header {
                name: f.name.to_owned(),
                value: f.value.trim_ascii().to_vec(),
            })
            .collect(),
    };
    Ok(Some(Head {
        start_line,
        headers,
    }))
}

/// Reads a body framed as `framing` into `out`, keeping at most `cap`
/// bytes. On an error, the bytes read so far stay in `out`.
///
/// A body delimited by the end of the connection also ends at a TLS
/// connection closed without `close_notify`: this is a test peer, and the
/// bytes are what the test wants to see.
pub fn read_body(
    reader: &mut impl BufRead,
    framing: Framing,
    cap: usize,
    out: &mut Vec<u8>,
) -> io::Result<BodyEnd> {
    match framing {
        Framing::Empty => Ok(BodyEnd::Complete),
        Framing::Length(length) => read_exact_capped(reader, length, cap, out),
        Framing::Chunked => read_chunked(reader, cap, out),
        Framing::UntilClose => {
            let limit = out.len() + cap;
            let result = reader.take(cap as u64 + 1).read_to_end(out);
            match result {
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => {}
                Err(error) => return Err(error),
            }
            if out.len() > limit {
                out.truncate(limit);
                return Ok(BodyEnd::CapReached);
            }
            Ok(BodyEnd::Complete)
        }
    }
}

/// Reads `length` bytes, or `cap` of them when `length` is larger.
fn read_exact_capped(
    reader: &mut impl BufRead,
    length: u64,
    cap: usize,
    out: &mut Vec<u8>,
) -> io::Result<BodyEnd> {
    let (wanted, end) = if length > cap as u64 {
        (cap as u64, BodyEnd::CapReached)
    } else {
        (length, BodyEnd::Complete)
    };
    let read = reader.take(wanted).read_to_end(out)?;
    if (read as u64) < wanted {
        return Err(eof("the body"));
    }
    Ok(end)
}

fn read_chunked(reader: &mut impl BufRead, cap: usize, out: &mut Vec<u8>) -> io::Result<BodyEnd> {
    let mut kept = 0usize;
    let mut line = Vec::new();
    loop {
        let mut budget = MAX_LINE;
        if !read_line(reader, &mut line, &mut budget)? {
            return Err(eof("a chunk size"));
        }
        let size = parse_chunk_size(&line)?;
        if size == 0 {
            // Trailer fields, then the empty line; their content is dropped.
            loop {
                let mut budget = MAX_LINE;
                if !read_line(reader, &mut line, &mut budget)? {
                    return Err(eof("the chunked trailer"));
                }
                if line.is_empty() {
                    return Ok(BodyEnd::Complete);
                }
            }
        }
        let room = cap - kept;
        if size > room as u64 {
            read_exact_capped(reader, room as u64, room, out)?;
            return Ok(BodyEnd::CapReached);
        }
        read_exact_capped(reader, size, room, out)?;
        kept += size as usize;
        let mut budget = MAX_LINE;
        if !read_line(reader, &mut line, &mut budget)? {
            return Err(eof("a chunk"));
        }
        if !line.is_empty() {
            return Err(malformed("chunk data longer than its size".into()));
        }
    }
}

fn parse_chunk_size(line: &[u8]) -> io::Result<u64> {
    let mut with_end = Vec::with_capacity(line.len() + 2);
    with_end.extend_from_slice(line);
    with_end.extend_from_slice(b"\r\n");
    match httparse::parse_chunk_size(&with_end) {
        Ok(httparse::Status::Complete((_, size))) => Ok(size),
        _ => Err(malformed("bad chunk size".into())),
    }
}

/// Reads one line into `line` without its `\n` or `\r\n`, charging its
/// length to `budget`. `Ok(false)` at a clean end of input.
fn read_line(
    reader: &mut impl BufRead,
    line: &mut Vec<u8>,
    budget: &mut usize,
) -> io::Result<bool> {
    line.clear();
    let read = reader.take(*budget as u64).read_until(b'\n', line)?;
    *budget -= read;
    if read == 0 {
        return Ok(false);
    }
    if line.last() != Some(&b'\n') {
        if *budget == 0 {
            return Err(malformed("message head or line too long".into()));
        }
        return Err(eof("a line"));
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(true)
}

fn malformed(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

fn eof(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("connection closed in {what}"),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    fn head(text: &str) -> Head {
        read_head(&mut text.as_bytes()).unwrap().unwrap()
    }

    #[test]
    fn parses_a_request_head() {
        let h = head("\r\nPOST /x?y HTTP/1.1\r\nHost: a\r\nContent-Length:  3 \r\n\r\nabc");
        assert_eq!(h.request_line().unwrap(), ("POST", "/x?y"));
        assert_eq!(h.value("host"), Some(&b"a"[..]));
        assert_eq!(h.request_framing().unwrap(), Framing::Length(3));
    }

    #[test]
    fn clean_eof_is_none_and_partial_head_is_an_error() {
        assert!(read_head(&mut &b""[..]).unwrap().is_none());
        let error = read_head(&mut &b"GET / HTTP/1.1\r\nHost"[..]).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn rejects_folding_and_oversized_heads() {
        assert!(read_head(&mut &b"GET / HTTP/1.1\r\n x: y\r\n\r\n"[..]).is_err());
        let big = format!("GET / HTTP/1.1\r\nx: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        assert!(read_head(&mut big.as_bytes()).is_err());
    }

    #[test]
    fn response_framing_follows_rfc_9112() {
        let ok = head("HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!(ok.status().unwrap(), 200);
        assert_eq!(ok.response_framing("GET").unwrap(), Framing::UntilClose);
        assert_eq!(ok.response_framing("HEAD").unwrap(), Framing::Empty);
        let chunked = head(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 4\r\n\r\n",
        );
        assert_eq!(chunked.response_framing("GET").unwrap(), Framing::Chunked);
        let no_content = head("HTTP/1.1 204 No Content\r\nContent-Length: 4\r\n\r\n");
        assert_eq!(no_content.response_framing("GET").unwrap(), Framing::Empty);
        let conflicting = head("HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n");
        assert!(conflicting.response_framing("GET").is_err());
        assert!(head("HTTP/1.1 2000 OK\r\n\r\n").status().is_err());
    }

    #[test]
    fn decodes_chunked_bodies_with_trailers() {
        let mut input = &b"3;ext=1\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nX-T: 1\r\n\r\nrest"[..];
        let mut out = Vec::new();
        let end = read_body(&mut input, Framing::Chunked, 1024, &mut out).unwrap();
        assert_eq!(end, BodyEnd::Complete);
        assert_eq!(out, b"abc0123456789abcdef");
        assert_eq!(input, b"rest");
    }

    #[test]
    fn caps_every_framing() {
        let mut out = Vec::new();
        let end = read_body(&mut &b"abcdef"[..], Framing::Length(6), 4, &mut out).unwrap();
        assert_eq!((end, out.as_slice()), (BodyEnd::CapReached, &b"abcd"[..]));
        out.clear();
        let end = read_body(
            &mut &b"6\r\nabcdef\r\n0\r\n\r\n"[..],
            Framing::Chunked,
            4,
            &mut out,
        )
        .unwrap();
        assert_eq!((end, out.as_slice()), (BodyEnd::CapReached, &b"abcd"[..]));
        out.clear();
        let end = read_body(&mut &b"abcdef"[..], Framing::UntilClose, 4, &mut out).unwrap();
        assert_eq!((end, out.as_slice()), (BodyEnd::CapReached, &b"abcd"[..]));
        out.clear();
        let end = read_body(&mut &b"abcd"[..], Framing::UntilClose, 4, &mut out).unwrap();
        assert_eq!((end, out.as_slice()), (BodyEnd::Complete, &b"abcd"[..]));
    }

    #[test]
    fn short_bodies_keep_what_arrived() {
        let mut out = Vec::new();
        let error = read_body(&mut &b"ab"[..], Framing::Length(5), 10, &mut out).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(out, b"ab");
        assert!(read_body(&mut &b"zz\r\n"[..], Framing::Chunked, 10, &mut out).is_err());
        assert!(
            read_body(
                &mut &b"+1\r\na\r\n0\r\n\r\n"[..],
                Framing::Chunked,
                10,
                &mut out
            )
            .is_err()
        );
    }
}
