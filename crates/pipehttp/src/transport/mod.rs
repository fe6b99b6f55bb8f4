//! One listener and one connection type over named pipes, Unix domain
//! sockets and TCP. Every platform difference of pipehttp lives below this
//! module; the rest of the crate sees [`Listener`] and [`Connection`].
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use pipehttp::transport::Listener;
//! use tokio::io::AsyncWriteExt;
//!
//! let address: pipehttp::ListenAddress = "http://pipe:/raw-pipe".parse()?;
//! let listener = Listener::bind(&address, &Default::default()).await?;
//! let mut conn = listener.accept().await?;
//! println!("peer pid: {:?}", conn.peer().pid);
//! conn.write_all(b"hello").await.ok();
//! # Ok(()) }
//! ```

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::address::{Endpoint, ListenAddress, PipeName, Scheme};
use crate::error::{Error, Kind, PeerMismatch, Remedy, Result};
use crate::options::PipeOptions;

/// `AsyncRead` and `AsyncWrite` for an enum of streams (or a struct whose
/// field is one): every call goes to the stream of the variant at hand.
/// Written once for the connection's transports and Windows' two pipe
/// ends.
macro_rules! delegate_io {
    ($ty:ty $(=> $field:ident)?, $enum:ident { $($variant:ident),+ $(,)? }) => {
        impl ::tokio::io::AsyncRead for $ty {
            fn poll_read(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                buf: &mut ::tokio::io::ReadBuf<'_>,
            ) -> ::std::task::Poll<::std::io::Result<()>> {
                match &mut self.get_mut()$(.$field)? {
                    $($enum::$variant(io) => ::std::pin::Pin::new(io).poll_read(cx, buf),)+
                }
            }
        }

        impl ::tokio::io::AsyncWrite for $ty {
            fn poll_write(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                buf: &[u8],
            ) -> ::std::task::Poll<::std::io::Result<usize>> {
                match &mut self.get_mut()$(.$field)? {
                    $($enum::$variant(io) => ::std::pin::Pin::new(io).poll_write(cx, buf),)+
                }
            }

            fn poll_write_vectored(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                bufs: &[::std::io::IoSlice<'_>],
            ) -> ::std::task::Poll<::std::io::Result<usize>> {
                match &mut self.get_mut()$(.$field)? {
                    $($enum::$variant(io) => ::std::pin::Pin::new(io).poll_write_vectored(cx, bufs),)+
                }
            }

            fn is_write_vectored(&self) -> bool {
                match &self$(.$field)? {
                    $($enum::$variant(io) => io.is_write_vectored(),)+
                }
            }

            fn poll_flush(self: ::std::pin::Pin<&mut Self>, cx: &mut ::std::task::Context<'_>) -> ::std::task::Poll<::std::io::Result<()>> {
                match &mut self.get_mut()$(.$field)? {
                    $($enum::$variant(io) => ::std::pin::Pin::new(io).poll_flush(cx),)+
                }
            }

            fn poll_shutdown(self: ::std::pin::Pin<&mut Self>, cx: &mut ::std::task::Context<'_>) -> ::std::task::Poll<::std::io::Result<()>> {
                match &mut self.get_mut()$(.$field)? {
                    $($enum::$variant(io) => ::std::pin::Pin::new(io).poll_shutdown(cx),)+
                }
            }
        }
    };
}

mod tcp;
#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as local;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as local;

/// Where a named pipe NAME lives on this OS.
///
/// Windows: `\\.\pipe\NAME`. Unix: NAME itself when it starts with `/`,
/// otherwise `$TMPDIR/CoreFxPipe_NAME` (`/tmp/CoreFxPipe_NAME` when `TMPDIR`
/// is unset), the path .NET's `NamedPipeServerStream` uses, so .NET programs
/// and pipehttp meet on the same name.
///
/// ```
/// use pipehttp::{address::PipeName, transport::pipe_endpoint};
/// let path = pipe_endpoint(&PipeName::new("my-test-pipe")?);
/// assert!(path.to_string_lossy().ends_with("my-test-pipe"));
/// # Ok::<(), pipehttp::address::AddressError>(())
/// ```
#[must_use]
pub fn pipe_endpoint(name: &PipeName) -> PathBuf {
    local::pipe_endpoint(name)
}

/// Which kind of endpoint a connection came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Transport {
    /// A named pipe address (`pipe:`), whatever carries it on this OS.
    Pipe,
    /// A Unix domain socket path (`unix:`).
    Unix,
    /// TCP.
    Tcp,
}

