//! Keeps the served snapshot in step with the route store: at start it loads every route; then
//! every `version_poll` it reads `RouteVersion`, and when the version moved (or `full_reload`
//! passed) reloads every route, holds back the routes whose loss of every host nothing accounts
//! for ([`crate::push_empty`]), swaps the snapshot and broadcasts the keys that changed (those
//! the `RouteChange` rows written since the last snapshot name, plus those whose hosts differ).
//!
//! `RouteChange` is shared with any other dns replica on the same database: each replica reads
//! the rows written after its own last snapshot's version and deletes only rows older than
//! `change_retention`, so no replica eats an edit another has not seen yet. A database error
//! keeps the last snapshot serving and is retried with jittered, capped exponential backoff; the service
//! never exits because the database blinked.
//!
//! Before the first load nothing is served (the listener accepts nothing), and the first load
//! works only on a Lars route database ([`Store::check_route_database`]: the route tables and the
//! `RouteVersion` row): a database without them is retried, with what is missing logged on the
//! first failure, whenever the reason changes and every tenth retry, until `lars init` sets it
//! up. The store is opened as services open it ([`StoreOptions::for_service`]): an SQLite file is
//! made on the first start, a MySQL database never (lars-dns refuses to start on a missing one,
//! see `main.rs`). Once serving, a database that disappears, or loses its tables or its version
//! row, fails the poll like an outage: the last snapshot keeps serving and the failure is logged.

use crate::push_empty::{PushEmptyRule, Verdict};
use crate::shared::{DnsShared, RouteChanges};
use crate::snapshot::RouteSnapshot;
use crate::stats::DnsStats;
use lars_service::Backoff;
use lars_store::{Store, StoreError, StoreOptions, StoreUrl};
use lars_wire::RouteKey;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// Rejected rows logged one by one per load; the rest are counted.
const REJECTED_ROWS_LOGGED: usize = 10;

/// While the first load keeps failing for the same reason, one log line per this many retries
/// (with the 1 s version poll and the 30 s retry cap, about one line every five minutes).
const START_FAILURES_LOGGED_EVERY: u32 = 10;

/// While routes stay held back, the warning is repeated this often (a new hold is logged at
/// once): often enough to be seen in a log tail, rarely enough not to flood it at one reload a
/// second.
const HELD_WARN_EVERY: Duration = Duration::from_secs(60);

/// Held-back keys named in a log line; the rest are counted.
const HELD_KEYS_LOGGED: usize = 10;

/// Timing of the synchroniser, and its push-empty rule.
#[derive(Debug, Clone, Copy)]
pub struct SyncTiming {
    /// `RouteVersion` poll period.
    pub version_poll: Duration,
    /// Longest time between full reloads.
    pub full_reload: Duration,
    /// Longest wait between retries while the database is down.
    pub retry_max: Duration,
    /// How long `RouteChange` rows are kept (in seconds of route version).
    pub change_retention: Duration,
    /// Which emptied routes are held back.
    pub push_empty: PushEmptyRule,
}

/// The route synchroniser of one dns service.
pub struct RouteSync {
    url: StoreUrl,
    /// Opened on first use, so the service starts even while the database is down.
    store: Option<Store>,
    shared: Arc<DnsShared>,
    timing: SyncTiming,
    last_full: Instant,
    /// When routes held back were last logged.
    held_warned: Option<Instant>,
}

impl RouteSync {
    /// A synchroniser feeding `shared` from `store`.
    pub fn new(url: StoreUrl, shared: Arc<DnsShared>, timing: SyncTiming) -> RouteSync {
        RouteSync {
            url,
            store: None,
            shared,
            timing,
            last_full: Instant::now(),
            held_warned: None,
        }
    }

    /// Checks the store is a Lars route database and loads the first snapshot, retrying until
    /// it works or `shutdown`. Returns false on shutdown.
    pub async fn start(&mut self, shutdown: &mut watch::Receiver<bool>) -> bool {
        let mut backoff = Backoff::new(self.timing.version_poll, self.timing.retry_max);
        let mut last_reason = String::new();
        loop {
            match self.first_load().await {
                Ok(()) => return true,
                Err(e) => {
                    DnsStats::inc(&self.shared.stats.db_errors);
                    let wait = backoff.fail();
                    let failures = backoff.failures();
                    let reason = e.to_string();
                    if reason != last_reason || failures.is_multiple_of(START_FAILURES_LOGGED_EVERY)
                    {
                        warn!(error = &e as &dyn std::error::Error, retry_in = ?wait, failures,
                            "cannot load routes at start; not serving until the first load works");
                        last_reason = reason;
                    }
                    if wait_or_shutdown(wait, shutdown).await {
                        return false;
                    }
                }
            }
        }
    }

