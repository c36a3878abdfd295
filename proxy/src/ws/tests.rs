#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use proptest::prelude::*;
use proptest::sample::Index;

use super::*;

const BIG: usize = 1 << 20;

/// Encodes one frame with the minimal payload length encoding.
fn frame(fin: bool, opcode: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![if fin { 0x80 } else { 0 } | opcode];
    let m = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => f.push(m | n as u8),
        n if n <= 0xFFFF => {
            f.push(m | 0x7E);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(m | 0x7F);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        None => f.extend_from_slice(payload),
        Some(k) => {
            f.extend_from_slice(&k);
            f.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
        }
    }
    f
}

fn message(raw: &[u8], payload: &[u8], text: bool) -> WsEvent {
    WsEvent::Message {
        raw: raw.to_vec(),
        payload: payload.to_vec(),
        text,
    }
}

fn control(raw: &[u8], payload: &[u8], opcode: u8) -> WsEvent {
    WsEvent::Control {
        raw: raw.to_vec(),
        payload: payload.to_vec(),
        opcode,
    }
}

type Outcome = (Vec<WsEvent>, Option<WsError>);

/// Decodes `stream` cut at `cuts` (sorted offsets), checking after every
/// call that the decoder buffers no more than the module promises and that
/// a failed decoder stays failed.
fn decode_cuts(require_mask: bool, max: usize, stream: &[u8], cuts: &[usize]) -> Outcome {
    let mut d = FrameDecoder::new(require_mask, max);
    let mut out = Vec::new();
    let mut at = 0;
    let bound = max
        .saturating_mul(3)
        .saturating_add(3 * MAX_HEADER_LEN + 2 * 125);
    for &to in cuts.iter().chain([&stream.len()]) {
        let to = to.clamp(at, stream.len());
        if let Err(e) = d.push(&stream[at..to], &mut out) {
            let n = out.len();
            assert_eq!(d.push(b"\x81\x00", &mut out), Err(e.clone()));
            assert_eq!(d.push(&[], &mut out), Err(e.clone()));
            assert_eq!(out.len(), n, "events after an error");
            assert_eq!(d.buffered(), 0, "a failed decoder holds data");
            return (out, Some(e));
        }
        assert!(
            d.buffered() <= bound,
            "buffering {} bytes, bound {bound}",
            d.buffered()
        );
        at = to;
    }
    (out, None)
}

/// Decodes one byte at a time; also returns the stream offset at which each
/// event completed.
fn decode_bytewise(require_mask: bool, max: usize, stream: &[u8]) -> (Outcome, Vec<usize>) {
    let mut d = FrameDecoder::new(require_mask, max);
    let mut out = Vec::new();
    let mut ends = Vec::new();
    for (i, b) in stream.iter().enumerate() {
        let r = d.push(std::slice::from_ref(b), &mut out);
        ends.resize(out.len(), i + 1);
        if let Err(e) = r {
            return ((out, Some(e)), ends);
        }
    }
    ((out, None), ends)
}

/// Checks that the events tile a prefix of the stream: each control frame's
/// `raw` sits where it completed, and each message's `raw` is the stream
/// from the end of the previous message up to where it completed, with the
/// control frames in between cut out. Returns the end of the last event.
fn check_tiling(stream: &[u8], events: &[WsEvent], ends: &[usize]) -> usize {
    let mut start = 0;
    let mut controls: Vec<(usize, usize)> = Vec::new();
    for (event, &end) in events.iter().zip(ends) {
        match event {
            WsEvent::Control { raw, .. } => {
                assert_eq!(&stream[end - raw.len()..end], &raw[..]);
                controls.push((end - raw.len(), end));
            }
            WsEvent::Message { raw, .. } => {
                let mut rebuilt = Vec::new();
                let mut at = start;
                for (s, e) in controls.drain(..) {
                    rebuilt.extend_from_slice(&stream[at..s]);
                    at = e;
                }
                rebuilt.extend_from_slice(&stream[at..end]);
                assert_eq!(&rebuilt, raw, "message raw is not its frames");
                start = end;
            }
        }
    }
    // Control frames after the last message follow each other, possibly
    // between fragments of a message still in progress.
    for (s, e) in controls {
        assert!(s >= start, "control frames overlap");
        start = e;
    }
    start
}

