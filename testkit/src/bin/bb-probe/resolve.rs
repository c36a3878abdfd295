//! `bb-probe resolve NAME`: what the C library resolver answers for NAME.

use std::net::ToSocketAddrs as _;

use bb_testkit::cli;

use crate::{BadInput, EXIT_NO, EXIT_OK, report, single};

pub(crate) fn run(args: &cli::Parsed) -> Result<u8, BadInput> {
    let name = single(args, "NAME")?;
    let first = (name, 0).to_socket_addrs().map(|mut addrs| addrs.next());
    match first {
        Ok(Some(addr)) => {
            cli::say(&format!("resolved={}", addr.ip()));
            Ok(EXIT_OK)
        }
        Ok(None) => {
            report("dns", &format!("{name}: no addresses"));
            Ok(EXIT_NO)
        }
        Err(error) => {
            report("dns", &format!("{name}: {error}"));
            Ok(EXIT_NO)
        }
    }
}
