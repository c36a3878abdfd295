//! pkt-line framing and the parts of git's v0 protocol the gate reads:
//! ref advertisements, push commands and push options.
//!
//! Everything here is pure (bytes in, values out) so the fuzz target and
//! property tests can drive it. A pkt-line is four hex digits of length
//! (including themselves) and a payload; `0000` is a flush, `0001` a
//! delimiter, `0002` a response end (v2); lengths 1-3 are invalid.

use std::fmt;

/// Largest pkt-line, header included (git's `LARGE_PACKET_MAX`).
pub const MAX_PKT_LEN: usize = 65520;
/// Largest payload of a data pkt-line.
pub const MAX_PKT_DATA: usize = MAX_PKT_LEN - 4;

/// A hex object id of the SHA-1 kind (the only kind the gate serves).
pub const OID_HEX_LEN: usize = 40;
/// The all-zero id: "no ref" in push commands.
pub const ZERO_OID: &str = "0000000000000000000000000000000000000000";

/// The push capabilities the gate understands and passes on (when the
/// upstream offers them too).
pub const PUSH_CAPS: &[&str] = &[
    "report-status",
    "report-status-v2",
    "delete-refs",
    "side-band-64k",
    "quiet",
    "atomic",
    "push-options",
    "ofs-delta",
    "object-format",
    "agent",
];

/// Fetch capabilities the gate does not relay: `no-done` lets a stateless
/// server send a pack without the client's `done`, which a relayed
/// stateful upstream never does, and v2 is not spoken on the agent side.
const FETCH_CAPS_DROPPED: &[&str] = &["no-done", "session-id"];

/// One frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pkt<'a> {
    /// `0000`.
    Flush,
    /// `0001`.
    Delim,
    /// `0002`.
    ResponseEnd,
    /// A payload (possibly empty: `0004`).
    Data(&'a [u8]),
}

/// A framing or protocol error. Says what was wrong, never echoes more
/// than a short, printable excerpt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The length header is not four hex digits.
    #[error("bad pkt-line length header {0:?}")]
    BadLength(String),
    /// A length of 1 to 3 or over [`MAX_PKT_LEN`].
    #[error("pkt-line length {0} is out of range")]
    LengthOutOfRange(usize),
    /// A command line that is not `<old> <new> <ref>`.
    #[error("bad push command: {0}")]
    BadCommand(String),
    /// The input ended inside the command list.
    #[error("the push request ended before its flush-pkt")]
    Truncated,
    /// Too many commands or options.
    #[error("too many {0} in one push")]
    TooMany(&'static str),
}

/// Decodes one pkt-line from the front of `buf`. `Ok(None)`: more bytes are
/// needed. On success returns the frame and how many bytes it took.
pub fn decode(buf: &[u8]) -> Result<Option<(Pkt<'_>, usize)>, ProtocolError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = parse_len(&buf[..4])?;
    let pkt = match len {
        0 => return Ok(Some((Pkt::Flush, 4))),
        1 => return Ok(Some((Pkt::Delim, 4))),
        2 => return Ok(Some((Pkt::ResponseEnd, 4))),
        3 => return Err(ProtocolError::LengthOutOfRange(len)),
        n if n > MAX_PKT_LEN => return Err(ProtocolError::LengthOutOfRange(n)),
        n => n,
    };
    if buf.len() < pkt {
        return Ok(None);
    }
    Ok(Some((Pkt::Data(&buf[4..pkt]), pkt)))
}

/// Parses a four-hex-digit header.
pub fn parse_len(header: &[u8]) -> Result<usize, ProtocolError> {
    let mut len = 0usize;
    for &b in header {
        let digit = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => {
                return Err(ProtocolError::BadLength(
                    String::from_utf8_lossy(header).escape_debug().to_string(),
                ));
            }
        };
        len = len * 16 + usize::from(digit);
    }
    Ok(len)
}

/// Appends `data` as one pkt-line. Panics never: data over
/// [`MAX_PKT_DATA`] is split into several lines (callers only pass text
/// lines, which are far shorter).
pub fn encode(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        // `0004`, an empty data line, is not a flush: keep it one.
        out.extend_from_slice(b"0004");
        return;
    }
    for chunk in data.chunks(MAX_PKT_DATA) {
        out.extend_from_slice(format!("{:04x}", chunk.len() + 4).as_bytes());
        out.extend_from_slice(chunk);
    }
}

