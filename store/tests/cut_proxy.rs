//! The `CutProxy` itself, against a small echo server.

use std::net::SocketAddr;
use std::time::Duration;

use lars_store::testing::CutProxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Longer than any step here should take; reaching it fails the test.
const DEADLINE: Duration = Duration::from_secs(10);

async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = conn.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

async fn echo(conn: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
    conn.write_all(msg).await.unwrap();
    let mut buf = vec![0; msg.len()];
    tokio::time::timeout(DEADLINE, conn.read_exact(&mut buf))
        .await
        .expect("no echo")
        .unwrap();
    buf
}

/// Waits until the peer closes `conn` (EOF or reset).
async fn closed(conn: &mut TcpStream) {
    let mut buf = [0u8; 64];
    loop {
        match tokio::time::timeout(DEADLINE, conn.read(&mut buf)).await {
            Err(_) => panic!("the connection stayed open"),
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn forwards_until_cut_black_holes_while_cut_and_forwards_after_restore() {
    let proxy = CutProxy::start(echo_server().await).await.unwrap();
    let mut before = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(echo(&mut before, b"hello").await, b"hello");

    proxy.cut();
    assert!(proxy.is_cut());
    closed(&mut before).await;

    // A connection made while cut is accepted but never answered.
    let mut during = TcpStream::connect(proxy.addr()).await.unwrap();
    during.write_all(b"anyone?").await.unwrap();
    let mut buf = [0u8; 8];
    let silent = tokio::time::timeout(Duration::from_millis(300), during.read(&mut buf)).await;
    assert!(
        silent.is_err(),
        "a black-holed connection answered: {silent:?}"
    );

    proxy.restore();
    assert!(!proxy.is_cut());
    closed(&mut during).await;
    let mut after = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(echo(&mut after, b"back").await, b"back");
}

#[tokio::test]
async fn dropping_the_proxy_closes_its_connections() {
    let proxy = CutProxy::start(echo_server().await).await.unwrap();
    let mut conn = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(echo(&mut conn, b"x").await, b"x");
    drop(proxy);
    closed(&mut conn).await;
}
