//! Which addresses an allowlisted name may lead to: the SSRF filter.
//!
//! Without `allow_private` a route may only reach globally routable
//! unicast addresses. [`special_purpose`] names the IANA special-purpose
//! block (IPv4 and IPv6 registries, plus multicast and IPv6 outside
//! `2000::/3`) an address falls in, looking through the IPv4-mapped,
//! IPv4-compatible, NAT64 (`64:ff9b::/96`) and 6to4 (`2002::/16`) forms to
//! the IPv4 address inside; Teredo (`2001::/32`) is refused whole, as its
//! embedded address is the client's, obfuscated. [`LocalAddrs`] adds every
//! address of the machine's own interfaces, whatever range it is in: a
//! route must not lead back into the proxy's host.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// IPv4 special-purpose blocks: (network, prefix length, name).
const V4_BLOCKS: &[(u32, u8, &str)] = &[
    (0x0000_0000, 8, "\"this network\" 0.0.0.0/8"),
    (0x0A00_0000, 8, "private 10.0.0.0/8"),
    (0x6440_0000, 10, "shared address space 100.64.0.0/10"),
    (0x7F00_0000, 8, "loopback 127.0.0.0/8"),
    (0xA9FE_0000, 16, "link-local 169.254.0.0/16"),
    (0xAC10_0000, 12, "private 172.16.0.0/12"),
    (0xC000_0000, 24, "IETF protocol assignments 192.0.0.0/24"),
    (0xC000_0200, 24, "documentation 192.0.2.0/24"),
    (0xC01F_C400, 24, "AS112 192.31.196.0/24"),
    (0xC034_C100, 24, "AMT 192.52.193.0/24"),
    (0xC058_6300, 24, "6to4 relay anycast 192.88.99.0/24"),
    (0xC0A8_0000, 16, "private 192.168.0.0/16"),
    (0xC0AF_3000, 24, "AS112 direct delegation 192.175.48.0/24"),
    (0xC612_0000, 15, "benchmarking 198.18.0.0/15"),
    (0xC633_6400, 24, "documentation 198.51.100.0/24"),
    (0xCB00_7100, 24, "documentation 203.0.113.0/24"),
    (0xE000_0000, 4, "multicast 224.0.0.0/4"),
    (0xF000_0000, 4, "reserved 240.0.0.0/4 (and broadcast)"),
];

/// IPv6 special-purpose blocks inside `2000::/3` (everything outside it is
/// refused as not global unicast): (network, prefix length, name).
const V6_BLOCKS: &[(u128, u8, &str)] = &[
    (0x2001_0000 << 96, 32, "Teredo 2001::/32"),
    (0x2001_0000 << 96, 23, "IETF protocol assignments 2001::/23"),
    (0x2001_0db8 << 96, 32, "documentation 2001:db8::/32"),
    (
        0x2620_004f_8000 << 80,
        48,
        "AS112 direct delegation 2620:4f:8000::/48",
    ),
    (0x3fff << 112, 20, "documentation 3fff::/20"),
];

fn in_block(addr: u128, net: u128, len: u8, bits: u8) -> bool {
    let shift = u32::from(bits - len);
    (addr >> shift) == (net >> shift)
}

/// The IPv4 address an IPv6 address stands for, in the forms that reach
/// it: IPv4-mapped, IPv4-compatible (deprecated), NAT64 well-known prefix,
/// 6to4.
#[must_use]
pub(crate) fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = v6.to_bits();
    let low = Ipv4Addr::from_bits(bits as u32);
    if bits >> 32 == 0xffff || bits >> 32 == 0 {
        // ::ffff:a.b.c.d and ::a.b.c.d (:: and ::1 included: 0.0.0.0/8).
        return Some(low);
    }
    if bits >> 32 == 0x0064_ff9b_u128 << 64 {
        return Some(low);
    }
    if bits >> 112 == 0x2002 {
        return Some(Ipv4Addr::from_bits((bits >> 80) as u32));
    }
    None
}

/// The special-purpose block `ip` is in, or `None` for a globally routable
/// unicast address.
#[must_use]
pub(crate) fn special_purpose(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            let a = u128::from(v4.to_bits());
            V4_BLOCKS
                .iter()
                .find(|(net, len, _)| in_block(a, u128::from(*net), *len, 32))
                .map(|(_, _, name)| *name)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_v4(v6) {
                return special_purpose(IpAddr::V4(v4));
            }
            let a = v6.to_bits();
            if a >> 125 != 0b001 {
                return Some("IPv6 outside global unicast 2000::/3");
            }
            V6_BLOCKS
                .iter()
                .find(|(net, len, _)| in_block(a, *net, *len, 128))
                .map(|(_, _, name)| *name)
        }
    }
}

/// The same address written as IPv4 when it stands for one.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => embedded_v4(v6).map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// How long an interface list is trusted before it is read again.
const REFRESH: Duration = Duration::from_secs(10);

/// The addresses of this machine's interfaces, re-read every few seconds
/// (interfaces come and go: Docker bridges, VPNs).
#[derive(Debug)]
pub(crate) struct LocalAddrs {
    state: RwLock<(Instant, Arc<Vec<IpAddr>>)>,
}

impl LocalAddrs {
    /// Reads the interfaces now (blocking: call before the runtime or from
    /// `spawn_blocking`).
    pub(crate) fn load() -> Self {
        Self {
            state: RwLock::new((Instant::now(), Arc::new(read_interfaces()))),
        }
    }

