//! The route cache: the agent's routes — every held route's key and hosts, not their health —
//! in one file under `[agent] state_dir`, so that an agent restarted while lars-dns is down
//! answers its callers from what it served a moment before instead of NOEXIST. Envoy keeps its
//! last good configuration when its control plane is gone; this is the same "fail static" across
//! a restart.
//!
//! Owns the file: its format ([`encode`], [`decode`]), the atomic write ([`write_atomic`]), the
//! load at start ([`load`], [`load_at_start`]) and the thread that writes it ([`run`]).
//!
//! # Who writes, and when
//! The workers never touch the file and never build a snapshot per request. At a tick (every
//! `report_interval`), a worker whose routes changed since it last handed them over, and that
//! has not done so for `cache_interval`, hands a [`ShardRoutes`] snapshot of each of its shards
//! through its [`CacheTx`] ring (a full ring: it tries again at a later tick); once more when it
//! stops. The cache writer, on its own thread, keeps the latest snapshot of every shard (seeded
//! with what the workers loaded at start) and writes them all at most once per
//! `cache_interval` while anything changed, and at a clean stop. While the agent runs it also
//! rewrites an unchanged file once it is a quarter of `cache_max_age` old, so only an agent that
//! was *stopped* for longer than `cache_max_age` finds its file too old.
//!
//! # At start
//! The agent loads the file before its workers start; each worker loads its shards' routes
//! ([`RouteTable::preload`](crate::RouteTable::preload)): served at once, counted stale until
//! dns answers them, and asked of dns at once (they become the dns uplink's subscriptions). A
//! missing file is normal (the first start); a file that cannot be read, is not a route cache,
//! has another format version, is truncated, fails its checksum or is older than
//! `cache_max_age` is logged (warn, naming the file and what is wrong) and not used.
//!
//! # The file (version 1)
//! `state_dir/routes.cache`, integers little-endian:
//!
//! | field | bytes |
//! |---|---|
//! | magic `LARSRTC\n` | 8 |
//! | format version (1) | 4 |
//! | when it was written, Unix milliseconds | 8 |
//! | routes | 4 |
//! | body length | 4 |
//! | body: per route `modid` i32, `cmdid` i32, hosts u32, then per host the IPv4 address u32 (as Lars stores it: `a.b.c.d` is `a<<24 \| … \| d`) and the port u16 | body length |
//! | CRC-32 (IEEE) of everything before it | 4 |
//!
//! The version is checked right after the magic, so a file of another version is named as such
//! rather than as corrupt. Each key appears once.

use crate::io::error_chain;
use crate::rings::{RingRx, RingTx, Wake};
use crate::stats::CacheStats;
use crate::uplink::UplinkStop;
use bytes::{Buf, BufMut};
use foldhash::HashSet;
use lars_wire::{HostAddr, RouteKey};
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tracing::{debug, info, warn};

/// The route cache's file name under `state_dir`.
pub const FILE_NAME: &str = "routes.cache";

/// The format version this agent writes and reads.
pub const VERSION: u32 = 1;

/// The first bytes of every route cache.
const MAGIC: [u8; 8] = *b"LARSRTC\n";

/// Magic, version, time written, routes, body length.
const HEADER_LEN: usize = 8 + 4 + 8 + 4 + 4;

/// The CRC-32 at the end.
const CRC_LEN: usize = 4;

/// A route's bytes in the body before its hosts: `modid`, `cmdid`, host count.
const ROUTE_HEAD_LEN: usize = 4 + 4 + 4;

/// A host's bytes in the body: address, port.
const HOST_LEN: usize = 4 + 2;

/// How much of `cache_max_age` an unchanged file may age while the agent runs before it is
/// rewritten: a quarter, so a running agent's file is never near the limit and an agent killed
/// at any time restarts from a file that is at most `cache_max_age / 4` older than its routes.
const REFRESH_FRACTION: u32 = 4;

/// One cached route: its key and hosts.
pub type CachedRoute = (RouteKey, Box<[HostAddr]>);