/// Decodes whole and byte by byte, checks both agree and the tiling.
fn decode(require_mask: bool, max: usize, stream: &[u8]) -> Outcome {
    let whole = decode_cuts(require_mask, max, stream, &[]);
    let (bytewise, ends) = decode_bytewise(require_mask, max, stream);
    assert_eq!(whole, bytewise, "whole and byte-at-a-time decoding differ");
    let tiled = check_tiling(stream, &whole.0, &ends);
    if let Some(e) = &whole.1 {
        assert!(e.offset() >= tiled as u64 && e.offset() < stream.len() as u64);
    }
    whole
}

fn decode_ok(require_mask: bool, max: usize, stream: &[u8]) -> Vec<WsEvent> {
    let (events, err) = decode(require_mask, max, stream);
    assert_eq!(err, None);
    events
}

fn decode_err(require_mask: bool, max: usize, stream: &[u8]) -> (Vec<WsEvent>, WsError) {
    let (events, err) = decode(require_mask, max, stream);
    (events, err.expect("an error"))
}

// --- RFC 6455 §5.7 examples -------------------------------------------------

#[test]
fn unmasked_text() {
    let raw = b"\x81\x05Hello";
    assert_eq!(decode_ok(false, BIG, raw), [message(raw, b"Hello", true)]);
}

#[test]
fn masked_text() {
    let raw = b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58";
    assert_eq!(decode_ok(true, BIG, raw), [message(raw, b"Hello", true)]);
    // Masked frames are also accepted when masking is not required.
    assert_eq!(decode_ok(false, BIG, raw), [message(raw, b"Hello", true)]);
}

#[test]
fn fragmented_unmasked_text() {
    let raw = b"\x01\x03Hel\x80\x02lo";
    assert_eq!(decode_ok(false, BIG, raw), [message(raw, b"Hello", true)]);
}

#[test]
fn ping_and_masked_pong() {
    let ping_frame = b"\x89\x05Hello";
    let masked_pong = b"\x8a\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58";
    let stream = [&ping_frame[..], masked_pong].concat();
    assert_eq!(
        decode_ok(false, BIG, &stream),
        [
            control(ping_frame, b"Hello", OP_PING),
            control(masked_pong, b"Hello", OP_PONG)
        ]
    );
}

#[test]
fn binary_with_16_bit_length() {
    let payload: Vec<u8> = (0..=255).collect();
    let mut raw = b"\x82\x7e\x01\x00".to_vec();
    raw.extend_from_slice(&payload);
    assert_eq!(raw, frame(true, OP_BINARY, None, &payload));
    assert_eq!(
        decode_ok(false, BIG, &raw),
        [message(&raw, &payload, false)]
    );
}

#[test]
fn binary_with_64_bit_length() {
    let payload: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
    let mut raw = b"\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00".to_vec();
    raw.extend_from_slice(&payload);
    assert_eq!(raw, frame(true, OP_BINARY, None, &payload));
    assert_eq!(
        decode_ok(false, BIG, &raw),
        [message(&raw, &payload, false)]
    );

    let key = [0xde, 0xad, 0xbe, 0xef];
    let masked = frame(true, OP_BINARY, Some(key), &payload);
    assert_eq!(&masked[..14], b"\x82\xff\0\0\0\0\0\x01\0\0\xde\xad\xbe\xef");
    for cuts in [&[1, 5, 13, 14, 15, 1000, 40_001][..], &[7, 65_549]] {
        assert_eq!(
            decode_cuts(true, BIG, &masked, cuts),
            (vec![message(&masked, &payload, false)], None)
        );
    }
}

