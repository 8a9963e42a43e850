//! What the receiver has asked the sender for, without IO: every control message the receiver
//! sends in the data phase goes through [`Requested::handle`], which checks it against the files
//! of the manifest, records the chunks asked for, and says what to do (answer a `FileRequest`,
//! queue chunk ranges, stop at `Complete`). The data phase's reader carries that out.

use tether_wire::{ContentHash, FileRequest, FileResponse};
use uuid::Uuid;

use crate::chunk::{CHUNK, CHUNK_SIZE, ChunkSet, chunk_count, chunk_len};
use crate::error::{LocalError, PeerError, TransferError};
use crate::protocol::{Complete, MAX_FILES_PER_WANTS, MAX_RANGES_PER_WANT, Message, Want, Wants};

/// The files a sender offers, as [`Requested`] looks them up.
pub(crate) trait Offered {
    /// The index of the file with entry id `id`, if the manifest has it.
    fn find(&self, id: Uuid) -> Option<usize>;
    /// File `index`'s size.
    fn size(&self, index: usize) -> Option<u64>;
    /// File `index`'s BLAKE3 hash.
    fn hash(&self, index: usize) -> Option<ContentHash>;
}

/// A file (by index) and chunk ranges `[start, end)` of it, as a request names them.
type Asked = (usize, Vec<[u64; 2]>);

/// What the sender does after one message from the receiver.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Answers with `response` (if any), then queues chunks `start..end` of each `(file, start,
    /// end)`, in order.
    Serve {
        response: Option<FileResponse>,
        ranges: Vec<(usize, u64, u64)>,
    },
    /// The receiver has verified and placed every file.
    Complete(Complete),
    /// Nothing to send (the receiver's `Plan`).
    Nothing,
}

/// Which chunks the receiver has asked for so far, and their bytes.
#[derive(Debug)]
pub(crate) struct Requested {
    sets: Vec<ChunkSet>,
    bytes: u64,
    /// Bytes the receiver said (in its `Plan`) it will ask for in all.
    planned: Option<u64>,
    /// A `Plan` or a request has arrived: progress can be counted.
    heard: bool,
}

impl Requested {
    /// Nothing asked yet, of files of these sizes.
    pub(crate) fn new(sizes: impl IntoIterator<Item = u64>) -> Self {
        Requested {
            sets: sizes
                .into_iter()
                .map(|size| ChunkSet::new(chunk_count(size)))
                .collect(),
            bytes: 0,
            planned: None,
            heard: false,
        }
    }

    /// Bytes of all chunks asked for so far (each chunk once, however often it was asked).
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Bytes the receiver said, in its `Plan`, it will ask for in all.
    pub(crate) fn planned(&self) -> Option<u64> {
        self.planned
    }

    /// Whether the receiver has said what it lacks (a `Plan` or a request).
    pub(crate) fn heard(&self) -> bool {
        self.heard
    }

    /// Bytes of `total` that count as done once `sent` are sent: what the receiver will not ask
    /// for counts as done once it said so, in its `Plan`, or (a receiver that sends none asks
    /// for everything at once) by asking.
    pub(crate) fn done(&self, total: u64, sent: u64) -> u64 {
        let skipped = match (self.planned, self.heard) {
            (Some(planned), _) => total.saturating_sub(planned),
            (None, true) => total.saturating_sub(self.bytes),
            (None, false) => 0,
        };
        skipped.saturating_add(sent).min(total)
    }

    /// Takes one message from the receiver. Only entries of the manifest can be named, only
    /// chunks they have; a `Plan` comes before any request or not at all.
    pub(crate) fn handle(
        &mut self,
        message: Message,
        files: &impl Offered,
    ) -> Result<Step, TransferError> {
        let (response, asked) = match message {
            Message::Want(want) => (None, vec![checked_want(files, want)?]),
            Message::Wants(Wants { files: wants }) => (None, checked_wants(files, wants)?),
            Message::FileRequest(request) => {
                let (response, asked) = file_request(files, request)?;
                (Some(response), vec![asked])
            }
            Message::Plan(plan) => {
                if self.heard {
                    return Err(PeerError::Protocol("a Plan after the first request").into());
                }
                self.planned = Some(plan.bytes);
                self.heard = true;
                return Ok(Step::Nothing);
            }
            Message::Complete(complete) => return Ok(Step::Complete(complete)),
            Message::Abort(abort) => return Err(PeerError::from(abort).into()),
            _ => return Err(PeerError::Protocol("unexpected message from the receiver").into()),
        };
        self.heard = true;
        let mut ranges = Vec::new();
        for (file, asked) in asked {
            let size = files.size(file).unwrap_or(0);
            for [start, end] in asked {
                if let Some(set) = self.sets.get_mut(file) {
                    for index in start..end {
                        if set.insert(index) {
                            let len = chunk_len(size, index).map_or(0, |l| l as u64);
                            self.bytes = self.bytes.saturating_add(len);
                        }
                    }
                }
                ranges.push((file, start, end));
            }
        }
        Ok(Step::Serve { response, ranges })
    }
}

