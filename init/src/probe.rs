//! `bb-init probe`: the isolation probe, run inside a bottle's network
//! namespace (`docker exec` into its network holder) before the agent's
//! command runs, and by `bot-bottle doctor` on running bottles.
//!
//! Every check runs at once (threads) and prints one line:
//!
//! ```text
//! isolation ok default-route: no default route (IPv4, IPv6)
//! isolation FAIL host-reachable: 172.18.0.1:9 answered (connection refused)
//! ```
//!
//! The exit code is 0 when every check passed, 1 otherwise. The checks:
//!
//! - `default-route`: no default route in `/proc/net/route` or
//!   `/proc/net/ipv6_route` (re-read for up to a second while the holder
//!   seals the namespace);
//! - `ipv6`: no IPv6 address on any interface but `lo`;
//! - `public-route`: no route to public addresses (a UDP `connect`, which
//!   sends nothing);
//! - `host-reachable`: each `--host` address (the host's own addresses and
//!   every bridge gateway, as `bot-bottle` lists them) has no route, or a
//!   TCP connection to it gets no answer within 250 ms;
//! - `dns-resolver`: the bottle's resolver (`--dns-ours`) answers a unique
//!   name under the probe zone itself;
//! - `dns-leak`: a unique name sent to each `--dns-silent` resolver (Docker's
//!   127.0.0.11) gets no answer: nothing beyond the namespace resolves it.

use std::fmt::Write as _;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::dns;

/// How long an on-link address gets to answer a TCP connection.
const TCP_WAIT: Duration = Duration::from_millis(250);
/// How long a resolver that must stay silent is listened to.
const SILENT_WAIT: Duration = Duration::from_millis(300);
/// How long the bottle's own resolver gets.
const OURS_WAIT: Duration = Duration::from_secs(1);
/// How long a default route may linger while the holder seals.
const SETTLE: Duration = Duration::from_secs(1);
/// The port host addresses are knocked on: anything that answers, even a
/// refusal, proves the host is reachable.
const KNOCK_PORT: u16 = 9;

/// Public addresses whose routes are looked up (nothing is sent to them).
const PUBLIC: [IpAddr; 3] = [
    IpAddr::V4(Ipv4Addr::new(1, 1, 1, 1)),
    IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8)),
    IpAddr::V6(Ipv6Addr::new(0x2606, 0x4700, 0x4700, 0, 0, 0, 0, 0x1111)),
];

/// What the command line asks the probe to check.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Opts {
    /// Host addresses that must be unreachable.
    pub(crate) hosts: Vec<IpAddr>,
    /// The bottle's resolver, which must answer probe names.
    pub(crate) dns_ours: Option<SocketAddr>,
    /// Resolvers that must not answer a unique name.
    pub(crate) dns_silent: Vec<SocketAddr>,
    /// Where the routing tables are read (`/proc`; tests point elsewhere).
    pub(crate) proc_root: Option<std::path::PathBuf>,
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub(crate) check: &'static str,
    pub(crate) ok: bool,
    pub(crate) detail: String,
}