impl Transport {
    /// `"pipe"`, `"unix"` or `"tcp"`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Pipe => "pipe",
            Transport::Unix => "unix",
            Transport::Tcp => "tcp",
        }
    }

    /// Whether a connection of this kind can shut its write side and go on
    /// reading (a half-close), which a lingering close needs. A Windows
    /// named pipe cannot; it needs no lingering either, as closing it with
    /// unread input loses nothing the other end has yet to read.
    pub(crate) fn half_closes(self) -> bool {
        !(cfg!(windows) && self == Transport::Pipe)
    }
}

/// Who is on the other end, as far as the OS tells. A server's handler
/// finds it in the request extensions:
///
/// ```
/// use pipehttp::PeerInfo;
/// fn caller_pid(req: &http::Request<()>) -> Option<u32> {
///     req.extensions().get::<PeerInfo>()?.pid
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerInfo {
    /// The kind of endpoint.
    pub transport: Transport,
    /// The peer's process id (Unix: SO_PEERCRED; Windows: the pipe's client
    /// or server process id).
    pub pid: Option<u32>,
    /// The peer's user id (Unix only).
    pub uid: Option<u32>,
    /// The peer's group id (Unix only).
    pub gid: Option<u32>,
    /// The peer's address (TCP only).
    pub addr: Option<SocketAddr>,
}

impl PeerInfo {
    pub(crate) fn new(transport: Transport) -> Self {
        Self {
            transport,
            pid: None,
            uid: None,
            gid: None,
            addr: None,
        }
    }
}

/// A byte stream over any transport: what [`Listener::accept`] and
/// the client's connector return.
#[derive(Debug)]
pub struct Connection {
    io: Io,
    peer: PeerInfo,
}

#[derive(Debug)]
enum Io {
    Local(local::Stream),
    Tcp(tokio::net::TcpStream),
}

impl Connection {
    /// The process, user and address on the other end.
    #[must_use]
    pub fn peer(&self) -> &PeerInfo {
        &self.peer
    }
}

delegate_io!(Connection => io, Io { Local, Tcp });

/// A bound endpoint that accepts connections. On Unix the socket file is
/// removed when the listener is dropped, unless another server has since
/// put its own socket at the path.
#[derive(Debug)]
pub struct Listener {
    inner: Inner,
    address: ListenAddress,
    transport: Transport,
}

#[derive(Debug)]
enum Inner {
    Local(local::Listener),
    Tcp(tcp::Listener),
}

impl Listener {
    /// Binds `address`.
    ///
    /// A pipe name or socket path that a live server holds fails with an
    /// error whose [`is_addr_in_use`](Error::is_addr_in_use) is true. On
    /// Unix a stale socket file left by a dead server is replaced; anything
    /// that is not a socket is left alone and the bind fails.
    pub async fn bind(address: &ListenAddress, options: &PipeOptions) -> Result<Self> {
        Ok(Self::bind_with(address, options, false).await?.0)
    }

    /// Resolves once another server has taken this listener's name (a
    /// takeover), with its pid where the OS tells; never for TCP, for
    /// sockets a service manager passed, or while the name stays ours.
    pub(crate) async fn name_lost(&self) -> Option<u32> {
        match &self.inner {
            Inner::Local(l) => l.name_lost().await,
            Inner::Tcp(_) => std::future::pending().await,
        }
    }

    /// Binds `address` in place of a live server of the same user, if one
    /// holds it, without a moment where the name is unserved: on Unix the
    /// new socket file replaces the old one atomically; on Windows new pipe
    /// instances join the old server's name. The old server notices (a
    /// pipehttp server watches its name; see [`Server`](crate::Server))
    /// and drains. Returns, beside the listener, the process ids of the
    /// servers it took the name from, where the OS tells (empty for a fresh
    /// start). No request on the name can trigger a handover: only a
    /// process that can bind the name can.
    pub async fn bind_takeover(
        address: &ListenAddress,
        options: &PipeOptions,
    ) -> Result<(Self, Vec<u32>)> {
        Self::bind_with(address, options, true).await
    }

