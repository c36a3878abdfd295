//! A body that streams through a [`StreamScanner`]: only released bytes
//! are yielded, and a hit ends the body with an error, so the peer never
//! receives a byte of what was detected.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::upstream::BoxError;
use crate::dlp::{Hit, StreamScanner};

/// Where a scanning body records the hit that stopped it.
pub(crate) type HitSlot = Arc<Mutex<Option<Hit>>>;

/// The error a scanning body ends with on a hit.
#[derive(Debug, thiserror::Error)]
#[error("blocked by DLP: {0}")]
pub(crate) struct Blocked(pub(crate) Hit);

/// Wraps `inner`, releasing only what `scanner` clears.
pub(crate) struct ScannedBody<B> {
    inner: B,
    scanner: StreamScanner,
    out: Vec<u8>,
    /// Bytes already cleared before this body was built (inbound prefix).
    prefix: Option<Bytes>,
    trailers: Option<http::HeaderMap>,
    slot: HitSlot,
    done: bool,
    /// The exact length, when the original body declared one: the scanner
    /// either releases every byte or ends the body with an error.
    len: Option<u64>,
}

impl<B> ScannedBody<B> {
    pub(crate) fn new(inner: B, scanner: StreamScanner, slot: HitSlot) -> Self {
        Self {
            inner,
            scanner,
            out: Vec::new(),
            prefix: None,
            trailers: None,
            slot,
            done: false,
            len: None,
        }
    }

    /// Declares the body's exact length (from the original message).
    pub(crate) fn with_len(mut self, len: Option<u64>) -> Self {
        self.len = len;
        self
    }

    /// A body that first yields `prefix` (already scanned and cleared).
    pub(crate) fn with_prefix(mut self, prefix: Bytes) -> Self {
        if !prefix.is_empty() {
            self.prefix = Some(prefix);
        }
        self
    }

    fn blocked(&mut self, hit: Hit) -> BoxError {
        if let Ok(mut slot) = self.slot.lock() {
            *slot = Some(hit.clone());
        }
        self.done = true;
        Box::new(Blocked(hit))
    }

    fn take_out(&mut self) -> Option<Bytes> {
        (!self.out.is_empty()).then(|| Bytes::from(std::mem::take(&mut self.out)))
    }
}

impl<B> Body for ScannedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(p) = this.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(p))));
        }
        loop {
            if let Some(b) = this.take_out() {
                return Poll::Ready(Some(Ok(Frame::data(b))));
            }
            if this.done {
                return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e.into())));
                }
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        if let Err(hit) = this.scanner.feed(&data, &mut this.out) {
                            return Poll::Ready(Some(Err(this.blocked(hit))));
                        }
                    }
                    Err(frame) => {
                        // Trailers end the body: hold them until the held-back
                        // bytes are released.
                        if let Ok(t) = frame.into_trailers() {
                            this.trailers = Some(t);
                        }
                    }
                },
                Poll::Ready(None) => {
                    if let Err(hit) = this.scanner.finish(&mut this.out) {
                        return Poll::Ready(Some(Err(this.blocked(hit))));
                    }
                    this.done = true;
                }
            }
            if this.trailers.is_some() && !this.done {
                if let Err(hit) = this.scanner.finish(&mut this.out) {
                    return Poll::Ready(Some(Err(this.blocked(hit))));
                }
                this.done = true;
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.out.is_empty() && self.prefix.is_none() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        self.len
            .map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}