/// A `FileRequest`, checked: the answer, and the chunks from the one holding `resume_from` (chunks
/// are the unit of verification) to the end.
fn file_request(
    files: &impl Offered,
    FileRequest {
        entry_id,
        resume_from,
    }: FileRequest,
) -> Result<(FileResponse, Asked), TransferError> {
    let file = file_of(files, entry_id)?;
    let size = files
        .size(file)
        .ok_or_else(|| internal("a file without its size"))?;
    if resume_from > size {
        return Err(PeerError::UnknownEntry(entry_id).into());
    }
    let first = resume_from / CHUNK;
    let response = FileResponse {
        entry_id,
        size,
        hash: files
            .hash(file)
            .ok_or_else(|| internal("a file without its hash"))?,
        chunk_size: CHUNK_SIZE,
        offset: first * CHUNK,
    };
    Ok((response, (file, vec![[first, chunk_count(size)]])))
}

/// The files a `Wants` names and their ranges, checked: at most [`MAX_FILES_PER_WANTS`] files
/// and [`MAX_RANGES_PER_WANT`] ranges in all, each as [`checked_want`] checks it.
fn checked_wants(files: &impl Offered, wants: Vec<Want>) -> Result<Vec<Asked>, TransferError> {
    if wants.len() > MAX_FILES_PER_WANTS {
        return Err(PeerError::Protocol("too many files in one Wants").into());
    }
    let ranges: usize = wants.iter().map(|w| w.ranges.len()).sum();
    if ranges > MAX_RANGES_PER_WANT {
        return Err(PeerError::Protocol("too many ranges in one Wants").into());
    }
    wants
        .into_iter()
        .map(|want| checked_want(files, want))
        .collect()
}

/// The file a `Want` names and its ranges, checked: an entry of the manifest, at most
/// [`MAX_RANGES_PER_WANT`] non-empty ranges of chunks it has.
pub(crate) fn checked_want(
    files: &impl Offered,
    Want { entry_id, ranges }: Want,
) -> Result<Asked, TransferError> {
    let file = file_of(files, entry_id)?;
    let chunks = chunk_count(files.size(file).unwrap_or(0));
    if ranges.len() > MAX_RANGES_PER_WANT || ranges.iter().any(|[s, e]| s >= e || *e > chunks) {
        return Err(PeerError::UnknownEntry(entry_id).into());
    }
    Ok((file, ranges))
}

fn file_of(files: &impl Offered, entry_id: Uuid) -> Result<usize, TransferError> {
    files
        .find(entry_id)
        .ok_or_else(|| PeerError::UnknownEntry(entry_id).into())
}

