//! `bb-probe udp HOST:PORT`: can the agent get a datagram answered
//! directly, for example by a DNS server outside the sandbox?

use std::io;
use std::net::{SocketAddr, ToSocketAddrs as _, UdpSocket};
use std::time::{Duration, Instant};

use bb_testkit::cli;

use crate::{BadInput, EXIT_NO, EXIT_OK, host_port, io_kind, report, single};

/// A standard query for `example.com` type A, class IN, recursion desired.
/// The ID is fixed: any datagram back counts, so it need not be matched.
const QUERY: &[u8] = &[
    0x62, 0x62, // ID
    0x01, 0x00, // flags: RD
    0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // 1 question
    7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 3, b'c', b'o', b'm', 0, // QNAME
    0x00, 0x01, // QTYPE A
    0x00, 0x01, // QCLASS IN
];

/// How often the query is sent again while no reply came.
const RESEND: Duration = Duration::from_secs(1);

pub(crate) fn run(args: &cli::Parsed) -> Result<u8, BadInput> {
    let (host, port) = host_port(single(args, "HOST:PORT")?)?;
    let timeout = args.millis("--timeout-ms", 3000).map_err(BadInput::usage)?;
    let addr = match (host.as_str(), port)
        .to_socket_addrs()
        .map(|mut a| a.next())
    {
        Ok(Some(addr)) => addr,
        Ok(None) => {
            report("dns", &format!("{host}: no addresses"));
            return Ok(EXIT_NO);
        }
        Err(error) => {
            report("dns", &format!("{host}: {error}"));
            return Ok(EXIT_NO);
        }
    };
    match exchange(addr, timeout) {
        Ok(()) => {
            cli::say("reply");
            Ok(EXIT_OK)
        }
        Err(error) => {
            report(io_kind(&error), &format!("{addr}: {error}"));
            Ok(EXIT_NO)
        }
    }
}

fn exchange(addr: SocketAddr, timeout: Duration) -> io::Result<()> {
    let local: SocketAddr = if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let socket = UdpSocket::bind(local)?;
    // Connected, so an ICMP port-unreachable surfaces as "refused".
    socket.connect(addr)?;
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 1500];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "no reply"));
        }
        socket.send(QUERY)?;
        socket.set_read_timeout(Some(left.min(RESEND)))?;
        match socket.recv(&mut buf) {
            Ok(_) => return Ok(()),
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(error) => return Err(error),
        }
    }
}
