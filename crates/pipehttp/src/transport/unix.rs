//! Named pipes and Unix domain sockets on Unix: both are socket files.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use socket2::{Domain, SockAddr, Socket, Type};
use tokio::net::{UnixListener, UnixStream};

use super::{Activated, ConnectFailure, PeerInfo, PipeEntry, PipeState, Transport, refused_peer};
use crate::address::{Endpoint, ListenAddress, PipeName, Scheme};
use crate::error::{Error, Kind, Named, Result};
use crate::options::PipeOptions;

pub(crate) type Stream = UnixStream;

/// `sun_path` holds 108 bytes on Linux (104 on macOS), NUL included.
#[cfg(target_os = "linux")]
const MAX_SOCKET_PATH: usize = 107;
#[cfg(not(target_os = "linux"))]
const MAX_SOCKET_PATH: usize = 103;

/// Deep enough for bursts of thousands of clients connecting at once; the
/// kernel caps it at `net.core.somaxconn`.
const BACKLOG: i32 = 4096;

pub(crate) fn pipe_endpoint(name: &PipeName) -> PathBuf {
    let name = name.as_str();
    if name.starts_with('/') {
        return PathBuf::from(name);
    }
    pipe_dir().join(format!("{PIPE_PREFIX}{name}"))
}

/// What .NET puts before a pipe name to make its socket file name.
const PIPE_PREFIX: &str = "CoreFxPipe_";

/// Where pipe names live: .NET's Path.GetTempPath(), $TMPDIR, or /tmp when
/// unset or empty.
fn pipe_dir() -> PathBuf {
    std::env::var_os("TMPDIR")
        .filter(|dir| !dir.is_empty())
        .map_or_else(|| PathBuf::from("/tmp"), PathBuf::from)
}

fn endpoint_path(endpoint: &Endpoint) -> PathBuf {
    endpoint
        .path()
        .expect("local endpoints are pipes or unix sockets")
}

fn check_path_len(path: &Path) -> io::Result<()> {
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "the socket path is {len} bytes long and this OS allows {MAX_SOCKET_PATH}: use a shorter name or TMPDIR"
            ),
        ));
    }
    Ok(())
}

fn current_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

#[derive(Debug)]
pub(crate) struct Listener {
    listener: UnixListener,
    path: PathBuf,
    /// Device and inode of our socket file, so that releasing the listener
    /// never removes a socket another server has put at the path since;
    /// `None` for sockets someone else (systemd) created and owns.
    identity: Option<(u64, u64)>,
    current_user_only: bool,
    uid: u32,
    describe: String,
}

impl Listener {
    /// Binds the endpoint. With `takeover`, a live server at the path is
    /// not an error: the new socket replaces its file atomically and the
    /// returned stream is a connection to the old server, made before the
    /// swap, on which to ask it to hand over.
    pub(crate) async fn bind(
        endpoint: &Endpoint,
        options: &PipeOptions,
        takeover: bool,
    ) -> Result<(Self, Option<(Stream, PeerInfo)>)> {
        let path = endpoint_path(endpoint);
        let describe = Named(endpoint, Some(&path)).to_string();
        let bind_err = |source| Error::at(Kind::Bind, endpoint).with_source(source);
        check_path_len(&path).map_err(bind_err)?;
        let mode = options.socket_mode().map_err(Error::options)?;
        let predecessor = if takeover {
            predecessor(&path, endpoint).await?
        } else {
            clear_stale(&path, endpoint)?;
            None
        };

        // The socket is created and chmod'ed in a private directory, then
        // moved into place, so the file never exists at the public path
        // with a looser mode than asked. A fresh start links it, which
        // refuses to replace a socket another server bound meanwhile; a
        // takeover renames it over the old server's socket in one step.
        let private = PrivateDir::create(&path).map_err(bind_err)?;
        let staged = private.path.join("s");
        check_path_len(&staged).map_err(bind_err)?;
        let socket = Socket::new(Domain::UNIX, Type::STREAM, None).map_err(bind_err)?;
        socket
            .bind(&SockAddr::unix(&staged).map_err(bind_err)?)
            .map_err(bind_err)?;
        fs::set_permissions(&staged, fs::Permissions::from_mode(mode)).map_err(bind_err)?;
        socket.listen(BACKLOG).map_err(bind_err)?;
        socket.set_nonblocking(true).map_err(bind_err)?;
        let placed = if predecessor.is_some() {
            fs::rename(&staged, &path)
        } else {
            fs::hard_link(&staged, &path)
        };
        match placed {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(Error::at(Kind::AddrInUse, endpoint));
            }
            Err(e) => return Err(bind_err(e)),
        }
        drop(private);
        let meta = fs::symlink_metadata(&path).map_err(bind_err)?;
        let listener = UnixListener::from_std(std::os::unix::net::UnixListener::from(socket))
            .map_err(bind_err)?;
        let listener = Self {
            listener,
            path,
            identity: Some((meta.dev(), meta.ino())),
            current_user_only: options.current_user_only,
            uid: current_uid(),
            describe,
        };
        Ok((listener, predecessor))
    }

    /// Stops new clients from reaching this listener by removing its socket
    /// file, if the file is still ours; clients already queued can still be
    /// accepted.
    pub(crate) fn release(&self) {
        let ours = self.identity.is_some_and(|identity| {
            fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == identity)
        });
        if ours {
            let _ = fs::remove_file(&self.path);
        }
    }

    pub(crate) async fn accept(&self, transport: Transport) -> io::Result<(Stream, PeerInfo)> {
        loop {
            let (stream, _) = self.listener.accept().await?;
            let Ok(cred) = stream.peer_cred() else {
                // The peer is already gone; nothing to serve.
                continue;
            };
            let pid = cred.pid().and_then(|p| u32::try_from(p).ok());
            if self.current_user_only && cred.uid() != self.uid {
                tracing::warn!(
                    "{}: refused a connection from pid {} uid {}: current_user_only admits uid {} only",
                    self.describe,
                    pid.map_or_else(|| "?".to_owned(), |p| p.to_string()),
                    cred.uid(),
                    self.uid
                );
                tokio::spawn(turn_away(stream));
                continue;
            }
            let mut peer = PeerInfo::new(transport);
            peer.pid = pid;
            peer.uid = Some(cred.uid());
            peer.gid = Some(cred.gid());
            return Ok((stream, peer));
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.release();
    }
}