    /// Polls until `shutdown`.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Backoff::new(self.timing.version_poll, self.timing.retry_max);
        let mut wait = self.timing.version_poll;
        loop {
            if wait_or_shutdown(wait, &mut shutdown).await {
                return;
            }
            match self.poll_once().await {
                Ok(()) => {
                    let failures = backoff.succeed();
                    if failures > 0 {
                        info!(failures, "route store reachable again");
                    }
                    wait = self.timing.version_poll;
                }
                Err(e) => {
                    DnsStats::inc(&self.shared.stats.db_errors);
                    wait = backoff.fail();
                    let failures = backoff.failures();
                    if failures == 1 || failures.is_multiple_of(10) {
                        warn!(error = &e as &dyn std::error::Error, failures, retry_in = ?wait,
                            "route store unreachable; serving the last snapshot");
                    }
                }
            }
        }
    }

    async fn first_load(&mut self) -> Result<(), StoreError> {
        let store = open(&mut self.store, &self.url).await?;
        store.check_route_database().await?;
        let version = store.route_version().await?;
        let mut snapshot = load(store, &self.shared.stats, version).await?;
        snapshot.mark_removed(recent_changes(store, version, self.timing.change_retention).await?);
        self.last_full = Instant::now();
        info!(
            version,
            routes = snapshot.routes(),
            hosts = snapshot.hosts(),
            "routes loaded"
        );
        install(&self.shared, snapshot);
        Ok(())
    }

    /// One poll: reload when the version moved or a full reload is due, then push.
    pub async fn poll_once(&mut self) -> Result<(), StoreError> {
        let store = open(&mut self.store, &self.url).await?;
        let version = store.route_version().await?;
        DnsStats::inc(&self.shared.stats.polls);
        let old = self.shared.snapshot.load_full();
        let version_changed = version != old.version;
        if !version_changed && self.last_full.elapsed() < self.timing.full_reload {
            return Ok(());
        }
        let mut snapshot = load(store, &self.shared.stats, version).await?;
        self.last_full = Instant::now();
        // Read after the routes: every edit the load saw has its `RouteChange` row committed.
        let accounted: HashSet<RouteKey> = store
            .changed_keys_after(old.version)
            .await?
            .into_iter()
            .collect();
        let recent = recent_changes(store, version, self.timing.change_retention).await?;
        let verdict = self.timing.push_empty.judge(&old, &snapshot, &accounted);
        snapshot.keep(&old, &verdict.held);
        // An unaccounted loss the rule lets through is published as meant, like an edit.
        snapshot.mark_removed(
            recent
                .into_iter()
                .chain(verdict.unaccounted.iter().copied()),
        );
        report_held(
            &self.shared.stats,
            &mut self.held_warned,
            &old,
            &snapshot,
            &verdict,
        );
        let mut keys = old.changed_keys(&snapshot);
        keys.extend(accounted);
        let snapshot = install(&self.shared, snapshot);
        if version_changed || !keys.is_empty() {
            info!(
                version,
                routes = snapshot.routes(),
                hosts = snapshot.hosts(),
                changed = keys.len(),
                "routes reloaded"
            );
        } else {
            debug!(
                version,
                routes = snapshot.routes(),
                "full reload, nothing changed"
            );
        }
        if !keys.is_empty() {
            // No receiver (no connection) is fine: nobody is subscribed.
            let _ = self
                .shared
                .changes
                .send(Arc::new(RouteChanges { snapshot, keys }));
        }
        if version_changed {
            let cutoff = version.saturating_sub(retention_versions(self.timing.change_retention));
            store.delete_changes_up_to(cutoff).await?;
        }
        Ok(())
    }
}

