//! Async pkt-line reading and writing over any byte stream (the SSH
//! channel to the upstream).

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _};

use crate::pktline::{self, MAX_PKT_LEN};

/// How long the upstream may stay silent before the gate gives up.
pub const UPSTREAM_IDLE: Duration = Duration::from_mins(5);

/// An owned frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// `0000`.
    Flush,
    /// `0001` or `0002`.
    Special,
    /// A payload.
    Data(Vec<u8>),
}

/// Reads one pkt-line; `Ok(None)` on a clean end of stream before a
/// header. Each read waits at most [`UPSTREAM_IDLE`].
pub async fn read_pkt<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Option<Frame>> {
    let mut header = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = timed(r.read(&mut header[got..])).await?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "stream ended inside a pkt-line header",
            ));
        }
        got += n;
    }
    let len = pktline::parse_len(&header).map_err(invalid)?;
    match len {
        0 => return Ok(Some(Frame::Flush)),
        1 | 2 => return Ok(Some(Frame::Special)),
        3 => return Err(invalid(pktline::ProtocolError::LengthOutOfRange(3))),
        n if n > MAX_PKT_LEN => return Err(invalid(pktline::ProtocolError::LengthOutOfRange(n))),
        _ => {}
    }
    let mut data = vec![0u8; len - 4];
    timed(r.read_exact(&mut data)).await?;
    Ok(Some(Frame::Data(data)))
}

/// Reads data lines up to a flush (an advertisement). A stream that ends
/// first is an error.
pub async fn read_to_flush<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Vec<Vec<u8>>> {
    let mut lines = Vec::new();
    loop {
        match read_pkt(r).await? {
            Some(Frame::Flush) => return Ok(lines),
            Some(Frame::Data(d)) => {
                if lines.len() > 1_000_000 {
                    return Err(io::Error::other("advertisement has too many lines"));
                }
                lines.push(d);
            }
            Some(Frame::Special) => {}
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "upstream closed before the end of its advertisement",
                ));
            }
        }
    }
}

/// Awaits `fut` for at most [`UPSTREAM_IDLE`].
pub async fn timed<T>(fut: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    tokio::time::timeout(UPSTREAM_IDLE, fut)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "upstream idle too long"))?
}

fn invalid(e: pktline::ProtocolError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}
