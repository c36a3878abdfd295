//! Fuzzes the incremental WebSocket frame decoder, `bb_egress::ws`.
//!
//! Input layout (the same header convention as `scanner_stream`):
//! - byte 0: bit 0 `require_mask`; bits 1–3 pick `max_message` from
//!   [`LIMITS`];
//! - byte 1: `n = (byte & 7) + 1` chunk sizes follow;
//! - the next `n` bytes: chunk sizes, used in a cycle. `0` feeds an empty
//!   chunk, `255` feeds everything left, any other value that many bytes;
//! - the rest: the byte stream.
//!
//! Invariants:
//! - one push of the whole stream, the chunked pushes and one push per byte
//!   give identical events and the identical error;
//! - the events tile the stream (located through the byte-per-byte run,
//!   which tells where each event completed): each control frame's `raw` is
//!   the stream bytes just before where it completed; each message's `raw`
//!   is the stream from the end of the previous message to where it
//!   completed, minus the control frames in between. So the `raw` fields,
//!   with interleaved control frames put back, are a prefix of the input;
//! - an error names a frame that starts after the last event and inside the
//!   stream, and the decoder stays failed;
//! - every event is self-contained: its `raw` alone, in a fresh decoder,
//!   decodes to exactly that event;
//! - payloads agree with a one-shot reference parse of `raw` (unmasking,
//!   fragment order, FIN and opcodes), control payloads are at most 125
//!   bytes and message payloads at most `max_message`.

#![no_main]

use bb_egress::ws::{FrameDecoder, WsError, WsEvent};
use libfuzzer_sys::fuzz_target;

const LIMITS: [usize; 8] = [0, 1, 125, 126, 1024, 65_536, 1 << 20, usize::MAX];

struct Input<'a> {
    require_mask: bool,
    max_message: usize,
    sizes: &'a [u8],
    stream: &'a [u8],
}

fn split(data: &[u8]) -> Option<Input<'_>> {
    let (&flags, rest) = data.split_first()?;
    let (&n_byte, rest) = rest.split_first()?;
    let n = usize::from(n_byte & 7) + 1;
    if rest.len() < n {
        return None;
    }
    let (sizes, stream) = rest.split_at(n);
    Some(Input {
        require_mask: flags & 1 != 0,
        max_message: LIMITS[usize::from((flags >> 1) & 7)],
        sizes,
        stream,
    })
}

type Outcome = (Vec<WsEvent>, Option<WsError>);

/// Feeds `chunks` in order, stopping at the first error; checks the decoder
/// stays failed after it.
fn run<'a>(input: &Input<'_>, chunks: impl IntoIterator<Item = &'a [u8]>) -> Outcome {
    let mut decoder = FrameDecoder::new(input.require_mask, input.max_message);
    let mut out = Vec::new();
    for chunk in chunks {
        if let Err(e) = decoder.push(chunk, &mut out) {
            let n = out.len();
            assert_eq!(decoder.push(b"\x82\x00", &mut out).as_ref(), Err(&e));
            assert_eq!(decoder.push(b"", &mut out).as_ref(), Err(&e));
            assert_eq!(out.len(), n, "events after an error");
            return (out, Some(e));
        }
    }
    (out, None)
}

/// The stream cut by the cycled chunk sizes.
fn chunks<'a>(input: &Input<'a>) -> Vec<&'a [u8]> {
    let stream = input.stream;
    let mut out = Vec::new();
    let mut at = 0;
    let mut zeros = 0;
    for &size in input.sizes.iter().cycle() {
        if at == stream.len() {
            break;
        }
        let size = match size {
            255 => stream.len() - at,
            s => usize::from(s),
        };
        // Only zero sizes would never end: feed the rest.
        zeros = if size == 0 { zeros + 1 } else { 0 };
        let size = if zeros > input.sizes.len() {
            stream.len() - at
        } else {
            size
        };
        let to = (at + size).min(stream.len());
        out.push(&stream[at..to]);
        at = to;
    }
    out
}