/// The live server a takeover replaces: a connection to it, once it is
/// known to run as our user. Nothing at the path, or a stale socket, means
/// there is nothing to take over and the bind is a fresh start.
async fn predecessor(path: &Path, endpoint: &Endpoint) -> Result<Option<(Stream, PeerInfo)>> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(Error::at(Kind::NotASocket(path.to_owned()), endpoint));
        }
        _ => {}
    }
    match connect(endpoint).await {
        Ok((stream, peer)) => {
            check_same_user(&stream, &peer).map_err(|detail| refused_peer(endpoint, detail))?;
            Ok(Some((stream, peer)))
        }
        Err(ConnectFailure::Absent(_)) => {
            clear_stale(path, endpoint)?;
            Ok(None)
        }
        Err(ConnectFailure::Busy(source)) => {
            Err(Error::at(Kind::Bind, endpoint).with_source(source))
        }
        Err(ConnectFailure::Fatal(e)) => Err(e),
    }
}

/// Closes a refused connection so that its client reads a clean end of
/// stream, not a reset: closing a socket with unread bytes makes the kernel
/// reset it, which clients report as a network failure, or even as no
/// server at all. So the write side is shut first, and what the client
/// sends is read and dropped, never parsed, for a bounded time.
async fn turn_away(mut stream: UnixStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const BUDGET: u64 = 64 * 1024;
    const PATIENCE: std::time::Duration = std::time::Duration::from_secs(1);
    let _ = stream.shutdown().await;
    let mut unread = stream.take(BUDGET);
    let mut sink = tokio::io::sink();
    let _ = tokio::time::timeout(PATIENCE, tokio::io::copy(&mut unread, &mut sink)).await;
}

/// Makes way for a new socket at `path`: nothing there is fine; a socket
/// that refuses connections is stale and removed; a live socket, or
/// anything that is not a socket, stops the bind.
fn clear_stale(path: &Path, endpoint: &Endpoint) -> Result<()> {
    let bind_err = |source: io::Error| Error::at(Kind::Bind, endpoint).with_source(source);
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(bind_err(source)),
    };
    if !meta.file_type().is_socket() {
        return Err(Error::at(Kind::NotASocket(path.to_owned()), endpoint));
    }
    // Another user's socket can neither be probed (its mode admits only
    // that user) nor removed (the temp directory is sticky): say whose it is.
    let not_ours = |source: io::Error| {
        if source.kind() == io::ErrorKind::PermissionDenied && meta.uid() != current_uid() {
            let owner = meta.uid();
            Error::at(
                Kind::NotOurs {
                    path: path.to_owned(),
                    owner,
                },
                endpoint,
            )
            .with_source(source)
        } else {
            bind_err(source)
        }
    };
    match probe(path) {
        Ok(()) => Err(Error::at(Kind::AddrInUse, endpoint)),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Err(not_ours(e)),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!(
                "{}: removing the stale socket file a stopped server left",
                Named(endpoint, Some(path))
            );
            match fs::remove_file(path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(source) => Err(not_ours(source)),
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        // A full backlog means a live, busy server.
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            Err(Error::at(Kind::AddrInUse, endpoint))
        }
        Err(source) => Err(bind_err(source)),
    }
}

