//! The client library that callers link: asks the agent on the local host which server of a
//! route to call ([`Client::get_host`]), tells it how the call went ([`Client::report`]) and lists
//! a route ([`Client::get_route`], [`Client::reg_init`]). It owns one blocking
//! [`UdpSocket`] per agent shard port and one reusable datagram buffer; it is called from the
//! caller's own threads (one `Client` per thread, like the original C++ `lars_client`), never
//! spawns threads, and never waits longer than [`ClientConfig::timeout`] for one answer.
//!
//! # Ports
//!
//! The agent listens on `shards` consecutive UDP ports from `base_port`. A key goes to port
//! `base_port + shard_of(modid, cmdid, shards)` (see [`shard_of`]), the same port the original
//! clients use, so every request for one key reaches the agent shard that holds its route.
//!
//! # Replies
//!
//! Each request waits for its own answer until a deadline of [`ClientConfig::timeout`] after
//! it was sent. Datagrams that do not decode, are of another message type, are for another
//! `(modid, cmdid)` or (for `get_host`) carry another `seq` — typically the late answer to an
//! earlier request that timed out — are discarded (and counted, see [`Client::discarded`]), and
//! the wait goes on. A refused port (ICMP port unreachable: the agent is not running) is treated
//! like silence, so a stopped agent is reported as [`ClientError::Timeout`] once the deadline
//! passes; the agent may be restarting, and a refusal may belong to an earlier datagram.

use crate::datagram;
use crate::error::WireError;
use crate::frame::MAX_FRAME_LEN;
use crate::messages::{GetHostRequest, GetRouteRequest, HostInfo, ReportRequest};
use crate::msg::{Message, RetCode};
use crate::route::HostAddr;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::num::NonZeroU16;
use std::time::{Duration, Instant};

/// The agent's first UDP port in a default Lars deployment.
pub const DEFAULT_BASE_PORT: u16 = 8888;
/// The number of agent UDP ports (shards) in a default Lars deployment.
pub const DEFAULT_SHARDS: u16 = 3;
/// How long one request waits for its answer by default.
///
/// The agent answers from memory in microseconds (an unknown route is answered NOEXIST at once,
/// not after asking dns), so one second only runs out when the agent is down or stalled, and a
/// caller that blocks for it still notices within a second.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
/// How many times [`Client::reg_init`] asks for a route before giving up (as in the original).
pub const REG_INIT_TRIES: u32 = 3;
/// The pause between two tries of [`Client::reg_init`] (as in the original).
pub const REG_INIT_RETRY_INTERVAL: Duration = Duration::from_millis(50);

/// Where the agent is and how long to wait for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// The agent's address; 127.0.0.1 (the agent runs on the caller's host) by default.
    pub agent_ip: Ipv4Addr,
    /// The agent's first UDP port; [`DEFAULT_BASE_PORT`] (8888) by default.
    pub base_port: u16,
    /// How many consecutive ports from `base_port` the agent listens on; at least 1, and
    /// `base_port + shards - 1` must be a valid port. [`DEFAULT_SHARDS`] (3) by default.
    pub shards: u16,
    /// How long one request waits for its answer, from the moment it is sent; must not be zero.
    /// [`DEFAULT_TIMEOUT`] (1 s) by default.
    pub timeout: Duration,
}

