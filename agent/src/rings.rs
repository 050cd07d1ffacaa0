//! The only traffic between the agent's threads: single-producer single-consumer rings
//! ([`rtrb`], lock-free) with a wake-up that fires only when a ring goes from empty to
//! non-empty, so a busy ring costs no syscall and a producer never blocks. A full ring refuses
//! the item and the producer counts the drop: the data plane never waits on an uplink. (The dns
//! uplink, which is not on the data plane, first keeps what a worker's full inbox refused in a
//! bounded overflow of its own and pushes it again as the worker makes room; see
//! [`crate::dns_uplink`].)
//!
//! | ring | producer | consumer | carries |
//! |---|---|---|---|
//! | [`DnsUplinkTx`] / [`DnsUplinkRx`] | a worker | the dns uplink | [`DnsRequest`] |
//! | [`WorkerInboxTx`] / [`WorkerInboxRx`] | the dns uplink | a worker | [`RouteUpdate`] |
//! | [`ReportUplinkTx`] / [`ReportUplinkRx`] | a worker | the report uplink | `ReportStatusRequest` |
//! | [`CacheTx`](crate::cache::CacheTx) / [`CacheRx`](crate::cache::CacheRx) | a worker | the route cache writer | [`ShardRoutes`](crate::cache::ShardRoutes) |
//!
//! Several rings may share one [`Wake`] when one thread consumes them all (the uplinks consume
//! one ring per worker).

use crate::io::eventfd::EventFd;
use lars_wire::messages::ReportStatusRequest;
use lars_wire::{HostAddr, RouteKey};
use std::sync::Arc;
use tokio::sync::Notify;

/// A consumer's wake-up: the consumer waits on it when its rings are empty; a producer fires it
/// when its push made a ring non-empty. Permits are stored, so no wake-up is lost between the
/// consumer's last check and its wait.
///
/// Two kinds, for two kinds of consumer: a tokio [`Notify`] for the uplinks ([`Wake::wait`]),
/// and an eventfd for the workers, whose loop watches [`Wake::eventfd`] whichever driver runs it
/// (the eventfd's counter is the permit).
#[derive(Debug, Clone, Default)]
pub struct Wake(Arc<WakeInner>);

#[derive(Debug, Default)]
struct WakeInner {
    notify: Notify,
    eventfd: Option<EventFd>,
}

impl Wake {
    /// A new wake-up with no permit, for an async consumer.
    pub fn new() -> Wake {
        Wake::default()
    }

    /// A new wake-up that writes an eventfd, for a worker's loop.
    pub fn with_eventfd() -> std::io::Result<Wake> {
        Ok(Wake(Arc::new(WakeInner {
            notify: Notify::new(),
            eventfd: Some(EventFd::new()?),
        })))
    }

    /// Wakes the consumer (or lets its next wait return at once).
    pub fn fire(&self) {
        match &self.0.eventfd {
            Some(eventfd) => eventfd.notify(),
            None => self.0.notify.notify_one(),
        }
    }

    /// Waits until fired (a wake made by [`Wake::new`]).
    pub async fn wait(&self) {
        debug_assert!(
            self.0.eventfd.is_none(),
            "an eventfd wake is read, not awaited"
        );
        self.0.notify.notified().await;
    }

    /// The eventfd to read, for a wake made by [`Wake::with_eventfd`].
    pub fn eventfd(&self) -> Option<&EventFd> {
        self.0.eventfd.as_ref()
    }
}

/// The producing end of a ring.
pub struct RingTx<T> {
    inner: rtrb::Producer<T>,
    capacity: usize,
    wake: Wake,
}

/// The consuming end of a ring.
pub struct RingRx<T> {
    inner: rtrb::Consumer<T>,
}

/// A ring of `capacity` items whose producer fires `wake`.
pub fn ring<T>(capacity: usize, wake: Wake) -> (RingTx<T>, RingRx<T>) {
    let (producer, consumer) = rtrb::RingBuffer::new(capacity);
    (
        RingTx {
            inner: producer,
            capacity,
            wake,
        },
        RingRx { inner: consumer },
    )
}

impl<T> RingTx<T> {
    /// How many items the ring holds when full.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Pushes `item`, or gives it back when the ring is full. Fires the consumer's wake-up when
    /// the ring holds only this item afterwards, that is when it went from empty to non-empty.
    pub fn push(&mut self, item: T) -> Result<(), T> {
        self.inner
            .push(item)
            .map_err(|rtrb::PushError::Full(item)| item)?;
        if self.inner.slots() + 1 == self.capacity {
            self.wake.fire();
        }
        Ok(())
    }
}

