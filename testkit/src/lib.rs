//! Test peers for bot-bottle's end-to-end tests.
//!
//! The library mints a throwaway PKI for a test upstream ([`mint_test_pki`])
//! and holds the blocking HTTP/1.1 and TLS pieces shared by the two static
//! binaries built from this crate:
//!
//! - `bb-probe`, the agent-side client (HTTPS through a CONNECT proxy, raw
//!   TCP/UDP reachability, name resolution, a filesystem secret scan);
//! - `bb-testupstream`, an HTTPS/1.1 server that reports what it received
//!   and logs every request body so a test can prove a secret never arrived.
//!
//! [`debian`] builds (once per machine) the realistic Debian image the
//! Docker end-to-end tests use as an agent and as test peers.
//!
//! Everything is blocking std I/O: the binaries go into `FROM scratch`
//! images and must stay small and statically linkable.

pub mod cli;
pub mod debian;
pub mod http1;
pub mod pki;
pub mod tls;

pub use pki::{TestPki, mint_test_pki};