/// Counts and logs what push-empty protection held back in the reload from `old` to `new`: a new
/// hold at once, a standing one every [`HELD_WARN_EVERY`] (`warned`: when it was last logged), a
/// release once.
fn report_held(
    stats: &DnsStats,
    warned: &mut Option<Instant>,
    old: &RouteSnapshot,
    new: &RouteSnapshot,
    verdict: &Verdict,
) {
    let held = new.held();
    let newly = held.difference(old.held()).count();
    let released = old.held().difference(held).count();
    stats
        .push_empty_held_total
        .fetch_add(newly as u64, Ordering::Relaxed);
    stats
        .push_empty_held
        .store(held.len() as u64, Ordering::Relaxed);
    if released > 0 {
        info!(
            released,
            held = held.len(),
            "push-empty protection: routes no longer held back"
        );
    }
    if !verdict.unaccounted.is_empty() && verdict.held.is_empty() {
        info!(
            routes = verdict.unaccounted.len(),
            of = verdict.base,
            "routes lost every host without a route edit; within push_empty_threshold, published"
        );
    }
    if held.is_empty() {
        *warned = None;
        return;
    }
    if newly > 0 || warned.is_none_or(|at| at.elapsed() >= HELD_WARN_EVERY) {
        *warned = Some(Instant::now());
        let mut keys: Vec<RouteKey> = held.iter().copied().collect();
        keys.sort_unstable();
        keys.truncate(HELD_KEYS_LOGGED);
        warn!(
            held = held.len(),
            newly,
            of = verdict.base,
            emptied = verdict.emptied.len(),
            unaccounted = verdict.unaccounted.len(),
            ?keys,
            "PUSH-EMPTY PROTECTION: routes lost every host in the store with no route edit \
             accounting for it; serving their last hosts. Restore the routes (to drop one on \
             purpose, `lars route add` a host to it, then `lars route del` it; docs/FAIL_STATIC.md)"
        );
    }
}

/// The keys of the `RouteChange` rows still kept at `version`: routes an edit removed recently,
/// whose empty answer says `removed`.
async fn recent_changes(
    store: &Store,
    version: i64,
    retention: Duration,
) -> Result<Vec<RouteKey>, StoreError> {
    store
        .changed_keys_after(version.saturating_sub(retention_versions(retention)))
        .await
}

/// `retention` in route versions, which are Unix seconds.
fn retention_versions(retention: Duration) -> i64 {
    i64::try_from(retention.as_secs()).unwrap_or(i64::MAX)
}

/// The store, opened now (as services open it, [`StoreOptions::for_service`]) if it was not yet.
async fn open<'a>(slot: &'a mut Option<Store>, url: &StoreUrl) -> Result<&'a Store, StoreError> {
    match slot {
        Some(store) => Ok(store),
        None => Ok(slot.insert(Store::open_with(url, StoreOptions::for_service()).await?)),
    }
}

/// Loads every route into a snapshot at `version`, logging rows that had to be skipped.
async fn load(store: &Store, stats: &DnsStats, version: i64) -> Result<RouteSnapshot, StoreError> {
    let started = Instant::now();
    let load = store.load_routes().await?;
    for rejected in load.rejected.iter().take(REJECTED_ROWS_LOGGED) {
        warn!(error = %rejected, "skipping a bad RouteData row");
    }
    if load.rejected.len() > REJECTED_ROWS_LOGGED {
        warn!(
            more = load.rejected.len() - REJECTED_ROWS_LOGGED,
            "skipping more bad RouteData rows"
        );
    }
    let (snapshot, truncated) = RouteSnapshot::build(version, load.routes);
    stats.reloaded_in(started.elapsed());
    for key in truncated {
        warn!(
            modid = key.modid,
            cmdid = key.cmdid,
            "route has more hosts than fit in one 64 KiB frame; serving the first ones only"
        );
    }
    Ok(snapshot)
}

/// Makes `snapshot` the one served and updates the gauges.
fn install(shared: &DnsShared, snapshot: RouteSnapshot) -> Arc<RouteSnapshot> {
    let stats = &shared.stats;
    stats
        .version
        .store(snapshot.version.max(0) as u64, Ordering::Relaxed);
    stats
        .routes
        .store(snapshot.routes() as u64, Ordering::Relaxed);
    DnsStats::inc(&stats.reloads);
    let snapshot = Arc::new(snapshot);
    shared.snapshot.store(snapshot.clone());
    snapshot
}

/// Sleeps for `wait`; true when shutdown came first.
async fn wait_or_shutdown(wait: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    if *shutdown.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(wait) => false,
        _ = shutdown.changed() => true,
    }
}
