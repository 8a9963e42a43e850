//! QUIC flow control and congestion control: what one connection may have in flight.
//!
//! A stream moves at most one receive window per round trip, so what a connection has in
//! flight must exceed the link's bandwidth-delay product: 1 Gbit/s × 50 ms is 6.25 MB,
//! 200 Mbit/s × 100 ms 2.5 MB, while quinn's (noq's) default stream window is 1.25 MB. One
//! stream's window cannot simply grow to that: noq's receiver closes the connection ("too many
//! gaps in stream buffer") once a stream's buffer holds more than 1,024 separate pieces, which
//! a 4 MiB window reaches when a shaper drops every other packet (measured in the network lab).
//! So the stream window stays at 2 MiB and a fat link is filled with several streams (a
//! transfer's lanes) under a larger connection window. A receive window is also memory a
//! connected peer can make us hold (it may send that much before we read), so every window is
//! bounded by [`QuicTuning::MAX_WINDOW`] and the connection's window caps all its streams
//! together (noq's own default leaves it unlimited).

use std::sync::Arc;

use iroh::endpoint::{ControllerFactory, QuicTransportConfig, VarInt};
use noq_proto::congestion::{Bbr3Config, CubicConfig, NewRenoConfig};

use crate::TransportError;

/// The congestion controller each connection uses (the ones noq offers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum CongestionControl {
    /// CUBIC (RFC 9438), as Linux's TCP: noq's default.
    #[default]
    Cubic,
    /// NewReno (RFC 9002's reference controller).
    NewReno,
    /// BBR version 3 (model-based: bandwidth and round trip, not loss).
    Bbr,
}

/// QUIC transport settings of every connection of the endpoint: flow-control windows and the
/// congestion controller. Everything else stays at iroh's defaults (which iroh's hole punching
/// relies on).
///
/// [`QuicTuning::default`] is Tether's choice, measured in the network lab (BENCHMARKS.md,
/// "Network lab"): 2 MiB per stream (the most that stays clear of noq's limit of 1,024 pieces
/// in a stream's buffer under heavy loss), 16 MiB per connection and sent unacknowledged
/// (above 1 Gbit/s × 50 ms), CUBIC. [`QuicTuning::quinn_defaults`] is what noq would use (for
/// comparison). A stream window above 2 MiB lets one stream go faster on a clean long link
/// but risks the connection on a lossy one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct QuicTuning {
    /// Bytes the peer may send on one stream before we read them (flow-control credit per
    /// stream). Caps one stream at this many bytes per round trip.
    pub stream_receive_window: u32,
    /// Bytes the peer may send on all streams of one connection together before we read them:
    /// the most a connection's unread data can hold of our memory.
    pub receive_window: u32,
    /// Bytes we keep sent but unacknowledged (our own memory, per connection).
    pub send_window: u32,
    /// The congestion controller.
    pub congestion: CongestionControl,
}

impl Default for QuicTuning {
    fn default() -> Self {
        Self {
            stream_receive_window: 2 << 20,
            receive_window: 16 << 20,
            send_window: 16 << 20,
            congestion: CongestionControl::Cubic,
        }
    }
}

impl QuicTuning {
    /// The smallest window accepted (a few packets).
    pub const MIN_WINDOW: u32 = 16 << 10;
    /// The largest window accepted: the most one connection's unread data may hold.
    pub const MAX_WINDOW: u32 = 64 << 20;

    /// noq's defaults: a 1.25 MB stream window (sized for 100 Mbit/s at 100 ms), a 10 MB send
    /// window and CUBIC. noq leaves the connection window unlimited; here it is
    /// [`QuicTuning::MAX_WINDOW`], which one stream never reaches.
    pub fn quinn_defaults() -> Self {
        Self {
            stream_receive_window: 1_250_000,
            receive_window: Self::MAX_WINDOW,
            send_window: 10_000_000,
            congestion: CongestionControl::Cubic,
        }
    }

    /// The same windows with congestion controller `congestion`.
    pub fn with_congestion(mut self, congestion: CongestionControl) -> Self {
        self.congestion = congestion;
        self
    }

    /// The same congestion controller with these windows (stream and connection receive
    /// windows, send window; bytes).
    pub fn with_windows(mut self, stream: u32, connection: u32, send: u32) -> Self {
        self.stream_receive_window = stream;
        self.receive_window = connection;
        self.send_window = send;
        self
    }

    /// Checks every window against [`QuicTuning::MIN_WINDOW`] and [`QuicTuning::MAX_WINDOW`].
    pub fn validate(&self) -> Result<(), TransportError> {
        for (name, value) in [
            ("stream_receive_window", self.stream_receive_window),
            ("receive_window", self.receive_window),
            ("send_window", self.send_window),
        ] {
            if !(Self::MIN_WINDOW..=Self::MAX_WINDOW).contains(&value) {
                return Err(TransportError::InvalidTuning {
                    setting: name,
                    value: u64::from(value),
                    min: u64::from(Self::MIN_WINDOW),
                    max: u64::from(Self::MAX_WINDOW),
                });
            }
        }
        Ok(())
    }

    /// iroh's transport configuration (its defaults) with these settings applied.
    pub(crate) fn to_iroh(self) -> Result<QuicTransportConfig, TransportError> {
        self.validate()?;
        let congestion: Arc<dyn ControllerFactory + Send + Sync> = match self.congestion {
            CongestionControl::Cubic => Arc::new(CubicConfig::default()),
            CongestionControl::NewReno => Arc::new(NewRenoConfig::default()),
            CongestionControl::Bbr => Arc::new(Bbr3Config::default()),
        };
        Ok(QuicTransportConfig::builder()
            .stream_receive_window(VarInt::from_u32(self.stream_receive_window))
            .receive_window(VarInt::from_u32(self.receive_window))
            .send_window(u64::from(self.send_window))
            .congestion_controller_factory(congestion)
            .build())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_windows_cover_the_labs_fat_links_and_stay_bounded() {
        let tuning = QuicTuning::default();
        tuning.validate().unwrap();
        QuicTuning::quinn_defaults().validate().unwrap();
        // 1 Gbit/s × 50 ms, the largest bandwidth-delay product the lab measures, fits in what
        // one connection may have in flight.
        let bdp = 1_000_000_000 / 8 / 20;
        assert!(tuning.receive_window > bdp);
        assert!(tuning.send_window > bdp);
        // noq closes a connection whose stream buffer holds more than 1,024 separate pieces;
        // with every other full-size packet (at least 1,100 bytes of stream data) lost, a
        // stream window of W bytes holds W / 2,200 of them.
        assert!(tuning.stream_receive_window / 2_200 < 1_024);
        assert!(tuning.stream_receive_window > QuicTuning::quinn_defaults().stream_receive_window);
    }

    #[test]
    fn windows_out_of_bounds_are_refused_by_name() {
        let too_big =
            QuicTuning::default().with_windows(16 << 20, QuicTuning::MAX_WINDOW + 1, 1 << 20);
        let error = too_big.to_iroh().unwrap_err();
        assert!(
            matches!(
                error,
                TransportError::InvalidTuning {
                    setting: "receive_window",
                    ..
                }
            ),
            "{error:?}"
        );
        let too_small = QuicTuning::default().with_windows(1024, 1 << 20, 1 << 20);
        assert!(matches!(
            too_small.validate(),
            Err(TransportError::InvalidTuning {
                setting: "stream_receive_window",
                ..
            })
        ));
        assert!(error.to_string().contains("receive_window"), "{error}");
    }
}
