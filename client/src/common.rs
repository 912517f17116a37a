//! What the blocking and the tokio client share: sizes of credit requests and prefetch
//! windows, acknowledgement runs, item checks and the item codec.

use std::time::{Duration, Instant};

use serde::{de::DeserializeOwned, Serialize};

use crate::{Error, Result};

pub(crate) use ipcq_proto::{ITEM_OVERHEAD, REPLY_SLACK};

/// Why a connection is unusable; every call on it fails with [`Dead::error`] from then on.
#[derive(Debug, Clone)]
pub(crate) enum Dead {
    Gone(String),
    Protocol(String),
    /// The broker said why it closed the connection.
    Refused(ipcq_proto::ErrorReply),
}

impl Dead {
    pub(crate) fn error(&self) -> Error {
        match self {
            Dead::Gone(msg) => Error::BrokerGone(msg.clone()),
            Dead::Protocol(msg) => Error::Protocol(msg.clone()),
            // An oversized frame ends the connection: not the per-request `TooLarge`.
            Dead::Refused(reply) if reply.code == ipcq_proto::ErrorCode::TooLarge => {
                Error::Protocol(reply.message.clone())
            }
            Dead::Refused(reply) => Error::from_reply(reply.clone()),
        }
    }
}

/// What a failure to connect to `addr` means: nobody listens there, or something else.
pub(crate) fn connect_error(addr: &str, err: std::io::Error) -> Error {
    match err.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => Error::NoBroker {
            addr: addr.to_owned(),
        },
        // The socket file's mode (Unix) or the pipe's security descriptor (Windows).
        std::io::ErrorKind::PermissionDenied => Error::Denied(format!(
            "the system does not let this user open {addr} (a broker's socket or pipe admits \
             only the user running it): {err}"
        )),
        _ => Error::Io(err),
    }
}

/// This client's handshake frame.
pub(crate) fn hello_frame() -> Result<Vec<u8>> {
    let mut hello = Vec::new();
    let ours = ipcq_proto::Hello::new(
        u32::try_from(ipcq_proto::DEFAULT_MAX_FRAME_LEN + REPLY_SLACK).unwrap_or(u32::MAX),
    );
    ipcq_proto::encode(&ours, 0, ipcq_proto::MAX_HANDSHAKE_LEN, &mut hello)
        .map_err(|err| Error::Protocol(err.to_string()))?;
    Ok(hello)
}

/// The broker's handshake, checked; returns its frame limit.
pub(crate) fn their_hello(frame: bytes::Bytes) -> Result<usize> {
    let protocol = |err: ipcq_proto::Error| Error::Protocol(err.to_string());
    let (theirs, _): (ipcq_proto::Hello, _) = ipcq_proto::decode(frame).map_err(protocol)?;
    theirs.check().map_err(protocol)?;
    Ok(theirs.max_frame_len as usize)
}

/// Bytes of figures asked for per stats page (the broker may send fewer).
pub(crate) const STATS_PAGE_LEN: u32 = 64 * 1024;

/// Most credits a producer asks for at a time.
const CREDIT_REQUEST: u32 = 1024;

/// Credits are asked for in proportion to item size, to keep about this many bytes in
/// flight per producer.
const CREDIT_BYTES: usize = 1 << 20;

/// How many items a `get` fetches at most in one round trip, unless set otherwise with
/// `set_prefetch`.
pub const DEFAULT_PREFETCH: usize = 1024;

/// A prefetch fetches what the application is expected to take in this long, so that a
/// slow consumer (a worker with long jobs) holds no more than it will soon process.
const PREFETCH_HORIZON: Duration = Duration::from_millis(2);

/// Credits to ask for when putting items of about `item_len` bytes.
pub(crate) fn credit_request(item_len: usize) -> u32 {
    u32::try_from(CREDIT_BYTES / item_len.max(64))
        .unwrap_or(CREDIT_REQUEST)
        .clamp(1, CREDIT_REQUEST)
}

/// The application's pace: a prefetch asks for what it takes in about
/// [`PREFETCH_HORIZON`].
#[derive(Debug)]
pub(crate) struct Pace {
    last: Option<Instant>,
    /// Moving average of the time between gets, in nanoseconds.
    interval: f64,
}

impl Pace {
    pub(crate) fn new() -> Self {
        Pace {
            last: None,
            interval: f64::INFINITY,
        }
    }