#[test]
fn masked_16_bit_length_and_empty_frames() {
    let key = [1, 2, 3, 4];
    let payload = vec![b'x'; 300];
    let big = frame(true, OP_TEXT, Some(key), &payload);
    let empty = frame(true, OP_BINARY, Some(key), b"");
    let empty_ping = frame(true, OP_PING, Some(key), b"");
    assert_eq!(empty, b"\x82\x80\x01\x02\x03\x04");
    let stream = [&big[..], &empty, &empty_ping, &empty].concat();
    assert_eq!(
        decode_ok(true, BIG, &stream),
        [
            message(&big, &payload, true),
            message(&empty, b"", false),
            control(&empty_ping, b"", OP_PING),
            message(&empty, b"", false),
        ]
    );
}

#[test]
fn fragmented_text_with_interleaved_ping() {
    let k = [
        [9, 8, 7, 6],
        [0x11, 0x22, 0x33, 0x44],
        [0, 0, 0, 0],
        [5, 6, 7, 8],
    ];
    let f1 = frame(false, OP_TEXT, Some(k[0]), b"first, ");
    let ping = frame(true, OP_PING, Some(k[1]), b"are you there?");
    let f2 = frame(false, OP_CONTINUATION, Some(k[2]), b"");
    let f3 = frame(true, OP_CONTINUATION, Some(k[3]), b"then the rest");
    let stream = [&f1[..], &ping, &f2, &f3].concat();
    let raw = [&f1[..], &f2, &f3].concat();
    let expected = [
        control(&ping, b"are you there?", OP_PING),
        message(&raw, b"first, then the rest", true),
    ];
    assert_eq!(decode_ok(true, BIG, &stream), expected);
    // The ping is delivered as soon as it is complete, before the message.
    let (mut events, cut) = (Vec::new(), f1.len() + ping.len());
    let mut d = FrameDecoder::new(true, BIG);
    d.push(&stream[..cut], &mut events).unwrap();
    assert_eq!(events, expected[..1]);
    d.push(&stream[cut..], &mut events).unwrap();
    assert_eq!(events, expected);
}

#[test]
fn close_frames() {
    let mut body = 1000u16.to_be_bytes().to_vec();
    body.extend_from_slice(b"bye");
    let close = frame(true, OP_CLOSE, Some([0xa, 0xb, 0xc, 0xd]), &body);
    let bare = frame(true, OP_CLOSE, Some([0xa, 0xb, 0xc, 0xd]), b"");
    let stream = [&close[..], &bare].concat();
    assert_eq!(
        decode_ok(true, BIG, &stream),
        [
            control(&close, &body, OP_CLOSE),
            control(&bare, b"", OP_CLOSE)
        ]
    );
}

#[test]
fn several_messages_in_one_push_and_a_partial_tail() {
    let a = frame(true, OP_TEXT, None, b"one");
    let b = frame(true, OP_BINARY, None, &[0, 1, 2]);
    let c = frame(true, OP_TEXT, None, b"three");
    let stream = [&a[..], &b, &c].concat();
    let mut d = FrameDecoder::new(false, BIG);
    let mut out = Vec::new();
    d.push(&stream[..stream.len() - 2], &mut out).unwrap();
    assert_eq!(
        out,
        [message(&a, b"one", true), message(&b, &[0, 1, 2], false)]
    );
    d.push(&stream[stream.len() - 2..], &mut out).unwrap();
    assert_eq!(out[2], message(&c, b"three", true));
}

#[test]
fn limit_is_inclusive_and_counts_every_fragment() {
    let whole = frame(true, OP_BINARY, None, &[7; 10]);
    assert_eq!(
        decode_ok(false, 10, &whole),
        [message(&whole, &[7; 10], false)]
    );
    let f1 = frame(false, OP_BINARY, None, &[7; 6]);
    let f2 = frame(true, OP_CONTINUATION, None, &[7; 4]);
    let stream = [&f1[..], &f2].concat();
    assert_eq!(
        decode_ok(false, 10, &stream),
        [message(&stream, &[7; 10], false)]
    );
    // Control frames do not count against the limit.
    let ping = frame(true, OP_PING, None, &[1; 125]);
    assert_eq!(
        decode_ok(false, 0, &ping),
        [control(&ping, &[1; 125], OP_PING)]
    );
}