    async fn bind_with(
        address: &ListenAddress,
        options: &PipeOptions,
        takeover: bool,
    ) -> Result<(Self, Vec<u32>)> {
        options.validate().map_err(Error::options)?;
        let endpoint = address.endpoint();
        let transport = match endpoint {
            Endpoint::Tcp { host, port } => {
                let tcp = tcp::Listener::bind(host, *port).map_err(|source| {
                    let kind = if source.kind() == io::ErrorKind::AddrInUse {
                        Kind::AddrInUse
                    } else {
                        Kind::Bind
                    };
                    Error::at(kind, endpoint).with_source(source)
                })?;
                let bound = ListenAddress::new(
                    address.scheme(),
                    Endpoint::Tcp {
                        host: host.clone(),
                        port: tcp.port(),
                    },
                );
                let listener = Self {
                    inner: Inner::Tcp(tcp),
                    address: bound,
                    transport: Transport::Tcp,
                };
                return Ok((listener, Vec::new()));
            }
            Endpoint::Pipe(_) => Transport::Pipe,
            Endpoint::Unix(_) => Transport::Unix,
        };
        let (local, predecessors) = local::Listener::bind(endpoint, options, takeover).await?;
        let listener = Self {
            inner: Inner::Local(local),
            address: address.clone(),
            transport,
        };
        Ok((listener, predecessors))
    }

    /// The listening sockets a service manager passed to this process by
    /// systemd's socket activation (`LISTEN_FDS`), as `http://` listeners:
    /// Unix sockets and TCP sockets already in the listening state. Empty
    /// when there are none, and always on Windows. The sockets are taken
    /// once; later calls return none.
    ///
    /// ```no_run
    /// # async fn run() -> pipehttp::Result<()> {
    /// for listener in pipehttp::transport::Listener::from_systemd()? {
    ///     println!("activated: {}", listener.local_address());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn from_systemd() -> Result<Vec<Self>> {
        let mut listeners = Vec::new();
        for (socket, name) in local::activated()? {
            let listener = match socket {
                Activated::Local(local) => {
                    let address = ListenAddress::new(
                        Scheme::Http,
                        Endpoint::Unix(local.path().to_path_buf()),
                    );
                    Self {
                        inner: Inner::Local(local),
                        address,
                        transport: Transport::Unix,
                    }
                }
                Activated::Tcp(std_listener) => {
                    let tcp = tcp::Listener::from_std(std_listener).map_err(|e| {
                        Error::config("LISTEN_FDS", format!("socket '{name}' cannot be used"))
                            .with_source(e)
                    })?;
                    let address = ListenAddress::new(
                        Scheme::Http,
                        Endpoint::Tcp {
                            host: tcp.host(),
                            port: tcp.port(),
                        },
                    );
                    Self {
                        inner: Inner::Tcp(tcp),
                        address,
                        transport: Transport::Tcp,
                    }
                }
            };
            tracing::debug!(
                "socket '{name}' from the service manager: {}",
                listener.address
            );
            listeners.push(listener);
        }
        Ok(listeners)
    }

    /// Makes this endpoint unreachable for new clients while those already
    /// waiting can still be accepted: on Unix the socket file is removed
    /// (if it is still ours); on Windows no new pipe instance is offered.
    pub(crate) fn release(&self) {
        if let Inner::Local(l) = &self.inner {
            l.release();
        }
    }

    /// Waits for the next connection. Peers that the access options
    /// (`current_user_only`, `allow_users`, `allow_groups`) turn away are
    /// closed inside and never returned.
    pub async fn accept(&self) -> io::Result<Connection> {
        let (io, mut peer) = match &self.inner {
            Inner::Local(l) => {
                let (stream, peer) = l.accept(self.transport).await?;
                (Io::Local(stream), peer)
            }
            Inner::Tcp(l) => {
                let (stream, addr) = l.accept().await?;
                let mut peer = PeerInfo::new(Transport::Tcp);
                peer.addr = Some(addr);
                (Io::Tcp(stream), peer)
            }
        };
        peer.transport = self.transport;
        Ok(Connection { io, peer })
    }

    /// The address it listens on; for TCP port 0, the port it got.
    #[must_use]
    pub fn local_address(&self) -> &ListenAddress {
        &self.address
    }

    /// The socket file (Unix) or pipe path (Windows); `None` for TCP.
    #[must_use]
    pub fn path(&self) -> Option<&Path> {
        match &self.inner {
            Inner::Local(l) => Some(l.path()),
            Inner::Tcp(_) => None,
        }
    }

    /// Which kind of endpoint it is.
    #[must_use]
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// The TCP addresses it listens on; empty for pipes and Unix sockets.
    #[must_use]
    pub fn socket_addrs(&self) -> Vec<SocketAddr> {
        match &self.inner {
            Inner::Tcp(l) => l.local_addrs(),
            Inner::Local(_) => Vec::new(),
        }
    }
}

