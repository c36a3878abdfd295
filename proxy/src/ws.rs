//! An incremental RFC 6455 frame decoder for the WebSocket pass-through. No
//! I/O.
//!
//! After the policy check admits an upgrade, the proxy relays the two byte
//! streams. It feeds the client→server stream to a [`FrameDecoder`], which
//! cuts it into [`WsEvent`]s: each complete data message, with its unmasked
//! payload for the DLP engine to scan and its frames exactly as received for
//! forwarding unchanged, and each control frame.
//!
//! # What is buffered
//!
//! The decoder keeps only the message and the frame in progress: the raw
//! frames and unmasked payload of an unfinished data message (its payload is
//! at most `max_message` bytes, its frame headers at most `max_message` +
//! [`MAX_HEADER_LEN`] bytes), one partial frame header, and one partial
//! control frame (at most [`MAX_HEADER_LEN`] + 125 bytes). A frame that would
//! take a message past `max_message` is rejected from its header, before any
//! of its payload arrives: the proxy closes the connection rather than
//! forward data it has not scanned.
//!
//! # Order of events
//!
//! Events are appended in the order they complete. A control frame received
//! between the fragments of a message (RFC 6455 §5.4) completes first, so
//! its [`WsEvent::Control`] comes before the [`WsEvent::Message`] whose
//! `raw` holds the fragments around it. Forwarding events in order thus
//! moves such a control frame ahead of the message; the fragmentation of the
//! message itself is never changed.
//!
//! # Deliberately not handled
//!
//! - Extensions: no RSV bit may be set. The proxy strips
//!   `Sec-WebSocket-Extensions` from the handshake, so a compliant client
//!   never negotiates permessage-deflate.
//! - UTF-8 validity of text messages and the contents of close frames
//!   (status code, reason): the endpoints check those, and the DLP engine
//!   scans bytes either way.
//! - Frames after a close frame are decoded like any other; ending the
//!   relay after a close is the caller's decision.
//!
//! Every error is deterministic in the bytes of the stream: any split of the
//! same stream into [`FrameDecoder::push`] calls yields the same events and
//! the same error.

use std::mem;

/// The longest frame header: 2 fixed bytes, an 8-byte extended payload
/// length and a 4-byte masking key.
pub const MAX_HEADER_LEN: usize = 14;

/// The largest control frame payload (RFC 6455 §5.5).
const MAX_CONTROL_PAYLOAD: u8 = 125;

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// One decoded unit, in wire order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsEvent {
    /// A complete data message (text or binary, all fragments): `raw` is
    /// every byte of its frames exactly as received (to forward unchanged),
    /// `payload` the unmasked, concatenated payload (to scan).
    Message {
        /// The message's frames as received, headers and masked payloads,
        /// without any control frame received between them.
        raw: Vec<u8>,
        /// The unmasked payload of all fragments, concatenated.
        payload: Vec<u8>,
        /// Whether the first frame's opcode was text (`0x1`) rather than
        /// binary (`0x2`).
        text: bool,
    },
    /// A control frame (ping, pong, close), possibly received between
    /// fragments of a message: `raw` as received, `payload` unmasked.
    Control {
        /// The frame as received.
        raw: Vec<u8>,
        /// Its unmasked payload (at most 125 bytes).
        payload: Vec<u8>,
        /// `0x8` close, `0x9` ping or `0xA` pong.
        opcode: u8,
    },
}