/// Runs every check and prints one line each.
pub(crate) fn run(opts: &Opts) -> ExitCode {
    let outcomes = check_all(opts);
    let mut failed = false;
    for o in &outcomes {
        failed |= !o.ok;
        println!(
            "isolation {} {}: {}",
            if o.ok { "ok" } else { "FAIL" },
            o.check,
            o.detail
        );
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn check_all(opts: &Opts) -> Vec<Outcome> {
    let proc_root = opts.proc_root.clone().unwrap_or_else(|| "/proc".into());
    std::thread::scope(|s| {
        let routes = s.spawn(|| default_route(&proc_root));
        let v6 = s.spawn(|| ipv6_addresses(&proc_root));
        let public = s.spawn(public_route);
        let hosts = s.spawn(|| hosts_unreachable(&opts.hosts));
        let ours = s.spawn(|| opts.dns_ours.map(dns_ours));
        let silent = s.spawn(|| dns_silent(&opts.dns_silent));
        let mut out = Vec::new();
        for h in [routes, v6, public, hosts] {
            out.push(h.join().unwrap_or_else(|_| panicked("probe")));
        }
        if let Some(o) = ours
            .join()
            .unwrap_or_else(|_| Some(panicked("dns-resolver")))
        {
            out.push(o);
        }
        if let Some(o) = silent.join().unwrap_or_else(|_| Some(panicked("dns-leak"))) {
            out.push(o);
        }
        out
    })
}

fn panicked(check: &'static str) -> Outcome {
    Outcome {
        check,
        ok: false,
        detail: "the check panicked".into(),
    }
}

/// The interfaces of default routes in `/proc/net/route` (IPv4).
fn default_routes_v4(table: &str) -> Vec<String> {
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // Iface Destination Gateway Flags RefCnt Use Metric Mask …
            (f.len() > 7 && f[1] == "00000000" && f[7] == "00000000").then(|| {
                let gw = u32::from_str_radix(f[2], 16).map_or_else(
                    |_| f[2].to_owned(),
                    |g| Ipv4Addr::from(g.swap_bytes()).to_string(),
                );
                format!("default via {gw} dev {}", f[0])
            })
        })
        .collect()
}

/// Default routes in `/proc/net/ipv6_route`, except the kernel's
/// unreachable placeholder on `lo`.
fn default_routes_v6(table: &str) -> Vec<String> {
    table
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // dst dst_len src src_len next_hop metric refcnt use flags dev
            (f.len() > 9 && f[0].bytes().all(|b| b == b'0') && f[1] == "00" && f[9] != "lo")
                .then(|| format!("IPv6 default via {} dev {}", f[4], f[9]))
        })
        .collect()
}

fn default_route(proc_root: &std::path::Path) -> Outcome {
    let deadline = Instant::now() + SETTLE;
    loop {
        let v4 = std::fs::read_to_string(proc_root.join("net/route")).unwrap_or_default();
        let v6 = std::fs::read_to_string(proc_root.join("net/ipv6_route")).unwrap_or_default();
        let mut found = default_routes_v4(&v4);
        found.extend(default_routes_v6(&v6));
        if found.is_empty() {
            return Outcome {
                check: "default-route",
                ok: true,
                detail: "no default route (IPv4, IPv6)".into(),
            };
        }
        if Instant::now() > deadline {
            return Outcome {
                check: "default-route",
                ok: false,
                detail: found.join("; "),
            };
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ipv6_addresses(proc_root: &std::path::Path) -> Outcome {
    let table = std::fs::read_to_string(proc_root.join("net/if_inet6")).unwrap_or_default();
    let found: Vec<String> = table
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 5 && f[5] != "lo").then(|| format!("{} on {}", f[0], f[5]))
        })
        .collect();
    Outcome {
        check: "ipv6",
        ok: found.is_empty(),
        detail: if found.is_empty() {
            "no IPv6 address outside lo".into()
        } else {
            format!("IPv6 addresses: {}", found.join(", "))
        },
    }
}

