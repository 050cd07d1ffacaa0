//! Connecting to a service under test from a chosen local address, such as `127.0.0.2`, to
//! play a peer on another host over loopback (every `127.0.0.0/8` address is local on Linux).
//! std's `TcpStream` cannot bind before it connects; tokio's `TcpSocket` can.

use std::net::{IpAddr, SocketAddr};
use tokio::net::{TcpSocket, TcpStream};

/// A TCP connection to `to` whose local address is `source` (port chosen by the OS).
pub async fn connect_from(source: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = match source {
        IpAddr::V4(_) => TcpSocket::new_v4()?,
        IpAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(to).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[tokio::test]
    async fn the_service_sees_the_chosen_source_address() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        let stream = connect_from(source, listener.local_addr().unwrap())
            .await
            .unwrap();
        let (_, peer) = listener.accept().await.unwrap();
        assert_eq!(peer.ip(), source);
        assert_eq!(stream.local_addr().unwrap(), peer);
    }
}