/// Appends a flush-pkt.
pub fn flush(out: &mut Vec<u8>) {
    out.extend_from_slice(b"0000");
}

/// Appends `data` on side-band `band` (1 data, 2 progress, 3 error), split
/// to fit side-band-64k frames.
pub fn encode_band(out: &mut Vec<u8>, band: u8, data: &[u8]) {
    for chunk in data.chunks(MAX_PKT_DATA - 1) {
        out.extend_from_slice(format!("{:04x}", chunk.len() + 5).as_bytes());
        out.push(band);
        out.extend_from_slice(chunk);
    }
}

/// Data lines and the bytes they took.
pub type Lines<'a> = (Vec<&'a [u8]>, usize);

/// The data lines of `buf` up to its first flush, and the bytes taken
/// (flush included). `Ok(None)`: no flush yet.
pub fn lines_to_flush(buf: &[u8]) -> Result<Option<Lines<'_>>, ProtocolError> {
    let mut lines = Vec::new();
    let mut pos = 0;
    loop {
        let Some((pkt, used)) = decode(&buf[pos..])? else {
            return Ok(None);
        };
        pos += used;
        match pkt {
            Pkt::Flush => return Ok(Some((lines, pos))),
            Pkt::Data(d) => lines.push(d),
            Pkt::Delim | Pkt::ResponseEnd => {}
        }
    }
}

/// Drops one trailing `\n`.
#[must_use]
pub fn chomp(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\n").unwrap_or(line)
}

/// One ref of an advertisement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdRef {
    /// Hex object id.
    pub oid: String,
    /// Full ref name (`refs/heads/main`, `HEAD`, `refs/tags/v1^{}`).
    pub name: String,
}

/// A parsed v0 ref advertisement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Advertisement {
    /// The refs, in order (an empty repo's `capabilities^{}` line is not one).
    pub refs: Vec<AdRef>,
    /// The capabilities of the first line.
    pub caps: Vec<String>,
}

impl Advertisement {
    /// Parses the pkt-lines of an advertisement up to (not including) its
    /// flush. A leading `version 1` line is skipped.
    pub fn parse<'a>(lines: impl IntoIterator<Item = &'a [u8]>) -> Result<Self, ProtocolError> {
        let mut ad = Self::default();
        let mut first = true;
        for line in lines {
            let line = chomp(line);
            if first && line == b"version 1" {
                continue;
            }
            let (refpart, caps) = match memchr::memchr(0, line) {
                Some(i) if first => (&line[..i], Some(&line[i + 1..])),
                _ => (line, None),
            };
            if let Some(caps) = caps {
                ad.caps = String::from_utf8_lossy(caps)
                    .split(' ')
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned)
                    .collect();
            }
            first = false;
            let text = std::str::from_utf8(refpart)
                .map_err(|_| ProtocolError::BadCommand("advertised ref is not UTF-8".into()))?;
            let (oid, name) = text
                .split_once(' ')
                .ok_or_else(|| ProtocolError::BadCommand(excerpt(refpart)))?;
            if !is_hex_oid(oid) {
                return Err(ProtocolError::BadCommand(excerpt(refpart)));
            }
            if name == "capabilities^{}" {
                continue;
            }
            ad.refs.push(AdRef {
                oid: oid.to_owned(),
                name: name.to_owned(),
            });
        }
        Ok(ad)
    }

    /// The advertisement as pkt-lines (with its flush), offering only
    /// the capabilities `keep` accepts.
    #[must_use]
    pub fn encode(&self, keep: impl Fn(&str) -> bool) -> Vec<u8> {
        let caps: Vec<&str> = self
            .caps
            .iter()
            .map(String::as_str)
            .filter(|c| keep(c))
            .collect();
        let caps = caps.join(" ");
        let mut out = Vec::new();
        if self.refs.is_empty() {
            encode(
                &mut out,
                format!("{ZERO_OID} capabilities^{{}}\0{caps}\n").as_bytes(),
            );
        }
        for (i, r) in self.refs.iter().enumerate() {
            let line = if i == 0 {
                format!("{} {}\0{caps}\n", r.oid, r.name)
            } else {
                format!("{} {}\n", r.oid, r.name)
            };
            encode(&mut out, line.as_bytes());
        }
        flush(&mut out);
        out
    }
}