/// A listening socket a service manager handed over.
// Socket activation is systemd's: elsewhere nothing makes one.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) enum Activated {
    Local(local::Listener),
    Tcp(std::net::TcpListener),
}

/// Which users a client accepts as the server of a pipe or Unix socket.
/// Our own user and root (Windows: SYSTEM) always are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ServerUsers {
    /// Where the check runs.
    pub(crate) scope: CheckScope,
    /// Users accepted beside ours and root: names or numeric uids on Unix,
    /// account names or SIDs on Windows. Resolved only when a server of
    /// another user turns up.
    pub(crate) allowed: Vec<String>,
}

/// Where a client checks the server's user.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum CheckScope {
    /// On pipe names: their sockets sit in shared temp directories, where
    /// anyone can bind a name before its server does.
    #[default]
    Pipes,
    /// On pipe names and Unix socket paths.
    Local,
    /// Nowhere.
    Off,
}

impl ServerUsers {
    fn applies_to(&self, endpoint: &Endpoint) -> bool {
        match (self.scope, endpoint) {
            (CheckScope::Off, _) | (_, Endpoint::Tcp { .. }) => false,
            (CheckScope::Local, _) | (CheckScope::Pipes, Endpoint::Pipe(_)) => true,
            (CheckScope::Pipes, Endpoint::Unix(_)) => false,
        }
    }
}

/// What a client asks of a connection attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConnectOptions<'a> {
    /// Which server users to accept.
    pub server_users: &'a ServerUsers,
}

/// Why one connection attempt failed, sorted by what the caller should do.
#[derive(Debug)]
pub(crate) enum ConnectFailure {
    /// No server there now (no file or pipe, or refused): waiting may help.
    Absent(io::Error),
    /// A server is there but has no free instance or queue slot: waiting helps.
    Busy(io::Error),
    /// Waiting will not help.
    Fatal(Error),
}

/// Opens one connection to `endpoint`, once, without waiting.
pub(crate) async fn connect(
    endpoint: &Endpoint,
    options: ConnectOptions<'_>,
) -> std::result::Result<Connection, ConnectFailure> {
    let (io, peer) = match endpoint {
        Endpoint::Tcp { host, port } => {
            let (stream, addr) = tcp::connect(host, *port).await.map_err(|e| {
                if e.kind() == io::ErrorKind::ConnectionRefused {
                    ConnectFailure::Absent(e)
                } else {
                    ConnectFailure::Fatal(Error::at(Kind::Connect, endpoint).with_source(e))
                }
            })?;
            let mut peer = PeerInfo::new(Transport::Tcp);
            peer.addr = Some(addr);
            (Io::Tcp(stream), peer)
        }
        Endpoint::Pipe(_) | Endpoint::Unix(_) => {
            let (stream, mut peer) = local::connect(endpoint).await?;
            if matches!(endpoint, Endpoint::Unix(_)) {
                peer.transport = Transport::Unix;
            }
            // Before the connection is handed on, so that nothing of the
            // request reaches a server this client does not trust.
            if options.server_users.applies_to(endpoint) {
                local::check_server_user(endpoint, &stream, &peer, &options.server_users.allowed)
                    .map_err(ConnectFailure::Fatal)?;
            }
            (Io::Local(stream), peer)
        }
    };
    Ok(Connection { io, peer })
}

/// The error for a peer of a user this side does not admit.
pub(crate) fn refused_peer(endpoint: &Endpoint, detail: String) -> Error {
    Error::at(Kind::RefusedPeer, endpoint).with_source(PeerMismatch(detail))
}

/// The error for a server of a user this client does not accept.
pub(crate) fn refused_server(endpoint: &Endpoint, detail: String) -> Error {
    refused_peer(endpoint, detail).with_remedy(Remedy::AllowServerUser)
}