#[test]
fn huge_declared_length_under_an_unlimited_max_is_not_buffered_up_front() {
    let mut d = FrameDecoder::new(false, usize::MAX);
    let mut out = Vec::new();
    let header = b"\x82\x7f\x7f\xff\xff\xff\xff\xff\xff\xff";
    d.push(header, &mut out).unwrap();
    d.push(b"abc", &mut out).unwrap();
    assert!(out.is_empty());
    assert_eq!(d.buffered(), header.len() + 3 + 3);
}

// --- errors -----------------------------------------------------------------

fn assert_error(require_mask: bool, max: usize, stream: &[u8], expected: &WsError, msg: &str) {
    let (_, e) = decode_err(require_mask, max, stream);
    assert_eq!(&e, expected);
    assert_eq!(e.to_string(), msg);
}

#[test]
fn reserved_bits() {
    let e = WsError::ReservedBits {
        offset: 0,
        bits: 0x40,
    };
    let msg = "WebSocket frame at byte 0: reserved bits 0x40 set, but no extension is negotiated";
    assert_error(false, BIG, b"\xc1\x05Hello", &e, msg);
    // Detected from the first byte alone.
    let mut d = FrameDecoder::new(false, BIG);
    assert_eq!(d.push(b"\xc1", &mut Vec::new()), Err(e));

    // After a complete message, the offset names the bad frame and the
    // message is still delivered.
    let ok = frame(true, OP_TEXT, None, b"fine");
    let stream = [&ok[..], b"\xb2\x00"].concat();
    let (events, e) = decode_err(false, BIG, &stream);
    assert_eq!(events, [message(&ok, b"fine", true)]);
    assert_eq!(
        e,
        WsError::ReservedBits {
            offset: 6,
            bits: 0x30
        }
    );
    assert_eq!(
        e.to_string(),
        "WebSocket frame at byte 6: reserved bits 0x30 set, but no extension is negotiated"
    );
}

#[test]
fn unknown_opcodes() {
    for opcode in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
        assert_error(
            false,
            BIG,
            &[0x80 | opcode, 0],
            &WsError::UnknownOpcode { offset: 0, opcode },
            &format!("WebSocket frame at byte 0: reserved opcode {opcode:#x}"),
        );
    }
}

#[test]
fn fragmented_control_frame() {
    assert_error(
        false,
        BIG,
        b"\x09\x00",
        &WsError::FragmentedControl {
            offset: 0,
            opcode: 9,
        },
        "WebSocket control frame (opcode 0x9) at byte 0 has FIN clear; control frames cannot be fragmented",
    );
}

#[test]
fn control_frame_with_extended_length() {
    assert_error(
        true,
        BIG,
        b"\x8a\xfe\x00\x7e",
        &WsError::ControlTooLong {
            offset: 0,
            opcode: 0xA,
            bits: 16,
        },
        "WebSocket control frame (opcode 0xa) at byte 0 declares a 16-bit payload length; control payloads are at most 125 bytes",
    );
    assert_error(
        false,
        BIG,
        b"\x88\x7f",
        &WsError::ControlTooLong {
            offset: 0,
            opcode: 8,
            bits: 64,
        },
        "WebSocket control frame (opcode 0x8) at byte 0 declares a 64-bit payload length; control payloads are at most 125 bytes",
    );
}

#[test]
fn continuation_without_start() {
    assert_error(
        false,
        BIG,
        b"\x80\x00",
        &WsError::ContinuationWithoutStart { offset: 0 },
        "WebSocket continuation frame at byte 0 with no fragmented message in progress",
    );
    // Also right after a message has ended.
    let stream = [&frame(true, OP_TEXT, None, b"x")[..], b"\x00\x00"].concat();
    let (events, e) = decode_err(false, BIG, &stream);
    assert_eq!(events.len(), 1);
    assert_eq!(e, WsError::ContinuationWithoutStart { offset: 3 });
}

#[test]
fn new_message_while_one_is_in_progress() {
    let f1 = frame(false, OP_TEXT, None, b"half");
    let ping = frame(true, OP_PING, None, b"");
    let stream = [&f1[..], &ping, b"\x82\x00"].concat();
    let (events, e) = decode_err(false, BIG, &stream);
    assert_eq!(events, [control(&ping, b"", OP_PING)]);
    assert_eq!(
        e,
        WsError::MessageInProgress {
            offset: 8,
            opcode: 2
        }
    );
    assert_eq!(
        e.to_string(),
        "WebSocket data frame (opcode 0x2) at byte 8 starts a new message before the fragmented message in progress ended"
    );
}

