//! Bodies on their way through the proxy.
//!
//! - [`ScannedBody`] streams through a [`StreamScanner`]: only released
//!   bytes are yielded, trailers are scanned before they are, and a hit ends
//!   the body with an error, so the peer never receives a byte of what was
//!   detected.
//! - [`DecodedBody`] undoes a response's `Content-Encoding` (gzip, deflate,
//!   br) so the scanner reads what the agent will read, bounded in size and
//!   in decompression ratio.

use std::io::Write as _;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use super::upstream::BoxError;
use crate::dlp::{Hit, StreamScanner};

/// Where a scanning body records the hit that stopped it.
pub(crate) type HitSlot = Arc<Mutex<Option<Hit>>>;

/// The error a scanning body ends with on a hit.
#[derive(Debug, thiserror::Error)]
#[error("blocked by DLP: {0}")]
pub(crate) struct Blocked(pub(crate) Hit);

/// Scans each trailer field as `name: value`, as request headers are.
pub(crate) fn scan_trailers(scanner: &StreamScanner, trailers: &HeaderMap) -> Option<Hit> {
    trailers.iter().find_map(|(name, value)| {
        let mut field = Vec::with_capacity(name.as_str().len() + 2 + value.len());
        field.extend_from_slice(name.as_str().as_bytes());
        field.extend_from_slice(b": ");
        field.extend_from_slice(value.as_bytes());
        scanner.scan_field(&field)
    })
}

/// Wraps `inner`, releasing only what `scanner` clears.
pub(crate) struct ScannedBody<B> {
    inner: B,
    scanner: StreamScanner,
    out: Vec<u8>,
    /// Bytes already cleared before this body was built (inbound prefix).
    prefix: Option<Bytes>,
    trailers: Option<HeaderMap>,
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
        self.out.clear();
        self.trailers = None;
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
                // Trailers are fields like headers: scanned whole, before
                // any of them (or the body's held-back tail) is released.
                if let Some(hit) = this
                    .trailers
                    .as_ref()
                    .and_then(|t| scan_trailers(&this.scanner, t))
                {
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

/// A held body and its trailers, of undeclared length: a body that ends in
/// trailers must go chunked on HTTP/1.1, which an exact size hint would
/// prevent (hyper then sends a `Content-Length` and drops the trailers).
pub(crate) struct Trailed {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl Trailed {
    pub(crate) fn new(data: Bytes, trailers: HeaderMap) -> Self {
        Self {
            data: (!data.is_empty()).then_some(data),
            trailers: Some(trailers),
        }
    }
}

impl Body for Trailed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(d) = this.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(d))));
        }
        Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }
}

/// A `Content-Encoding` the proxy can undo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Coding {
    /// `gzip` / `x-gzip` (RFC 1952), also multi-member.
    Gzip,
    /// `deflate`: zlib (RFC 1950) as specified, or raw deflate (RFC 1951)
    /// as some servers send it; told apart by the first two bytes.
    Deflate,
    /// `br` (RFC 7932).
    Brotli,
}

/// The coding a message's `Content-Encoding` names: `Ok(None)` for none or
/// `identity`, `Err(())` for anything the proxy cannot decode (`zstd`,
/// `compress`, unknown names, several codings stacked), which must then be
/// refused rather than passed unscanned.
pub(crate) fn content_coding(headers: &HeaderMap) -> Result<Option<Coding>, ()> {
    let mut found = None;
    for value in headers.get_all(http::header::CONTENT_ENCODING) {
        let value = value.to_str().map_err(|_| ())?;
        for token in value.split(',') {
            let coding = match token.trim().to_ascii_lowercase().as_str() {
                "" | "identity" => continue,
                "gzip" | "x-gzip" => Coding::Gzip,
                "deflate" => Coding::Deflate,
                "br" => Coding::Brotli,
                _ => return Err(()),
            };
            if found.replace(coding).is_some() {
                return Err(());
            }
        }
    }
    Ok(found)
}

/// Most decoded bytes one response may inflate to.
pub(crate) const MAX_DECODED: u64 = 512 * 1024 * 1024;
/// Most decoded bytes per encoded byte, beyond [`RATIO_SLACK`]: ordinary
/// text and JSON compress 3–20×; a decompression bomb reaches 1000×.
pub(crate) const MAX_RATIO: u64 = 200;
/// Decoded bytes always allowed whatever the ratio, so a small, very
/// repetitive document still passes.
pub(crate) const RATIO_SLACK: u64 = 1024 * 1024;
/// Encoded bytes handed to the decoder at a time: the ratio is checked
/// after each, so one step inflates to at most about 1 MiB.
const STEP: usize = 1024;

/// Why a compressed body could not be decoded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DecodeError {
    /// The encoded bytes are not valid for their coding.
    #[error("the response's {coding:?} encoding is corrupt: {source}")]
    Corrupt {
        /// The coding.
        coding: Coding,
        /// The decoder's error.
        source: std::io::Error,
    },
    /// The body inflates past [`MAX_DECODED`] or [`MAX_RATIO`].
    #[error("the response inflates past the decompression limits ({decoded} bytes from {encoded})")]
    Bomb {
        /// Decoded bytes so far.
        decoded: u64,
        /// Encoded bytes so far.
        encoded: u64,
    },
}