/// Whether a capability (`name` or `name=value`) is one the gate relays
/// on push.
#[must_use]
pub fn keep_push_cap(cap: &str) -> bool {
    let name = cap.split_once('=').map_or(cap, |(n, _)| n);
    PUSH_CAPS.contains(&name)
}

/// Whether a fetch capability is relayed.
#[must_use]
pub fn keep_fetch_cap(cap: &str) -> bool {
    let name = cap.split_once('=').map_or(cap, |(n, _)| n);
    !FETCH_CAPS_DROPPED.contains(&name)
}

/// One push command: `<old> <new> <ref>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The id the client believes the ref has (zero: create).
    pub old: String,
    /// The id it should get (zero: delete).
    pub new: String,
    /// The full ref name.
    pub name: String,
}

impl Command {
    /// Whether this deletes the ref.
    #[must_use]
    pub fn is_delete(&self) -> bool {
        self.new == ZERO_OID
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.old, self.new, self.name)
    }
}

/// The front of a receive-pack request: commands, the capabilities the
/// client asked for, push options, and where the pack starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushRequest {
    /// The commands, in order.
    pub commands: Vec<Command>,
    /// Capabilities from the first command line.
    pub caps: Vec<String>,
    /// Push options (`git push -o`), when `push-options` was asked for.
    pub options: Vec<String>,
    /// Bytes of the input taken by commands and options: the pack (if
    /// any) starts here, and these bytes are forwarded upstream as they came.
    pub header_len: usize,
}

/// Most commands in one push (a mirror push of a large repo stays below).
pub const MAX_COMMANDS: usize = 100_000;
/// Most push options.
pub const MAX_OPTIONS: usize = 1000;

impl PushRequest {
    /// Whether the client asked for capability `name`.
    #[must_use]
    pub fn has_cap(&self, name: &str) -> bool {
        self.caps.iter().any(|c| c == name)
    }

    /// Parses the front of a request. `Ok(None)`: more input is needed.
    pub fn parse(buf: &[u8]) -> Result<Option<Self>, ProtocolError> {
        let mut req = Self::default();
        let mut pos = 0;
        // Commands up to the first flush.
        loop {
            let Some((pkt, used)) = decode(&buf[pos..])? else {
                return Ok(None);
            };
            pos += used;
            match pkt {
                Pkt::Flush => break,
                Pkt::Delim | Pkt::ResponseEnd => {
                    return Err(ProtocolError::BadCommand(
                        "unexpected special packet".into(),
                    ));
                }
                Pkt::Data(line) => {
                    let line = chomp(line);
                    let (cmd, caps) = match memchr::memchr(0, line) {
                        Some(i) if req.commands.is_empty() => (&line[..i], Some(&line[i + 1..])),
                        _ => (line, None),
                    };
                    if let Some(caps) = caps {
                        req.caps = String::from_utf8_lossy(caps)
                            .split(' ')
                            .filter(|c| !c.is_empty())
                            .map(str::to_owned)
                            .collect();
                    }
                    if cmd.starts_with(b"shallow ") {
                        return Err(ProtocolError::BadCommand(
                            "shallow pushes are not supported".into(),
                        ));
                    }
                    req.commands.push(parse_command(cmd)?);
                    if req.commands.len() > MAX_COMMANDS {
                        return Err(ProtocolError::TooMany("commands"));
                    }
                }
            }
        }
        if req.has_cap("push-options") && !req.commands.is_empty() {
            loop {
                let Some((pkt, used)) = decode(&buf[pos..])? else {
                    return Ok(None);
                };
                pos += used;
                match pkt {
                    Pkt::Flush => break,
                    Pkt::Data(line) => {
                        req.options
                            .push(String::from_utf8_lossy(chomp(line)).into_owned());
                        if req.options.len() > MAX_OPTIONS {
                            return Err(ProtocolError::TooMany("push options"));
                        }
                    }
                    Pkt::Delim | Pkt::ResponseEnd => {
                        return Err(ProtocolError::BadCommand(
                            "unexpected special packet in push options".into(),
                        ));
                    }
                }
            }
        }
        req.header_len = pos;
        Ok(Some(req))
    }

