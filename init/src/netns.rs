//! `bb-init hold`: PID 1 of a bottle's network holder, the container whose
//! network namespace the agent joins (`--network container:…`).
//!
//! Docker gives every container on a bridge network a default route, even on
//! an `--internal` network whose bridge has no address. The agent itself has
//! no capabilities, so it cannot change its routes; the holder starts with
//! `NET_ADMIN` and `NET_BIND_SERVICE`, and before the agent exists it
//!
//! 1. deletes every default route, IPv4 and IPv6 (netlink `RTM_DELROUTE`),
//!    so the namespace has only the internal network's on-link route;
//! 2. binds the bottle's resolver ([`crate::dns`]) on `127.0.0.1:53`, which
//!    the agent's `/etc/resolv.conf` names;
//! 3. drops to `nobody` (uid and gid 65534, no groups), which clears every
//!    capability, and then only answers DNS and waits for `SIGTERM`.
//!
//! `--keep-routes` skips step 1; it exists so a test can break a bottle's
//! isolation on purpose and watch the launch probe refuse it.

use std::io;
use std::net::UdpSocket;
use std::os::fd::AsRawFd as _;
use std::process::ExitCode;

use nix::sys::signal::{SigSet, Signal};
use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, send,
    socket,
};
use nix::unistd::{Gid, Uid, setgid, setgroups, setuid};

use crate::output::say;

/// Where the resolver listens in the shared namespace.
pub(crate) const RESOLVER: &str = "127.0.0.1:53";

/// `nobody`.
const NOBODY: u32 = 65534;

const RTM_DELROUTE: u16 = 25;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLMSG_ERROR: u16 = 2;
const RT_TABLE_MAIN: u8 = 254;
const RT_SCOPE_NOWHERE: u8 = 255;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const ESRCH: i32 = 3;

/// Runs the holder until `SIGTERM`, `SIGINT` or `SIGHUP`.
pub(crate) fn hold(keep_routes: bool) -> ExitCode {
    let mut signals = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        signals.add(s);
    }
    // Blocked before any thread exists, so every thread inherits the mask
    // and sigwait below takes them (PID 1 would otherwise ignore them).
    if let Err(e) = signals.thread_block() {
        say(format_args!("hold: cannot block signals: {e}"));
        return ExitCode::from(71);
    }
    if !keep_routes {
        for (family, name) in [(AF_INET, "IPv4"), (AF_INET6, "IPv6")] {
            match delete_default_routes(family) {
                Ok(n) => say(format_args!("hold: removed {n} {name} default route(s)")),
                Err(e) => {
                    say(format_args!(
                        "hold: cannot remove the {name} default route: {e}"
                    ));
                    return ExitCode::from(71);
                }
            }
        }
    }
    let socket = match UdpSocket::bind(RESOLVER) {
        Ok(s) => s,
        Err(e) => {
            say(format_args!(
                "hold: cannot bind the resolver on {RESOLVER}: {e}"
            ));
            return ExitCode::from(71);
        }
    };
    if let Err(e) = drop_privileges() {
        say(format_args!("hold: cannot drop privileges: {e}"));
        return ExitCode::from(71);
    }
    say(format_args!(
        "hold: network sealed; resolver on {RESOLVER}; running as {NOBODY}"
    ));
    std::thread::spawn(move || {
        let e = crate::dns::serve(&socket);
        say(format_args!("hold: resolver stopped: {e}"));
        std::process::exit(70);
    });
    match signals.wait() {
        Ok(sig) => say(format_args!("hold: {sig}, exiting")),
        Err(e) => say(format_args!("hold: sigwait failed: {e}")),
    }
    ExitCode::SUCCESS
}

/// Drops every group, then gid, then uid: with the uid no longer 0 the
/// kernel clears the permitted and effective capability sets.
fn drop_privileges() -> nix::Result<()> {
    setgroups(&[])?;
    setgid(Gid::from_raw(NOBODY))?;
    setuid(Uid::from_raw(NOBODY))
}

/// Deletes default routes of `family` from the main table until none is
/// left; returns how many went.
fn delete_default_routes(family: u8) -> io::Result<usize> {
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )?;
    bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0))?;
    for (seq, removed) in (1u32..).zip(0..16) {
        let msg = delroute_message(family, seq);
        send(fd.as_raw_fd(), &msg, MsgFlags::empty())?;
        let mut buf = [0u8; 1024];
        let n = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty())?;
        match ack_error(&buf[..n]) {
            Some(0) => {}
            // No (more) default route (ESRCH); IPv6 may be off altogether
            // (ENOENT, EAFNOSUPPORT, EOPNOTSUPP).
            Some(e) if [ESRCH, 2, 97, 95].contains(&-e) => return Ok(removed),
            Some(e) => return Err(io::Error::from_raw_os_error(-e)),
            None => return Err(io::Error::other("unexpected netlink reply")),
        }
    }
    Err(io::Error::other("more than 16 default routes"))
}

/// `ip route del default` as one netlink message: `nlmsghdr` + `rtmsg`
/// with a zero-length destination in the main table, any scope.
fn delroute_message(family: u8, seq: u32) -> Vec<u8> {
    let mut m = Vec::with_capacity(28);
    m.extend_from_slice(&28u32.to_ne_bytes());
    m.extend_from_slice(&RTM_DELROUTE.to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    // family, dst_len, src_len, tos, table, protocol, scope, type
    m.extend_from_slice(&[family, 0, 0, 0, RT_TABLE_MAIN, 0, RT_SCOPE_NOWHERE, 0]);
    m.extend_from_slice(&0u32.to_ne_bytes());
    m
}

/// The error code of an `NLMSG_ERROR` reply (0 is an ACK).
fn ack_error(reply: &[u8]) -> Option<i32> {
    let ty = u16::from_ne_bytes(reply.get(4..6)?.try_into().ok()?);
    if ty != NLMSG_ERROR {
        return None;
    }
    Some(i32::from_ne_bytes(reply.get(16..20)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delete_message_is_a_default_route_in_the_main_table() {
        let m = delroute_message(AF_INET, 9);
        assert_eq!(m.len(), 28);
        assert_eq!(u32::from_ne_bytes([m[0], m[1], m[2], m[3]]), 28);
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), RTM_DELROUTE);
        assert_eq!(m[16], AF_INET);
        assert_eq!(m[17], 0, "dst_len 0: the default route");
        assert_eq!(m[20], RT_TABLE_MAIN);
        let mut ack = vec![0u8; 36];
        ack[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        ack[16..20].copy_from_slice(&(-ESRCH).to_ne_bytes());
        assert_eq!(ack_error(&ack), Some(-ESRCH));
        assert_eq!(ack_error(&ack[..10]), None);
    }
}