#[test]
fn unmasked_client_frame() {
    assert_error(
        true,
        BIG,
        b"\x81\x05Hello",
        &WsError::Unmasked { offset: 0 },
        "WebSocket frame at byte 0 from the client is not masked (RFC 6455 §5.1)",
    );
    // Control frames too.
    assert_error(
        true,
        BIG,
        b"\x89\x00",
        &WsError::Unmasked { offset: 0 },
        "WebSocket frame at byte 0 from the client is not masked (RFC 6455 §5.1)",
    );
}

#[test]
fn non_minimal_lengths() {
    assert_error(
        false,
        BIG,
        b"\x82\x7e\x00\x7d",
        &WsError::NonMinimalLength {
            offset: 0,
            len: 125,
            bits: 16,
        },
        "WebSocket frame at byte 0: payload length 125 is encoded in 16 bits; RFC 6455 §5.2 requires the minimal encoding",
    );
    assert_error(
        false,
        BIG,
        b"\x82\x7f\x00\x00\x00\x00\x00\x00\xff\xff",
        &WsError::NonMinimalLength {
            offset: 0,
            len: 65535,
            bits: 64,
        },
        "WebSocket frame at byte 0: payload length 65535 is encoded in 64 bits; RFC 6455 §5.2 requires the minimal encoding",
    );
    // The smallest minimal encodings are accepted.
    assert_eq!(decode(false, BIG, b"\x82\x7e\x00\x7e").1, None);
    assert_eq!(decode(false, BIG, b"\x82\x7f\0\0\0\0\0\x01\0\0").1, None);
}

#[test]
fn length_with_top_bit_set() {
    assert_error(
        false,
        usize::MAX,
        b"\x82\x7f\x80\x00\x00\x00\x00\x00\x00\x00",
        &WsError::LengthOverflow {
            offset: 0,
            len: 1 << 63,
        },
        "WebSocket frame at byte 0: 64-bit payload length 0x8000000000000000 has its most significant bit set",
    );
}

#[test]
fn message_too_large() {
    assert_error(
        false,
        10,
        &frame(true, OP_BINARY, None, &[0; 11]),
        &WsError::MessageTooLarge {
            offset: 0,
            size: 11,
            limit: 10,
        },
        "WebSocket frame at byte 0 takes its message to 11 payload bytes; the limit is 10",
    );
    let f1 = frame(false, OP_TEXT, Some([1, 1, 1, 1]), &[b'a'; 6]);
    let f2 = frame(true, OP_CONTINUATION, Some([2, 2, 2, 2]), &[b'b'; 5]);
    let stream = [&f1[..], &f2].concat();
    assert_error(
        true,
        10,
        &stream,
        &WsError::MessageTooLarge {
            offset: 12,
            size: 11,
            limit: 10,
        },
        "WebSocket frame at byte 12 takes its message to 11 payload bytes; the limit is 10",
    );
    // Rejected from the header, before any payload (or masking key).
    let mut d = FrameDecoder::new(true, 1000);
    let r = d.push(b"\x82\xff\0\0\0\0\x7f\xff\xff\xff", &mut Vec::new());
    assert_eq!(
        r,
        Err(WsError::MessageTooLarge {
            offset: 0,
            size: 0x7fff_ffff,
            limit: 1000
        })
    );
}

#[test]
fn too_many_fragments() {
    // max 0: 14 header bytes per message; unmasked empty frames take 2.
    let mut stream = b"\x01\x00".to_vec();
    for _ in 0..6 {
        stream.extend_from_slice(b"\x00\x00");
    }
    assert_eq!(stream.len(), 14);
    stream.extend_from_slice(b"\x80\x00");
    assert_error(
        false,
        0,
        &stream,
        &WsError::TooManyFragments {
            offset: 14,
            header_bytes: 16,
            limit: 14,
        },
        "WebSocket frame at byte 14 takes its message's frame headers to 16 bytes; at most 14 are buffered (too many fragments)",
    );
    // Exactly at the budget is fine.
    stream.truncate(12);
    stream.extend_from_slice(b"\x80\x00");
    assert_eq!(decode_ok(false, 0, &stream), [message(&stream, b"", true)]);
}