enum Inflater {
    /// `deflate` before its first two bytes show which framing it uses.
    Sniffing(Vec<u8>),
    Gzip(flate2::write::MultiGzDecoder<Vec<u8>>),
    Zlib(flate2::write::ZlibDecoder<Vec<u8>>),
    Raw(flate2::write::DeflateDecoder<Vec<u8>>),
    Brotli(Box<brotli_decompressor::DecompressorWriter<Vec<u8>>>),
}

impl Inflater {
    fn new(coding: Coding) -> Self {
        match coding {
            Coding::Gzip => Self::Gzip(flate2::write::MultiGzDecoder::new(Vec::new())),
            Coding::Deflate => Self::Sniffing(Vec::new()),
            Coding::Brotli => Self::Brotli(Box::new(brotli_decompressor::DecompressorWriter::new(
                Vec::new(),
                16 * 1024,
            ))),
        }
    }

    fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        if let Self::Sniffing(head) = self {
            head.extend_from_slice(data);
            if head.len() < 2 {
                return Ok(());
            }
            let head = std::mem::take(head);
            // A zlib header: CM = 8 and the 16-bit header a multiple of 31.
            let zlib =
                head[0] & 0x0f == 8 && (u16::from(head[0]) << 8 | u16::from(head[1])) % 31 == 0;
            *self = if zlib {
                Self::Zlib(flate2::write::ZlibDecoder::new(Vec::new()))
            } else {
                Self::Raw(flate2::write::DeflateDecoder::new(Vec::new()))
            };
            return self.write(&head);
        }
        match self {
            Self::Sniffing(_) => Ok(()),
            Self::Gzip(d) => d.write_all(data),
            Self::Zlib(d) => d.write_all(data),
            Self::Raw(d) => d.write_all(data),
            Self::Brotli(d) => d.write_all(data),
        }
    }

    fn finish(&mut self) -> std::io::Result<()> {
        match self {
            Self::Sniffing(head) if head.is_empty() => Ok(()),
            Self::Sniffing(_) => Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "truncated deflate stream",
            )),
            Self::Gzip(d) => d.try_finish(),
            Self::Zlib(d) => d.try_finish(),
            Self::Raw(d) => d.try_finish(),
            Self::Brotli(d) => d.close(),
        }
    }

    fn output(&mut self) -> Vec<u8> {
        match self {
            Self::Sniffing(_) => Vec::new(),
            Self::Gzip(d) => std::mem::take(d.get_mut()),
            Self::Zlib(d) => std::mem::take(d.get_mut()),
            Self::Raw(d) => std::mem::take(d.get_mut()),
            Self::Brotli(d) => std::mem::take(d.get_mut()),
        }
    }
}

/// A response body with its `Content-Encoding` undone, bounded: it ends
/// with a [`DecodeError`] as soon as the decoded size passes
/// [`MAX_DECODED`] or `MAX_RATIO × encoded + RATIO_SLACK`.
pub(crate) struct DecodedBody<B> {
    inner: B,
    coding: Coding,
    inflater: Inflater,
    encoded: u64,
    decoded: u64,
    trailers: Option<HeaderMap>,
    done: bool,
}

impl<B> DecodedBody<B> {
    pub(crate) fn new(inner: B, coding: Coding) -> Self {
        Self {
            inner,
            coding,
            inflater: Inflater::new(coding),
            encoded: 0,
            decoded: 0,
            trailers: None,
            done: false,
        }
    }

    fn corrupt(&mut self, source: std::io::Error) -> BoxError {
        self.done = true;
        self.trailers = None;
        Box::new(DecodeError::Corrupt {
            coding: self.coding,
            source,
        })
    }

    /// Decodes `data` a step at a time, checking the limits after each.
    fn inflate(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), BoxError> {
        for piece in data.chunks(STEP) {
            self.encoded += piece.len() as u64;
            if let Err(e) = self.inflater.write(piece) {
                return Err(self.corrupt(e));
            }
            self.collect(out)?;
        }
        Ok(())
    }

    fn collect(&mut self, out: &mut Vec<u8>) -> Result<(), BoxError> {
        let produced = self.inflater.output();
        self.decoded += produced.len() as u64;
        let allowed = MAX_DECODED.min(self.encoded.saturating_mul(MAX_RATIO) + RATIO_SLACK);
        if self.decoded > allowed {
            self.done = true;
            self.trailers = None;
            return Err(Box::new(DecodeError::Bomb {
                decoded: self.decoded,
                encoded: self.encoded,
            }));
        }
        if out.is_empty() {
            *out = produced;
        } else {
            out.extend_from_slice(&produced);
        }
        Ok(())
    }

    fn end(&mut self, out: &mut Vec<u8>) -> Result<(), BoxError> {
        self.done = true;
        // An empty body (HEAD, 204, 304) is no stream at all, not a
        // truncated one.
        if self.encoded == 0 {
            return Ok(());
        }
        if let Err(e) = self.inflater.finish() {
            return Err(self.corrupt(e));
        }
        self.collect(out)
    }
}

