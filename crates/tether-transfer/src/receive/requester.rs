//! The receiver's requests for missing chunks: a sans-IO [`Requester`] that decides what to ask
//! and when, given what has arrived, and [`ask_all`], which drives it over the control stream
//! while the data phase reads.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::Ordering;

use tether_wire::FileRequest;
use uuid::Uuid;

use crate::chunk::{CHUNK, ChunkSet};
use crate::error::TransferError;
use crate::link::ControlWriter;
use crate::protocol::{MAX_FILES_PER_WANTS, MAX_RANGES_PER_WANT, Message, Plan, Want, Wants};
use crate::receive::data::RecvShared;

/// Most bytes asked for and not yet received. Enough to keep a fast link busy between two
/// top-ups; small enough that the sender's queue and the requests in flight stay bounded
/// whatever the number of files.
const WINDOW_BYTES: u64 = 64 << 20;

/// Most files asked for and not yet complete.
const WINDOW_FILES: u64 = 4096;

/// One file's missing chunks, not yet asked for.
#[derive(Debug)]
struct Ask {
    entry_id: Uuid,
    size: u64,
    chunks: u64,
    missing: Vec<Range<u64>>,
}

impl Ask {
    fn bytes(&self) -> u64 {
        self.missing
            .iter()
            .map(|r| {
                r.end
                    .saturating_mul(CHUNK)
                    .min(self.size)
                    .saturating_sub(r.start.saturating_mul(CHUNK))
            })
            .sum()
    }

    /// The missing chunks are one run to the end of a file of several chunks (the common
    /// resume, and every such file of a fresh transfer): asked with one `FileRequest`.
    fn is_tail(&self) -> bool {
        matches!(self.missing.as_slice(), [only] if only.end == self.chunks && self.chunks > 1)
    }
}

/// The receiver's requests for missing chunks, in the order of the manifest, asked a window
/// at a time while the data phase reads: at most [`WINDOW_BYTES`] and [`WINDOW_FILES`]
/// outstanding (a single file's request may exceed the bytes), topped up whenever half of it
/// has arrived. So the requests in flight, and the sender's queue, stay small however many
/// files there are, and the receiver never writes requests without reading: the stream the
/// data comes on is drained all the while.
///
/// For each file: a `FileRequest` when its missing chunks are one run to the end (see
/// [`Ask::is_tail`]), `Want` ranges otherwise; `Want`s are gathered into one `Wants` message
/// of up to [`MAX_FILES_PER_WANTS`] files when the sender reads them.
#[derive(Debug)]
pub(super) struct Requester {
    todo: VecDeque<Ask>,
    batch: bool,
    asked_files: u64,
    asked_bytes: u64,
    plan: Plan,
}

impl Requester {
    /// `batch`: the sender's offer says it reads `Wants`.
    pub(super) fn new(batch: bool) -> Self {
        Requester {
            todo: VecDeque::new(),
            batch,
            asked_files: 0,
            asked_bytes: 0,
            plan: Plan { files: 0, bytes: 0 },
        }
    }

    /// Adds the chunks of one file that `have` lacks, if any.
    pub(super) fn add(&mut self, entry_id: Uuid, size: u64, have: &ChunkSet) {
        let missing = have.missing_ranges();
        if missing.is_empty() {
            return;
        }
        let ask = Ask {
            entry_id,
            size,
            chunks: have.len(),
            missing,
        };
        self.plan.files += 1;
        self.plan.bytes = self.plan.bytes.saturating_add(ask.bytes());
        self.todo.push_back(ask);
    }

    /// What will be asked for in all.
    pub(super) fn plan(&self) -> Plan {
        self.plan
    }

    /// Whether everything has been asked for.
    pub(super) fn is_done(&self) -> bool {
        self.todo.is_empty()
    }

    /// Bytes of the chunks asked for so far.
    pub(super) fn asked_bytes(&self) -> u64 {
        self.asked_bytes
    }

    /// Bytes and files asked for and not yet in, given the bytes `received` and the files
    /// `completed` so far.
    fn outstanding(&self, received: u64, completed: u64) -> (u64, u64) {
        (
            self.asked_bytes.saturating_sub(received),
            self.asked_files.saturating_sub(completed),
        )
    }

    /// Whether to ask for more now: something is left, and at most half the window is out.
    pub(super) fn wants_top_up(&self, received: u64, completed: u64) -> bool {
        let (bytes, files) = self.outstanding(received, completed);
        !self.is_done() && bytes <= WINDOW_BYTES / 2 && files <= WINDOW_FILES / 2
    }