    /// The current list, re-read off the runtime when it is stale.
    pub(crate) async fn current(self: &Arc<Self>) -> Arc<Vec<IpAddr>> {
        let (at, list) = {
            let g = self
                .state
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            (g.0, Arc::clone(&g.1))
        };
        if at.elapsed() < REFRESH {
            return list;
        }
        let fresh = tokio::task::spawn_blocking(read_interfaces)
            .await
            .map_or(list, Arc::new);
        let mut g = self
            .state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *g = (Instant::now(), Arc::clone(&fresh));
        fresh
    }
}

fn read_interfaces() -> Vec<IpAddr> {
    match if_addrs::get_if_addrs() {
        Ok(list) => list.into_iter().map(|i| canonical(i.ip())).collect(),
        Err(e) => {
            // Fail closed would refuse every upstream; the special-purpose
            // ranges still apply, and this is loud.
            tracing::error!(error = %e, "cannot list this machine's interface addresses");
            Vec::new()
        }
    }
}

/// Why `ip` may not be reached without `allow_private`, if it may not.
#[must_use]
pub(crate) fn refusal(ip: IpAddr, local: &[IpAddr]) -> Option<&'static str> {
    if let Some(name) = special_purpose(ip) {
        return Some(name);
    }
    local
        .contains(&canonical(ip))
        .then_some("an address of the proxy's own host")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sp(s: &str) -> Option<&'static str> {
        special_purpose(s.parse().unwrap())
    }

    #[test]
    fn every_iana_block_is_refused() {
        for a in [
            "0.0.0.0",
            "0.1.2.3",
            "10.1.2.3",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.0.170",
            "192.0.2.2",
            "192.31.196.1",
            "192.52.193.1",
            "192.88.99.1",
            "192.168.1.1",
            "192.175.48.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:192.0.2.2",
            "::127.0.0.1",
            "64:ff9b::10.0.0.1",
            "64:ff9b::c000:202",
            "64:ff9b:1::1",
            "2002:7f00:1::",
            "2002:c000:0202::1",
            "2001::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001:2::1",
            "2001:10::1",
            "2001:db8::1",
            "2620:4f:8000::1",
            "3fff::1",
            "100::1",
            "5f00::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
        ] {
            assert!(sp(a).is_some(), "{a} must be refused");
        }
    }

    #[test]
    fn global_unicast_passes() {
        for a in [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.255",
            "192.0.3.0",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "2606:4700::1111",
            "2a00:1450:4001::200e",
            "64:ff9b::808:808",
            "::ffff:8.8.8.8",
            "2002:808:808::1",
            "2001:200::1",
        ] {
            assert_eq!(sp(a), None, "{a} is global unicast");
        }
    }

    #[test]
    fn the_hosts_own_addresses_are_refused_in_every_form() {
        let local = vec!["93.184.216.34".parse().unwrap()];
        for a in [
            "93.184.216.34",
            "::ffff:93.184.216.34",
            "64:ff9b::5db8:d822",
        ] {
            assert_eq!(
                refusal(a.parse().unwrap(), &local),
                Some("an address of the proxy's own host"),
                "{a}"
            );
        }
        assert_eq!(refusal("93.184.216.35".parse().unwrap(), &local), None);
    }

    fn v4_special() -> impl Strategy<Value = Ipv4Addr> {
        (0..V4_BLOCKS.len(), any::<u32>()).prop_map(|(i, r)| {
            let (net, len, _) = V4_BLOCKS[i];
            let host = if len == 0 { r } else { r & (u32::MAX >> len) };
            Ipv4Addr::from_bits(net | host)
        })
    }

    fn v6_forms(v4: Ipv4Addr) -> [Ipv6Addr; 4] {
        let b = u128::from(v4.to_bits());
        [
            v4.to_ipv6_mapped(),
            v4.to_ipv6_compatible(),
            Ipv6Addr::from_bits((0x0064_ff9b_u128 << 96) | b),
            Ipv6Addr::from_bits((0x2002_u128 << 112) | (b << 80)),
        ]
    }

    proptest! {
        #[test]
        fn every_address_of_a_block_is_refused_in_every_v6_form(v4 in v4_special()) {
            prop_assert!(special_purpose(IpAddr::V4(v4)).is_some());
            for v6 in v6_forms(v4) {
                prop_assert!(special_purpose(IpAddr::V6(v6)).is_some(), "{v6}");
            }
        }

        #[test]
        fn a_v6_form_classifies_as_its_v4(bits in any::<u32>()) {
            let v4 = Ipv4Addr::from_bits(bits);
            let expect = special_purpose(IpAddr::V4(v4)).is_some();
            for v6 in v6_forms(v4) {
                prop_assert_eq!(special_purpose(IpAddr::V6(v6)).is_some(), expect, "{}", v6);
            }
        }

        #[test]
        fn the_classifier_agrees_with_std_where_std_knows(bits in any::<u32>(), b6 in any::<u128>()) {
            let v4 = Ipv4Addr::from_bits(bits);
            if v4.is_private() || v4.is_loopback() || v4.is_link_local() || v4.is_multicast()
                || v4.is_broadcast() || v4.is_documentation() || v4.is_unspecified() {
                prop_assert!(special_purpose(IpAddr::V4(v4)).is_some());
            }
            let v6 = Ipv6Addr::from_bits(b6);
            if v6.is_loopback() || v6.is_multicast() || v6.is_unspecified()
                || v6.is_unique_local() || v6.is_unicast_link_local() {
                prop_assert!(special_purpose(IpAddr::V6(v6)).is_some());
            }
        }
    }
}
