//! Sync: the answers this device gives ([`LibraryHandler`], the service's
//! [`RequestHandler`]) and the checks on the answers it gets ([`check_page`]).
//!
//! A `SyncRequest` names a library and a cursor (an HLC); the answer is one page of the
//! entries changed strictly after it, in HLC order, with `has_more` when the requester
//! should ask again from the page's last timestamp.

use std::sync::Arc;

use tether::{
    ErrorCode, ErrorReply, Hlc, LibraryAnnounce, NetworkMessage, PairedPeer, RequestHandler,
    SyncEntry, SyncRequest, SyncResponse, Uuid,
};

use crate::{PageError, Store, StoreError};

/// The most entries in one `SyncResponse` by default. The wire allows
/// [`MAX_PAGE_SIZE`], but a control message is at most
/// [`MAX_CONTROL_LEN`](tether::limits::MAX_CONTROL_LEN) and a path up to
/// [`MAX_PATH_LEN`](tether::limits::MAX_PATH_LEN): 128 entries always fit.
pub const DEFAULT_PAGE_SIZE: usize = 128;
/// The wire's limit on entries in one `SyncResponse`.
pub const MAX_PAGE_SIZE: usize = tether::limits::MAX_SYNC_ENTRIES;

/// Answers `SyncRequest` and `LibraryRequest` from the store. Every paired device may read
/// every library here (an app with per-library sharing would check `peer` first).
#[derive(Debug, Clone)]
pub struct LibraryHandler {
    store: Arc<Store>,
    page_size: usize,
}

impl LibraryHandler {
    /// A handler that answers from `store`, at most `page_size` entries per page (clamped to
    /// `1..=`[`MAX_PAGE_SIZE`]).
    pub fn new(store: Arc<Store>, page_size: usize) -> Self {
        Self {
            store,
            page_size: page_size.clamp(1, MAX_PAGE_SIZE),
        }
    }

    fn sync(&self, request: &SyncRequest) -> Result<NetworkMessage, ErrorReply> {
        if self
            .store
            .library(request.library_id)
            .map_err(|error| internal(&error))?
            .is_none()
        {
            return Err(not_found(request.library_id));
        }
        let (entries, has_more) = self
            .store
            .changes_after(request.library_id, request.after, self.page_size)
            .map_err(|error| internal(&error))?;
        Ok(NetworkMessage::SyncResponse(SyncResponse {
            library_id: request.library_id,
            entries,
            has_more,
        }))
    }

    fn describe(&self, library_id: Uuid) -> Result<NetworkMessage, ErrorReply> {
        let info = self
            .store
            .library_info(library_id)
            .map_err(|error| internal(&error))?
            .ok_or_else(|| not_found(library_id))?;
        Ok(NetworkMessage::LibraryAnnounce(LibraryAnnounce {
            libraries: vec![info],
        }))
    }
}

impl RequestHandler for LibraryHandler {
    async fn answer(
        &self,
        _peer: PairedPeer,
        request: NetworkMessage,
    ) -> Result<NetworkMessage, ErrorReply> {
        // redb is blocking: off the async workers.
        let handler = self.clone();
        tokio::task::spawn_blocking(move || match request {
            NetworkMessage::SyncRequest(request) => handler.sync(&request),
            NetworkMessage::LibraryRequest(request) => handler.describe(request.library_id),
            _ => Err(ErrorReply {
                code: ErrorCode::Unsupported,
                message: "not a library request".to_owned(),
            }),
        })
        .await
        .map_err(|_| ErrorReply {
            code: ErrorCode::Internal,
            message: "the library store failed".to_owned(),
        })?
    }
}

/// Checks a peer's `SyncResponse` to a request for `library_id` after `after`: same library,
/// entries strictly ascending after the cursor, progress when more are promised. Returns the
/// next cursor.
pub fn check_page(library_id: Uuid, after: Hlc, page: &SyncResponse) -> Result<Hlc, PageError> {
    if page.library_id != library_id {
        return Err(PageError::WrongLibrary);
    }
    let mut last = after;
    for SyncEntry { hlc, .. } in &page.entries {
        if *hlc <= last {
            return Err(PageError::OutOfOrder);
        }
        last = *hlc;
    }
    if page.has_more && page.entries.is_empty() {
        return Err(PageError::NoProgress);
    }
    Ok(last)
}

fn not_found(library_id: Uuid) -> ErrorReply {
    ErrorReply {
        code: ErrorCode::NotFound,
        message: format!("no library {library_id}"),
    }
}

fn internal(error: &StoreError) -> ErrorReply {
    tracing::warn!(error = %tether::error_chain(error), "answering from the library store");
    ErrorReply {
        code: ErrorCode::Internal,
        message: "the library store failed".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(physical_ms: u64) -> Hlc {
        Hlc {
            physical_ms,
            logical: 0,
            node: 1,
        }
    }

    fn entry(physical_ms: u64) -> SyncEntry {
        SyncEntry {
            entry_id: Uuid::new_v4(),
            path: "a".to_owned(),
            size: 0,
            hash: None,
            hlc: stamp(physical_ms),
            deleted: false,
        }
    }

    #[test]
    fn a_page_is_checked_before_it_is_merged() {
        let library_id = Uuid::new_v4();
        let page = |entries, has_more| SyncResponse {
            library_id,
            entries,
            has_more,
        };
        let good = page(vec![entry(2), entry(3)], true);
        assert_eq!(check_page(library_id, stamp(1), &good), Ok(stamp(3)));
        assert_eq!(
            check_page(Uuid::new_v4(), stamp(1), &good),
            Err(PageError::WrongLibrary)
        );
        assert_eq!(
            check_page(library_id, stamp(2), &good),
            Err(PageError::OutOfOrder)
        );
        assert_eq!(
            check_page(library_id, stamp(1), &page(vec![entry(3), entry(2)], false)),
            Err(PageError::OutOfOrder)
        );
        assert_eq!(
            check_page(library_id, stamp(1), &page(Vec::new(), true)),
            Err(PageError::NoProgress)
        );
        assert_eq!(
            check_page(library_id, stamp(1), &page(Vec::new(), false)),
            Ok(stamp(1))
        );
    }
}