    /// Notes that the application took `n` items at `now`, and returns how many items to keep
    /// prefetched: what it takes in [`PREFETCH_HORIZON`] at its recent pace, within `max`
    /// (0 when prefetching is off).
    pub(crate) fn took(&mut self, n: usize, max: usize, now: Instant) -> usize {
        if max <= 1 {
            return 0;
        }
        if let Some(last) = self.last {
            let interval = now.duration_since(last).as_nanos() as f64 / n.max(1) as f64;
            self.interval = if self.interval.is_finite() {
                0.8 * self.interval + 0.2 * interval
            } else {
                interval
            };
        }
        self.last = Some(now);
        window(self.interval, max)
    }

    /// How many items to fetch now, at the application's recent pace (at least 1).
    pub(crate) fn window(&self, max: usize) -> usize {
        window(self.interval, max).max(1)
    }
}

/// Items taken in [`PREFETCH_HORIZON`] at one item per `interval` nanoseconds, within
/// `1..=max` (0 when prefetching is off).
fn window(interval: f64, max: usize) -> usize {
    if max <= 1 {
        return 0;
    }
    let per_horizon = PREFETCH_HORIZON.as_nanos() as f64 / interval.max(1.0);
    // Bounded by `max` before the conversion, so nothing is cut off.
    #[allow(clippy::cast_possible_truncation)]
    let items = per_horizon.min(max as f64) as usize;
    items.clamp(1, max)
}

/// What a wait of `wait` that started at `start` has left.
pub(crate) fn remaining(wait: ipcq_proto::Wait, start: Instant) -> ipcq_proto::Wait {
    match wait {
        ipcq_proto::Wait::Micros(micros) => {
            ipcq_proto::Wait::timeout(Duration::from_micros(micros).saturating_sub(start.elapsed()))
        }
        other => other,
    }
}

/// Consecutive delivery tags as `(first, count)` runs: one acknowledgement (or return)
/// message each.
pub(crate) fn runs(tags: impl IntoIterator<Item = u64>) -> Vec<(u64, u32)> {
    let mut runs: Vec<(u64, u32)> = Vec::new();
    for tag in tags {
        match runs.last_mut() {
            Some((first, count)) if *first + u64::from(*count) == tag && *count < u32::MAX => {
                *count += 1;
            }
            _ => runs.push((tag, 1)),
        }
    }
    runs
}

/// The credits the broker granted one connection on one queue: slots reserved for its
/// next puts, and the bytes that go with them. Each item sent on them spends one credit
/// and [`ipcq_proto::item_cost`] of its length; with the last credit the broker lets the
/// spare bytes go, and so does this count, so that it never believes in more than the
/// broker granted.
#[derive(Debug, Default)]
pub(crate) struct Credits(Grant);

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Grant {
    pub(crate) credits: u64,
    pub(crate) bytes: u64,
}

impl Credits {
    /// Adds what the broker granted.
    pub(crate) fn add(&mut self, granted: Grant) {
        self.0.credits += granted.credits;
        self.0.bytes += granted.bytes;
    }

    /// Spends credits on the longest prefix of items of lengths `lens` that they cover;
    /// returns how many items that is.
    pub(crate) fn take(&mut self, lens: impl IntoIterator<Item = usize>) -> usize {
        let grant = &mut self.0;
        let mut taken = 0;
        for len in lens {
            let cost = ipcq_proto::item_cost(len);
            if grant.credits == 0 || grant.bytes < cost {
                break;
            }
            grant.credits -= 1;
            grant.bytes -= cost;
            taken += 1;
        }
        if grant.credits == 0 {
            grant.bytes = 0;
        }
        taken
    }

    /// Credits left.
    pub(crate) fn count(&self) -> u64 {
        self.0.credits
    }

    /// Takes every credit and byte, to give them back.
    pub(crate) fn take_all(&mut self) -> Grant {
        std::mem::take(&mut self.0)
    }
}

impl Grant {
    /// What [`Reply::Accepted`](ipcq_proto::Reply::Accepted) granted, or nothing for
    /// another answer.
    pub(crate) fn of(reply: &ipcq_proto::Reply) -> Grant {
        match *reply {
            ipcq_proto::Reply::Accepted { credits, bytes } => Grant {
                credits: u64::from(credits),
                bytes,
            },
            _ => Grant::default(),
        }
    }
}

/// The `Release` that gives `grant` back on `handle`, if there is anything to give.
pub(crate) fn release_msg(handle: u32, grant: Grant) -> Option<ipcq_proto::ClientMsg> {
    (grant.credits > 0).then(|| ipcq_proto::ClientMsg::Release {
        handle,
        credits: u32::try_from(grant.credits).unwrap_or(u32::MAX),
        bytes: grant.bytes,
    })
}

