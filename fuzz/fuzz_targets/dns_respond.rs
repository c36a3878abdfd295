//! The bottle's resolver (`bb-init hold`, `init/src/dns.rs`) on arbitrary
//! datagrams. `bb-init` is a binary crate, so its `dns` module is compiled
//! in here by path. Invariants:
//!
//! - a response, when there is one, echoes the query's ID, has QR set, is
//!   authoritative, never offers recursion, and stays small (no
//!   amplification: at most the query plus one A record);
//! - a response is never produced for a response (no reflection loops);
//! - a probe-zone A query gets exactly the probe answer, every other name
//!   NXDOMAIN, as the probe reads it back.
#![no_main]

#[allow(dead_code, unreachable_pub)]
#[path = "../../init/src/dns.rs"]
mod dns;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(r) = dns::respond(data) else {
        assert!(data.len() < 12 || data.len() > 512 || data[2] & 0x80 != 0);
        return;
    };
    assert_eq!(&r[..2], &data[..2]);
    assert!(r[2] & 0x80 != 0, "QR");
    assert!(r[2] & 0x04 != 0, "AA");
    assert_eq!(r[3] & 0x80, 0, "RA");
    assert!(r.len() <= data.len() + 16, "amplification");
    if let Some(q) = dns::question(data) {
        if (data[2] >> 3) & 0x0f == 0 {
            let id = u16::from_be_bytes([data[0], data[1]]);
            let a = dns::answer(id, &r).expect("our own response parses");
            if dns::is_probe_name(&q.name) && q.qclass == 1 && q.qtype == 1 {
                assert_eq!(a.a, Some(dns::PROBE_ANSWER));
            } else if !dns::is_probe_name(&q.name) {
                assert_eq!(a.rcode, 3);
            }
        }
    }
});
