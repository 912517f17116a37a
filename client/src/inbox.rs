//! Items delivered to one connection for one queue and not yet handed to the application,
//! held by the [`Core`](crate::core::Core). No I/O and no clock: taking items says which
//! deliveries to acknowledge and how many items to ask for next; the core sends the
//! messages.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;
use ipcq_proto::ClientMsg;

use crate::common::{runs, Pace, DEFAULT_PREFETCH};

/// Delivered items in queue order, with their delivery tags, and the application's pace.
#[derive(Debug)]
pub(crate) struct Inbox {
    items: VecDeque<Delivered>,
    /// How fast the application takes items, to size fetches.
    pace: Pace,
    /// The broker said items were left in the queue after the last delivery.
    more: bool,
    /// The most items to fetch at once (`set_prefetch`).
    prefetch: usize,
}

/// One delivered item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Delivered {
    /// Its delivery tag on this connection.
    pub(crate) tag: u64,
    pub(crate) item: Bytes,
    /// How many times it was delivered before this delivery.
    pub(crate) earlier: u32,
}

/// What taking items from the inbox calls for.
#[derive(Debug)]
pub(crate) struct Taken {
    /// The deliveries, for the application.
    pub(crate) delivered: Vec<Delivered>,
    /// The acknowledgements that make them the application's (for a plain get, sent now;
    /// for an acknowledging get, the application acknowledges each when its work is done).
    pub(crate) acks: Vec<ClientMsg>,
    /// Items to keep fetched at the application's pace (0 with prefetching off).
    pub(crate) want: usize,
    /// Items still in the inbox.
    pub(crate) left: usize,
    /// Whether the broker had items left after its last delivery.
    pub(crate) more: bool,
}

impl Taken {
    /// How many items to fetch ahead now: when fewer than half of `want` are left and the
    /// queue has more, what brings the inbox back to `want`.
    pub(crate) fn fetch_ahead(&self) -> Option<usize> {
        (self.more && self.left < self.want / 2).then(|| self.want - self.left)
    }
}

impl Inbox {
    pub(crate) fn new() -> Self {
        Inbox {
            items: VecDeque::new(),
            pace: Pace::new(),
            more: false,
            prefetch: DEFAULT_PREFETCH,
        }
    }

    /// Sets the most items to fetch at once (at least 1).
    pub(crate) fn set_prefetch(&mut self, items: usize) {
        self.prefetch = items.max(1);
    }

    /// The most items to fetch at once.
    pub(crate) fn prefetch(&self) -> usize {
        self.prefetch
    }

    /// Items delivered under tags `tag ..`, kept behind those already here; `earlier`:
    /// how many times each was delivered before (empty: never); `ready` is what the broker
    /// said was left in the queue, when it said.
    pub(crate) fn receive(
        &mut self,
        tag: u64,
        items: Vec<Bytes>,
        earlier: &[u32],
        ready: Option<u64>,
    ) {
        let earlier = earlier.iter().copied().chain(std::iter::repeat(0));
        let delivered = (tag..).zip(items).zip(earlier);
        self.items
            .extend(delivered.map(|((tag, item), earlier)| Delivered { tag, item, earlier }));
        if let Some(ready) = ready {
            self.more = ready > 0;
        }
    }

    /// Whether no item waits here.
    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Takes up to `max` items, in order, with the acknowledgements that make them the
    /// application's, and notes the application's pace (taking them `now`). Nothing when
    /// the inbox is empty.
    pub(crate) fn take(&mut self, max: usize, now: Instant) -> Option<Taken> {
        let n = max.min(self.items.len());
        if n == 0 {
            return None;
        }
        let delivered: Vec<Delivered> = self.items.drain(..n).collect();
        let want = self.pace.took(n, self.prefetch, now);
        let acks = runs(delivered.iter().map(|d| d.tag))
            .into_iter()
            .map(|(tag, count)| ClientMsg::Ack { tag, count })
            .collect();
        Some(Taken {
            delivered,
            acks,
            want,
            left: self.items.len(),
            more: self.more,
        })
    }

