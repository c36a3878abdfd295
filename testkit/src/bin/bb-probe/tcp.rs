//! `bb-probe tcp HOST:PORT`: can the agent open a TCP connection directly,
//! around the proxy?

use std::net::{SocketAddr, TcpStream, ToSocketAddrs as _};

use bb_testkit::cli;

use crate::{BadInput, EXIT_NO, EXIT_OK, host_port, io_kind, report, single};

pub(crate) fn run(args: &cli::Parsed) -> Result<u8, BadInput> {
    let (host, port) = host_port(single(args, "HOST:PORT")?)?;
    let timeout = args.millis("--timeout-ms", 3000).map_err(BadInput::usage)?;
    let addrs: Vec<SocketAddr> = match (host.as_str(), port).to_socket_addrs() {
        Ok(addrs) => addrs.collect(),
        Err(error) => {
            report("dns", &format!("{host}: {error}"));
            return Ok(EXIT_NO);
        }
    };
    let mut last = None;
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, timeout) {
            Ok(_) => {
                cli::say("connected");
                return Ok(EXIT_OK);
            }
            Err(error) => last = Some((*addr, error)),
        }
    }
    match last {
        Some((addr, error)) => report(io_kind(&error), &format!("{addr}: {error}")),
        None => report("dns", &format!("{host}: no addresses")),
    }
    Ok(EXIT_NO)
}
