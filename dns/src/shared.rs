//! What every connection task shares with the route synchroniser: the current snapshot (swapped
//! whole), the broadcast of route changes, the counters and the per-connection write limits.

use crate::snapshot::RouteSnapshot;
use crate::stats::DnsStats;
use arc_swap::ArcSwap;
use lars_wire::RouteKey;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

/// Change batches buffered for a connection before it counts as lagging (it then owes the agent
/// every subscribed route, written from the newest snapshot as its queue has room, instead of the
/// batches it missed). A connection takes a batch without waiting for its agent, so only a
/// starved task lags: 64 polls of `version_poll_ms` at the default is a minute.
pub const CHANGE_BACKLOG: usize = 64;

/// One reload's changed keys, with the snapshot they changed in.
#[derive(Debug)]
pub struct RouteChanges {
    /// The snapshot the keys changed in. Connections write the frames of the snapshot current
    /// when they queue them instead, which is this one or newer, so that no frame is older than
    /// one queued before it.
    pub snapshot: Arc<RouteSnapshot>,
    /// Keys whose host list changed or that `RouteChange` named.
    pub keys: HashSet<RouteKey>,
}

/// State shared by all tasks of one dns service.
#[derive(Debug)]
pub struct DnsShared {
    /// The routes being served.
    pub snapshot: ArcSwap<RouteSnapshot>,
    /// Route changes for the connections to push.
    pub changes: broadcast::Sender<Arc<RouteChanges>>,
    /// Counters.
    pub stats: Arc<DnsStats>,
    /// Frames one connection may have queued for writing.
    pub write_queue: usize,
    /// How long an agent may read nothing while frames wait for it.
    pub stalled_reader_timeout: Duration,
    /// Most subscriptions one connection holds.
    pub max_subscriptions: usize,
}

impl DnsShared {
    /// Shared state starting from an empty snapshot.
    pub fn new(write_queue: usize, stalled_reader_timeout: Duration) -> DnsShared {
        DnsShared {
            snapshot: ArcSwap::from_pointee(RouteSnapshot::default()),
            changes: broadcast::channel(CHANGE_BACKLOG).0,
            stats: Arc::new(DnsStats::default()),
            write_queue,
            stalled_reader_timeout,
            max_subscriptions: crate::config::DEFAULT_MAX_SUBSCRIPTIONS,
        }
    }

    /// The same, with at most `max` subscriptions per connection.
    pub fn with_max_subscriptions(mut self, max: usize) -> DnsShared {
        self.max_subscriptions = max;
        self
    }
}
