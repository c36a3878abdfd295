//! Reading the spooled pack while it is still arriving, so the mirror's
//! indexer decodes entries during the upload instead of after it.
//!
//! The HTTP side writes the pack into a spool file and says, through a
//! [`Feed`], when it is complete (and how long) or that it never will be
//! (the client went away, the cap was hit). A [`Follower`] reads the same
//! file from its own handle: at the end of what is written so far it
//! waits for more, and it ends only where the writer said the pack ends.
//! A feed dropped without [`Feed::finish`] counts as an aborted upload,
//! so a reader never waits forever.

use std::fs;
use std::io::{self, Read};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

/// How long a follower sleeps at the end of the written bytes before it
/// looks again (a write does not wake it; the end of the upload does).
const POLL: Duration = Duration::from_millis(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    Done(u64),
    Aborted,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn set(&self, to: State) {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if *s == State::Open {
            *s = to;
        }
        self.changed.notify_all();
    }
}

/// The writer's side: says how the upload ended.
#[derive(Debug)]
pub struct Feed {
    shared: Arc<Shared>,
}

/// The reader's side: a [`Read`] over the spool file that waits for the
/// bytes still to come.
#[derive(Debug)]
pub struct Follower {
    file: fs::File,
    pos: u64,
    shared: Arc<Shared>,
}

/// A feed for the spool file at `path` and a follower reading it from
/// the start.
pub fn follow(path: &Path) -> io::Result<(Feed, Follower)> {
    let shared = Arc::new(Shared {
        state: Mutex::new(State::Open),
        changed: Condvar::new(),
    });
    let file = fs::File::open(path)?;
    Ok((
        Feed {
            shared: Arc::clone(&shared),
        },
        Follower {
            file,
            pos: 0,
            shared,
        },
    ))
}

impl Feed {
    /// The upload is complete: `len` bytes are in the file (flushed).
    pub fn finish(self, len: u64) {
        self.shared.set(State::Done(len));
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.shared.set(State::Aborted);
    }
}

impl Read for Follower {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let state = *self
                .shared
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if state == State::Aborted {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the push's upload ended before its pack did",
                ));
            }
            // Never read past the end the writer declared, even if the
            // file holds more.
            let want = match state {
                State::Done(len) if self.pos >= len => return Ok(0),
                State::Done(len) => buf.len().min((len - self.pos) as usize),
                _ => buf.len(),
            };
            let n = self.file.read(&mut buf[..want])?;
            if n > 0 {
                self.pos += n as u64;
                return Ok(n);
            }
            if let State::Done(len) = state {
                // Declared longer than the file: the spool was cut.
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the spooled pack ends at {} of {len} bytes", self.pos),
                ));
            }
            let guard = self
                .shared
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if *guard == State::Open {
                let _ = self
                    .shared
                    .changed
                    .wait_timeout(guard, POLL)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }
    }
}

/// A one-time signal a blocking thread can wait for: raised by
/// [`Signal::raise`] or when the [`Raiser`] is dropped, whichever comes
/// first (so a task that dies still releases its waiters).
#[derive(Debug, Default)]
pub struct Signal {
    raised: Mutex<bool>,
    changed: Condvar,
}

/// What raises a [`Signal`], at the latest when dropped.
#[derive(Debug)]
pub struct Raiser(Arc<Signal>);

impl Signal {
    /// A signal and its raiser.
    #[must_use]
    pub fn new() -> (Arc<Self>, Raiser) {
        let s = Arc::new(Self::default());
        (Arc::clone(&s), Raiser(s))
    }

    /// Blocks until the signal is raised.
    pub fn wait(&self) {
        let mut raised = self.raised.lock().unwrap_or_else(PoisonError::into_inner);
        while !*raised {
            raised = self
                .changed
                .wait(raised)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl Raiser {
    /// Raises the signal now.
    pub fn raise(self) {}
}

impl Drop for Raiser {
    fn drop(&mut self) {
        *self.0.raised.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.0.changed.notify_all();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use std::io::Write as _;

    use super::*;

    type Reading = std::thread::JoinHandle<io::Result<Vec<u8>>>;

    /// A spool file in `dir`, its feed, and a thread reading it to the end.
    fn spool_with_reader(dir: &Path) -> (fs::File, Feed, Reading) {
        let path = dir.join("spool");
        let w = fs::File::create(&path).unwrap();
        let (feed, mut r) = follow(&path).unwrap();
        let reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            r.read_to_end(&mut all).map(|_| all)
        });
        (w, feed, reader)
    }

    #[test]
    fn reads_what_arrives_and_ends_where_the_writer_says() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, feed, reader) = spool_with_reader(dir.path());
        let mut sent = Vec::new();
        for i in 0..50u8 {
            let chunk = vec![i; 1000 + usize::from(i)];
            w.write_all(&chunk).unwrap();
            sent.extend_from_slice(&chunk);
            std::thread::sleep(Duration::from_millis(1));
        }
        w.flush().unwrap();
        feed.finish(sent.len() as u64);
        assert_eq!(reader.join().unwrap().unwrap(), sent);
    }

    #[test]
    fn an_upload_that_never_finishes_is_an_error_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, feed, reader) = spool_with_reader(dir.path());
        w.write_all(b"PACK").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        drop(feed);
        let err = reader.join().unwrap().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    /// Reads a spool holding `content` whose upload was declared `len`.
    fn read_finished(content: &[u8], len: u64) -> io::Result<Vec<u8>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool");
        fs::write(&path, content).unwrap();
        let (feed, mut r) = follow(&path).unwrap();
        feed.finish(len);
        let mut all = Vec::new();
        r.read_to_end(&mut all).map(|_| all)
    }

    #[test]
    fn a_spool_shorter_than_declared_is_an_error() {
        let err = read_finished(b"PACK0000", 100).unwrap_err();
        assert!(err.to_string().contains("ends at 8 of 100"), "{err}");
    }

    #[test]
    fn a_signal_wakes_its_waiters_when_raised_or_dropped() {
        for raise in [true, false] {
            let (signal, raiser) = Signal::new();
            let waiter = std::thread::spawn(move || signal.wait());
            std::thread::sleep(Duration::from_millis(10));
            if raise {
                raiser.raise();
            } else {
                drop(raiser);
            }
            waiter.join().unwrap();
        }
    }

    mod props {
        use proptest::prelude::*;

        use super::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(48))]

            /// Whatever the pieces and the pauses between them, the
            /// follower reads exactly the bytes written, in order, and
            /// ends where the writer said.
            #[test]
            fn the_follower_reads_exactly_what_was_written(
                pieces in proptest::collection::vec(
                    (proptest::collection::vec(any::<u8>(), 0..5000), 0u64..3),
                    0..24,
                ),
                stop_early in any::<bool>(),
            ) {
                let dir = tempfile::tempdir().unwrap();
                let (mut w, feed, reader) = spool_with_reader(dir.path());
                let mut sent = Vec::new();
                for (piece, pause) in &pieces {
                    w.write_all(piece).unwrap();
                    sent.extend_from_slice(piece);
                    std::thread::sleep(Duration::from_millis(*pause));
                }
                w.flush().unwrap();
                if stop_early {
                    drop(feed);
                    let got = reader.join().unwrap();
                    prop_assert!(got.is_err());
                } else {
                    feed.finish(sent.len() as u64);
                    prop_assert_eq!(reader.join().unwrap().unwrap(), sent);
                }
            }
        }
    }

    #[test]
    fn bytes_past_the_declared_end_are_not_read() {
        assert_eq!(read_finished(b"0123456789", 4).unwrap(), b"0123");
    }
}
