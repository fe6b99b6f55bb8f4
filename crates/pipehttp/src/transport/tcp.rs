//! TCP listeners and connections.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::net::{TcpListener, TcpSocket, TcpStream};

use crate::address::Host;

/// One or two bound sockets: `localhost` binds the IPv4 and the IPv6
/// loopback on one port, as Kestrel does.
#[derive(Debug)]
pub(crate) struct Listener {
    sockets: Vec<TcpListener>,
}

impl Listener {
    pub(crate) fn bind(host: &Host, port: u16) -> io::Result<Self> {
        let first = match host {
            Host::Any => bind_one(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port), true)
                .or_else(|_| {
                    bind_one(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port), false)
                })?,
            Host::Localhost => bind_one(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port), false)?,
            Host::Ip(ip) => bind_one(SocketAddr::new(*ip, port), false)?,
            Host::Name(name) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("a server binds IP addresses, not the name '{name}'"),
                ));
            }
        };
        let mut sockets = vec![first];
        if *host == Host::Localhost {
            let port = sockets[0].local_addr()?.port();
            // A machine without IPv6 still serves localhost over IPv4.
            if let Ok(v6) = bind_one(SocketAddr::new(Ipv6Addr::LOCALHOST.into(), port), false) {
                sockets.push(v6);
            }
        }
        Ok(Self { sockets })
    }

    /// A listener over a socket already bound and listening.
    pub(crate) fn from_std(listener: std::net::TcpListener) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        Ok(Self {
            sockets: vec![TcpListener::from_std(listener)?],
        })
    }

    /// The host it listens on, as an address names it.
    pub(crate) fn host(&self) -> Host {
        match self.sockets[0].local_addr().map(|a| a.ip()) {
            Ok(ip) if ip.is_unspecified() => Host::Any,
            Ok(ip) => Host::Ip(ip),
            Err(_) => Host::Any,
        }
    }

    pub(crate) fn port(&self) -> u16 {
        self.sockets[0].local_addr().map_or(0, |a| a.port())
    }

    pub(crate) fn local_addrs(&self) -> Vec<SocketAddr> {
        self.sockets
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }

    pub(crate) async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (stream, addr) = match self.sockets.as_slice() {
            [one] => one.accept().await?,
            [a, b] => tokio::select! {
                r = a.accept() => r?,
                r = b.accept() => r?,
            },
            _ => unreachable!("a TCP listener holds one or two sockets"),
        };
        // Small request/response exchanges must not wait for Nagle.
        stream.set_nodelay(true)?;
        Ok((stream, addr))
    }
}

fn bind_one(addr: SocketAddr, dual_stack: bool) -> io::Result<TcpListener> {
    let socket = match addr.ip() {
        IpAddr::V4(_) => TcpSocket::new_v4()?,
        IpAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if dual_stack {
        socket2::SockRef::from(&socket).set_only_v6(false)?;
    }
    // A restarted server must be able to bind while old connections linger
    // in TIME_WAIT; on Windows this option would allow port stealing instead.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Connects to the first address of `host` that accepts.
pub(crate) async fn connect(host: &Host, port: u16) -> io::Result<(TcpStream, SocketAddr)> {
    let stream = match host {
        Host::Ip(ip) => TcpStream::connect(SocketAddr::new(*ip, port)).await?,
        Host::Localhost | Host::Any => TcpStream::connect(("localhost", port)).await?,
        Host::Name(name) => TcpStream::connect((name.as_str(), port)).await?,
    };
    stream.set_nodelay(true)?;
    let addr = stream.peer_addr()?;
    Ok((stream, addr))
}