/// Why a stream is not an acceptable RFC 6455 frame sequence. Every variant
/// names the stream offset of the first byte of the frame at fault.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum WsError {
    /// An RSV bit is set, but no extension is negotiated (the proxy strips
    /// `Sec-WebSocket-Extensions`).
    #[error(
        "WebSocket frame at byte {offset}: reserved bits {bits:#04x} set, but no extension is negotiated"
    )]
    ReservedBits {
        /// Stream offset of the frame's first byte.
        offset: u64,
        /// The RSV1..RSV3 bits of the first header byte (`0x70` mask).
        bits: u8,
    },
    /// The opcode is one RFC 6455 reserves (`0x3`–`0x7`, `0xB`–`0xF`).
    #[error("WebSocket frame at byte {offset}: reserved opcode {opcode:#x}")]
    UnknownOpcode {
        /// Stream offset of the frame's first byte.
        offset: u64,
        /// The opcode.
        opcode: u8,
    },
    /// A control frame has FIN clear; control frames cannot be fragmented
    /// (RFC 6455 §5.5).
    #[error(
        "WebSocket control frame (opcode {opcode:#x}) at byte {offset} has FIN clear; control frames cannot be fragmented"
    )]
    FragmentedControl {
        /// Stream offset of the frame's first byte.
        offset: u64,
        /// The control opcode.
        opcode: u8,
    },
    /// A continuation frame arrived with no fragmented message in progress.
    #[error("WebSocket continuation frame at byte {offset} with no fragmented message in progress")]
    ContinuationWithoutStart {
        /// Stream offset of the frame's first byte.
        offset: u64,
    },
    /// A text or binary frame arrived while a fragmented message was still
    /// waiting for its final continuation frame.
    #[error(
        "WebSocket data frame (opcode {opcode:#x}) at byte {offset} starts a new message before the fragmented message in progress ended"
    )]
    MessageInProgress {
        /// Stream offset of the frame's first byte.
        offset: u64,
        /// The data opcode (`0x1` or `0x2`).
        opcode: u8,
    },
    /// A frame from the client is not masked, and the decoder was built to
    /// require masking (RFC 6455 §5.1).
    #[error("WebSocket frame at byte {offset} from the client is not masked (RFC 6455 §5.1)")]
    Unmasked {
        /// Stream offset of the frame's first byte.
        offset: u64,
    },
    /// A control frame declares an extended (16- or 64-bit) payload length;
    /// control payloads are at most 125 bytes (RFC 6455 §5.5).
    #[error(
        "WebSocket control frame (opcode {opcode:#x}) at byte {offset} declares a {bits}-bit payload length; control payloads are at most 125 bytes"
    )]
    ControlTooLong {
        /// Stream offset of the frame's first byte.
        offset: u64,
        /// The control opcode.
        opcode: u8,
        /// The width of the declared extended length: 16 or 64.
        bits: u8,
    },
    /// An extended payload length is not the minimal encoding: a 16-bit
    /// length below 126 or a 64-bit length below 65536 (RFC 6455 §5.2).
    #[error(
        "WebSocket frame at byte {offset}: payload length {len} is encoded in {bits} bits; RFC 6455 §5.2 requires the minimal encoding"
    )]
    NonMinimalLength {
        /// Stream offset of the frame's first byte.
        offset: u64,
        /// The declared length.
        len: u64,
        /// The width it was encoded in: 16 or 64.
        bits: u8,
    },
    /// A 64-bit payload length has its most significant bit set (RFC 6455
    /// §5.2).
    #[error(
        "WebSocket frame at byte {offset}: 64-bit payload length {len:#x} has its most significant bit set"
    )]
    LengthOverflow {
        /// Stream offset of the frame's first byte.
        offset: u64,
        /// The declared length.
        len: u64,
    },
    /// The frame would take its message's payload past the decoder's limit.
    /// Detected from the frame header, before any of its payload is read.
    #[error(
        "WebSocket frame at byte {offset} takes its message to {size} payload bytes; the limit is {limit}"
    )]
    MessageTooLarge {
        /// Stream offset of the frame's first byte.
        offset: u64,
        /// The message's payload size including this frame (saturating).
        size: u64,
        /// The decoder's `max_message`.
        limit: usize,
    },
    /// The frame headers of one message would exceed `max_message` +
    /// [`MAX_HEADER_LEN`] bytes: a message split into so many (typically
    /// empty) fragments that buffering its frames is not bounded by its
    /// payload.
    #[error(
        "WebSocket frame at byte {offset} takes its message's frame headers to {header_bytes} bytes; at most {limit} are buffered (too many fragments)"
    )]
    TooManyFragments {
        /// Stream offset of the frame's first byte.
        offset: u64,
        /// The message's header bytes including this frame's (saturating).
        header_bytes: usize,
        /// `max_message` + [`MAX_HEADER_LEN`] (saturating).
        limit: usize,
    },
}

