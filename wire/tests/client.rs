//! The client library against a scripted fake agent: a thread with a real UDP socket on a port
//! the OS picks, answering each request with whatever datagrams the test's script returns and
//! handing every request it saw to the test through a channel.

use lars_wire::HostAddr;
use lars_wire::client::{Client, ClientConfig, ClientError};
use lars_wire::messages::{GetHostResponse, GetRouteRequest, GetRouteResponse, HostInfo};
use lars_wire::{Message, RetCode, datagram};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a test waits for something that should happen at once.
const EVENT_DEADLINE: Duration = Duration::from_secs(5);
/// Client timeout in tests that expect an answer: long, since the answer comes at once.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// Client timeout in tests that expect a timeout: short, to keep the suite fast.
const SILENCE_TIMEOUT: Duration = Duration::from_millis(150);

/// The fake agent's answer to one request: the datagrams to send back, in order.
type Script = Box<dyn FnMut(&Message) -> Vec<Vec<u8>> + Send>;

/// One datagram the fake agent received.
struct Request {
    bytes: Vec<u8>,
    msg: Message,
}

struct FakeAgent {
    addr: SocketAddr,
    requests: Receiver<Request>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeAgent {
    fn start(script: impl FnMut(&Message) -> Vec<Vec<u8>> + Send + 'static) -> FakeAgent {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        FakeAgent::serve(socket, script)
    }

    fn serve(
        socket: UdpSocket,
        script: impl FnMut(&Message) -> Vec<Vec<u8>> + Send + 'static,
    ) -> FakeAgent {
        let mut script: Script = Box::new(script);
        let addr = socket.local_addr().unwrap();
        let (tx, requests) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65535];
            loop {
                let Ok((len, peer)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                let bytes = buf[..len].to_vec();
                let msg = datagram::decode_datagram(&bytes).expect("the client sends valid frames");
                let replies = script(&msg);
                // Recorded before answering, so a test that got its answer sees the request.
                let _ = tx.send(Request { bytes, msg });
                for reply in replies {
                    socket.send_to(&reply, peer).unwrap();
                }
            }
        });
        FakeAgent {
            addr,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }

    fn next_request(&self) -> Request {
        self.requests
            .recv_timeout(EVENT_DEADLINE)
            .expect("the fake agent received a request")
    }

    fn assert_no_more_requests(&self) {
        assert!(matches!(self.requests.try_recv(), Err(TryRecvError::Empty)));
    }
}

