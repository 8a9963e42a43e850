//! The pairing lobby: who may hold a pairing connection, how many at once, and for how long.
//!
//! `tether/pairing/1` is the one ALPN a stranger may use, so everything a stranger can make
//! the node hold through it is bounded here:
//!
//! - **A closed door.** While no code or ticket is shown the gate refuses the ALPN right after
//!   the TLS handshake ([`Lobby::admits`]).
//! - **Seats.** At most [`MAX_SEATS`] pairing connections at once, and at most
//!   [`MAX_SEATS_PER_PEER`] per endpoint id. A newcomer finding every seat taken evicts the
//!   oldest connection that has been silent for [`EVICTION_GRACE`] (it sent no message in that
//!   time), so a flood of silent connections cannot keep a real joiner out: the joiner sends
//!   its Hello at once, and is refused only while every seat holds a handshake or a connection
//!   younger than the grace; it then tries again (`join_pairing` does, for a while).
//! - **Deadlines.** [`FIRST_MESSAGE_TIMEOUT`] from the TLS handshake to the first message, and
//!   [`EXCHANGE_TIMEOUT`] for the whole exchange; the connection is closed at either.
//! - **Quiet failures.** At most [`FAILURE_REPORTS_PER_MINUTE`] failures a minute are logged
//!   and reported as events; the rest are counted and summed up in the next report.
//!
//! Every operation is O([`MAX_SEATS`]) at most, whatever the number of connections tried.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use tether_identity::NodeId;
use tokio::sync::Notify;

/// Most pairing connections held at once.
pub(crate) const MAX_SEATS: usize = 16;
/// Most pairing connections held at once for one endpoint id.
pub(crate) const MAX_SEATS_PER_PEER: usize = 2;
/// From the TLS handshake to the joiner's first message (its Hello).
pub(crate) const FIRST_MESSAGE_TIMEOUT: Duration = Duration::from_secs(5);
/// The whole exchange, from the TLS handshake to the last message.
pub(crate) const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a connection may stay silent before a newcomer may take its seat.
pub(crate) const EVICTION_GRACE: Duration = Duration::from_secs(1);
/// Most pairing failures logged and reported as events in a minute.
pub(crate) const FAILURE_REPORTS_PER_MINUTE: u32 = 10;
/// The window [`FAILURE_REPORTS_PER_MINUTE`] counts in.
const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// Why the lobby would not seat a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Full {
    /// No code or ticket is shown.
    Closed,
    /// This endpoint id holds its share of seats already.
    PeerBusy,
    /// Every seat holds a handshake in progress.
    Busy,
}

/// The pairing connections held now. Shared by the gate and the pairing handler.
#[derive(Debug, Default)]
pub(crate) struct Lobby {
    open: AtomicBool,
    next_seat: AtomicU64,
    seats: Mutex<Vec<SeatState>>,
    failures: Mutex<FailureWindow>,
}

#[derive(Debug)]
struct SeatState {
    id: u64,
    peer: NodeId,
    /// Has sent a message: no longer evictable.
    active: bool,
    entered: Instant,
    kick: Arc<Notify>,
}

#[derive(Debug, Default)]
struct FailureWindow {
    started: Option<Instant>,
    reported: u32,
    suppressed: u64,
}

impl Lobby {
    /// Opens the door when a code is shown, closes it when none is.
    pub(crate) fn set_open(&self, open: bool) {
        self.open.store(open, Ordering::Release);
    }

    /// Whether the gate lets a pairing connection from `peer` through to the handler: the
    /// door is open, `peer` holds fewer than its share of seats, and a seat is free or can be
    /// freed. [`Self::enter`] decides again (connections race through the gate).
    pub(crate) fn admits(&self, peer: &NodeId) -> Result<(), Full> {
        if !self.open.load(Ordering::Acquire) {
            return Err(Full::Closed);
        }
        let seats = self.seats.lock();
        check_room(&seats, peer, Instant::now()).map(drop)
    }

    /// Takes a seat for `peer`'s connection, evicting the oldest silent one if every seat is
    /// taken. The seat is given back when the returned [`Seat`] is dropped.
    pub(crate) fn enter(self: &Arc<Self>, peer: NodeId) -> Result<Seat, Full> {
        self.enter_at(peer, Instant::now())
    }

    fn enter_at(self: &Arc<Self>, peer: NodeId, now: Instant) -> Result<Seat, Full> {
        if !self.open.load(Ordering::Acquire) {
            return Err(Full::Closed);
        }
        let mut seats = self.seats.lock();
        if let Some(evict) = check_room(&seats, &peer, now)? {
            let evicted = seats.remove(evict);
            evicted.kick.notify_one();
        }
        let id = self.next_seat.fetch_add(1, Ordering::Relaxed);
        let kick = Arc::new(Notify::new());
        seats.push(SeatState {
            id,
            peer,
            active: false,
            entered: now,
            kick: Arc::clone(&kick),
        });
        Ok(Seat {
            lobby: Arc::clone(self),
            id,
            kick,
        })
    }

    /// The number of pairing connections held now.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.seats.lock().len()
    }

    /// Whether a failure seen `now` may be logged and reported; `Some(n)` with the number of
    /// failures suppressed since the last one reported.
    pub(crate) fn may_report_failure(&self, now: Instant) -> Option<u64> {
        let mut window = self.failures.lock();
        let fresh = window
            .started
            .is_none_or(|started| now.saturating_duration_since(started) >= FAILURE_WINDOW);
        if fresh {
            window.started = Some(now);
            window.reported = 0;
        }
        if window.reported >= FAILURE_REPORTS_PER_MINUTE {
            window.suppressed = window.suppressed.saturating_add(1);
            return None;
        }
        window.reported += 1;
        Some(std::mem::take(&mut window.suppressed))
    }
}

