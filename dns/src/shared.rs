//! What every connection task shares with the route synchroniser: the current snapshot (swapped
//! whole), the broadcast of route changes, the counters and the per-connection queue size.

use crate::snapshot::RouteSnapshot;
use crate::stats::DnsStats;
use arc_swap::ArcSwap;
use lars_wire::RouteKey;
use std::collections::HashSet;
use std::sync::Arc;
use tokio::sync::broadcast;

/// Change batches buffered for a connection before it counts as lagging (it then gets every
/// subscribed route again instead of the batches it missed).
pub const CHANGE_BACKLOG: usize = 64;

/// One reload's changed keys, with the snapshot to answer them from.
#[derive(Debug)]
pub struct RouteChanges {
    /// The snapshot the changed routes are read from.
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
}

impl DnsShared {
    /// Shared state starting from an empty snapshot.
    pub fn new(write_queue: usize) -> DnsShared {
        DnsShared {
            snapshot: ArcSwap::from_pointee(RouteSnapshot::default()),
            changes: broadcast::channel(CHANGE_BACKLOG).0,
            stats: Arc::new(DnsStats::default()),
            write_queue,
        }
    }
}