impl Default for ClientConfig {
    fn default() -> ClientConfig {
        ClientConfig {
            agent_ip: Ipv4Addr::LOCALHOST,
            base_port: DEFAULT_BASE_PORT,
            shards: DEFAULT_SHARDS,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// What went wrong with a call to the agent.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The configuration cannot work; nothing was sent.
    #[error("bad client config: {reason}")]
    BadConfig {
        /// Which setting is wrong and why.
        reason: String,
    },
    /// The UDP socket to the agent failed (bind, connect, send or receive).
    #[error("UDP socket to agent {agent} failed")]
    Io {
        /// The agent port the socket talks to.
        agent: SocketAddr,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// No answer arrived before the deadline: the agent is down, stalled or far away.
    #[error("no answer from agent {agent} within the timeout")]
    Timeout {
        /// The agent port the request went to.
        agent: SocketAddr,
    },
    /// The agent answered with a return code other than SUCC: [`RetCode::Overload`] (every host
    /// of the route is overloaded), [`RetCode::NoExist`] (the route is unknown or empty; the
    /// agent is asking dns for it, so a retry a little later may succeed) or
    /// [`RetCode::SystemError`]. Never holds [`RetCode::Succ`].
    #[error("agent refused: {}", retcode_name(*.0))]
    Refused(RetCode),
    /// The agent's answer to this request makes no sense (unknown return code, SUCC without a
    /// host, a host with an invalid port).
    #[error("bad reply from agent {agent}: {reason}")]
    BadReply {
        /// The agent port that answered.
        agent: SocketAddr,
        /// What was wrong with the answer.
        reason: String,
    },
    /// A request did not encode. The requests this client sends are small and fixed-size, so
    /// this does not happen; it exists so that no path panics.
    #[error("request does not encode")]
    Encode(#[source] WireError),
}

/// Lars' own name of a return code, for messages.
fn retcode_name(code: RetCode) -> &'static str {
    match code {
        RetCode::Succ => "SUCC",
        RetCode::Overload => "OVERLOAD",
        RetCode::SystemError => "SYSTEM_ERROR",
        RetCode::NoExist => "NOEXIST",
    }
}

/// The shard (port offset from `base_port`) that serves `(modid, cmdid)`.
///
/// Computed as `(modid + cmdid).rem_euclid(shards)` in 64-bit arithmetic, so it never overflows
/// and is always in `0..shards`. For non-negative ids whose sum fits in an `int` this is exactly
/// the original clients' `(modid + cmdid) % 3` (with `shards = 3`); for a negative sum the
/// original's C `%` gave a negative offset, a port below `base_port` where no agent listens,
/// whereas this picks a real shard.
pub fn shard_of(modid: i32, cmdid: i32, shards: NonZeroU16) -> u16 {
    let sum = i64::from(modid) + i64::from(cmdid);
    let shard = sum.rem_euclid(i64::from(shards.get()));
    // In 0..shards, so it fits in a u16.
    shard as u16
}

/// A socket connected to one agent port.
#[derive(Debug)]
struct AgentPort {
    socket: UdpSocket,
    agent: SocketAddr,
    /// Whether the read timeout is shorter than the configured one (set while a request waited
    /// past discarded datagrams); restored before the next request.
    timeout_shortened: bool,
}

impl AgentPort {
    fn io_error(&self, source: io::Error) -> ClientError {
        ClientError::Io {
            agent: self.agent,
            source,
        }
    }

    /// Sends one datagram. A refusal reported here belongs to an earlier datagram (the ICMP error
    /// is queued on the socket), so the send is tried once more.
    fn send(&self, datagram: &[u8]) -> Result<(), ClientError> {
        let mut refused_before = false;
        loop {
            match self.socket.send(datagram) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused && !refused_before => {
                    refused_before = true;
                }
                Err(e) => return Err(self.io_error(e)),
            }
        }
    }
}

/// A blocking connection to the local agent; one request at a time.
///
/// Create one per thread (it is `Send`, and its methods take `&mut self`). Every request goes to
/// the agent port of its key's shard and waits at most [`ClientConfig::timeout`] for the answer.
pub struct Client {
    /// Index = shard.
    ports: Vec<AgentPort>,
    shards: NonZeroU16,
    timeout: Duration,
    /// The `seq` of the last `get_host` request.
    seq: u32,
    /// Datagrams received and thrown away since the client was created.
    discarded: u64,
    /// One datagram, sent or received; as large as a frame can be.
    buf: Box<[u8]>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("ports", &self.ports)
            .field("timeout", &self.timeout)
            .field("seq", &self.seq)
            .field("discarded", &self.discarded)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Opens one UDP socket per shard, connected to `agent_ip:base_port + shard`.
    ///
    /// Sockets are bound to `127.0.0.1:0` when the agent is on a loopback address and to
    /// `0.0.0.0:0` otherwise. Nothing is sent yet, so this succeeds whether the agent runs or
    /// not; a missing agent shows as [`ClientError::Timeout`] on the first request.
    pub fn new(config: ClientConfig) -> Result<Client, ClientError> {
        let shards = Client::check_config(&config)?;
        let local = if config.agent_ip.is_loopback() {
            Ipv4Addr::LOCALHOST
        } else {
            Ipv4Addr::new(0, 0, 0, 0)
        };
        let ports = (0..config.shards)
            .map(|shard| {
                let agent =
                    SocketAddr::V4(SocketAddrV4::new(config.agent_ip, config.base_port + shard));
                let io_error = |source| ClientError::Io { agent, source };
                let socket = UdpSocket::bind((local, 0)).map_err(io_error)?;
                socket.connect(agent).map_err(io_error)?;
                socket
                    .set_read_timeout(Some(config.timeout))
                    .map_err(io_error)?;
                Ok(AgentPort {
                    socket,
                    agent,
                    timeout_shortened: false,
                })
            })
            .collect::<Result<Vec<_>, ClientError>>()?;
        Ok(Client {
            ports,
            shards,
            timeout: config.timeout,
            seq: 0,
            discarded: 0,
            buf: vec![0; MAX_FRAME_LEN].into_boxed_slice(),
        })
    }

    /// Checks `config` before any socket is opened; returns its shard count.
    pub(crate) fn check_config(config: &ClientConfig) -> Result<NonZeroU16, ClientError> {
        let Some(shards) = NonZeroU16::new(config.shards) else {
            return Err(ClientError::BadConfig {
                reason: "shards must be at least 1".to_string(),
            });
        };
        if config.base_port == 0 {
            return Err(ClientError::BadConfig {
                reason: "base_port must not be 0".to_string(),
            });
        }
        if u32::from(config.base_port) + u32::from(config.shards) - 1 > u32::from(u16::MAX) {
            return Err(ClientError::BadConfig {
                reason: format!(
                    "base_port {} + {} shards runs past port 65535",
                    config.base_port, config.shards
                ),
            });
        }
        if config.timeout.is_zero() {
            return Err(ClientError::BadConfig {
                reason: "timeout must not be zero".to_string(),
            });
        }
        Ok(shards)
    }

    /// The agent port that serves `(modid, cmdid)`.
    pub fn agent_addr(&self, modid: i32, cmdid: i32) -> SocketAddr {
        self.ports[usize::from(shard_of(modid, cmdid, self.shards))].agent
    }

    /// How many received datagrams were thrown away (undecodable, of another type, for another
    /// key, or a stale `seq`) since the client was created.
    pub fn discarded(&self) -> u64 {
        self.discarded
    }

    /// Asks the agent for one host of the route `(modid, cmdid)` to call now.
    ///
    /// Every call uses a fresh `seq` (a per-client counter that wraps), and only an answer with
    /// that `seq`, `modid` and `cmdid` is taken. Errors: [`ClientError::Refused`] with
    /// [`RetCode::NoExist`] for a route the agent does not have (yet) and with
    /// [`RetCode::Overload`] when every host is overloaded; [`ClientError::Timeout`] when the
    /// agent does not answer; [`ClientError::BadReply`] for a SUCC without a valid host.
    pub fn get_host(&mut self, modid: i32, cmdid: i32) -> Result<HostAddr, ClientError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let request = Message::GetHostRequest(GetHostRequest { seq, modid, cmdid });
        self.exchange(modid, cmdid, &request, |agent, reply| {
            let Message::GetHostResponse(reply) = reply else {
                return None;
            };
            if reply.seq != seq || reply.modid != modid || reply.cmdid != cmdid {
                return None;
            }
            Some(match RetCode::try_from(reply.retcode) {
                Ok(RetCode::Succ) => match &reply.host {
                    Some(info) => host_from_wire(agent, info),
                    None => Err(ClientError::BadReply {
                        agent,
                        reason: "SUCC without a host".to_string(),
                    }),
                },
                Ok(refused) => Err(ClientError::Refused(refused)),
                Err(_) => Err(ClientError::BadReply {
                    agent,
                    reason: format!("unknown retcode {}", reply.retcode),
                }),
            })
        })
    }

    /// Tells the agent how a call to `host` of `(modid, cmdid)` went: `retcode` 0
    /// ([`RetCode::Succ`]) for a success, anything else for a failure. The agent does not answer,
    /// so this only fails when the datagram cannot be sent.
    pub fn report(
        &mut self,
        modid: i32,
        cmdid: i32,
        host: HostAddr,
        retcode: i32,
    ) -> Result<(), ClientError> {
        let request = Message::ReportRequest(ReportRequest {
            modid,
            cmdid,
            host: Some(host.into()),
            retcode,
        });
        let port = &self.ports[usize::from(shard_of(modid, cmdid, self.shards))];
        let len =
            datagram::encode_datagram(&request, &mut self.buf).map_err(ClientError::Encode)?;
        port.send(&self.buf[..len])
    }

    /// Asks the agent for every host of the route `(modid, cmdid)`, in the agent's order.
    ///
    /// An unknown route is an empty list (the agent asks dns for it, so it may be filled a
    /// little later: see [`Client::reg_init`]). Route answers carry no `seq`: a late answer for
    /// the same key from an earlier, timed-out `get_route` is taken as this call's answer, which
    /// is harmless since it lists the same route.
    pub fn get_route(&mut self, modid: i32, cmdid: i32) -> Result<Vec<HostAddr>, ClientError> {
        let request = Message::ApiGetRouteRequest(GetRouteRequest { modid, cmdid });
        self.exchange(modid, cmdid, &request, |agent, reply| {
            let Message::ApiGetRouteResponse(reply) = reply else {
                return None;
            };
            if reply.modid != modid || reply.cmdid != cmdid {
                return None;
            }
            Some(
                reply
                    .host
                    .iter()
                    .map(|info| host_from_wire(agent, info))
                    .collect(),
            )
        })
    }

    /// Makes sure the agent has the route `(modid, cmdid)` before the first `get_host`, as the
    /// original `reg_init` does: up to [`REG_INIT_TRIES`] `get_route` calls,
    /// [`REG_INIT_RETRY_INTERVAL`] apart, until the route is non-empty. Returns its hosts.
    ///
    /// A try that times out counts as a try. When the last try timed out that error is
    /// returned; when the agent kept answering with an empty route, the result is
    /// `Err(ClientError::Refused(RetCode::NoExist))`. Other errors end the tries at once.
    pub fn reg_init(&mut self, modid: i32, cmdid: i32) -> Result<Vec<HostAddr>, ClientError> {
        let mut outcome = Err(ClientError::Refused(RetCode::NoExist));
        for attempt in 0..REG_INIT_TRIES {
            if attempt > 0 {
                std::thread::sleep(REG_INIT_RETRY_INTERVAL);
            }
            outcome = match self.get_route(modid, cmdid) {
                Ok(hosts) if !hosts.is_empty() => return Ok(hosts),
                Ok(_) => Err(ClientError::Refused(RetCode::NoExist)),
                Err(timeout @ ClientError::Timeout { .. }) => Err(timeout),
                Err(e) => return Err(e),
            };
        }
        outcome
    }

    /// Sends `request` to the shard of `(modid, cmdid)` and waits for the datagram that `accept`
    /// takes (returns `Some` for). Everything else that arrives before the deadline is counted
    /// as discarded.
    fn exchange<T>(
        &mut self,
        modid: i32,
        cmdid: i32,
        request: &Message,
        mut accept: impl FnMut(SocketAddr, Message) -> Option<Result<T, ClientError>>,
    ) -> Result<T, ClientError> {
        let port = &mut self.ports[usize::from(shard_of(modid, cmdid, self.shards))];
        let agent = port.agent;
        if port.timeout_shortened {
            port.socket
                .set_read_timeout(Some(self.timeout))
                .map_err(|e| port.io_error(e))?;
            port.timeout_shortened = false;
        }
        let len = datagram::encode_datagram(request, &mut self.buf).map_err(ClientError::Encode)?;
        port.send(&self.buf[..len])?;
        let deadline = Instant::now() + self.timeout;
        loop {
            match port.socket.recv(&mut self.buf) {
                Ok(len) => {
                    if let Ok(reply) = datagram::decode_datagram(&self.buf[..len])
                        && let Some(result) = accept(agent, reply)
                    {
                        return result;
                    }
                    self.discarded += 1;
                }
                Err(e) => match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                        return Err(ClientError::Timeout { agent });
                    }
                    // The agent port is closed right now (or was when an earlier datagram
                    // arrived): keep listening until the deadline, it may come back.
                    io::ErrorKind::ConnectionRefused | io::ErrorKind::Interrupted => {}
                    _ => return Err(port.io_error(e)),
                },
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(ClientError::Timeout { agent });
            }
            port.socket
                .set_read_timeout(Some(remaining))
                .map_err(|e| port.io_error(e))?;
            port.timeout_shortened = true;
        }
    }
}

