//! Fuzzes `bb_gitgate::pktline`: the framing, the push-request parser and
//! the advertisement parser, and the `git://` request-line parser.
//!
//! Input: the raw bytes an agent (or upstream) could send.
//!
//! Invariants:
//! - `decode` never takes more bytes than it has, and a data frame
//!   re-encodes to the bytes it was read from (header case aside);
//! - `PushRequest::parse`: a request is decided by its own bytes (parsing
//!   just `..header_len` gives the same request), `encode` gives bytes that
//!   parse back to the same request, every command has 40-hex ids and a
//!   `refs/` name; an incomplete input has no complete prefix;
//! - `Advertisement::parse` of the lines up to a flush, re-encoded with
//!   every capability kept, parses back to the same advertisement and is
//!   a fixed point after one round;
//! - `daemon::parse_request` yields a one-word service and a name that
//!   stops at the first NUL.
#![no_main]

use bb_gitgate::pktline::{self, Advertisement, Pkt, PushRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    framing(data);
    push_request(data);
    advertisement(data);
    if let Some((service, name)) = bb_gitgate::daemon::parse_request(data) {
        assert!(!service.contains(' ') && !name.contains('\0'));
    }
});

fn framing(data: &[u8]) {
    let mut pos = 0;
    while let Ok(Some((pkt, used))) = pktline::decode(&data[pos..]) {
        assert!(used >= 4 && pos + used <= data.len());
        if let Pkt::Data(d) = pkt {
            let mut again = Vec::new();
            pktline::encode(&mut again, d);
            assert_eq!(again[4..], data[pos + 4..pos + used]);
            assert!(again[..4].eq_ignore_ascii_case(&data[pos..pos + 4]));
        }
        pos += used;
    }
}

fn push_request(data: &[u8]) {
    match PushRequest::parse(data) {
        Ok(Some(req)) => {
            assert!(req.header_len <= data.len());
            let alone = PushRequest::parse(&data[..req.header_len]).unwrap().unwrap();
            assert_eq!(alone, req);
            for c in &req.commands {
                assert!(pktline::is_hex_oid(&c.old) && pktline::is_hex_oid(&c.new));
                assert!(c.name.starts_with("refs/"));
            }
            let encoded = req.encode();
            let mut back = PushRequest::parse(&encoded).unwrap().unwrap();
            assert_eq!(back.header_len, encoded.len());
            back.header_len = req.header_len;
            // Options are read back lossily (UTF-8); compare after one round.
            let twice = PushRequest::parse(&back.encode()).unwrap().unwrap();
            assert_eq!(back.commands, req.commands);
            assert_eq!(back.caps, twice.caps);
            assert_eq!(back.options, twice.options);
        }
        Ok(None) => {
            for cut in [data.len() / 2, data.len().saturating_sub(1)] {
                assert!(!matches!(PushRequest::parse(&data[..cut]), Ok(Some(_))));
            }
        }
        Err(_) => {}
    }
}

fn advertisement(data: &[u8]) {
    let Ok(Some((lines, used))) = pktline::lines_to_flush(data) else {
        return;
    };
    assert!(used <= data.len());
    let Ok(ad) = Advertisement::parse(lines) else {
        return;
    };
    let encoded = ad.encode(|_| true);
    let (lines, used) = pktline::lines_to_flush(&encoded).unwrap().unwrap();
    assert_eq!(used, encoded.len());
    let back = Advertisement::parse(lines).unwrap();
    assert_eq!(back.refs, ad.refs);
    let encoded2 = back.encode(|_| true);
    let (lines2, _) = pktline::lines_to_flush(&encoded2).unwrap().unwrap();
    let back2 = Advertisement::parse(lines2).unwrap();
    assert_eq!(back2, back);
}
