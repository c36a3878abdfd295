//! The bottle's resolver: answers every DNS query from the agent itself and
//! never forwards one.
//!
//! The agent needs no names but the bundle's (`egress`, `git-gate`,
//! `supervise`), and those are in its `/etc/hosts`. Any other lookup is
//! either a tool that does not use the proxy or an attempt to carry data out
//! in a query name, so every name gets `NXDOMAIN`, authoritative and
//! immediate (no tool hangs on a timeout). The one exception is the
//! isolation probe's zone, [`PROBE_ZONE`]: an `A` query for a name under it
//! is answered with [`PROBE_ANSWER`], so the probe can tell "our resolver
//! answered" from "something else did".
//!
//! [`respond`] is a pure function from query bytes to response bytes (fuzzed
//! in `fuzz/fuzz_targets/dns_respond.rs`); [`serve`] is the UDP loop around it.

use std::net::{Ipv4Addr, UdpSocket};

/// Names under this zone are answered with [`PROBE_ANSWER`] (type A only).
pub(crate) const PROBE_ZONE: &str = "isolation-probe.bot-bottle.invalid";

/// What the resolver answers for a probe name.
pub(crate) const PROBE_ANSWER: Ipv4Addr = Ipv4Addr::new(127, 7, 7, 7);

/// The largest query we read; anything longer is not a plain query.
const MAX_QUERY: usize = 512;

/// Response codes.
const NOERROR: u8 = 0;
const FORMERR: u8 = 1;
const NXDOMAIN: u8 = 3;
const NOTIMP: u8 = 4;

/// A parsed question: the name (lower-case, dot-separated, no final dot),
/// its type and class, and where the question section ends.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Question {
    pub(crate) name: String,
    pub(crate) qtype: u16,
    pub(crate) qclass: u16,
    end: usize,
}

/// Parses the single question of a query. `None` when the message is not
/// one question with an uncompressed, well-formed name.
pub(crate) fn question(msg: &[u8]) -> Option<Question> {
    if msg.len() < 12 || u16::from_be_bytes([msg[4], msg[5]]) != 1 {
        return None;
    }
    let mut at = 12;
    let mut name = String::new();
    loop {
        let len = usize::from(*msg.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        // Compression pointers (0xc0) and the reserved label types have
        // no place in a question.
        if len > 63 {
            return None;
        }
        let label = msg.get(at..at + len)?;
        at += len;
        if !name.is_empty() {
            name.push('.');
        }
        for &b in label {
            if b == b'.' || !b.is_ascii_graphic() {
                return None;
            }
            name.push(char::from(b.to_ascii_lowercase()));
        }
        if name.len() > 253 {
            return None;
        }
    }
    let fixed = msg.get(at..at + 4)?;
    Some(Question {
        name,
        qtype: u16::from_be_bytes([fixed[0], fixed[1]]),
        qclass: u16::from_be_bytes([fixed[2], fixed[3]]),
        end: at + 4,
    })
}

/// Whether `name` is under [`PROBE_ZONE`] (and not the zone itself).
pub(crate) fn is_probe_name(name: &str) -> bool {
    name.strip_suffix(PROBE_ZONE)
        .is_some_and(|rest| rest.len() > 1 && rest.ends_with('.'))
}

/// The response to `msg`, or `None` when it is not worth answering (too
/// short to carry an ID, or itself a response).
#[must_use]
pub(crate) fn respond(msg: &[u8]) -> Option<Vec<u8>> {
    if msg.len() < 12 || msg.len() > MAX_QUERY || msg[2] & 0x80 != 0 {
        return None;
    }
    let opcode = (msg[2] >> 3) & 0x0f;
    let rd = msg[2] & 0x01;
    let header = |rcode: u8, qd: u16, an: u16| -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&msg[..2]);
        // QR, the query's opcode, AA, the query's RD; RA clear: we never
        // recurse.
        out.push(0x80 | (opcode << 3) | 0x04 | rd);
        out.push(rcode);
        out.extend_from_slice(&qd.to_be_bytes());
        out.extend_from_slice(&an.to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0]);
        out
    };
    if opcode != 0 {
        return Some(header(NOTIMP, 0, 0));
    }
    let Some(q) = question(msg) else {
        return Some(header(FORMERR, 0, 0));
    };
    let probe = is_probe_name(&q.name) && q.qclass == 1;
    let (rcode, answers) = match (probe, q.qtype) {
        (true, 1) => (NOERROR, 1),
        // The name exists (for the probe) but has no record of this type.
        (true, _) => (NOERROR, 0),
        (false, _) => (NXDOMAIN, 0),
    };
    let mut out = header(rcode, 1, answers);
    out.extend_from_slice(&msg[12..q.end]);
    if answers == 1 {
        // The question's name by pointer, A, IN, TTL 0, 4 bytes.
        out.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4]);
        out.extend_from_slice(&PROBE_ANSWER.octets());
    }
    Some(out)
}