/// One non-blocking connect: it answers at once for a Unix socket.
fn probe(path: &Path) -> io::Result<()> {
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    socket.connect(&SockAddr::unix(path)?)
}

/// A mode-0700 directory beside the socket path, removed on drop.
struct PrivateDir {
    path: PathBuf,
}

impl PrivateDir {
    fn create(beside: &Path) -> io::Result<Self> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let parent = beside.parent().unwrap_or(Path::new("/"));
        loop {
            let mut name = OsString::from(".pipehttp-");
            name.push(format!(
                "{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            let path = parent.join(name);
            match fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(Self { path }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = fs::remove_file(self.path.join("s"));
        let _ = fs::remove_dir(&self.path);
    }
}

pub(crate) async fn connect(endpoint: &Endpoint) -> Result<(Stream, PeerInfo), ConnectFailure> {
    let path = endpoint_path(endpoint);
    let fatal =
        |source| ConnectFailure::Fatal(Error::at(Kind::Connect, endpoint).with_source(source));
    check_path_len(&path).map_err(fatal)?;
    let stream = match UnixStream::connect(&path).await {
        Ok(stream) => stream,
        Err(e) => {
            return Err(match e.kind() {
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                    ConnectFailure::Absent(e)
                }
                io::ErrorKind::WouldBlock => ConnectFailure::Busy(e),
                _ => fatal(e),
            });
        }
    };
    let mut peer = PeerInfo::new(Transport::Pipe);
    if let Ok(cred) = stream.peer_cred() {
        peer.pid = cred.pid().and_then(|p| u32::try_from(p).ok());
        peer.uid = Some(cred.uid());
        peer.gid = Some(cred.gid());
    }
    Ok((stream, peer))
}

/// The `CoreFxPipe_*` entries of `dir` (or every socket there, with `all`),
/// each socket connected to once to tell live from stale.
pub(crate) async fn list_pipes(dir: Option<&Path>, all: bool) -> io::Result<Vec<PipeEntry>> {
    let dir = dir.map_or_else(pipe_dir, Path::to_path_buf);
    let named = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", dir.display()));
    let mut entries = Vec::new();
    for item in fs::read_dir(&dir).map_err(named)? {
        let item = item.map_err(named)?;
        let file_name = item.file_name();
        let file_name = file_name.to_string_lossy();
        let pipe_name = file_name.strip_prefix(PIPE_PREFIX);
        if pipe_name.is_none() && !all {
            continue;
        }
        let path = item.path();
        // Not followed: a link named like a pipe is not a pipe.
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue; // removed meanwhile
        };
        let is_socket = meta.file_type().is_socket();
        if pipe_name.is_none() && !is_socket {
            continue;
        }
        let name = pipe_name.unwrap_or(&file_name).to_owned();
        let (state, server_pid) = if is_socket {
            match probe_state(&path).await {
                Some(found) => found,
                None => continue, // removed meanwhile
            }
        } else {
            (PipeState::NotASocket, None)
        };
        let address = is_socket.then(|| {
            pipe_name
                .and_then(|pipe| super::pipe_address(pipe, &path))
                .unwrap_or_else(|| ListenAddress::new(Scheme::Http, Endpoint::Unix(path.clone())))
        });
        entries.push(PipeEntry {
            name,
            path,
            address,
            state,
            owner_uid: Some(meta.uid()),
            server_pid,
        });
    }
    Ok(entries)
}

/// Connects once: accepted is live (with the server's pid), refused is
/// stale. A full backlog is a live, busy server. `None`: the file is gone.
async fn probe_state(path: &Path) -> Option<(PipeState, Option<u32>)> {
    if check_path_len(path).is_err() {
        // No socket address can hold the path, so nothing can connect.
        return Some((PipeState::Denied, None));
    }
    match UnixStream::connect(path).await {
        Ok(stream) => {
            let pid = stream
                .peer_cred()
                .ok()
                .and_then(|cred| cred.pid())
                .and_then(|pid| u32::try_from(pid).ok());
            Some((PipeState::Live, pid))
        }
        Err(e) => match e.kind() {
            io::ErrorKind::NotFound => None,
            io::ErrorKind::ConnectionRefused => Some((PipeState::Stale, None)),
            io::ErrorKind::WouldBlock => Some((PipeState::Live, None)),
            _ => Some((PipeState::Denied, None)),
        },
    }
}

pub(crate) fn is_same_user(peer: &PeerInfo) -> bool {
    peer.uid == Some(current_uid())
}

/// The client side of `current_user_only`: the server must run as our user.
pub(crate) fn check_same_user(_stream: &Stream, peer: &PeerInfo) -> Result<(), String> {
    let ours = current_uid();
    match peer.uid {
        Some(uid) if uid == ours => Ok(()),
        Some(uid) => Err(format!(
            "the server runs as uid {uid}{}, this process as uid {ours}",
            peer.pid.map(|p| format!(" in pid {p}")).unwrap_or_default()
        )),
        None => Err("the OS did not say which user runs the server".into()),
    }
}

#[cfg(feature = "axum")]
pub(crate) fn own_identity() -> PeerInfo {
    let mut me = PeerInfo::new(Transport::Pipe);
    me.pid = Some(std::process::id());
    me.uid = Some(current_uid());
    // SAFETY: getegid has no preconditions and cannot fail.
    me.gid = Some(unsafe { libc::getegid() });
    me
}

/// The listening sockets systemd passed to this process by socket
/// activation (`LISTEN_PID`, `LISTEN_FDS`, `LISTEN_FDNAMES`), each with its
/// name. Empty when the variables are absent or meant for another process.
/// The sockets are taken once; later calls find none.
pub(crate) fn activated() -> Result<Vec<(Activated, String)>> {
    use std::os::fd::FromRawFd;
    static TAKEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    /// systemd passes the first socket as descriptor 3 (SD_LISTEN_FDS_START).
    const FIRST_FD: i32 = 3;

    let var = |name: &str| std::env::var(name).ok();
    let for_us = var("LISTEN_PID")
        .and_then(|pid| pid.trim().parse::<u32>().ok())
        .is_some_and(|pid| pid == std::process::id());
    if !for_us || TAKEN.swap(true, Ordering::SeqCst) {
        return Ok(Vec::new());
    }
    let bad = |message: String| Error::config("LISTEN_FDS", message);
    let count: i32 = var("LISTEN_FDS")
        .unwrap_or_default()
        .trim()
        .parse()
        .map_err(|_| bad("LISTEN_FDS is not a number of descriptors".into()))?;
    let names = var("LISTEN_FDNAMES").unwrap_or_default();
    let mut names = names.split(':');
    let mut sockets = Vec::new();
    for fd in FIRST_FD..FIRST_FD + count {
        let name = names
            .next()
            .filter(|n| !n.is_empty())
            .unwrap_or("unknown")
            .to_owned();
        let what = |e: io::Error| bad(format!("descriptor {fd} ('{name}'): {e}"));
        // SAFETY: systemd passed this descriptor to this process for it to
        // own, and TAKEN ensures it is wrapped only once.
        let socket = unsafe { Socket::from_raw_fd(fd) };
        socket.set_cloexec(true).map_err(what)?;
        if socket.r#type().map_err(what)? != Type::STREAM || !socket.is_listener().map_err(what)? {
            return Err(bad(format!(
                "descriptor {fd} ('{name}') is not a listening stream socket: fix the .socket unit"
            )));
        }
        socket.set_nonblocking(true).map_err(what)?;
        let domain = socket.domain().map_err(what)?;
        let activated = if domain == Domain::UNIX {
            let std_listener = std::os::unix::net::UnixListener::from(socket);
            let path = std_listener
                .local_addr()
                .map_err(what)?
                .as_pathname()
                .map(Path::to_path_buf)
                .ok_or_else(|| bad(format!("descriptor {fd} ('{name}') has no socket path")))?;
            Activated::Local(Listener {
                listener: UnixListener::from_std(std_listener).map_err(what)?,
                describe: format!("unix socket {}", path.display()),
                path,
                identity: None,
                current_user_only: false,
                uid: current_uid(),
            })
        } else if domain == Domain::IPV4 || domain == Domain::IPV6 {
            Activated::Tcp(std::net::TcpListener::from(socket))
        } else {
            return Err(bad(format!(
                "descriptor {fd} ('{name}') is neither a Unix nor a TCP socket"
            )));
        };
        sockets.push((activated, name));
    }
    Ok(sockets)
}

/// Installs the SIGINT and SIGTERM handlers now, so a stop asked right
/// after the server says it is ready is still graceful.
pub(crate) fn stop_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    );
    async move {
        let (Ok(mut int), Ok(mut term)) = handlers else {
            tracing::warn!("cannot install signal handlers; stop the server another way");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    }
}