/// One shard's routes, handed by its worker to the cache writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardRoutes {
    /// The shard.
    pub shard: u16,
    /// Every route of the shard that has hosts.
    pub routes: Vec<CachedRoute>,
}

/// Worker → cache writer: snapshots of the worker's shards' routes.
pub type CacheTx = RingTx<ShardRoutes>;
/// The cache writer's end of a worker's ring.
pub type CacheRx = RingRx<ShardRoutes>;

/// A decoded route cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteCacheFile {
    /// When it was written, in Unix milliseconds.
    pub written_at_ms: u64,
    /// Its routes, in file order.
    pub routes: Vec<CachedRoute>,
}

/// Why bytes are not a route cache this agent can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Too short for the header, or not starting with the magic.
    #[error("not a route cache (no route cache header)")]
    NotACache,
    /// A format version this agent does not read.
    #[error("format version {found}; this agent reads version {VERSION}")]
    UnknownVersion {
        /// The file's version.
        found: u32,
    },
    /// Shorter than its header says.
    #[error("truncated: {len} bytes where its header says {expected}")]
    Truncated {
        /// The file's length.
        len: usize,
        /// The length its header gives.
        expected: usize,
    },
    /// Longer than its header says.
    #[error("{len} bytes where its header says {expected}: bytes after the end")]
    TrailingBytes {
        /// The file's length.
        len: usize,
        /// The length its header gives.
        expected: usize,
    },
    /// The stored CRC-32 is not the contents'.
    #[error("checksum mismatch: stored {stored:#010x}, contents {computed:#010x}")]
    Checksum {
        /// The CRC-32 in the file.
        stored: u32,
        /// The CRC-32 of its contents.
        computed: u32,
    },
    /// The body does not hold what the header says.
    #[error("malformed body at byte {at}: {what}")]
    Malformed {
        /// Offset in the file.
        at: usize,
        /// What is wrong.
        what: &'static str,
    },
    /// A route is listed twice.
    #[error("route {key} is listed twice")]
    Duplicate {
        /// The route.
        key: RouteKey,
    },
}

/// Why the route cache was not used at start.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file exists but cannot be read.
    #[error("cannot read the route cache {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a usable route cache.
    #[error("the route cache {path} is not usable")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: DecodeError,
    },
    /// The file is older than `cache_max_age_secs`.
    #[error(
        "the route cache {path} was written {age_secs} s ago, longer than cache_max_age_secs = {max_age_secs}"
    )]
    TooOld {
        /// The file.
        path: PathBuf,
        /// Its age.
        age_secs: u64,
        /// The limit.
        max_age_secs: u64,
    },
}

/// The route cache could not be written; the previous file, if any, is unchanged.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the route cache {path}")]
pub struct WriteError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

/// The bytes of a route cache holding `routes` (each key at most once), written at
/// `written_at_ms` (Unix milliseconds).
pub fn encode<'a>(
    routes: impl IntoIterator<Item = (RouteKey, &'a [HostAddr])>,
    written_at_ms: u64,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + CRC_LEN);
    out.put_slice(&MAGIC);
    out.put_u32_le(VERSION);
    out.put_u64_le(written_at_ms);
    out.put_u32_le(0); // routes, patched below
    out.put_u32_le(0); // body length, patched below
    let mut count: u32 = 0;
    for (key, hosts) in routes {
        out.put_i32_le(key.modid);
        out.put_i32_le(key.cmdid);
        // A route's hosts came in one 64 KiB dns frame: far fewer than u32::MAX.
        out.put_u32_le(hosts.len() as u32);
        for host in hosts {
            out.put_u32_le(host.ip_bits());
            out.put_u16_le(host.port);
        }
        count += 1;
    }
    let body_len = (out.len() - HEADER_LEN) as u32;
    out[20..24].copy_from_slice(&count.to_le_bytes());
    out[24..28].copy_from_slice(&body_len.to_le_bytes());
    let crc = crc32fast::hash(&out);
    out.put_u32_le(crc);
    out
}