    /// The messages that fill the window, in the order to send them.
    pub(super) fn top_up(&mut self, received: u64, completed: u64) -> Vec<Message> {
        let mut out = Vec::new();
        let mut pending = Pending::default();
        loop {
            let (bytes, files) = self.outstanding(received, completed);
            if bytes >= WINDOW_BYTES || files >= WINDOW_FILES {
                break;
            }
            let Some(ask) = self.todo.pop_front() else {
                break;
            };
            self.asked_files += 1;
            self.asked_bytes = self.asked_bytes.saturating_add(ask.bytes());
            if ask.is_tail() {
                // Keeps the order asked: what was gathered goes first.
                pending.flush(&mut out);
                out.push(Message::FileRequest(FileRequest {
                    entry_id: ask.entry_id,
                    resume_from: ask.missing.first().map_or(0, |r| r.start) * CHUNK,
                }));
                continue;
            }
            for ranges in ask.missing.chunks(MAX_RANGES_PER_WANT) {
                let want = Want {
                    entry_id: ask.entry_id,
                    ranges: ranges.iter().map(|r| [r.start, r.end]).collect(),
                };
                if !self.batch {
                    out.push(Message::Want(want));
                    continue;
                }
                if pending.wants.len() >= MAX_FILES_PER_WANTS
                    || pending.ranges + want.ranges.len() > MAX_RANGES_PER_WANT
                {
                    pending.flush(&mut out);
                }
                pending.ranges += want.ranges.len();
                pending.wants.push(want);
            }
        }
        pending.flush(&mut out);
        out
    }
}

/// `Want`s gathered for one `Wants` message.
#[derive(Debug, Default)]
struct Pending {
    wants: Vec<Want>,
    ranges: usize,
}

impl Pending {
    /// Moves what was gathered to `out` (one `Want` alone as a `Want`).
    fn flush(&mut self, out: &mut Vec<Message>) {
        self.ranges = 0;
        let message = match self.wants.len() {
            0 => return,
            1 => match self.wants.pop() {
                Some(want) => Message::Want(want),
                None => return,
            },
            _ => Message::Wants(Wants {
                files: std::mem::take(&mut self.wants),
            }),
        };
        out.push(message);
    }
}