/// Checks that the events tile the stream; returns where the last ended.
fn check_tiling(stream: &[u8], events: &[WsEvent], ends: &[usize]) -> usize {
    let mut start = 0;
    let mut controls: Vec<(usize, usize)> = Vec::new();
    for (event, &end) in events.iter().zip(ends) {
        match event {
            WsEvent::Control { raw, .. } => {
                assert!(end >= start + raw.len(), "control frame overlaps");
                assert_eq!(&stream[end - raw.len()..end], &raw[..], "control raw");
                if let Some(&(_, prev)) = controls.last() {
                    assert!(end - raw.len() >= prev, "control frames overlap");
                }
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
    controls.last().map_or(start, |&(_, e)| e)
}

/// One-shot reference parse of a `raw` the decoder accepted: its frames as
/// `(fin, opcode, unmasked payload)`. No validation; lengths are trusted.
fn reference_frames(mut raw: &[u8]) -> Vec<(bool, u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while !raw.is_empty() {
        let fin = raw[0] & 0x80 != 0;
        let opcode = raw[0] & 0x0F;
        let masked = raw[1] & 0x80 != 0;
        let (len, mut at) = match raw[1] & 0x7F {
            126 => (usize::from(u16::from_be_bytes([raw[2], raw[3]])), 4),
            127 => (
                usize::try_from(u64::from_be_bytes(raw[2..10].try_into().unwrap())).unwrap(),
                10,
            ),
            n => (usize::from(n), 2),
        };
        let key = if masked {
            at += 4;
            raw[at - 4..at].try_into().unwrap()
        } else {
            [0; 4]
        };
        let payload = raw[at..at + len]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ key[i % 4])
            .collect();
        frames.push((fin, opcode, payload));
        raw = &raw[at + len..];
    }
    frames
}

fn check_event(input: &Input<'_>, event: &WsEvent) {
    match event {
        WsEvent::Control {
            raw,
            payload,
            opcode,
        } => {
            assert!(matches!(opcode, 0x8..=0xA), "control opcode {opcode:#x}");
            assert!(payload.len() <= 125, "control payload of {}", payload.len());
            assert_eq!(
                reference_frames(raw),
                [(true, *opcode, payload.clone())],
                "control frame differs from the reference parse"
            );
        }
        WsEvent::Message { raw, payload, text } => {
            assert!(payload.len() <= input.max_message, "message over the limit");
            let frames = reference_frames(raw);
            let last = frames.len() - 1;
            let mut joined = Vec::new();
            for (i, (fin, opcode, p)) in frames.into_iter().enumerate() {
                assert_eq!(fin, i == last, "FIN on fragment {i} of {}", last + 1);
                let want = match (i, *text) {
                    (0, true) => 0x1,
                    (0, false) => 0x2,
                    _ => 0x0,
                };
                assert_eq!(opcode, want, "opcode of fragment {i}");
                joined.extend_from_slice(&p);
            }
            assert_eq!(&joined, payload, "payload differs from the reference");
        }
    }
    // The event's frames alone decode to the event.
    let alone = run(
        input,
        [match event {
            WsEvent::Message { raw, .. } | WsEvent::Control { raw, .. } => &raw[..],
        }],
    );
    assert_eq!(
        alone,
        (vec![event.clone()], None),
        "raw is not self-contained"
    );
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = split(data) else {
        return;
    };
    let stream = input.stream;

    let whole = run(&input, [stream]);
    let chunked = run(&input, chunks(&input));
    assert_eq!(chunked, whole, "chunked and whole decoding differ");

    // One byte per push, recording where each event completed.
    let mut decoder = FrameDecoder::new(input.require_mask, input.max_message);
    let mut events = Vec::new();
    let mut ends = Vec::new();
    let mut error = None;
    for (i, byte) in stream.iter().enumerate() {
        let result = decoder.push(std::slice::from_ref(byte), &mut events);
        ends.resize(events.len(), i + 1);
        if let Err(e) = result {
            error = Some(e);
            break;
        }
    }
    assert_eq!((events, error), whole, "byte-at-a-time and whole differ");

    let (events, error) = &whole;
    let tiled = check_tiling(stream, events, &ends);
    if let Some(e) = error {
        let at = e.offset();
        assert!(
            at >= tiled as u64 && at < stream.len() as u64,
            "{e}: offset outside [{tiled}, {})",
            stream.len()
        );
        assert!(!e.to_string().is_empty());
    }
    for event in events {
        check_event(&input, event);
    }
});