impl WsError {
    /// The stream offset of the first byte of the frame at fault.
    #[must_use]
    pub fn offset(&self) -> u64 {
        match *self {
            Self::ReservedBits { offset, .. }
            | Self::UnknownOpcode { offset, .. }
            | Self::FragmentedControl { offset, .. }
            | Self::ContinuationWithoutStart { offset }
            | Self::MessageInProgress { offset, .. }
            | Self::Unmasked { offset }
            | Self::ControlTooLong { offset, .. }
            | Self::NonMinimalLength { offset, .. }
            | Self::LengthOverflow { offset, .. }
            | Self::MessageTooLarge { offset, .. }
            | Self::TooManyFragments { offset, .. } => offset,
        }
    }
}

/// The frame whose payload is being read.
#[derive(Debug)]
struct Frame {
    opcode: u8,
    fin: bool,
    /// The masking key, rotated so that `mask[0]` applies to the next
    /// payload byte.
    mask: Option<[u8; 4]>,
    /// Payload bytes still to read.
    remaining: u64,
}

/// The data message in progress.
#[derive(Debug, Default)]
struct Message {
    raw: Vec<u8>,
    payload: Vec<u8>,
    text: bool,
    /// Header bytes in `raw`.
    header_bytes: usize,
}

/// Decodes one direction of a WebSocket connection, incrementally.
///
/// Feed it the stream in chunks of any size with [`push`](Self::push); it
/// appends every [`WsEvent`] the chunk completes. See the module
/// documentation for what it buffers and the order of events.
#[derive(Debug)]
pub struct FrameDecoder {
    require_mask: bool,
    max_message: usize,
    /// Set by the first error; returned by every later call.
    failed: Option<WsError>,
    /// Bytes consumed so far.
    offset: u64,
    /// Stream offset of the current frame's first byte.
    frame_start: u64,
    header: [u8; MAX_HEADER_LEN],
    header_len: usize,
    /// `Some` once the current frame's header is complete.
    frame: Option<Frame>,
    /// Whether a data message is in progress (its first frame's header has
    /// been read, its final frame not yet completed).
    in_message: bool,
    /// The data message in progress; empty when `in_message` is false.
    message: Message,
    /// The control frame being read: raw bytes and unmasked payload.
    control_raw: Vec<u8>,
    control_payload: Vec<u8>,
}

impl FrameDecoder {
    /// `require_mask`: frames from a client must be masked (RFC 6455 §5.1).
    /// `max_message`: the largest message (sum of fragment payloads)
    /// accepted; bigger is an error (the proxy closes rather than forward
    /// unscanned data).
    ///
    /// With `require_mask` false (the server→client direction), masked and
    /// unmasked frames are both accepted and unmasked as needed.
    #[must_use]
    pub fn new(require_mask: bool, max_message: usize) -> Self {
        Self {
            require_mask,
            max_message,
            failed: None,
            offset: 0,
            frame_start: 0,
            header: [0; MAX_HEADER_LEN],
            header_len: 0,
            frame: None,
            in_message: false,
            message: Message::default(),
            control_raw: Vec::new(),
            control_payload: Vec::new(),
        }
    }