/// Reads a route cache's bytes, checking, in order: the magic, the version, the length, the
/// checksum, then the body.
pub fn decode(bytes: &[u8]) -> Result<RouteCacheFile, DecodeError> {
    if bytes.len() < MAGIC.len() + 4 || bytes[..MAGIC.len()] != MAGIC {
        return Err(DecodeError::NotACache);
    }
    let mut header = &bytes[MAGIC.len()..];
    let version = header.get_u32_le();
    if version != VERSION {
        return Err(DecodeError::UnknownVersion { found: version });
    }
    if bytes.len() < HEADER_LEN + CRC_LEN {
        return Err(DecodeError::Truncated {
            len: bytes.len(),
            expected: HEADER_LEN + CRC_LEN,
        });
    }
    let written_at_ms = header.get_u64_le();
    let count = header.get_u32_le();
    let body_len = header.get_u32_le() as usize;
    let expected = HEADER_LEN + body_len + CRC_LEN;
    if bytes.len() < expected {
        return Err(DecodeError::Truncated {
            len: bytes.len(),
            expected,
        });
    }
    if bytes.len() > expected {
        return Err(DecodeError::TrailingBytes {
            len: bytes.len(),
            expected,
        });
    }
    let (contents, mut stored) = bytes.split_at(expected - CRC_LEN);
    let stored = stored.get_u32_le();
    let computed = crc32fast::hash(contents);
    if stored != computed {
        return Err(DecodeError::Checksum { stored, computed });
    }

    let mut body = &contents[HEADER_LEN..];
    let at = |body: &[u8]| expected - CRC_LEN - body.len();
    // Each route takes at least ROUTE_HEAD_LEN bytes, so a count the body cannot hold is
    // refused before anything is allocated for it.
    if count as usize > body.len() / ROUTE_HEAD_LEN {
        return Err(DecodeError::Malformed {
            at: HEADER_LEN,
            what: "more routes than the body can hold",
        });
    }
    let mut routes = Vec::with_capacity(count as usize);
    let mut seen = HashSet::default();
    for _ in 0..count {
        if body.len() < ROUTE_HEAD_LEN {
            return Err(DecodeError::Malformed {
                at: at(body),
                what: "a route cut short",
            });
        }
        let key = RouteKey::new(body.get_i32_le(), body.get_i32_le());
        if !key.is_route() {
            return Err(DecodeError::Malformed {
                at: at(body),
                what: "a route with a negative modid or cmdid",
            });
        }
        let hosts = body.get_u32_le() as usize;
        if hosts == 0 {
            return Err(DecodeError::Malformed {
                at: at(body),
                what: "a route without hosts",
            });
        }
        if hosts > body.len() / HOST_LEN {
            return Err(DecodeError::Malformed {
                at: at(body),
                what: "more hosts than the body holds",
            });
        }
        let hosts: Box<[HostAddr]> = (0..hosts)
            .map(|_| HostAddr::new(Ipv4Addr::from(body.get_u32_le()), body.get_u16_le()))
            .collect();
        if !seen.insert(key) {
            return Err(DecodeError::Duplicate { key });
        }
        routes.push((key, hosts));
    }
    if !body.is_empty() {
        return Err(DecodeError::Malformed {
            at: at(body),
            what: "bytes after the last route",
        });
    }
    Ok(RouteCacheFile {
        written_at_ms,
        routes,
    })
}

/// The route cache at `path`, if there is one, unless it is older than `max_age` at `now`.
/// A missing file is `Ok(None)`.
pub fn load(
    path: &Path,
    max_age: Duration,
    now: SystemTime,
) -> Result<Option<RouteCacheFile>, LoadError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(LoadError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let file = decode(&bytes).map_err(|source| LoadError::Corrupt {
        path: path.to_path_buf(),
        source,
    })?;
    // A file stamped in the future (the clock was set back) counts as new.
    let age = Duration::from_millis(unix_ms(now).saturating_sub(file.written_at_ms));
    if age > max_age {
        return Err(LoadError::TooOld {
            path: path.to_path_buf(),
            age_secs: age.as_secs(),
            max_age_secs: max_age.as_secs(),
        });
    }
    Ok(Some(file))
}