/// A host from the agent's answer; its port must be 1..=65535.
pub(crate) fn host_from_wire(agent: SocketAddr, info: &HostInfo) -> Result<HostAddr, ClientError> {
    match HostAddr::try_from(info) {
        Ok(host) if host.port != 0 => Ok(host),
        Ok(host) => Err(ClientError::BadReply {
            agent,
            reason: format!("host {} has invalid port 0", host.ip),
        }),
        Err(bad) => Err(ClientError::BadReply {
            agent,
            reason: bad.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shards(n: u16) -> NonZeroU16 {
        NonZeroU16::new(n).unwrap()
    }

    #[test]
    fn non_negative_keys_go_where_the_original_sends_them() {
        for modid in 0..50 {
            for cmdid in 0..50 {
                assert_eq!(
                    i32::from(shard_of(modid, cmdid, shards(3))),
                    (modid + cmdid) % 3
                );
            }
        }
        let big = i32::MAX / 2;
        assert_eq!(i32::from(shard_of(big, big, shards(3))), (big + big) % 3);
    }

    #[test]
    fn extreme_and_negative_keys_neither_overflow_nor_leave_the_shard_range() {
        let edges = [
            i32::MIN,
            i32::MIN + 1,
            -7,
            -1,
            0,
            1,
            7,
            i32::MAX - 1,
            i32::MAX,
        ];
        for n in [1, 2, 3, 7, u16::MAX] {
            for modid in edges {
                for cmdid in edges {
                    let shard = shard_of(modid, cmdid, shards(n));
                    assert!(shard < n, "{modid}+{cmdid} % {n} = {shard}");
                    let want = (i64::from(modid) + i64::from(cmdid)).rem_euclid(i64::from(n));
                    assert_eq!(i64::from(shard), want);
                }
            }
        }
        assert_eq!(shard_of(i32::MAX, i32::MAX, shards(3)), 2); // 4294967294 % 3
        assert_eq!(shard_of(-3, 1, shards(3)), 1);
    }

    #[test]
    fn one_shard_takes_every_key() {
        for key in [i32::MIN, -1, 0, 1, i32::MAX] {
            assert_eq!(shard_of(key, key, shards(1)), 0);
        }
    }

    #[test]
    fn default_config_is_the_lars_default() {
        let config = ClientConfig::default();
        assert_eq!(config.agent_ip, Ipv4Addr::new(127, 0, 0, 1));
        assert_eq!(config.base_port, 8888);
        assert_eq!(config.shards, 3);
        assert_eq!(config.timeout, Duration::from_secs(1));
    }

    #[test]
    fn impossible_configs_are_refused_before_any_socket_is_opened() {
        let bad = [
            ClientConfig {
                shards: 0,
                ..ClientConfig::default()
            },
            ClientConfig {
                base_port: 0,
                ..ClientConfig::default()
            },
            ClientConfig {
                base_port: 65534,
                shards: 3,
                ..ClientConfig::default()
            },
            ClientConfig {
                timeout: Duration::ZERO,
                ..ClientConfig::default()
            },
        ];
        for config in bad {
            let result = Client::new(config.clone());
            assert!(
                matches!(result, Err(ClientError::BadConfig { .. })),
                "{config:?} gave {result:?}"
            );
        }
        let last_port = ClientConfig {
            base_port: 65533,
            shards: 3,
            ..ClientConfig::default()
        };
        assert!(Client::new(last_port).is_ok());
    }

    #[test]
    fn agent_addr_follows_the_shard_of_the_key() {
        let client = Client::new(ClientConfig::default()).unwrap();
        assert_eq!(
            client.agent_addr(1, 1),
            "127.0.0.1:8890".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            client.agent_addr(-1, 0),
            "127.0.0.1:8890".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            client.agent_addr(3, 0),
            "127.0.0.1:8888".parse::<SocketAddr>().unwrap()
        );
    }

    #[test]
    fn answered_hosts_need_a_port_from_1_to_65535() {
        let agent: SocketAddr = "127.0.0.1:8888".parse().unwrap();
        let host = HostAddr::new(Ipv4Addr::new(192, 168, 1, 10), 65535);
        let info = HostInfo::from(host);
        assert_eq!(host_from_wire(agent, &info).unwrap(), host);
        for port in [0, -1, 65536, i32::MIN] {
            let info = HostInfo { ip: 1, port };
            assert!(matches!(
                host_from_wire(agent, &info),
                Err(ClientError::BadReply { .. })
            ));
        }
    }

    #[test]
    fn refusals_are_named_in_lars_terms() {
        assert_eq!(
            ClientError::Refused(RetCode::NoExist).to_string(),
            "agent refused: NOEXIST"
        );
        assert_eq!(
            ClientError::Refused(RetCode::Overload).to_string(),
            "agent refused: OVERLOAD"
        );
    }
}