/// Whether the kernel has a route to `ip` (a UDP connect sends nothing).
fn has_route(ip: IpAddr) -> io::Result<bool> {
    let local: SocketAddr = match ip {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = match UdpSocket::bind(local) {
        Ok(s) => s,
        // No IPv6 at all in the namespace: no route either.
        Err(e) if ip.is_ipv6() && e.kind() == io::ErrorKind::AddrNotAvailable => return Ok(false),
        Err(e) if ip.is_ipv6() && e.raw_os_error() == Some(97) => return Ok(false),
        Err(e) => return Err(e),
    };
    match socket.connect((ip, 53)) {
        Ok(()) => Ok(true),
        // No source address for that family is no way there either.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NetworkUnreachable
                    | io::ErrorKind::HostUnreachable
                    | io::ErrorKind::AddrNotAvailable
            ) || e.raw_os_error() == Some(97) =>
        {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

fn public_route() -> Outcome {
    let mut routed = Vec::new();
    for ip in PUBLIC {
        match has_route(ip) {
            Ok(true) => routed.push(ip.to_string()),
            Ok(false) => {}
            Err(e) => routed.push(format!("{ip} ({e})")),
        }
    }
    Outcome {
        check: "public-route",
        ok: routed.is_empty(),
        detail: if routed.is_empty() {
            format!("no route to {}", PUBLIC.map(|p| p.to_string()).join(", "))
        } else {
            format!("a route exists to {}", routed.join(", "))
        },
    }
}

fn hosts_unreachable(hosts: &[IpAddr]) -> Outcome {
    // Route lookups are instant and send nothing; only routed addresses
    // (normally none, at most the reserved gateway) are knocked on, a few
    // at a time: the probe runs under the holder's small pids limit.
    let mut results: Vec<(IpAddr, Result<&'static str, String>)> = Vec::new();
    let mut routed = Vec::new();
    for &ip in hosts {
        match has_route(ip) {
            Ok(false) => results.push((ip, Ok("no route"))),
            Ok(true) => routed.push(ip),
            Err(e) => results.push((ip, Err(format!("route lookup failed: {e}")))),
        }
    }
    for chunk in routed.chunks(4) {
        std::thread::scope(|s| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|&ip| (ip, s.spawn(move || knock(ip))))
                .collect();
            for (ip, h) in handles {
                results.push((ip, h.join().unwrap_or_else(|_| Err("panicked".into()))));
            }
        });
    }
    let reached: Vec<String> = results
        .iter()
        .filter_map(|(ip, r)| r.as_ref().err().map(|why| format!("{ip} {why}")))
        .collect();
    let mut detail = String::new();
    if reached.is_empty() {
        let _ = write!(detail, "{} host address(es) unreachable", hosts.len());
    } else {
        let _ = write!(detail, "reachable: {}", reached.join("; "));
    }
    Outcome {
        check: "host-reachable",
        ok: reached.is_empty(),
        detail,
    }
}

/// `Ok(why unreachable)` or `Err(how it answered)`.
fn knock(ip: IpAddr) -> Result<&'static str, String> {
    match TcpStream::connect_timeout(&SocketAddr::new(ip, KNOCK_PORT), TCP_WAIT) {
        Ok(_) => Err(format!("port {KNOCK_PORT} accepted a connection")),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            Err(format!("port {KNOCK_PORT} answered (connection refused)"))
        }
        Err(_) => Ok("no answer"),
    }
}

/// A name nobody else can have asked for.
fn unique_label() -> String {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    format!("n{:016x}", h.finish())
}

/// Sends a query for `name` to `server`; the answer, if one comes in `wait`.
fn ask(server: SocketAddr, name: &str, wait: Duration) -> io::Result<Option<dns::Answer>> {
    let local: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local)?;
    socket.connect(server)?;
    let id = (std::process::id() & 0xffff) as u16 ^ 0x5a5a;
    socket.send(&dns::query(id, name, 1))?;
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 1500];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        socket.set_read_timeout(Some(left))?;
        match socket.recv(&mut buf) {
            Ok(n) => {
                if let Some(a) = dns::answer(id, &buf[..n]) {
                    return Ok(Some(a));
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e),
        }
    }
}

fn dns_ours(server: SocketAddr) -> Outcome {
    let name = format!("{}.{}", unique_label(), dns::PROBE_ZONE);
    let (ok, detail) = match ask(server, &name, OURS_WAIT) {
        Ok(Some(a)) if a.a == Some(dns::PROBE_ANSWER) => {
            (true, format!("the bottle's resolver at {server} answers"))
        }
        Ok(Some(a)) => (
            false,
            format!(
                "{server} answered the probe name with rcode {} and {:?}: not the bottle's resolver",
                a.rcode, a.a
            ),
        ),
        Ok(None) => (
            false,
            format!("no answer from the bottle's resolver at {server}"),
        ),
        Err(e) => (false, format!("cannot ask {server}: {e}")),
    };
    Outcome {
        check: "dns-resolver",
        ok,
        detail,
    }
}