    /// Feeds bytes of the stream (any split, down to one byte at a time);
    /// appends every event completed by them to `out`. After an error the
    /// decoder stays failed (every later call returns the same error).
    ///
    /// Events completed by the bytes before the one at fault are appended
    /// even when the call returns an error, so every split of a stream
    /// yields the same events.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<WsEvent>) -> Result<(), WsError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        self.run(input, out).inspect_err(|error| {
            self.failed = Some(error.clone());
            // Nothing buffered is ever needed again.
            self.header_len = 0;
            self.frame = None;
            self.in_message = false;
            self.message = Message::default();
            self.control_raw = Vec::new();
            self.control_payload = Vec::new();
        })
    }

    fn run(&mut self, mut input: &[u8], out: &mut Vec<WsEvent>) -> Result<(), WsError> {
        loop {
            let Some(frame) = &mut self.frame else {
                let Some((&byte, rest)) = input.split_first() else {
                    return Ok(());
                };
                input = rest;
                self.header_byte(byte)?;
                continue;
            };
            if frame.remaining == 0 {
                self.finish_frame(out);
                continue;
            }
            if input.is_empty() {
                return Ok(());
            }
            // `remaining` may exceed usize only where usize is narrower than
            // u64; then the whole input fits anyway.
            let n = usize::try_from(frame.remaining).map_or(input.len(), |r| r.min(input.len()));
            let (chunk, rest) = input.split_at(n);
            input = rest;
            frame.remaining -= n as u64;
            self.offset += n as u64;
            let (raw, payload) = if is_control(frame.opcode) {
                (&mut self.control_raw, &mut self.control_payload)
            } else {
                (&mut self.message.raw, &mut self.message.payload)
            };
            raw.extend_from_slice(chunk);
            match &mut frame.mask {
                None => payload.extend_from_slice(chunk),
                Some(mask) => {
                    payload.extend(
                        chunk
                            .iter()
                            .zip(mask.iter().cycle())
                            .map(|(byte, key)| byte ^ key),
                    );
                    mask.rotate_left(n % 4);
                }
            }
        }
    }

    /// Takes one header byte, validating each field as soon as it is known
    /// (so the same stream always fails at the same byte), and starts the
    /// frame once its header is complete.
    fn header_byte(&mut self, byte: u8) -> Result<(), WsError> {
        if self.header_len == 0 {
            self.frame_start = self.offset;
        }
        self.header[self.header_len] = byte;
        self.header_len += 1;
        self.offset += 1;
        let offset = self.frame_start;
        let opcode = self.header[0] & 0x0F;
        if self.header_len == 1 {
            return self.check_first_byte(byte);
        }
        let len7 = self.header[1] & 0x7F;
        let masked = self.header[1] & 0x80 != 0;
        if self.header_len == 2 {
            if self.require_mask && !masked {
                return Err(WsError::Unmasked { offset });
            }
            if is_control(opcode) && len7 > MAX_CONTROL_PAYLOAD {
                return Err(WsError::ControlTooLong {
                    offset,
                    opcode,
                    bits: if len7 == 126 { 16 } else { 64 },
                });
            }
        }
        let ext_len = match len7 {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let len_end = 2 + ext_len;
        let header_total = len_end + if masked { 4 } else { 0 };
        if self.header_len == len_end {
            let len = self.check_length(len7, &self.header[2..len_end])?;
            self.check_budget(opcode, len, header_total)?;
        }
        if self.header_len < header_total {
            return Ok(());
        }

        // The header is complete.
        let len = match len7 {
            126 => u64::from(u16::from_be_bytes([self.header[2], self.header[3]])),
            127 => u64::from_be_bytes(array(&self.header[2..10])),
            short => u64::from(short),
        };
        let mask = masked.then(|| array(&self.header[len_end..header_total]));
        let header = &self.header[..header_total];
        if is_control(opcode) {
            self.control_raw.clear();
            self.control_payload.clear();
            self.control_raw.extend_from_slice(header);
        } else {
            if !self.in_message {
                self.in_message = true;
                self.message.text = opcode == OP_TEXT;
            }
            self.message.raw.extend_from_slice(header);
            self.message.header_bytes += header_total;
        }
        self.frame = Some(Frame {
            opcode,
            fin: self.header[0] & 0x80 != 0,
            mask,
            remaining: len,
        });
        self.header_len = 0;
        Ok(())
    }

    fn check_first_byte(&self, byte: u8) -> Result<(), WsError> {
        let offset = self.frame_start;
        let fin = byte & 0x80 != 0;
        let bits = byte & 0x70;
        let opcode = byte & 0x0F;
        if bits != 0 {
            return Err(WsError::ReservedBits { offset, bits });
        }
        match opcode {
            OP_CONTINUATION if !self.in_message => {
                Err(WsError::ContinuationWithoutStart { offset })
            }
            OP_TEXT | OP_BINARY if self.in_message => {
                Err(WsError::MessageInProgress { offset, opcode })
            }
            OP_CLOSE | OP_PING | OP_PONG if !fin => {
                Err(WsError::FragmentedControl { offset, opcode })
            }
            OP_CONTINUATION | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG => Ok(()),
            _ => Err(WsError::UnknownOpcode { offset, opcode }),
        }
    }

    /// Decodes the payload length from its 7-bit field and extended bytes,
    /// rejecting non-minimal and over-long encodings.
    fn check_length(&self, len7: u8, ext: &[u8]) -> Result<u64, WsError> {
        let offset = self.frame_start;
        match len7 {
            126 => {
                let len = u64::from(u16::from_be_bytes(array(ext)));
                if len < 126 {
                    return Err(WsError::NonMinimalLength {
                        offset,
                        len,
                        bits: 16,
                    });
                }
                Ok(len)
            }
            127 => {
                let len = u64::from_be_bytes(array(ext));
                if len >> 63 != 0 {
                    return Err(WsError::LengthOverflow { offset, len });
                }
                if u16::try_from(len).is_ok() {
                    return Err(WsError::NonMinimalLength {
                        offset,
                        len,
                        bits: 64,
                    });
                }
                Ok(len)
            }
            short => Ok(u64::from(short)),
        }
    }

    /// Rejects a data frame that would take its message past `max_message`
    /// payload bytes, or its frame headers past their budget.
    fn check_budget(&self, opcode: u8, len: u64, header_len: usize) -> Result<(), WsError> {
        if is_control(opcode) {
            return Ok(());
        }
        let offset = self.frame_start;
        // A text or binary frame starts a new message; `check_first_byte`
        // made sure none is in progress.
        let (so_far, headers) = if opcode == OP_CONTINUATION {
            (self.message.payload.len(), self.message.header_bytes)
        } else {
            (0, 0)
        };
        // Every accepted frame was checked, so `so_far <= max_message`.
        let room = self.max_message.saturating_sub(so_far) as u64;
        if len > room {
            return Err(WsError::MessageTooLarge {
                offset,
                size: (so_far as u64).saturating_add(len),
                limit: self.max_message,
            });
        }
        let limit = self.max_message.saturating_add(MAX_HEADER_LEN);
        let header_bytes = headers.saturating_add(header_len);
        if header_bytes > limit {
            return Err(WsError::TooManyFragments {
                offset,
                header_bytes,
                limit,
            });
        }
        Ok(())
    }

    /// Completes the frame whose payload has been read, emitting its event
    /// if it ends a message or is a control frame.
    fn finish_frame(&mut self, out: &mut Vec<WsEvent>) {
        let Some(frame) = self.frame.take() else {
            return;
        };
        if is_control(frame.opcode) {
            out.push(WsEvent::Control {
                raw: mem::take(&mut self.control_raw),
                payload: mem::take(&mut self.control_payload),
                opcode: frame.opcode,
            });
        } else if frame.fin {
            self.in_message = false;
            let message = mem::take(&mut self.message);
            out.push(WsEvent::Message {
                raw: message.raw,
                payload: message.payload,
                text: message.text,
            });
        }
    }

    /// Bytes held for the message and frame in progress.
    #[cfg(test)]
    fn buffered(&self) -> usize {
        self.message.raw.len()
            + self.message.payload.len()
            + self.header_len
            + self.control_raw.len()
            + self.control_payload.len()
    }
}

fn is_control(opcode: u8) -> bool {
    opcode & 0x8 != 0
}

/// Copies a header field into a fixed-size array. Callers slice exactly
/// `N` bytes out of the header buffer.
fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(bytes);
    out
}

#[cfg(test)]
mod tests;