/// Refuses an item that would not fit in a frame of `max_frame_len` bytes with its request.
pub(crate) fn check_item(len: usize, max_frame_len: usize) -> Result<()> {
    if len + ITEM_OVERHEAD > max_frame_len {
        return Err(Error::TooLarge {
            len: len + ITEM_OVERHEAD,
            max: max_frame_len,
        });
    }
    Ok(())
}

/// The items of a batch in groups that each fit in one frame of `max_frame_len` bytes.
///
/// # Errors
///
/// [`Error::TooLarge`] if one item alone does not fit.
pub(crate) fn frames_of<'a>(
    items: &[&'a [u8]],
    max_frame_len: usize,
) -> Result<Vec<Vec<&'a [u8]>>> {
    let budget = max_frame_len.saturating_sub(ITEM_OVERHEAD);
    let mut frames = Vec::new();
    let mut batch: Vec<&[u8]> = Vec::new();
    let mut used = 0;
    for &item in items {
        check_item(item.len(), max_frame_len)?;
        // Each item also costs up to 5 bytes for its length in the request.
        let cost = item.len() + 5;
        if !batch.is_empty() && used + cost > budget {
            frames.push(std::mem::take(&mut batch));
            used = 0;
        }
        batch.push(item);
        used += cost;
    }
    if !batch.is_empty() {
        frames.push(batch);
    }
    Ok(frames)
}

pub(crate) fn lens(items: &[&[u8]]) -> Vec<u32> {
    items
        .iter()
        .map(|item| u32::try_from(item.len()).unwrap_or(u32::MAX))
        .collect()
}

pub(crate) fn average_len(items: &[&[u8]]) -> usize {
    items.iter().map(|item| item.len()).sum::<usize>() / items.len().max(1)
}

pub(crate) fn encode<T: Serialize>(item: &T) -> Result<Vec<u8>> {
    postcard::to_stdvec(item).map_err(|err| Error::Codec(err.into()))
}

/// Decodes an item taken from a queue; one that does not decode is returned in the error.
pub(crate) fn decode<T: DeserializeOwned>(item: &bytes::Bytes) -> Result<T> {
    postcard::from_bytes(item).map_err(|err| Error::Undecodable {
        source: err.into(),
        item: item.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(credits: u64, bytes: u64) -> Grant {
        Grant { credits, bytes }
    }

    #[test]
    fn credits_cover_count_and_bytes() {
        let mut credits = Credits::default();
        credits.add(grant(3, ipcq_proto::item_cost(100) * 2));
        // Two items of 100 bytes fit the bytes; the third credit has none left.
        assert_eq!(credits.take([100, 100, 100]), 2);
        assert_eq!(credits.count(), 1);
        assert_eq!(credits.take([0]), 0);
        credits.add(grant(1, ipcq_proto::item_cost(10)));
        assert_eq!(credits.take([10, 10]), 1);
        // One credit is left, with no bytes. A larger item than the bytes cover stops the
        // run, and the rest stays.
        credits.add(grant(2, ipcq_proto::item_cost(10) * 2));
        assert_eq!(credits.take([100]), 0);
        assert_eq!(credits.take([10]), 1);
        assert_eq!(credits.take_all(), grant(2, ipcq_proto::item_cost(10)));
        assert_eq!(credits.count(), 0);
    }

    #[test]
    fn the_last_credit_takes_the_spare_bytes_with_it() {
        let mut credits = Credits::default();
        credits.add(grant(1, 1000));
        assert_eq!(credits.take([0]), 1);
        // As at the broker: no credit, no bytes; a new grant starts afresh.
        credits.add(grant(1, ipcq_proto::item_cost(0)));
        assert_eq!(credits.take([100]), 0);
        assert_eq!(credits.take([0]), 1);
        assert_eq!(credits.take_all(), Grant::default());
    }

    #[test]
    fn runs_join_consecutive_tags() {
        assert_eq!(runs([3, 4, 5, 9, 10, 2]), [(3, 3), (9, 2), (2, 1)]);
        assert!(runs([]).is_empty());
    }

    #[test]
    fn frames_split_at_the_limit() {
        let big = vec![0u8; 600];
        let items: Vec<&[u8]> = vec![&big, &big, &big];
        let frames = frames_of(&items, 1400).unwrap();
        assert_eq!(frames.iter().map(Vec::len).collect::<Vec<_>>(), [2, 1]);
        assert!(frames_of(&items, 600).unwrap_err().is_too_large());
    }
}