    /// How many items to fetch now, at the application's recent pace (at least 1).
    pub(crate) fn window(&self) -> usize {
        self.pace.window(self.prefetch)
    }

    /// Empties the inbox: the messages that give its deliveries back to the head of the
    /// queue (the last handle is gone). Each goes in front of what the queue holds, so the
    /// last run goes first: the queue then holds them in their order.
    pub(crate) fn give_back(&mut self) -> Vec<ClientMsg> {
        let tags: Vec<u64> = self.items.drain(..).map(|d| d.tag).collect();
        runs(tags)
            .into_iter()
            .rev()
            .map(|(tag, count)| ClientMsg::Return { tag, count })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(n: u8) -> Vec<Bytes> {
        (0..n).map(|i| Bytes::from(vec![i])).collect()
    }

    #[test]
    fn acknowledgements_run_across_gaps_between_deliveries() {
        let mut inbox = Inbox::new();
        // Two deliveries, with tags of other queues' deliveries between them.
        inbox.receive(10, items(3), &[], Some(5));
        inbox.receive(20, items(2), &[], Some(0));
        let taken = inbox.take(4, Instant::now()).unwrap();
        assert_eq!(taken.delivered.len(), 4);
        assert_eq!(
            taken.acks,
            [
                ClientMsg::Ack { tag: 10, count: 3 },
                ClientMsg::Ack { tag: 20, count: 1 }
            ]
        );
        assert_eq!(taken.left, 1);
        // The last delivery said the queue was empty: nothing to fetch ahead.
        assert!(!taken.more);
        assert_eq!(taken.fetch_ahead(), None);
        let taken = inbox.take(4, Instant::now()).unwrap();
        assert_eq!(taken.acks, [ClientMsg::Ack { tag: 21, count: 1 }]);
        assert!(inbox.take(1, Instant::now()).is_none());
        assert!(inbox.is_empty());
    }

    #[test]
    fn items_come_out_in_the_order_they_were_delivered() {
        let mut inbox = Inbox::new();
        inbox.receive(0, items(3), &[], None);
        inbox.receive(7, vec![Bytes::from_static(b"late")], &[], None);
        let taken = inbox.take(10, Instant::now()).unwrap();
        let firsts: Vec<&[u8]> = taken.delivered.iter().map(|d| &d.item[..]).collect();
        assert_eq!(firsts, [&[0u8][..], &[1], &[2], b"late"]);
    }

    #[test]
    fn what_is_given_back_goes_last_run_first_so_the_queue_keeps_its_order() {
        let mut inbox = Inbox::new();
        inbox.receive(4, items(2), &[], Some(1));
        inbox.receive(9, items(3), &[], Some(1));
        inbox.take(1, Instant::now()).unwrap();
        assert_eq!(
            inbox.give_back(),
            [
                ClientMsg::Return { tag: 9, count: 3 },
                ClientMsg::Return { tag: 5, count: 1 }
            ]
        );
        assert!(inbox.give_back().is_empty());
    }

    #[test]
    fn a_prefetch_of_one_asks_for_nothing_ahead() {
        let mut inbox = Inbox::new();
        inbox.set_prefetch(0);
        assert_eq!(inbox.prefetch(), 1);
        inbox.receive(0, items(1), &[], Some(100));
        let taken = inbox.take(1, Instant::now()).unwrap();
        assert_eq!(taken.want, 0);
        assert_eq!(taken.fetch_ahead(), None);
        assert_eq!(inbox.window(), 1);
    }

    #[test]
    fn a_low_inbox_with_more_in_the_queue_fetches_ahead() {
        let taken = Taken {
            delivered: Vec::new(),
            acks: Vec::new(),
            want: 100,
            left: 10,
            more: true,
        };
        assert_eq!(taken.fetch_ahead(), Some(90));
        let half_full = Taken { left: 50, ..taken };
        assert_eq!(half_full.fetch_ahead(), None);
    }
}