fn dns_silent(servers: &[SocketAddr]) -> Option<Outcome> {
    if servers.is_empty() {
        return None;
    }
    let name = format!("{}.bot-bottle-leak-check.invalid", unique_label());
    let results: Vec<(SocketAddr, io::Result<Option<dns::Answer>>)> = std::thread::scope(|s| {
        let handles: Vec<_> = servers
            .iter()
            .map(|&srv| {
                let name = &name;
                (srv, s.spawn(move || ask(srv, name, SILENT_WAIT)))
            })
            .collect();
        handles
            .into_iter()
            .map(|(srv, h)| {
                (
                    srv,
                    h.join()
                        .unwrap_or_else(|_| Err(io::Error::other("panicked"))),
                )
            })
            .collect()
    });
    let mut leaks = Vec::new();
    for (srv, r) in results {
        match r {
            // NOERROR or NXDOMAIN: some resolver beyond the namespace
            // decided about the name. SERVFAIL/REFUSED: it went nowhere.
            Ok(Some(a)) if a.rcode == 0 || a.rcode == 3 => leaks.push(format!(
                "{srv} resolved it (rcode {}): names leave the namespace",
                a.rcode
            )),
            Ok(_) | Err(_) => {}
        }
    }
    Some(Outcome {
        check: "dns-leak",
        ok: leaks.is_empty(),
        detail: if leaks.is_empty() {
            format!(
                "a unique name sent to {} got no answer from outside",
                servers
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            leaks.join("; ")
        },
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn default_routes_are_found_in_both_tables() {
        let v4 = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                  eth0\t00000000\t010012AC\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                  eth0\t000012AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";
        assert_eq!(default_routes_v4(v4), ["default via 172.18.0.1 dev eth0"]);
        let sealed = "Iface\tDestination\tGateway\n\
                      eth0\t000012AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";
        assert!(default_routes_v4(sealed).is_empty());
        let v6 = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 eth0\n\
                  00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200 lo\n";
        assert_eq!(default_routes_v6(v6).len(), 1);
    }

    #[test]
    fn a_sealed_proc_passes_and_an_open_one_names_the_route() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("net")).unwrap();
        std::fs::write(
            dir.path().join("net/route"),
            "Iface\tDestination\n eth0\t00000000\t010012AC\t0003\t0\t0\t0\t00000000\t0\t0\t0\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("net/if_inet6"),
            "fe80000000000000000000fffe000001 02 40 20 80 eth0\n",
        )
        .unwrap();
        let out = default_route(dir.path());
        assert!(!out.ok && out.detail.contains("172.18.0.1"), "{out:?}");
        assert!(!ipv6_addresses(dir.path()).ok);
        std::fs::write(dir.path().join("net/route"), "Iface\n").unwrap();
        std::fs::write(
            dir.path().join("net/if_inet6"),
            "00000000000000000000000000000001 01 80 10 80 lo\n",
        )
        .unwrap();
        assert!(default_route(dir.path()).ok);
        assert!(ipv6_addresses(dir.path()).ok);
    }

    #[test]
    fn a_listening_host_address_is_reported_reachable() {
        // 127.0.0.1 has a route here and answers on the knock port with a
        // refusal (or an accept): either way it is reachable.
        let out = hosts_unreachable(&[IpAddr::V4(Ipv4Addr::LOCALHOST)]);
        assert!(!out.ok, "{out:?}");
    }

    #[test]
    fn the_resolver_checks_tell_ours_from_silence_and_leaks() {
        let ours = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = ours.local_addr().unwrap();
        std::thread::spawn(move || dns::serve(&ours));
        assert!(dns_ours(addr).ok);
        // Our resolver answers NXDOMAIN for the leak name: to the leak
        // check it is a resolver that decided, so it fails.
        let leak = dns_silent(&[addr]).unwrap();
        assert!(!leak.ok, "{leak:?}");
        // A socket that never answers is silence.
        let mute = UdpSocket::bind("127.0.0.1:0").unwrap();
        let silent = dns_silent(&[mute.local_addr().unwrap()]).unwrap();
        assert!(silent.ok, "{silent:?}");
        assert!(!dns_ours(mute.local_addr().unwrap()).ok);
    }
}