/// Asks for everything, a window at a time, as `shared` reports chunks and files done.
pub(super) async fn ask_all(
    mut requester: Requester,
    writer: &ControlWriter,
    shared: &RecvShared,
) -> Result<(), TransferError> {
    let arrived = || {
        (
            shared.received.load(Ordering::Relaxed),
            shared.completed.load(Ordering::Relaxed),
        )
    };
    while !requester.is_done() {
        loop {
            let progressed = shared.progressed.notified();
            tokio::pin!(progressed);
            progressed.as_mut().enable();
            let (received, completed) = arrived();
            if requester.wants_top_up(received, completed) {
                break;
            }
            progressed.await;
        }
        let (received, completed) = arrived();
        let messages = requester.top_up(received, completed);
        shared
            .asked
            .store(requester.asked_bytes(), Ordering::Relaxed);
        for message in &messages {
            writer.send(message).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::chunk::{chunk_count, chunk_len};

    /// A file: its size and which of its chunks are kept.
    fn file() -> impl Strategy<Value = (u64, Vec<bool>)> {
        (0u64..40 << 20).prop_flat_map(|size| {
            let chunks = usize::try_from(chunk_count(size)).unwrap();
            (Just(size), prop::collection::vec(any::<bool>(), chunks))
        })
    }

    fn have_of(kept: &[bool]) -> ChunkSet {
        let mut have = ChunkSet::new(kept.len() as u64);
        for (index, _) in kept.iter().enumerate().filter(|(_, k)| **k) {
            have.insert(index as u64);
        }
        have
    }

    /// Chunks asked for, per entry id (file `i` is id `i`), from the messages sent.
    fn asked_by(messages: &[Message], sizes: &[u64], asked: &mut [Vec<u32>]) {
        let mut count = |id: Uuid, start: u64, end: u64| {
            let file = usize::try_from(id.as_u128()).unwrap();
            for index in start..end {
                asked[file][usize::try_from(index).unwrap()] += 1;
            }
        };
        for message in messages {
            match message {
                Message::FileRequest(request) => {
                    let size = sizes[usize::try_from(request.entry_id.as_u128()).unwrap()];
                    assert_eq!(request.resume_from % CHUNK, 0);
                    count(
                        request.entry_id,
                        request.resume_from / CHUNK,
                        chunk_count(size),
                    );
                }
                Message::Want(want) => {
                    for [start, end] in &want.ranges {
                        count(want.entry_id, *start, *end);
                    }
                }
                Message::Wants(wants) => {
                    assert!(wants.files.len() >= 2 && wants.files.len() <= MAX_FILES_PER_WANTS);
                    let ranges: usize = wants.files.iter().map(|w| w.ranges.len()).sum();
                    assert!(ranges <= MAX_RANGES_PER_WANT);
                    for want in &wants.files {
                        for [start, end] in &want.ranges {
                            count(want.entry_id, *start, *end);
                        }
                    }
                }
                other => panic!("the requester sent {other:?}"),
            }
        }
    }

    proptest! {
        /// Whatever was kept and however the data arrives, each missing chunk is asked for
        /// exactly once, no kept chunk is asked for, the plan says what is asked, and the kept
        /// and asked bytes add up to the files' sizes. Never more than a window (plus one file)
        /// is out.
        #[test]
        fn every_missing_chunk_is_asked_once(
            files in prop::collection::vec(file(), 0..40),
            batch in any::<bool>(),
            arrivals in prop::collection::vec(0u64..100, 1..50),
        ) {
            let sizes: Vec<u64> = files.iter().map(|(size, _)| *size).collect();
            let mut requester = Requester::new(batch);
            let mut kept_bytes = 0;
            for (index, (size, kept)) in files.iter().enumerate() {
                let have = have_of(kept);
                kept_bytes += have.iter().map(|i| chunk_len(*size, i).unwrap() as u64).sum::<u64>();
                requester.add(Uuid::from_u128(index as u128), *size, &have);
            }
            let plan = requester.plan();
            let mut asked: Vec<Vec<u32>> =
                files.iter().map(|(_, kept)| vec![0; kept.len()]).collect();
            let (mut received, mut completed) = (0u64, 0u64);
            let mut arrivals = arrivals.into_iter().cycle();
            let mut rounds = 0;
            while !requester.is_done() {
                rounds += 1;
                prop_assert!(rounds < 10_000, "the requester never finished");
                if requester.wants_top_up(received, completed) {
                    let before = requester.asked_bytes();
                    let messages = requester.top_up(received, completed);
                    prop_assert!(!messages.is_empty());
                    prop_assert!(batch || messages.iter().all(|m| !matches!(m, Message::Wants(_))));
                    asked_by(&messages, &sizes, &mut asked);
                    let biggest = files.iter().map(|(s, _)| *s).max().unwrap_or(0);
                    prop_assert!(
                        requester.asked_bytes() - received <= WINDOW_BYTES + biggest,
                        "{} out after asking {}", requester.asked_bytes() - received,
                        requester.asked_bytes() - before
                    );
                }
                // Some of what is out arrives (a percentage of it), files with it.
                let out = requester.asked_bytes() - received;
                received += out * arrivals.next().unwrap_or(100).max(1) / 100;
                if received == requester.asked_bytes() {
                    completed = requester.asked_files;
                }
            }
            for ((_, kept), asked) in files.iter().zip(&asked) {
                for (was_kept, times) in kept.iter().zip(asked) {
                    prop_assert_eq!(*times, u32::from(!*was_kept));
                }
            }
            prop_assert_eq!(plan.bytes, requester.asked_bytes());
            prop_assert_eq!(kept_bytes + requester.asked_bytes(), sizes.iter().sum::<u64>());
            let lacking = files.iter().filter(|(_, kept)| kept.iter().any(|k| !k)).count();
            prop_assert_eq!(plan.files, lacking as u64);
        }
    }

    #[test]
    fn a_tail_is_one_file_request_and_a_gap_a_want() {
        let mut requester = Requester::new(true);
        let mut have = ChunkSet::new(4);
        have.insert(0);
        requester.add(Uuid::from_u128(1), 4 * CHUNK, &have);
        have.insert(3);
        have.remove(0);
        requester.add(Uuid::from_u128(2), 4 * CHUNK, &have);
        let messages = requester.top_up(0, 0);
        assert_eq!(
            messages,
            [
                Message::FileRequest(FileRequest {
                    entry_id: Uuid::from_u128(1),
                    resume_from: CHUNK,
                }),
                Message::Want(Want {
                    entry_id: Uuid::from_u128(2),
                    ranges: vec![[0, 3]],
                }),
            ]
        );
        assert!(requester.is_done());
        assert_eq!(requester.asked_bytes(), 6 * CHUNK);
    }
}