impl Drop for FakeAgent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the thread from its blocking receive.
        if let Ok(waker) = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)) {
            let _ = waker.send_to(&[], self.addr);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn client(base_port: u16, timeout: Duration) -> Client {
    Client::new(ClientConfig {
        agent_ip: Ipv4Addr::LOCALHOST,
        base_port,
        shards: 1,
        timeout,
    })
    .unwrap()
}

fn encode(msg: Message) -> Vec<u8> {
    let mut buf = vec![0u8; 65535];
    let len = datagram::encode_datagram(&msg, &mut buf).unwrap();
    buf.truncate(len);
    buf
}

fn wire_host(host: HostAddr) -> HostInfo {
    HostInfo {
        ip: u32::from(host.ip) as i32,
        port: i32::from(host.port),
    }
}

/// A GetHostResponse echoing the request's seq and key.
fn host_answer(request: &Message, retcode: i32, host: Option<HostInfo>) -> Vec<u8> {
    let Message::GetHostRequest(req) = request else {
        panic!("expected a GetHostRequest, got {request:?}");
    };
    encode(Message::GetHostResponse(GetHostResponse {
        seq: req.seq,
        modid: req.modid,
        cmdid: req.cmdid,
        retcode,
        host,
    }))
}

/// An API_GetRouteResponse for the request's key.
fn route_answer(request: &Message, hosts: &[HostAddr]) -> Vec<u8> {
    let Message::ApiGetRouteRequest(req) = request else {
        panic!("expected an API_GetRouteRequest, got {request:?}");
    };
    encode(Message::ApiGetRouteResponse(GetRouteResponse {
        modid: req.modid,
        cmdid: req.cmdid,
        host: hosts.iter().copied().map(wire_host).collect(),
        removed: false,
    }))
}

/// A port on which nothing listens: the OS picked it for a socket that is now closed.
fn closed_port() -> u16 {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    socket.local_addr().unwrap().port()
}

fn far_host() -> HostAddr {
    HostAddr::new(Ipv4Addr::new(200, 1, 2, 3), 65535)
}

fn near_host() -> HostAddr {
    HostAddr::new(Ipv4Addr::new(10, 0, 0, 7), 8080)
}

#[test]
fn get_host_returns_the_agents_pick() {
    let agent = FakeAgent::start(|req| vec![host_answer(req, 0, Some(wire_host(far_host())))]);
    let mut client = client(agent.port(), ANSWER_TIMEOUT);

    assert_eq!(client.get_host(11, 22).unwrap(), far_host());
    assert_eq!(client.get_host(11, 22).unwrap(), far_host());

    let first = agent.next_request();
    let second = agent.next_request();
    let (Message::GetHostRequest(first), Message::GetHostRequest(second)) = (first.msg, second.msg)
    else {
        panic!("expected two GetHostRequests");
    };
    assert_eq!((first.modid, first.cmdid), (11, 22));
    assert_eq!((second.modid, second.cmdid), (11, 22));
    assert_ne!(first.seq, second.seq, "every request has a fresh seq");
    assert_eq!(client.discarded(), 0);
}

#[test]
fn overload_noexist_and_system_error_come_back_as_refusals() {
    for code in [RetCode::Overload, RetCode::NoExist, RetCode::SystemError] {
        let agent = FakeAgent::start(move |req| vec![host_answer(req, code.as_i32(), None)]);
        let mut client = client(agent.port(), ANSWER_TIMEOUT);
        match client.get_host(1, 2) {
            Err(ClientError::Refused(got)) => assert_eq!(got, code),
            other => panic!("{code:?}: expected a refusal, got {other:?}"),
        }
    }
}

#[test]
fn succ_without_a_usable_host_is_a_bad_reply() {
    let answers: [(i32, Option<HostInfo>); 4] = [
        (0, None),
        (0, Some(HostInfo { ip: 1, port: 0 })),
        (0, Some(HostInfo { ip: 1, port: 70000 })),
        (9, Some(wire_host(near_host()))),
    ];
    for (retcode, host) in answers {
        let agent = FakeAgent::start(move |req| vec![host_answer(req, retcode, host.clone())]);
        let mut client = client(agent.port(), ANSWER_TIMEOUT);
        let result = client.get_host(1, 2);
        assert!(
            matches!(&result, Err(ClientError::BadReply { agent: a, .. }) if *a == agent.addr),
            "retcode {retcode}: got {result:?}"
        );
    }
}

#[test]
fn silent_agent_times_out() {
    let agent = FakeAgent::start(|_| Vec::new());
    let mut client = client(agent.port(), SILENCE_TIMEOUT);

    let result = client.get_host(1, 2);
    assert!(
        matches!(&result, Err(ClientError::Timeout { agent: a }) if *a == agent.addr),
        "got {result:?}"
    );
    assert!(matches!(
        agent.next_request().msg,
        Message::GetHostRequest(_)
    ));

    let result = client.get_route(1, 2);
    assert!(
        matches!(&result, Err(ClientError::Timeout { .. })),
        "got {result:?}"
    );
}

#[test]
fn stopped_agent_times_out_and_does_not_poison_later_calls() {
    let port = closed_port();
    let mut client = client(port, SILENCE_TIMEOUT);
    let agent: SocketAddr = (Ipv4Addr::LOCALHOST, port).into();

    // A report draws an ICMP port unreachable that stays queued on the socket; the next calls
    // must still come back as timeouts, not I/O errors.
    client.report(1, 2, near_host(), 0).unwrap();
    for _ in 0..2 {
        let result = client.get_host(1, 2);
        assert!(
            matches!(&result, Err(ClientError::Timeout { agent: a }) if *a == agent),
            "got {result:?}"
        );
    }
    client.report(1, 2, near_host(), 1).unwrap();
    let result = client.get_route(1, 2);
    assert!(
        matches!(&result, Err(ClientError::Timeout { agent: a }) if *a == agent),
        "got {result:?}"
    );
}

#[test]
fn older_seq_reply_before_the_right_one_is_discarded() {
    let agent = FakeAgent::start(|req| {
        let Message::GetHostRequest(r) = req else {
            panic!("unexpected {req:?}");
        };
        let stale = Message::GetHostRequest(lars_wire::messages::GetHostRequest {
            seq: r.seq.wrapping_sub(1),
            ..r.clone()
        });
        vec![
            host_answer(&stale, 0, Some(wire_host(far_host()))),
            host_answer(req, 0, Some(wire_host(near_host()))),
        ]
    });
    let mut client = client(agent.port(), ANSWER_TIMEOUT);

    assert_eq!(client.get_host(5, 6).unwrap(), near_host());
    assert_eq!(client.discarded(), 1);
}

#[test]
fn late_answer_to_a_timed_out_request_is_not_taken_for_the_next_one() {
    // The first request goes unanswered; with the second, the agent answers both (the late
    // answer to the first one arriving first).
    let mut unanswered: Option<Message> = None;
    let agent = FakeAgent::start(move |req| match unanswered.take() {
        None => {
            unanswered = Some(req.clone());
            Vec::new()
        }
        Some(first) => vec![
            host_answer(&first, 0, Some(wire_host(far_host()))),
            host_answer(req, 0, Some(wire_host(near_host()))),
        ],
    });
    let mut client = client(agent.port(), Duration::from_millis(300));

    assert!(matches!(
        client.get_host(5, 6),
        Err(ClientError::Timeout { .. })
    ));
    assert_eq!(client.get_host(5, 6).unwrap(), near_host());
    assert_eq!(client.discarded(), 1);
}

#[test]
fn reply_for_another_key_is_discarded() {
    let agent = FakeAgent::start(|req| {
        let Message::GetHostRequest(r) = req else {
            panic!("unexpected {req:?}");
        };
        let other_modid = Message::GetHostRequest(lars_wire::messages::GetHostRequest {
            modid: r.modid + 1,
            ..r.clone()
        });
        let other_cmdid = Message::GetHostRequest(lars_wire::messages::GetHostRequest {
            cmdid: r.cmdid + 1,
            ..r.clone()
        });
        vec![
            host_answer(&other_modid, 0, Some(wire_host(far_host()))),
            host_answer(&other_cmdid, 3, None),
            host_answer(req, 0, Some(wire_host(near_host()))),
        ]
    });
    let mut client = client(agent.port(), ANSWER_TIMEOUT);

    assert_eq!(client.get_host(5, 6).unwrap(), near_host());
    assert_eq!(client.discarded(), 2);
}

#[test]
fn garbage_before_the_reply_is_discarded() {
    fn header(msgid: i32, msglen: i32) -> Vec<u8> {
        let mut bytes = msgid.to_le_bytes().to_vec();
        bytes.extend_from_slice(&msglen.to_le_bytes());
        bytes
    }
    let garbage: Vec<Vec<u8>> = vec![
        Vec::new(),
        vec![5, 0, 0, 0, 0, 0, 0],
        [header(5, 100), vec![1, 2, 3]].concat(),
        header(5, -1),
        header(99, 0),
        [header(5, 1), vec![0x08]].concat(),
        encode(Message::ApiGetRouteResponse(GetRouteResponse {
            modid: 5,
            cmdid: 6,
            host: vec![wire_host(far_host())],
            removed: false,
        })),
    ];
    let count = garbage.len() as u64;
    let agent = FakeAgent::start(move |req| {
        let mut out = garbage.clone();
        out.push(host_answer(req, 0, Some(wire_host(near_host()))));
        out
    });
    let mut client = client(agent.port(), ANSWER_TIMEOUT);

    assert_eq!(client.get_host(5, 6).unwrap(), near_host());
    assert_eq!(client.discarded(), count);
}

#[test]
fn get_route_lists_the_hosts_and_an_unknown_route_is_empty() {
    let route = [
        far_host(),
        near_host(),
        HostAddr::new(Ipv4Addr::new(128, 0, 0, 0), 1),
    ];
    let agent = FakeAgent::start(move |req| {
        let Message::ApiGetRouteRequest(r) = req else {
            panic!("unexpected {req:?}");
        };
        let other_key = Message::ApiGetRouteRequest(GetRouteRequest {
            modid: r.modid,
            cmdid: r.cmdid + 100,
        });
        let hosts: &[HostAddr] = if r.modid == 7 { &route } else { &[] };
        vec![route_answer(&other_key, &route), route_answer(req, hosts)]
    });
    let mut client = client(agent.port(), ANSWER_TIMEOUT);

    assert_eq!(client.get_route(7, 1).unwrap(), route.to_vec());
    assert_eq!(client.get_route(8, 1).unwrap(), Vec::<HostAddr>::new());
    assert_eq!(client.discarded(), 2);

    let request = agent.next_request();
    assert_eq!(
        request.msg,
        Message::ApiGetRouteRequest(GetRouteRequest { modid: 7, cmdid: 1 })
    );
    assert_eq!(
        i32::from_le_bytes(request.bytes[..4].try_into().unwrap()),
        7
    );
}

#[test]
fn reg_init_retries_until_the_route_is_filled() {
    let mut asked = 0;
    let agent = FakeAgent::start(move |req| {
        asked += 1;
        let hosts: &[HostAddr] = if asked >= 3 { &[far_host()] } else { &[] };
        vec![route_answer(req, hosts)]
    });
    let mut client = client(agent.port(), ANSWER_TIMEOUT);

    assert_eq!(client.reg_init(3, 4).unwrap(), vec![far_host()]);
    for _ in 0..3 {
        assert_eq!(
            agent.next_request().msg,
            Message::ApiGetRouteRequest(GetRouteRequest { modid: 3, cmdid: 4 })
        );
    }
    agent.assert_no_more_requests();
}

#[test]
fn reg_init_gives_noexist_when_the_route_stays_empty() {
    let agent = FakeAgent::start(|req| vec![route_answer(req, &[])]);
    let mut client = client(agent.port(), ANSWER_TIMEOUT);

    let result = client.reg_init(3, 4);
    assert!(
        matches!(result, Err(ClientError::Refused(RetCode::NoExist))),
        "got {result:?}"
    );
    for _ in 0..3 {
        agent.next_request();
    }
    agent.assert_no_more_requests();
}

#[test]
fn reg_init_against_a_stopped_agent_times_out() {
    let mut client = client(closed_port(), SILENCE_TIMEOUT);
    let result = client.reg_init(3, 4);
    assert!(
        matches!(result, Err(ClientError::Timeout { .. })),
        "got {result:?}"
    );
}

#[test]
fn report_sends_exactly_the_report_request() {
    let agent = FakeAgent::start(|_| Vec::new());
    let mut client = client(agent.port(), ANSWER_TIMEOUT);

    let host = HostAddr::new(Ipv4Addr::new(192, 168, 1, 10), 8080);
    client.report(5, 6, host, 1).unwrap();

    let request = agent.next_request();
    #[rustfmt::skip]
    let want: Vec<u8> = vec![
        6, 0, 0, 0, 22, 0, 0, 0, // msgid 6, msglen 22, little-endian
        0x08, 0x05, // modid 5
        0x10, 0x06, // cmdid 6
        0x1a, 0x0e, // host, 14 bytes:
        0x08, 0x8a, 0x82, 0xa0, 0x85, 0xfc, 0xff, 0xff, 0xff, 0xff, 0x01, // ip 192.168.1.10 < 0
        0x10, 0x90, 0x3f, // port 8080
        0x20, 0x01, // retcode 1
    ];
    assert_eq!(request.bytes, want);
    let Message::ReportRequest(report) = request.msg else {
        panic!("expected a ReportRequest, got {:?}", request.msg);
    };
    assert_eq!((report.modid, report.cmdid, report.retcode), (5, 6, 1));
    assert_eq!(
        report.host,
        Some(HostInfo {
            ip: 0xC0A8_010Au32 as i32,
            port: 8080
        })
    );

    // A success is retcode 0, which proto3 leaves off the wire.
    client.report(5, 6, host, RetCode::Succ.as_i32()).unwrap();
    let Message::ReportRequest(report) = agent.next_request().msg else {
        panic!("expected a ReportRequest");
    };
    assert_eq!(report.retcode, 0);
}

/// Two sockets on consecutive ports `p` and `p + 1`, `p` picked by the OS. Another process may
/// hold `p + 1`, so this retries with a fresh `p` a few times.
fn bind_consecutive_pair() -> (UdpSocket, UdpSocket) {
    for _ in 0..50 {
        let first = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = first.local_addr().unwrap().port();
        let Some(next) = port.checked_add(1) else {
            continue;
        };
        if let Ok(second) = UdpSocket::bind((Ipv4Addr::LOCALHOST, next)) {
            return (first, second);
        }
    }
    panic!("found no two consecutive free UDP ports");
}

#[test]
fn keys_go_to_their_shard_port() {
    let (first, second) = bind_consecutive_pair();
    let base_port = first.local_addr().unwrap().port();
    let host_of_shard = |shard: u8| HostAddr::new(Ipv4Addr::new(10, 0, 0, shard), 9000);
    let shard0 = FakeAgent::serve(first, move |req| {
        vec![host_answer(req, 0, Some(wire_host(host_of_shard(0))))]
    });
    let shard1 = FakeAgent::serve(second, move |req| {
        vec![host_answer(req, 0, Some(wire_host(host_of_shard(1))))]
    });
    let mut client = Client::new(ClientConfig {
        agent_ip: Ipv4Addr::LOCALHOST,
        base_port,
        shards: 2,
        timeout: ANSWER_TIMEOUT,
    })
    .unwrap();

    // (modid + cmdid) mod 2, with the negative sum -3 going to shard 1.
    let keys = [
        ((1, 1), 0),
        ((1, 2), 1),
        ((-3, 0), 1),
        ((i32::MAX, i32::MAX), 0),
    ];
    for ((modid, cmdid), shard) in keys {
        assert_eq!(client.get_host(modid, cmdid).unwrap(), host_of_shard(shard));
        let agent = if shard == 0 { &shard0 } else { &shard1 };
        assert_eq!(client.agent_addr(modid, cmdid), agent.addr);
        let Message::GetHostRequest(seen) = agent.next_request().msg else {
            panic!("expected a GetHostRequest");
        };
        assert_eq!((seen.modid, seen.cmdid), (modid, cmdid));
    }
    shard0.assert_no_more_requests();
    shard1.assert_no_more_requests();
}