/// [`load`] at the agent's start, with the outcome logged: the file, or `None` when there is
/// none or it is not used (a warning says which file and why).
pub fn load_at_start(path: &Path, max_age: Duration) -> Option<RouteCacheFile> {
    match load(path, max_age, SystemTime::now()) {
        Ok(Some(file)) => {
            info!(file = %path.display(), routes = file.routes.len(), "route cache loaded");
            Some(file)
        }
        Ok(None) => {
            info!(file = %path.display(), "no route cache yet");
            None
        }
        Err(e) => {
            warn!(file = %path.display(), error = %error_chain(&e), "route cache ignored");
            None
        }
    }
}

/// Writes `path` so that it holds either its old contents or all of `bytes`, never a part: the
/// bytes go to a new temporary file in the same directory (made if missing), which is synced,
/// renamed over `path`, and the directory synced so that the rename is on disk.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    write_atomic_with(path, |file| file.write_all(bytes))
}

/// [`write_atomic`] with the contents written by `fill`; an error from `fill` leaves `path`
/// unchanged and removes the temporary file.
fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<(), WriteError> {
    let error = |source| WriteError {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(error)?;
    // Named `.tmpXXXXXX` in `dir`, and removed when dropped unless persisted.
    let mut temp = tempfile::NamedTempFile::new_in(dir).map_err(error)?;
    fill(temp.as_file_mut()).map_err(error)?;
    temp.as_file().sync_all().map_err(error)?;
    temp.persist(path).map_err(|e| error(e.error))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(error)
}

/// Everything the cache writer is started with.
pub struct CacheWriterSetup {
    /// The file.
    pub path: PathBuf,
    /// Least time between two writes.
    pub interval: Duration,
    /// `cache_max_age`: an unchanged file is rewritten once a quarter of it old.
    pub max_age: Duration,
    /// One ring from each worker.
    pub snapshots: Vec<CacheRx>,
    /// Fired by the workers' rings and by stop.
    pub wake: Wake,
    /// Raised to stop (after the workers stopped and handed over their last snapshot).
    pub stop: UplinkStop,
    /// Every shard's routes as the workers loaded them at start, by shard.
    pub loaded: Vec<Vec<CachedRoute>>,
    /// When the loaded file was written (Unix ms), if one was loaded.
    pub loaded_written_at_ms: Option<u64>,
    /// Counters.
    pub stats: Arc<CacheStats>,
}

/// The cache writer's state: the latest routes of every shard and when the file was written.
struct CacheWriter {
    path: PathBuf,
    interval: Duration,
    refresh_after: Duration,
    shards: Vec<Vec<CachedRoute>>,
    /// Some shard's routes changed since the last write.
    changed: bool,
    /// When the file on disk was written (Unix ms), if there is one.
    file_written_at_ms: Option<u64>,
    /// When a write was last tried.
    last_try: Option<tokio::time::Instant>,
    stats: Arc<CacheStats>,
}

/// Runs the cache writer until stopped: writes when routes changed (at most once per
/// `interval`) or the file is due for a refresh, and once more at stop if anything is unsaved.
pub async fn run(setup: CacheWriterSetup) {
    let CacheWriterSetup {
        path,
        interval,
        max_age,
        mut snapshots,
        wake,
        stop,
        loaded,
        loaded_written_at_ms,
        stats,
    } = setup;
    let mut writer = CacheWriter {
        path,
        interval,
        refresh_after: max_age / REFRESH_FRACTION,
        shards: loaded,
        changed: false,
        file_written_at_ms: loaded_written_at_ms,
        last_try: None,
        stats,
    };
    loop {
        let stopping = stop.raised();
        for ring in &mut snapshots {
            while let Some(snapshot) = ring.pop() {
                writer.take(snapshot);
            }
        }
        if stopping {
            if writer.changed {
                writer.write();
            }
            debug!("route cache writer stopped");
            return;
        }
        writer.refresh_if_old(SystemTime::now());
        let now = tokio::time::Instant::now();
        let next_try = writer.last_try.map(|t| t + writer.interval);
        if writer.changed && next_try.is_none_or(|t| t <= now) {
            writer.write();
        }
        // Wake for the next write that may be due, or at least once an interval to look at the
        // file's age.
        let wait = match writer.last_try {
            Some(t) if writer.changed => (t + writer.interval).saturating_duration_since(now),
            _ => writer.interval,
        };
        tokio::select! {
            _ = wake.wait() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

impl CacheWriter {
    /// Keeps a worker's snapshot of one shard as that shard's routes.
    fn take(&mut self, snapshot: ShardRoutes) {
        let shard = usize::from(snapshot.shard);
        if self.shards.len() <= shard {
            self.shards.resize_with(shard + 1, Vec::new);
        }
        if self.shards[shard] != snapshot.routes {
            self.shards[shard] = snapshot.routes;
            self.changed = true;
        }
    }

    /// Marks an unchanged file for rewriting once it is `refresh_after` old, so its time stays
    /// recent while the agent runs.
    fn refresh_if_old(&mut self, now: SystemTime) {
        let Some(written) = self.file_written_at_ms else {
            return;
        };
        let age = Duration::from_millis(unix_ms(now).saturating_sub(written));
        if age >= self.refresh_after {
            self.changed = true;
        }
    }

    /// Writes every shard's routes (each key once); counts and logs the outcome.
    fn write(&mut self) {
        self.last_try = Some(tokio::time::Instant::now());
        let mut seen = HashSet::default();
        let routes: Vec<(RouteKey, &[HostAddr])> = self
            .shards
            .iter()
            .flatten()
            .filter(|(key, _)| seen.insert(*key))
            .map(|(key, hosts)| (*key, &hosts[..]))
            .collect();
        let written_at_ms = unix_ms(SystemTime::now());
        let bytes = encode(routes.iter().copied(), written_at_ms);
        match write_atomic(&self.path, &bytes) {
            Ok(()) => {
                self.changed = false;
                self.file_written_at_ms = Some(written_at_ms);
                self.stats.writes.inc();
                self.stats.routes.set(routes.len() as u64);
                debug!(file = %self.path.display(), routes = routes.len(), bytes = bytes.len(),
                    "route cache written");
            }
            Err(e) => {
                self.stats.write_failures.inc();
                warn!(error = %error_chain(&e), retry_in = ?self.interval,
                    "route cache not written; the previous file is unchanged");
            }
        }
    }
}

/// Milliseconds since the Unix epoch (0 before it).
fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The routes of a cache file by shard, for `shards` shards: each route goes to the shard its
/// callers send it to.
pub fn by_shard(routes: Vec<CachedRoute>, shards: std::num::NonZeroU16) -> Vec<Vec<CachedRoute>> {
    let mut out = vec![Vec::new(); usize::from(shards.get())];
    for (key, hosts) in routes {
        let shard = lars_wire::client::shard_of(key.modid, key.cmdid, shards);
        out[usize::from(shard)].push((key, hosts));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn host(last: u8, port: u16) -> HostAddr {
        HostAddr::new(Ipv4Addr::new(10, 0, 0, last), port)
    }

    fn sample() -> Vec<CachedRoute> {
        vec![
            (
                RouteKey::new(1, 1),
                vec![host(1, 9001), host(2, 9002)].into(),
            ),
            (
                RouteKey::new(0, 70000),
                vec![HostAddr::new(Ipv4Addr::new(200, 1, 2, 3), 0)].into(),
            ),
            (RouteKey::new(i32::MAX, 0), vec![host(9, 65535)].into()),
        ]
    }

    fn encoded(routes: &[CachedRoute], at: u64) -> Vec<u8> {
        encode(routes.iter().map(|(k, h)| (*k, &h[..])), at)
    }

    #[test]
    fn a_cached_route_with_a_negative_id_makes_the_file_malformed() {
        for key in [RouteKey::new(-5, 1), RouteKey::new(5, i32::MIN)] {
            let routes: Vec<CachedRoute> = vec![(key, vec![host(1, 9001)].into())];
            assert!(
                matches!(
                    decode(&encoded(&routes, 7)),
                    Err(DecodeError::Malformed {
                        what: "a route with a negative modid or cmdid",
                        ..
                    })
                ),
                "{key}"
            );
        }
    }

    #[test]
    fn encode_then_decode_gives_the_routes_and_time_back() {
        let routes = sample();
        let bytes = encoded(&routes, 1_700_000_000_123);
        assert_eq!(
            bytes.len(),
            HEADER_LEN + 3 * ROUTE_HEAD_LEN + 4 * HOST_LEN + CRC_LEN
        );
        assert_eq!(&bytes[..8], b"LARSRTC\n");
        assert_eq!(
            decode(&bytes).unwrap(),
            RouteCacheFile {
                written_at_ms: 1_700_000_000_123,
                routes
            }
        );
        let empty = encoded(&[], 5);
        assert_eq!(decode(&empty).unwrap().routes, []);
    }

    #[test]
    fn another_version_is_named_before_its_checksum_is_looked_at() {
        let mut bytes = encoded(&sample(), 1);
        bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
        assert_eq!(
            decode(&bytes),
            Err(DecodeError::UnknownVersion { found: 2 })
        );
        assert!(
            DecodeError::UnknownVersion { found: 2 }
                .to_string()
                .contains("version 2")
        );
    }

    #[test]
    fn random_bytes_and_other_files_are_not_a_cache() {
        assert_eq!(decode(b""), Err(DecodeError::NotACache));
        assert_eq!(decode(b"{\"routes\": []}"), Err(DecodeError::NotACache));
        assert_eq!(decode(&[0xA5; 4096]), Err(DecodeError::NotACache));
    }

    #[test]
    fn every_truncation_is_refused() {
        let bytes = encoded(&sample(), 1);
        for len in 0..bytes.len() {
            let err = decode(&bytes[..len]).unwrap_err();
            if len >= 12 {
                assert!(
                    matches!(err, DecodeError::Truncated { len: l, .. } if l == len),
                    "{len}: {err}"
                );
            }
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            decode(&longer),
            Err(DecodeError::TrailingBytes {
                len: bytes.len() + 1,
                expected: bytes.len()
            })
        );
    }

    #[test]
    fn a_body_that_does_not_match_its_header_is_malformed_even_with_a_good_checksum() {
        // Re-sign contents whose header claims one route more than the body has.
        let mut bytes = encoded(&sample(), 1);
        bytes.truncate(bytes.len() - CRC_LEN);
        bytes[20..24].copy_from_slice(&4u32.to_le_bytes());
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        assert!(
            matches!(decode(&bytes), Err(DecodeError::Malformed { .. })),
            "{:?}",
            decode(&bytes)
        );
        // A duplicate key.
        let twice = [sample()[0].clone(), sample()[0].clone()];
        assert_eq!(
            decode(&encoded(&twice, 1)),
            Err(DecodeError::Duplicate {
                key: RouteKey::new(1, 1)
            })
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn any_routes_round_trip(
            routes in prop::collection::btree_map(
                (0..=i32::MAX, 0..=i32::MAX),
                prop::collection::vec((any::<u32>(), any::<u16>()), 1..20),
                0..40,
            ),
            at in any::<u64>(),
        ) {
            let routes: Vec<CachedRoute> = routes
                .into_iter()
                .map(|((m, c), hosts)| {
                    let hosts = hosts.into_iter().map(|(ip, port)| HostAddr::new(Ipv4Addr::from(ip), port));
                    (RouteKey::new(m, c), hosts.collect())
                })
                .collect();
            let file = decode(&encoded(&routes, at)).unwrap();
            prop_assert_eq!(file.written_at_ms, at);
            prop_assert_eq!(file.routes, routes);
        }

        #[test]
        fn any_flipped_bit_is_caught(bit in 0usize..(8 * (HEADER_LEN + 3 * ROUTE_HEAD_LEN + 4 * HOST_LEN + CRC_LEN))) {
            let mut bytes = encoded(&sample(), 42);
            bytes[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(decode(&bytes).is_err());
        }
    }

    #[test]
    fn load_ignores_a_missing_file_and_refuses_an_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let now = SystemTime::now();
        let day = Duration::from_secs(86_400);
        assert!(load(&path, day, now).unwrap().is_none());

        let written = unix_ms(now) - 2 * 86_400_000;
        std::fs::write(&path, encoded(&sample(), written)).unwrap();
        let err = load(&path, day, now).unwrap_err();
        assert!(
            matches!(
                err,
                LoadError::TooOld {
                    age_secs: 172_800,
                    max_age_secs: 86_400,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains(FILE_NAME), "{err}");
        let file = load(&path, 3 * day, now).unwrap().unwrap();
        assert_eq!(file.routes, sample());

        std::fs::write(&path, b"garbage").unwrap();
        let err = load(&path, day, now).unwrap_err();
        let text = error_chain(&err);
        assert!(
            text.contains(FILE_NAME) && text.contains("not a route cache"),
            "{text}"
        );
    }

    #[test]
    fn a_failed_write_leaves_the_good_file_and_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state").join(FILE_NAME);
        let good = encoded(&sample(), 7);
        write_atomic(&path, &good).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), good);

        // The new contents fail half-way: the good file stays whole.
        let newer = encoded(&sample()[..1], 8);
        let err = write_atomic_with(&path, |file| {
            file.write_all(&newer[..newer.len() / 2])?;
            Err(std::io::Error::other("disk full"))
        })
        .unwrap_err();
        assert!(error_chain(&err).contains("disk full"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), good);
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [FILE_NAME], "the temporary file is gone");

        write_atomic(&path, &newer).unwrap();
        assert_eq!(
            decode(&std::fs::read(&path).unwrap())
                .unwrap()
                .written_at_ms,
            8
        );
    }

    #[test]
    fn a_write_into_a_directory_that_cannot_be_made_fails_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"").unwrap();
        let path = blocker.join(FILE_NAME);
        let err = write_atomic(&path, b"x").unwrap_err();
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn the_writer_keeps_each_shards_latest_routes_and_writes_each_key_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let stats = Arc::new(CacheStats::default());
        let routes = sample();
        let mut writer = CacheWriter {
            path: path.clone(),
            interval: Duration::from_secs(1),
            refresh_after: Duration::from_secs(3600),
            shards: vec![vec![routes[0].clone()], Vec::new()],
            changed: false,
            file_written_at_ms: None,
            last_try: None,
            stats: stats.clone(),
        };
        writer.take(ShardRoutes {
            shard: 0,
            routes: vec![routes[0].clone()],
        });
        assert!(!writer.changed, "the same routes are no change");
        writer.take(ShardRoutes {
            shard: 2,
            routes: vec![routes[1].clone(), routes[0].clone()],
        });
        assert!(writer.changed);
        writer.write();
        assert!(!writer.changed);
        assert_eq!((stats.writes.get(), stats.routes.get()), (1, 2));
        let file = decode(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(file.routes, [routes[0].clone(), routes[1].clone()]);

        // A file a quarter of max_age old is rewritten even when nothing changed.
        writer.refresh_if_old(SystemTime::now());
        assert!(!writer.changed);
        writer.refresh_if_old(SystemTime::now() + Duration::from_secs(3600));
        assert!(writer.changed);
    }

    #[test]
    fn routes_go_to_the_shard_their_callers_send_them_to() {
        let shards = std::num::NonZeroU16::new(3).unwrap();
        let by = by_shard(sample(), shards);
        assert_eq!(by.len(), 3);
        for (shard, routes) in by.iter().enumerate() {
            for (key, _) in routes {
                assert_eq!(
                    usize::from(lars_wire::client::shard_of(key.modid, key.cmdid, shards)),
                    shard
                );
            }
        }
        assert_eq!(by.iter().map(Vec::len).sum::<usize>(), 3);
    }
}