    /// The request front as pkt-lines, as [`PushRequest::parse`] reads it.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, c) in self.commands.iter().enumerate() {
            let line = if i == 0 {
                format!("{c}\0{}\n", self.caps.join(" "))
            } else {
                format!("{c}\n")
            };
            encode(&mut out, line.as_bytes());
        }
        flush(&mut out);
        if self.has_cap("push-options") && !self.commands.is_empty() {
            for o in &self.options {
                encode(&mut out, format!("{o}\n").as_bytes());
            }
            flush(&mut out);
        }
        out
    }
}

fn parse_command(cmd: &[u8]) -> Result<Command, ProtocolError> {
    let text = std::str::from_utf8(cmd).map_err(|_| ProtocolError::BadCommand(excerpt(cmd)))?;
    let mut parts = text.splitn(3, ' ');
    let (Some(old), Some(new), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(ProtocolError::BadCommand(excerpt(cmd)));
    };
    if !is_hex_oid(old) || !is_hex_oid(new) || !valid_ref_name(name) {
        return Err(ProtocolError::BadCommand(excerpt(cmd)));
    }
    Ok(Command {
        old: old.to_owned(),
        new: new.to_owned(),
        name: name.to_owned(),
    })
}

/// Forty lower-case hex digits.
#[must_use]
pub fn is_hex_oid(s: &str) -> bool {
    s.len() == OID_HEX_LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A conservative ref-name check: `refs/...`, no spaces, controls, `..`,
/// or characters git forbids. The upstream applies git's full rules.
#[must_use]
pub fn valid_ref_name(name: &str) -> bool {
    name.starts_with("refs/")
        && name.len() <= 1024
        && !name.contains("..")
        && !name.ends_with('/')
        && !name.to_ascii_lowercase().ends_with(".lock")
        && name
            .bytes()
            .all(|b| b > b' ' && b != 0x7f && !b"~^:?*[\\".contains(&b))
}

/// A short printable excerpt of protocol input, for error messages.
fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(100)]);
    text.escape_debug().to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn frames() {
        let mut empty = Vec::new();
        encode(&mut empty, b"");
        assert_eq!(empty, b"0004", "found by the gitgate_pktline fuzz target");
        assert_eq!(decode(b"000"), Ok(None));
        assert_eq!(decode(b"0000rest"), Ok(Some((Pkt::Flush, 4))));
        assert_eq!(decode(b"0001"), Ok(Some((Pkt::Delim, 4))));
        assert_eq!(decode(b"0006a\nX"), Ok(Some((Pkt::Data(b"a\n"), 6))));
        assert_eq!(decode(b"0006a"), Ok(None));
        assert!(decode(b"0003").is_err());
        assert!(decode(b"zzzz").is_err());
        assert!(decode(b"fff1").is_err());
    }

    #[test]
    fn push_request() {
        let old = ZERO_OID;
        let new = "1".repeat(40);
        let mut buf = Vec::new();
        encode(
            &mut buf,
            format!("{old} {new} refs/heads/main\0report-status side-band-64k push-options\n")
                .as_bytes(),
        );
        encode(
            &mut buf,
            format!("{new} {old} refs/heads/gone\n").as_bytes(),
        );
        flush(&mut buf);
        encode(&mut buf, b"ci.skip\n");
        flush(&mut buf);
        let header = buf.len();
        buf.extend_from_slice(b"PACK....");
        let req = PushRequest::parse(&buf).unwrap().unwrap();
        assert_eq!(req.commands.len(), 2);
        assert!(req.commands[1].is_delete());
        assert_eq!(req.options, ["ci.skip"]);
        assert_eq!(req.header_len, header);
        assert!(req.has_cap("side-band-64k"));
        assert_eq!(req.encode(), buf[..header]);
        assert_eq!(PushRequest::parse(&buf[..header - 2]).unwrap(), None);
    }

    #[test]
    fn bad_commands() {
        for line in [
            "x y refs/heads/a".to_owned(),
            format!("{ZERO_OID} {ZERO_OID} HEAD"),
            format!("{ZERO_OID} {ZERO_OID} refs/heads/a b"),
            format!("{ZERO_OID} {ZERO_OID} refs/heads/../x"),
        ] {
            let mut buf = Vec::new();
            encode(&mut buf, line.as_bytes());
            flush(&mut buf);
            assert!(PushRequest::parse(&buf).is_err(), "{line}");
        }
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        fn oid() -> impl Strategy<Value = String> {
            prop_oneof![Just(ZERO_OID.to_owned()), "[0-9a-f]{40}"]
        }

        fn command() -> impl Strategy<Value = Command> {
            (
                oid(),
                oid(),
                "refs/(heads|tags)/[a-z0-9_-]{1,12}(/[a-z0-9]{1,5})?",
            )
                .prop_map(|(old, new, name)| Command { old, new, name })
        }

        proptest! {
            #[test]
            fn push_requests_round_trip(
                commands in proptest::collection::vec(command(), 1..20),
                caps in proptest::collection::vec("[a-z0-9-]{1,16}(=[a-z0-9/.]{1,8})?", 0..8),
                options in proptest::collection::vec("[ -~]{0,40}", 0..5),
                with_options: bool,
                pack in proptest::collection::vec(any::<u8>(), 0..64),
            ) {
                let mut caps = caps;
                if with_options {
                    caps.push("push-options".into());
                }
                let req = PushRequest {
                    options: if with_options { options } else { Vec::new() },
                    commands,
                    caps,
                    header_len: 0,
                };
                let mut bytes = req.encode();
                let header = bytes.len();
                bytes.extend_from_slice(&pack);
                let parsed = PushRequest::parse(&bytes).unwrap().unwrap();
                prop_assert_eq!(parsed.header_len, header);
                prop_assert_eq!(&parsed.commands, &req.commands);
                prop_assert_eq!(&parsed.caps, &req.caps);
                prop_assert_eq!(&parsed.options, &req.options);
                // Any shorter prefix of the header is incomplete, never wrong.
                for cut in 0..header {
                    prop_assert_eq!(PushRequest::parse(&bytes[..cut]).unwrap(), None);
                }
            }

            #[test]
            fn frames_round_trip(data in proptest::collection::vec(any::<u8>(), 0..3000)) {
                let mut out = Vec::new();
                encode(&mut out, &data);
                let mut back = Vec::new();
                let mut pos = 0;
                while let Some((pkt, used)) = decode(&out[pos..]).unwrap() {
                    match pkt {
                        Pkt::Data(d) => back.extend_from_slice(d),
                        other => prop_assert!(false, "unexpected {other:?}"),
                    }
                    pos += used;
                }
                prop_assert_eq!(pos, out.len());
                prop_assert_eq!(back, data);
            }
        }
    }

    #[test]
    fn advertisement_round_trip() {
        let mut buf = Vec::new();
        let a = "a".repeat(40);
        encode(
            &mut buf,
            format!("{a} refs/heads/main\0report-status delete-refs atomic foo\n").as_bytes(),
        );
        encode(&mut buf, format!("{a} refs/tags/v1\n").as_bytes());
        flush(&mut buf);
        let (lines, used) = lines_to_flush(&buf).unwrap().unwrap();
        assert_eq!(used, buf.len());
        let ad = Advertisement::parse(lines).unwrap();
        assert_eq!(ad.refs.len(), 2);
        assert_eq!(ad.caps, ["report-status", "delete-refs", "atomic", "foo"]);
        let encoded = ad.encode(keep_push_cap);
        assert!(!String::from_utf8_lossy(&encoded).contains("foo"));
        let empty = Advertisement {
            refs: vec![],
            caps: vec!["report-status".into()],
        };
        assert!(String::from_utf8_lossy(&empty.encode(keep_push_cap)).contains("capabilities^{}"));
    }
}