impl<B> Body for DecodedBody<B>
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
        loop {
            if this.done {
                return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
            }
            let mut out = Vec::new();
            let step = match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e.into())));
                }
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => this.inflate(&data, &mut out),
                    Err(frame) => {
                        this.trailers = frame.into_trailers().ok();
                        this.end(&mut out)
                    }
                },
                Poll::Ready(None) => this.end(&mut out),
            };
            if let Err(e) = step {
                return Poll::Ready(Some(Err(e)));
            }
            if !out.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.trailers.is_none()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::io::Write as _;

    use http_body_util::{BodyExt, Full};

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    async fn decode(coding: Coding, encoded: Vec<u8>) -> Result<Vec<u8>, BoxError> {
        let body = DecodedBody::new(
            Full::new(Bytes::from(encoded)).map_err(|never| match never {}),
            coding,
        );
        body.collect().await.map(|c| c.to_bytes().to_vec())
    }

    #[test]
    fn content_coding_names() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(http::header::CONTENT_ENCODING, v.parse().unwrap());
            content_coding(&m)
        };
        assert_eq!(content_coding(&HeaderMap::new()), Ok(None));
        assert_eq!(h("identity"), Ok(None));
        assert_eq!(h("GZIP"), Ok(Some(Coding::Gzip)));
        assert_eq!(h("x-gzip"), Ok(Some(Coding::Gzip)));
        assert_eq!(h("deflate"), Ok(Some(Coding::Deflate)));
        assert_eq!(h(" br "), Ok(Some(Coding::Brotli)));
        assert_eq!(h("zstd"), Err(()));
        assert_eq!(h("gzip, br"), Err(()));
        assert_eq!(h("compress"), Err(()));
    }

    #[tokio::test]
    async fn gzip_and_both_deflate_framings_decode() {
        let text = b"hello, hello, hello world".repeat(100);
        assert_eq!(decode(Coding::Gzip, gzip(&text)).await.unwrap(), text);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&text).unwrap();
        assert_eq!(
            decode(Coding::Deflate, z.finish().unwrap()).await.unwrap(),
            text
        );
        let mut r = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        r.write_all(&text).unwrap();
        assert_eq!(
            decode(Coding::Deflate, r.finish().unwrap()).await.unwrap(),
            text
        );
        // Two gzip members, as concatenating servers send them.
        let mut two = gzip(b"first ");
        two.extend(gzip(b"second"));
        assert_eq!(decode(Coding::Gzip, two).await.unwrap(), b"first second");
        assert!(
            decode(Coding::Gzip, b"not gzip at all".to_vec())
                .await
                .is_err()
        );
    }

    /// A body of these frames, in order.
    struct Frames(std::collections::VecDeque<Bytes>);

    impl Body for Frames {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.get_mut().0.pop_front().map(|b| Ok(Frame::data(b))))
        }
    }

    fn encode(coding: u8, data: &[u8]) -> (Coding, Vec<u8>) {
        match coding % 3 {
            0 => (Coding::Gzip, gzip(data)),
            1 => {
                let mut z =
                    flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
                z.write_all(data).unwrap();
                (Coding::Deflate, z.finish().unwrap())
            }
            _ => {
                let mut r =
                    flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
                r.write_all(data).unwrap();
                (Coding::Deflate, r.finish().unwrap())
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 128,
            failure_persistence: None,
            ..proptest::prelude::ProptestConfig::default()
        })]

        /// Decoding over any chunking of the encoded bytes gives the
        /// original, as one-shot decoding does.
        #[test]
        fn decoding_does_not_depend_on_the_chunking(
            words in proptest::collection::vec("[a-z ]{0,12}", 0..200),
            cuts in proptest::collection::vec(1usize..64, 1..20),
            coding in 0u8..3,
        ) {
            let text = words.concat().into_bytes();
            let (coding, encoded) = encode(coding, &text);
            let mut frames = std::collections::VecDeque::new();
            let (mut at, mut i) = (0, 0);
            while at < encoded.len() {
                let n = cuts[i % cuts.len()].min(encoded.len() - at);
                frames.push_back(Bytes::copy_from_slice(&encoded[at..at + n]));
                at += n;
                i += 1;
            }
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let got = rt
                .block_on(DecodedBody::new(Frames(frames), coding).collect())
                .map(|c| c.to_bytes().to_vec());
            proptest::prop_assert_eq!(got.ok(), Some(text));
        }
    }

    #[tokio::test]
    async fn a_decompression_bomb_stops_at_the_ratio_limit() {
        let bomb = gzip(&vec![0u8; 32 * 1024 * 1024]);
        let err = decode(Coding::Gzip, bomb).await.unwrap_err();
        assert!(
            err.downcast_ref::<DecodeError>()
                .is_some_and(|e| matches!(e, DecodeError::Bomb { .. })),
            "{err}"
        );
        // Just under the slack passes whatever the ratio.
        let small = vec![b'a'; usize::try_from(RATIO_SLACK).unwrap() / 2];
        assert_eq!(decode(Coding::Gzip, gzip(&small)).await.unwrap(), small);
    }
}