/// A lookup whose answer this side itself guarantees failed: a bug, not the peer's doing.
fn internal(what: &str) -> TransferError {
    LocalError::Task(what.into()).into()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::protocol::Plan;

    /// Files by size, entry id `i + 1` for file `i`.
    struct Files(Vec<u64>);

    impl Offered for Files {
        fn find(&self, id: Uuid) -> Option<usize> {
            let index = usize::try_from(id.as_u128().checked_sub(1)?).ok()?;
            (index < self.0.len()).then_some(index)
        }
        fn size(&self, index: usize) -> Option<u64> {
            self.0.get(index).copied()
        }
        fn hash(&self, index: usize) -> Option<ContentHash> {
            self.size(index).map(|_| ContentHash([7; 32]))
        }
    }

    fn id(file: usize) -> Uuid {
        Uuid::from_u128(file as u128 + 1)
    }

    fn sizes() -> impl Strategy<Value = Vec<u64>> {
        prop::collection::vec(0..6 * CHUNK + 5, 1..6)
    }

    fn want(file: usize, ranges: Vec<[u64; 2]>) -> Message {
        Message::Want(Want {
            entry_id: id(file),
            ranges,
        })
    }

    /// The bytes of chunks `start..end` of a file of `size`.
    fn range_bytes(size: u64, start: u64, end: u64) -> u64 {
        (start..end)
            .map(|i| chunk_len(size, i).map_or(0, |l| l as u64))
            .sum()
    }

    proptest! {
        /// Whatever ranges a receiver asks for, in whatever order and however often, the bytes
        /// counted are those of the distinct chunks asked, never more than the files hold, and
        /// every checked range is queued as asked.
        #[test]
        fn each_chunk_counts_once(
            sizes in sizes(),
            asks in prop::collection::vec((0usize..6, 0u64..8, 1u64..4), 0..40),
        ) {
            let files = Files(sizes.clone());
            let mut requested = Requested::new(sizes.iter().copied());
            let mut asked: Vec<ChunkSet> =
                sizes.iter().map(|&s| ChunkSet::new(chunk_count(s))).collect();
            for (file, start, len) in asks {
                let end = start + len;
                let fits = file < sizes.len() && end <= chunk_count(sizes[file]);
                let step = requested.handle(want(file, vec![[start, end]]), &files);
                if !fits {
                    prop_assert!(matches!(step, Err(TransferError::Peer(PeerError::UnknownEntry(_)))));
                    continue;
                }
                prop_assert_eq!(
                    step.unwrap(),
                    Step::Serve { response: None, ranges: vec![(file, start, end)] }
                );
                asked[file].insert_range(start..end);
            }
            let expected: u64 = sizes
                .iter()
                .zip(&asked)
                .map(|(&size, set)| set.iter().map(|i| range_bytes(size, i, i + 1)).sum::<u64>())
                .sum();
            prop_assert_eq!(requested.bytes(), expected);
            prop_assert!(requested.bytes() <= sizes.iter().sum::<u64>());
        }

        /// A `Want` naming chunks outside its file, an empty or reversed range, or an entry the
        /// manifest does not have is refused, and changes nothing.
        #[test]
        fn hostile_wants_are_refused(
            sizes in sizes(),
            file in 0usize..8,
            start in 0u64..u64::MAX,
            end in 0u64..u64::MAX,
        ) {
            let files = Files(sizes.clone());
            let mut requested = Requested::new(sizes.iter().copied());
            let inside = file < sizes.len() && start < end && end <= chunk_count(sizes[file]);
            let step = requested.handle(want(file, vec![[start, end]]), &files);
            prop_assert_eq!(step.is_ok(), inside);
            if !inside {
                prop_assert_eq!(requested.bytes(), 0);
                prop_assert!(!requested.heard());
            }
        }

        /// A `FileRequest` is answered from the chunk holding `resume_from` to the end; one past
        /// the file's end is refused.
        #[test]
        fn file_requests_ask_for_the_tail(sizes in sizes(), file in 0usize..6, from in 0u64..7 * CHUNK) {
            let files = Files(sizes.clone());
            let mut requested = Requested::new(sizes.iter().copied());
            let request = Message::FileRequest(FileRequest { entry_id: id(file), resume_from: from });
            let step = requested.handle(request, &files);
            let Some(&size) = sizes.get(file) else {
                prop_assert!(step.is_err());
                return Ok(());
            };
            if from > size {
                prop_assert!(matches!(step, Err(TransferError::Peer(PeerError::UnknownEntry(_)))));
                return Ok(());
            }
            let first = from / CHUNK;
            let Ok(Step::Serve { response: Some(response), ranges }) = step else {
                return Err(TestCaseError::fail("no response"));
            };
            prop_assert_eq!(response.offset, first * CHUNK);
            prop_assert_eq!(response.size, size);
            prop_assert_eq!(ranges, vec![(file, first, chunk_count(size))]);
            prop_assert_eq!(requested.bytes(), range_bytes(size, first, chunk_count(size)));
        }
    }

    #[test]
    fn a_plan_comes_first_or_not_at_all() {
        let files = Files(vec![3 * CHUNK]);
        let mut requested = Requested::new([3 * CHUNK]);
        let plan = || {
            Message::Plan(Plan {
                files: 1,
                bytes: CHUNK,
            })
        };
        assert_eq!(requested.handle(plan(), &files).unwrap(), Step::Nothing);
        assert_eq!(requested.done(3 * CHUNK, 0), 2 * CHUNK);
        requested.handle(want(0, vec![[1, 2]]), &files).unwrap();
        assert_eq!(requested.done(3 * CHUNK, CHUNK), 3 * CHUNK);
        assert!(matches!(
            requested.handle(plan(), &files),
            Err(TransferError::Peer(PeerError::Protocol(_)))
        ));
    }

    #[test]
    fn wants_over_the_bounds_are_refused() {
        let files = Files(vec![CHUNK; 2]);
        let mut requested = Requested::new([CHUNK; 2]);
        let one = |file| Want {
            entry_id: id(file),
            ranges: vec![[0, 1]],
        };
        let too_many_files = Wants {
            files: (0..=MAX_FILES_PER_WANTS).map(|_| one(0)).collect(),
        };
        assert!(
            requested
                .handle(Message::Wants(too_many_files), &files)
                .is_err()
        );
        let ranges = vec![[0, 1]; MAX_RANGES_PER_WANT / 2 + 1];
        let too_many_ranges = Wants {
            files: (0..2)
                .map(|f| Want {
                    entry_id: id(f),
                    ranges: ranges.clone(),
                })
                .collect(),
        };
        assert!(
            requested
                .handle(Message::Wants(too_many_ranges), &files)
                .is_err()
        );
        let fine = Wants {
            files: vec![one(0), one(1)],
        };
        assert_eq!(
            requested.handle(Message::Wants(fine), &files).unwrap(),
            Step::Serve {
                response: None,
                ranges: vec![(0, 0, 1), (1, 0, 1)]
            }
        );
        assert_eq!(requested.bytes(), 2 * CHUNK);
    }
}
