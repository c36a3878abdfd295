//! Per-connection bookkeeping: activity for the idle reaper, and the
//! request-body progress deadline.
//!
//! A client connection is *idle* when no request is in flight (from its
//! head until its response body is sent) and no byte has moved either way
//! for the idle timeout; the serving loop then shuts
//! it down gracefully. A request body that yields nothing for the body
//! timeout ends with [`BodyTimeout`], which the pipeline answers with 408;
//! a response body that does, with [`UpstreamBodyTimeout`]: a 504 while
//! the response is held, a cut body once it streams.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt as _;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::error::{BodyTimeout, UpstreamBodyTimeout};
use super::upstream::{BoxError, ProxyBody};

/// When a connection last moved a byte, and how many requests it has in
/// flight.
#[derive(Debug)]
pub(crate) struct Activity {
    base: Instant,
    /// Milliseconds after `base` of the last byte moved.
    last: AtomicU64,
    busy: AtomicUsize,
}

/// Marks a request in flight while alive.
pub(crate) struct Busy(Arc<Activity>);

impl Busy {
    /// Keeps the request in flight until its response body has been sent
    /// (or dropped): a long model stream that goes quiet is not idle.
    pub(crate) fn until_sent(
        self,
        response: http::Response<ProxyBody>,
    ) -> http::Response<ProxyBody> {
        response.map(|inner| Guarded { inner, _busy: self }.boxed_unsync())
    }
}

/// A response body that holds its request's [`Busy`].
struct Guarded {
    inner: ProxyBody,
    _busy: Busy,
}

impl Body for Guarded {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Activity {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            base: Instant::now(),
            last: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
        })
    }

    fn touch(&self) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }

    /// A request starts; it counts until the guard drops.
    pub(crate) fn busy(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::Relaxed);
        Busy(Arc::clone(self))
    }

    /// Resolves once the connection has been idle for `limit`.
    ///
    /// Cancel-safe: it holds no state but the timer.
    pub(crate) async fn idle(&self, limit: Duration) {
        loop {
            let last = self.base + Duration::from_millis(self.last.load(Ordering::Relaxed));
            let due = last + limit;
            if self.busy.load(Ordering::Relaxed) == 0 && Instant::now() >= due {
                return;
            }
            let wake = if self.busy.load(Ordering::Relaxed) == 0 {
                due
            } else {
                Instant::now() + limit
            };
            tokio::time::sleep_until(wake).await;
        }
    }
}

/// An I/O stream that records activity.
pub(crate) struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T> Watched<T> {
    pub(crate) fn new(inner: T, activity: Arc<Activity>) -> Self {
        Self { inner, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A body that fails when its reader has waited `limit` for the next frame:
/// with [`BodyTimeout`] for a request body (the client stalled), with
/// [`UpstreamBodyTimeout`] for a response body (the upstream stalled).
///
/// The clock runs only while the reader waits: from the first poll that
/// finds nothing after a frame, until the next frame. A body nobody reads
/// yet (the upstream still connecting) or whose reader is slow (a client
/// applying back-pressure) is not late.
pub(crate) struct Progress<B> {
    inner: B,
    limit: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    /// Whether the last poll found nothing (the clock is running).
    waiting: bool,
    upstream: bool,
}

impl<B> Progress<B> {
    /// A request body's deadline.
    pub(crate) fn new(inner: B, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            timer: None,
            waiting: false,
            upstream: false,
        }
    }

    /// A response body's deadline.
    pub(crate) fn upstream(inner: B, limit: Duration) -> Self {
        Self {
            upstream: true,
            ..Self::new(inner, limit)
        }
    }
}

impl<B> Body for Progress<B>
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
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.waiting = false;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let due = Instant::now() + this.limit;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
                if !this.waiting {
                    timer.as_mut().reset(due);
                    this.waiting = true;
                }
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) if this.upstream => {
                        Poll::Ready(Some(Err(Box::new(UpstreamBodyTimeout(this.limit)))))
                    }
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout(this.limit))))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