#[test]
fn a_failed_decoder_stays_failed() {
    let mut d = FrameDecoder::new(true, BIG);
    let mut out = Vec::new();
    let e = d.push(b"\x81\x05", &mut out).unwrap_err();
    assert_eq!(e, WsError::Unmasked { offset: 0 });
    let valid = frame(true, OP_TEXT, Some([1, 2, 3, 4]), b"hi");
    assert_eq!(d.push(&valid, &mut out), Err(e.clone()));
    assert_eq!(d.push(b"", &mut out), Err(e));
    assert!(out.is_empty());
}

// --- properties -------------------------------------------------------------

/// A control frame: opcode and payload.
fn control_strategy() -> impl Strategy<Value = (u8, Vec<u8>)> {
    (
        prop::sample::select(vec![OP_CLOSE, OP_PING, OP_PONG]),
        prop::collection::vec(any::<u8>(), 0..=125),
    )
}

#[derive(Debug, Clone)]
enum Item {
    Control(u8, Vec<u8>),
    Message {
        text: bool,
        payload: Vec<u8>,
        /// Where the payload is cut into fragments (unsorted, may repeat).
        cuts: Vec<Index>,
        /// A control frame after fragment `i`, if any (unused past the last
        /// fragment boundary).
        interleaved: Vec<Option<(u8, Vec<u8>)>>,
    },
}

fn item_strategy() -> impl Strategy<Value = Item> {
    let payload = prop_oneof![
        3 => prop::collection::vec(any::<u8>(), 0..40),
        1 => prop::collection::vec(any::<u8>(), 120..700),
    ];
    prop_oneof![
        1 => control_strategy().prop_map(|(op, p)| Item::Control(op, p)),
        4 => (
            any::<bool>(),
            payload,
            prop::collection::vec(any::<Index>(), 0..5),
            prop::collection::vec(prop::option::weighted(0.3, control_strategy()), 5),
        )
            .prop_map(|(text, payload, cuts, interleaved)| Item::Message {
                text,
                payload,
                cuts,
                interleaved,
            }),
    ]
}

/// Encodes the items with masking keys taken in turn from `keys` (a `None`
/// key sends the frame unmasked); returns the stream, the events it must
/// decode to, and whether any control frame sits inside a message.
fn encode(items: &[Item], keys: &[Option<[u8; 4]>]) -> (Vec<u8>, Vec<WsEvent>, bool) {
    let mut keys = keys.iter().copied().cycle();
    let mut stream = Vec::new();
    let mut events = Vec::new();
    let mut interleaving = false;
    for item in items {
        match item {
            Item::Control(opcode, payload) => {
                let raw = frame(true, *opcode, keys.next().unwrap(), payload);
                stream.extend_from_slice(&raw);
                events.push(control(&raw, payload, *opcode));
            }
            Item::Message {
                text,
                payload,
                cuts,
                interleaved,
            } => {
                let mut bounds: Vec<usize> =
                    cuts.iter().map(|i| i.index(payload.len() + 1)).collect();
                bounds.sort_unstable();
                bounds.push(payload.len());
                let mut raw = Vec::new();
                let mut from = 0;
                for (i, &to) in bounds.iter().enumerate() {
                    let last = i + 1 == bounds.len();
                    let opcode = match (i, text) {
                        (0, true) => OP_TEXT,
                        (0, false) => OP_BINARY,
                        _ => OP_CONTINUATION,
                    };
                    let f = frame(last, opcode, keys.next().unwrap(), &payload[from..to]);
                    stream.extend_from_slice(&f);
                    raw.extend_from_slice(&f);
                    from = to;
                    if let (false, Some((op, p))) = (last, &interleaved[i]) {
                        let c = frame(true, *op, keys.next().unwrap(), p);
                        stream.extend_from_slice(&c);
                        events.push(control(&c, p, *op));
                        interleaving = true;
                    }
                }
                events.push(message(&raw, payload, *text));
            }
        }
    }
    (stream, events, interleaving)
}