/// Answers queries on `socket` until it fails.
pub(crate) fn serve(socket: &UdpSocket) -> std::io::Error {
    let mut buf = [0u8; MAX_QUERY + 1];
    loop {
        match socket.recv_from(&mut buf) {
            Ok((n, peer)) => {
                if let Some(reply) = respond(&buf[..n]) {
                    // A lost reply is the client's to retry.
                    let _ = socket.send_to(&reply, peer);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return e,
        }
    }
}

/// A query for `name` (type `qtype`, class IN) with `id`: what the probe
/// sends.
#[must_use]
pub(crate) fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + name.len());
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        let bytes = &label.as_bytes()[..label.len().min(63)];
        out.push(bytes.len() as u8);
        out.extend_from_slice(bytes);
    }
    out.push(0);
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&[0, 1]);
    out
}

/// What a response says, as the probe reads it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Answer {
    /// The response code.
    pub(crate) rcode: u8,
    /// The first A record, if any.
    pub(crate) a: Option<Ipv4Addr>,
}

/// Reads the response to a query with `id`; `None` when it is not one.
#[must_use]
pub(crate) fn answer(id: u16, msg: &[u8]) -> Option<Answer> {
    if msg.len() < 12 || msg[..2] != id.to_be_bytes() || msg[2] & 0x80 == 0 {
        return None;
    }
    let rcode = msg[3] & 0x0f;
    let an = u16::from_be_bytes([msg[6], msg[7]]);
    let q = question(msg)?;
    let mut at = q.end;
    let mut a = None;
    for _ in 0..an {
        // Name: a pointer or labels.
        loop {
            let len = *msg.get(at)?;
            if len & 0xc0 == 0xc0 {
                at += 2;
                break;
            }
            at += 1 + usize::from(len);
            if len == 0 {
                break;
            }
        }
        let fixed = msg.get(at..at + 10)?;
        let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
        let rdlen = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
        at += 10;
        let data = msg.get(at..at + rdlen)?;
        at += rdlen;
        if rtype == 1 && rdlen == 4 && a.is_none() {
            a = Some(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        }
    }
    Some(Answer { rcode, a })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_name_is_nxdomain_but_the_probe_zone() {
        let q = query(0x1234, "leak-7f3a.example.com", 1);
        let r = respond(&q).unwrap();
        assert_eq!(
            answer(0x1234, &r),
            Some(Answer {
                rcode: NXDOMAIN,
                a: None
            })
        );
        // Authoritative, no recursion offered.
        assert_eq!(r[2] & 0x04, 0x04);
        assert_eq!(r[3] & 0x80, 0);

        let q = query(7, &format!("n1.{PROBE_ZONE}"), 1);
        let r = respond(&q).unwrap();
        assert_eq!(
            answer(7, &r),
            Some(Answer {
                rcode: NOERROR,
                a: Some(PROBE_ANSWER)
            })
        );
        // AAAA for a probe name: the name exists, no record.
        let r = respond(&query(8, &format!("n1.{PROBE_ZONE}"), 28)).unwrap();
        assert_eq!(
            answer(8, &r),
            Some(Answer {
                rcode: NOERROR,
                a: None
            })
        );
        // The zone itself and look-alikes are not probe names.
        assert!(!is_probe_name(PROBE_ZONE));
        assert!(!is_probe_name(&format!("x{PROBE_ZONE}")));
        assert!(is_probe_name(&format!("a.b.{PROBE_ZONE}")));
    }

    #[test]
    fn malformed_queries_get_formerr_or_nothing() {
        assert_eq!(respond(&[0; 5]), None);
        let mut q = query(9, "a.b", 1);
        q[2] |= 0x80; // a response: never answered (no reflection loops)
        assert_eq!(respond(&q), None);
        let mut q = query(9, "a.b", 1);
        q.truncate(14); // name cut short
        assert_eq!(respond(&q).unwrap()[3] & 0x0f, FORMERR);
        let mut q = query(9, "a.b", 1);
        q[2] = 0x10; // opcode 2 (status)
        assert_eq!(respond(&q).unwrap()[3] & 0x0f, NOTIMP);
        // A compression pointer in the question.
        let mut q = query(9, "", 1);
        q[12] = 0xc0;
        assert_eq!(respond(&q).unwrap()[3] & 0x0f, FORMERR);
    }

    proptest! {
        #[test]
        fn a_response_echoes_the_id_and_is_small(msg in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Some(r) = respond(&msg) {
                prop_assert_eq!(&r[..2], &msg[..2]);
                prop_assert!(r[2] & 0x80 != 0, "QR set");
                prop_assert!(r.len() <= msg.len() + 16);
            }
        }

        #[test]
        fn names_round_trip(labels in proptest::collection::vec("[a-z0-9-]{1,20}", 1..6), id: u16) {
            let name = labels.join(".");
            let q = query(id, &name, 1);
            let parsed = question(&q).unwrap();
            prop_assert_eq!(parsed.name, name);
            let r = respond(&q).unwrap();
            prop_assert_eq!(answer(id, &r).map(|a| a.rcode), Some(NXDOMAIN));
        }
    }
}