impl<T> RingRx<T> {
    /// The oldest item, if any.
    pub fn pop(&mut self) -> Option<T> {
        self.inner.pop().ok()
    }

    /// Whether the ring is empty now.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }
}

/// A worker tells the dns uplink what one of its shards needs of a route. The two kinds travel
/// on one ring, so the uplink sees a shard's asks and forgets in the order the shard made them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsRequest {
    /// Ask dns for the route (and subscribe the shard to it).
    Ask {
        /// The shard whose table holds the route.
        shard: u16,
        /// The route.
        key: RouteKey,
    },
    /// The shard evicted the route: unsubscribe it, so a reconnect does not ask for it again.
    /// (The Lars protocol has no unsubscribe: the dns keeps pushing it on this connection, and
    /// the uplink drops those answers.)
    Forget {
        /// The shard that no longer holds the route.
        shard: u16,
        /// The route.
        key: RouteKey,
    },
}

/// The dns uplink hands a route's hosts (a reply or a pushed change) to the worker of a shard
/// that asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteUpdate {
    /// The shard to apply it to.
    pub shard: u16,
    /// The route.
    pub key: RouteKey,
    /// Its hosts; empty when the route does not exist (any more).
    pub hosts: Box<[HostAddr]>,
    /// The dns marked an empty `hosts` as removed by a route edit (`GetRouteResponse.removed`).
    pub removed: bool,
}

/// Worker → dns uplink.
pub type DnsUplinkTx = RingTx<DnsRequest>;
/// The dns uplink's end of a worker's ring.
pub type DnsUplinkRx = RingRx<DnsRequest>;
/// Dns uplink → worker.
pub type WorkerInboxTx = RingTx<RouteUpdate>;
/// A worker's end of its inbox.
pub type WorkerInboxRx = RingRx<RouteUpdate>;
/// Worker → report uplink: one route's statistics of one report interval.
pub type ReportUplinkTx = RingTx<ReportStatusRequest>;
/// The report uplink's end of a worker's ring.
pub type ReportUplinkRx = RingRx<ReportStatusRequest>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_full_ring_gives_the_item_back() {
        let (mut tx, mut rx) = ring::<u32>(2, Wake::new());
        assert_eq!(tx.push(1), Ok(()));
        assert_eq!(tx.push(2), Ok(()));
        assert_eq!(tx.push(3), Err(3));
        assert_eq!(rx.pop(), Some(1));
        assert_eq!(tx.push(3), Ok(()));
        assert_eq!((rx.pop(), rx.pop(), rx.pop()), (Some(2), Some(3), None));
    }

    #[tokio::test]
    async fn only_the_push_into_an_empty_ring_wakes() {
        let wake = Wake::new();
        let (mut tx, mut rx) = ring::<u32>(8, wake.clone());
        tx.push(1).unwrap();
        // The first push stored a permit: the wait returns at once.
        tokio::time::timeout(Duration::from_secs(1), wake.wait())
            .await
            .unwrap();
        tx.push(2).unwrap();
        // The second push found the ring non-empty: no new permit.
        assert!(
            tokio::time::timeout(Duration::from_millis(50), wake.wait())
                .await
                .is_err()
        );
        while rx.pop().is_some() {}
        tx.push(3).unwrap();
        tokio::time::timeout(Duration::from_secs(1), wake.wait())
            .await
            .unwrap();
    }

    #[test]
    fn an_eventfd_wake_counts_only_pushes_into_an_empty_ring() {
        let wake = Wake::with_eventfd().unwrap();
        let eventfd = wake.eventfd().unwrap();
        let (mut tx, mut rx) = ring::<u32>(8, wake.clone());
        assert_eq!(eventfd.take(), None);
        tx.push(1).unwrap();
        tx.push(2).unwrap();
        assert_eq!(eventfd.take(), Some(1));
        while rx.pop().is_some() {}
        tx.push(3).unwrap();
        assert_eq!(eventfd.take(), Some(1));
        wake.fire();
        assert_eq!(eventfd.take(), Some(1));
    }

    #[test]
    fn items_cross_threads_in_order() {
        let wake = Wake::new();
        let (mut tx, mut rx) = ring::<u64>(64, wake);
        let producer = std::thread::spawn(move || {
            for i in 0..100_000u64 {
                let mut item = i;
                while let Err(back) = tx.push(item) {
                    item = back;
                    std::thread::yield_now();
                }
            }
        });
        let mut next = 0;
        while next < 100_000 {
            if let Some(i) = rx.pop() {
                assert_eq!(i, next);
                next += 1;
            }
        }
        producer.join().unwrap();
    }
}
