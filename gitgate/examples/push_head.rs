//! A fixed amount of `read_push_head` work, for timing and `perf`: the
//! commands of a many-ref push (10 000 to 40 000 `refs/heads/…` creations)
//! handed over in 64 KiB and 8 KiB body frames, against one
//! `PushRequest::parse` of the same bytes.
//!
//! ```sh
//! cargo run --release -p bb-gitgate --example push_head
//! ```
//!
//! Before the gate parsed only at decisive pkt-lines, `read_push_head`
//! re-parsed the whole front at every frame: 40 000 commands in 8 KiB
//! frames took 7.7 s against 19 ms for one parse.
#![allow(clippy::unwrap_used, reason = "a measurement driver")]

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bb_gitgate::pktline::{Command, PushRequest, ZERO_OID};
use bytes::Bytes;
use hyper::body::{Body, Frame};

/// A body that hands out the given frames, then ends.
struct Frames(VecDeque<Bytes>);

impl Body for Frames {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for n in [10_000usize, 20_000, 40_000] {
        let commands = (0..n)
            .map(|i| Command {
                old: ZERO_OID.to_owned(),
                new: format!("{:040x}", i + 1),
                name: format!("refs/heads/branch-{i}"),
            })
            .collect();
        let req = PushRequest {
            commands,
            caps: vec!["report-status".into()],
            options: vec![],
            header_len: 0,
        };
        let head = req.encode();
        let t = Instant::now();
        PushRequest::parse(&head).unwrap().unwrap();
        let once = t.elapsed();
        for frame in [65_536usize, 8192] {
            let body = Frames(head.chunks(frame).map(Bytes::copy_from_slice).collect());
            let r = http::Request::builder()
                .header("transfer-encoding", "chunked")
                .body(body)
                .unwrap();
            let t = Instant::now();
            let got = rt.block_on(bb_gitgate::http::read_push_head(r, 1 << 30, 64 << 20));
            let took = t.elapsed();
            assert!(got.is_ok());
            println!(
                "{n} commands, {} KiB, {frame} B frames: read_push_head {took:?} (one parse {once:?})",
                head.len() / 1024
            );
        }
    }
}