/// `Ok(None)`: a seat is free; `Ok(Some(i))`: seat `i` (the oldest one silent for the grace)
/// must be freed.
fn check_room(seats: &[SeatState], peer: &NodeId, now: Instant) -> Result<Option<usize>, Full> {
    if seats.iter().filter(|seat| seat.peer == *peer).count() >= MAX_SEATS_PER_PEER {
        return Err(Full::PeerBusy);
    }
    if seats.len() < MAX_SEATS {
        return Ok(None);
    }
    // Seats are pushed in arrival order: the first silent one is the oldest.
    seats
        .iter()
        .position(|seat| {
            !seat.active && now.saturating_duration_since(seat.entered) >= EVICTION_GRACE
        })
        .map(Some)
        .ok_or(Full::Busy)
}

/// One pairing connection's place in the [`Lobby`].
#[derive(Debug)]
pub(crate) struct Seat {
    lobby: Arc<Lobby>,
    id: u64,
    kick: Arc<Notify>,
}

impl Seat {
    /// The connection sent a message: it is a handshake now, and is no longer evicted.
    pub(crate) fn activate(&self) {
        let mut seats = self.lobby.seats.lock();
        if let Some(seat) = seats.iter_mut().find(|seat| seat.id == self.id) {
            seat.active = true;
        }
    }

    /// Resolves when a newcomer took this seat (it was silent and the oldest).
    pub(crate) async fn evicted(&self) {
        self.kick.notified().await;
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.lobby.seats.lock().retain(|seat| seat.id != self.id);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::{
        EVICTION_GRACE, FAILURE_REPORTS_PER_MINUTE, Full, Lobby, MAX_SEATS, MAX_SEATS_PER_PEER,
    };
    use std::sync::Arc;
    use std::time::{Duration, Instant};
    use tether_identity::NodeId;

    fn peer(n: u8) -> NodeId {
        tether_identity::NetworkIdentity::from_secret_bytes(&[n; 32]).node_id()
    }

    #[test]
    fn a_closed_door_admits_nobody() {
        let lobby = Arc::new(Lobby::default());
        assert_eq!(lobby.admits(&peer(1)), Err(Full::Closed));
        assert_eq!(lobby.enter(peer(1)).map(drop), Err(Full::Closed));
        lobby.set_open(true);
        assert_eq!(lobby.admits(&peer(1)), Ok(()));
    }

    #[test]
    fn one_peer_holds_at_most_its_share() {
        let lobby = Arc::new(Lobby::default());
        lobby.set_open(true);
        let seats: Vec<_> = (0..MAX_SEATS_PER_PEER)
            .map(|_| lobby.enter(peer(1)).unwrap())
            .collect();
        assert_eq!(lobby.admits(&peer(1)), Err(Full::PeerBusy));
        assert_eq!(lobby.enter(peer(1)).map(drop), Err(Full::PeerBusy));
        drop(seats);
        assert_eq!(lobby.held(), 0);
        assert!(lobby.enter(peer(1)).is_ok());
    }

    #[tokio::test]
    async fn a_newcomer_evicts_the_oldest_silent_connection() {
        let lobby = Arc::new(Lobby::default());
        lobby.set_open(true);
        let start = Instant::now();
        let mut seats: Vec<_> = (0..MAX_SEATS)
            .map(|n| {
                lobby
                    .enter_at(peer(u8::try_from(n).unwrap()), start)
                    .unwrap()
            })
            .collect();
        // Silent, but for less than the grace: nobody is evicted (a joiner about to send its
        // Hello keeps its seat).
        assert_eq!(lobby.enter_at(peer(199), start).map(drop), Err(Full::Busy));
        // The first one is in a handshake; the second is the oldest silent one.
        seats[0].activate();
        let newcomer = lobby.enter_at(peer(200), start + EVICTION_GRACE).unwrap();
        assert_eq!(lobby.held(), MAX_SEATS);
        tokio::time::timeout(Duration::from_secs(1), seats[1].evicted())
            .await
            .expect("the oldest silent seat was not told");
        // Every seat in a handshake: the next newcomer is refused.
        for seat in seats.iter().skip(2) {
            seat.activate();
        }
        newcomer.activate();
        assert_eq!(lobby.admits(&peer(201)), Err(Full::Busy));
        assert_eq!(
            lobby
                .enter_at(peer(201), start + 10 * EVICTION_GRACE)
                .map(drop),
            Err(Full::Busy)
        );
        seats.truncate(1);
        assert_eq!(lobby.held(), 2);
    }

    #[test]
    fn failures_are_reported_at_most_ten_a_minute() {
        let lobby = Lobby::default();
        let start = Instant::now();
        for _ in 0..FAILURE_REPORTS_PER_MINUTE {
            assert_eq!(lobby.may_report_failure(start), Some(0));
        }
        for _ in 0..500 {
            assert_eq!(lobby.may_report_failure(start), None);
        }
        // The next minute's first report says how many were left out.
        let later = start + Duration::from_secs(61);
        assert_eq!(lobby.may_report_failure(later), Some(500));
        assert_eq!(lobby.may_report_failure(later), Some(0));
    }
}