/// How long to wait before the next attempt when a server is absent or
/// busy: doubling from 1 ms, capped at 100 ms, so a waiting client costs
/// almost no CPU yet notices a new server quickly.
pub(crate) fn retry_delay(attempt: u32) -> Duration {
    Duration::from_millis((1u64 << attempt.min(7)).min(100))
}

/// This process as a peer on `transport` would see it.
#[cfg(feature = "axum")]
pub(crate) fn own_identity(transport: Transport) -> PeerInfo {
    let mut me = local::own_identity();
    me.transport = transport;
    me
}

/// Resolves when the OS asks the process to stop: SIGINT or SIGTERM on
/// Unix, Ctrl-C on Windows. The handlers are installed by the call itself,
/// so a stop asked right after it returns is not missed. It is what
/// [`Server::serve`](crate::Server::serve) stops on; a program that needs to
/// know when the stop came passes it to
/// [`Server::serve_with_shutdown`](crate::Server::serve_with_shutdown).
pub fn stop_signal() -> impl Future<Output = ()> + Send + 'static {
    local::stop_signal()
}

/// What [`list_pipes`] found at one pipe name or socket file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PipeState {
    /// A server accepted a connection (or every instance or queue slot was
    /// busy, which only a live server has).
    Live,
    /// A socket file that refuses connections: its server is gone.
    Stale,
    /// Something other than a socket sits at the pipe's path.
    NotASocket,
    /// A socket this user may not connect to, so it may be live or stale.
    Denied,
}

impl PipeState {
    /// `"live"`, `"stale"`, `"not a socket"` or `"denied"`.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            PipeState::Live => "live",
            PipeState::Stale => "stale",
            PipeState::NotASocket => "not a socket",
            PipeState::Denied => "denied",
        }
    }
}

impl std::fmt::Display for PipeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One pipe or socket that [`list_pipes`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PipeEntry {
    /// The pipe name (Unix: the file name without `CoreFxPipe_`), or the
    /// file name of another socket.
    pub name: String,
    /// The pipe path (`\\.\pipe\NAME`) or socket file.
    pub path: PathBuf,
    /// How a client reaches it: `http://pipe:/NAME` where the name maps back
    /// to this path, else `http://unix:/PATH`; `None` when it cannot be
    /// reached (not a socket, or a name no address can hold).
    pub address: Option<ListenAddress>,
    /// Live, stale, not a socket, or denied.
    pub state: PipeState,
    /// The user that owns the socket file (Unix).
    pub owner_uid: Option<u32>,
    /// The serving process, where the OS tells without a request (Unix:
    /// `SO_PEERCRED` of a connection that is opened and closed at once).
    /// Windows tells a server's pid only to a connected client, and a
    /// connection takes one of the pipe's instances, so it is left to the
    /// caller to connect (see [`Response::peer`](crate::client::Response::peer)).
    pub server_pid: Option<u32>,
}

/// The pipes on this machine, sorted by name, without removing or changing
/// anything.
///
/// - Windows: every pipe in `\\.\pipe\`, all live (a pipe exists only
///   while a server holds an instance). None is opened. `dir` must be `None`;
///   `all` changes nothing.
/// - Unix: the `CoreFxPipe_*` entries of `dir` (default: `$TMPDIR`, else
///   `/tmp`, where pipe names live), or with `all` every socket there. Each
///   socket is connected to once and closed, which tells live from stale and
///   gives the server's pid; a server that admits only its own user logs the
///   refused connection when another user lists it.
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// for pipe in pipehttp::transport::list_pipes(None, false).await? {
///     println!("{} {} {:?}", pipe.name, pipe.state, pipe.server_pid);
/// }
/// # Ok(()) }
/// ```
pub async fn list_pipes(dir: Option<&Path>, all: bool) -> io::Result<Vec<PipeEntry>> {
    let mut entries = local::list_pipes(dir, all).await?;
    entries.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.path.cmp(&b.path)));
    Ok(entries)
}

/// `http://pipe:/NAME` if pipe `name` maps to `path` on this OS.
fn pipe_address(name: &str, path: &Path) -> Option<ListenAddress> {
    let pipe = PipeName::new(name).ok()?;
    (pipe_endpoint(&pipe) == path).then(|| ListenAddress::new(Scheme::Http, Endpoint::Pipe(pipe)))
}