fn cut_points(stream_len: usize, cuts: &[Index]) -> Vec<usize> {
    let mut c: Vec<usize> = cuts.iter().map(|i| i.index(stream_len + 1)).collect();
    c.sort_unstable();
    c
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Valid messages, randomly fragmented, masked and interleaved with
    /// control frames, decode to exactly those messages over any split.
    #[test]
    fn valid_streams_decode_over_any_split(
        items in prop::collection::vec(item_strategy(), 0..8),
        require_mask in any::<bool>(),
        keys in prop::collection::vec(prop::option::weighted(0.7, any::<[u8; 4]>()), 1..8),
        cuts in prop::collection::vec(any::<Index>(), 0..12),
    ) {
        let keys: Vec<Option<[u8; 4]>> = if require_mask {
            keys.iter().map(|k| Some(k.unwrap_or([0; 4]))).collect()
        } else {
            keys
        };
        let (stream, expected, interleaving) = encode(&items, &keys);
        let cuts = cut_points(stream.len(), &cuts);
        let (events, err) = decode_cuts(require_mask, BIG, &stream, &cuts);
        prop_assert_eq!(err, None);
        prop_assert_eq!(&events, &expected);
        if !interleaving {
            let all: Vec<u8> = events
                .iter()
                .flat_map(|e| match e {
                    WsEvent::Message { raw, .. } | WsEvent::Control { raw, .. } => raw.clone(),
                })
                .collect();
            prop_assert_eq!(all, stream.clone());
        }
        let (bytewise, ends) = decode_bytewise(require_mask, BIG, &stream);
        prop_assert_eq!(&bytewise.0, &expected);
        prop_assert_eq!(check_tiling(&stream, &events, &ends), stream.len());
    }

    /// Frame-shaped noise (random header fields, lengths that may be
    /// non-minimal, a corrupted byte): any split gives the same events and
    /// error as one push, events tile the stream, and buffering stays within
    /// its bound (checked inside `decode_cuts`).
    #[test]
    fn noisy_streams_decode_the_same_over_any_split(
        frames in prop::collection::vec(
            (
                prop_oneof![
                    6 => prop::sample::select(vec![0u8, 0x01, 0x02, 0x81, 0x82, 0x80, 0x88, 0x89, 0x8A]),
                    1 => any::<u8>(),
                ],
                any::<bool>(),
                any::<[u8; 4]>(),
                prop_oneof![3 => 0usize..130, 1 => 0usize..300],
                0u8..8,
            ),
            0..10,
        ),
        flip in prop::option::of((any::<Index>(), any::<u8>())),
        require_mask in any::<bool>(),
        max in prop_oneof![Just(0usize), 0usize..400, Just(usize::MAX)],
        cuts in prop::collection::vec(any::<Index>(), 0..12),
    ) {
        let mut stream = Vec::new();
        for (b0, masked, key, len, width) in frames {
            stream.push(b0);
            let m = if masked { 0x80 } else { 0 };
            match width {
                // Mostly minimal; width 6 and 7 force 16 and 64 bits.
                0..=5 if len < 126 => stream.push(m | len as u8),
                0..=6 => {
                    stream.push(m | 0x7E);
                    stream.extend_from_slice(&(len as u16).to_be_bytes());
                }
                _ => {
                    stream.push(m | 0x7F);
                    stream.extend_from_slice(&(len as u64).to_be_bytes());
                }
            }
            if masked {
                stream.extend_from_slice(&key);
            }
            stream.extend((0..len).map(|i| i as u8));
        }
        if let Some((at, byte)) = flip
            && !stream.is_empty()
        {
            let at = at.index(stream.len());
            stream[at] ^= byte;
        }
        let whole = decode(require_mask, max, &stream);
        let cuts = cut_points(stream.len(), &cuts);
        prop_assert_eq!(decode_cuts(require_mask, max, &stream, &cuts), whole);
    }
}
