//! git's own protocol (`git://`, port 9418 in the bundle), for fetch and
//! clone only: the connection is relayed byte for byte to the upstream's
//! `git-upload-pack` (both ends are stateful, so nothing needs parsing
//! after the request line). Pushes are refused here with a message naming
//! the smart-HTTP URL, where they are scanned.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::gate::Gate;
use crate::pktline;
use crate::ssh::{self, Service};
use crate::wire::{self, Frame};

/// How long a client has to send its request line.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The service and repo name of a `git://` request line
/// (`git-upload-pack /app.git\0host=...\0`).
#[must_use]
pub fn parse_request(line: &[u8]) -> Option<(&str, &str)> {
    let line = pktline::chomp(line);
    let end = memchr::memchr(0, line).unwrap_or(line.len());
    let text = std::str::from_utf8(&line[..end]).ok()?;
    let (service, path) = text.split_once(' ')?;
    let path = path.strip_prefix('/').unwrap_or(path);
    let name = path.strip_suffix('/').unwrap_or(path);
    let name = name.strip_suffix(".git").unwrap_or(name);
    Some((service, name))
}

/// Serves `git://` on `listener` until `cancel` fires.
pub async fn serve(gate: Arc<Gate>, listener: TcpListener, cancel: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            () = cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        let Ok((tcp, peer)) = accepted else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let gate = Arc::clone(&gate);
        let cancel = cancel.clone();
        tokio::spawn(async move {
            tokio::select! {
                r = connection(&gate, tcp) => if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "git:// connection ended");
                },
                () = cancel.cancelled() => {}
            }
        });
    }
}

async fn refuse(tcp: &mut TcpStream, why: &str) -> std::io::Result<()> {
    let mut out = Vec::new();
    pktline::encode(&mut out, format!("ERR git-gate: {why}").as_bytes());
    tcp.write_all(&out).await
}

async fn connection(gate: &Gate, mut tcp: TcpStream) -> std::io::Result<()> {
    let first = tokio::time::timeout(REQUEST_TIMEOUT, wire::read_pkt(&mut tcp))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no request line"))??;
    let Some(Frame::Data(line)) = first else {
        return Ok(());
    };
    let Some((service, name)) = parse_request(&line) else {
        return refuse(&mut tcp, "bad request line").await;
    };
    let Some(up) = gate.repo(name) else {
        return refuse(&mut tcp, &format!("no repo named {name:?} is declared")).await;
    };
    match Service::from_name(service) {
        Some(Service::UploadPack) => {}
        Some(Service::ReceivePack) => {
            return refuse(
                &mut tcp,
                &format!("push over http://git-gate:9420/{name}.git, where pushes are scanned"),
            )
            .await;
        }
        None => return refuse(&mut tcp, &format!("service {service:?} is not served")).await,
    }
    let mut stream = match ssh::open(&up, Service::UploadPack).await {
        Ok(s) => s,
        Err(e) => return refuse(&mut tcp, &e.to_string()).await,
    };
    tokio::io::copy_bidirectional(&mut tcp, stream.io()).await?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        assert_eq!(
            parse_request(b"git-upload-pack /app.git\0host=x\0"),
            Some(("git-upload-pack", "app"))
        );
        assert_eq!(
            parse_request(b"git-receive-pack /a\0"),
            Some(("git-receive-pack", "a"))
        );
        assert_eq!(parse_request(b"nonsense"), None);
    }
}
