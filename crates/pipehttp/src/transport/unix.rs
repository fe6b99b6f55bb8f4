//! Named pipes and Unix domain sockets on Unix: both are socket files.

use std::ffi::{CStr, CString, OsString};
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
    identity: Option<Identity>,
    /// Who may connect; `None` for anyone who can open the socket file.
    admits: Option<Admits>,
    describe: String,
}

impl Listener {
    /// Binds the endpoint. With `takeover`, a live server of our user at
    /// the path is not an error: the new socket replaces its file
    /// atomically, and the old server, which watches its file, sees that
    /// and drains. Returns the old server's pid, where there was one.
    pub(crate) async fn bind(
        endpoint: &Endpoint,
        options: &PipeOptions,
        takeover: bool,
    ) -> Result<(Self, Vec<u32>)> {
        let path = endpoint_path(endpoint);
        let bind_err = |source| Error::at(Kind::Bind, endpoint).with_source(source);
        check_path_len(&path).map_err(bind_err)?;
        let mode = options.socket_mode().map_err(Error::options)?;
        let describe = Named(endpoint, Some(&path)).to_string();
        if options.pipe_sddl.is_some() {
            return Err(Error::options(format!(
                "{describe}: pipe_sddl is a Windows security descriptor, which Unix sockets do not have: admit callers with allow_users and allow_groups instead"
            )));
        }
        let admits = if options.current_user_only {
            Some(Admits::resolve(options).map_err(|e| Error::options(format!("{describe}: {e}")))?)
        } else {
            None
        };
        // The one group the file is given to is the one the peer check admits.
        let group = options
            .socket_group()
            .and_then(|_| admits.as_ref()?.groups.first().cloned());
        let access = Access { mode, group };
        if takeover && let Some(old) = predecessor(&path, endpoint).await? {
            let socket = replace(&path, &access).map_err(bind_err)?;
            let listener = Self::listening(socket, path, endpoint, admits)?;
            return Ok((listener, old.into_iter().collect()));
        }
        clear_stale(&path, endpoint).await?;
        let socket = bind_in_place(&path, &access).map_err(|e| match e.kind() {
            io::ErrorKind::AddrInUse => Error::at(Kind::AddrInUse, endpoint),
            _ => bind_err(e),
        })?;
        Ok((Self::listening(socket, path, endpoint, admits)?, Vec::new()))
    }

    /// `identity` is the socket file's, taken where the file was made: by
    /// now another server may have put its own at `path`.
    fn listening(
        (socket, identity): (Socket, Identity),
        path: PathBuf,
        endpoint: &Endpoint,
        admits: Option<Admits>,
    ) -> Result<Self> {
        let bind_err = |source| Error::at(Kind::Bind, endpoint).with_source(source);
        socket.set_nonblocking(true).map_err(bind_err)?;
        let listener = UnixListener::from_std(std::os::unix::net::UnixListener::from(socket))
            .map_err(bind_err)?;
        Ok(Self {
            listener,
            describe: Named(endpoint, Some(&path)).to_string(),
            path,
            identity: Some(identity),
            admits,
        })
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
            if let Some(admits) = &self.admits
                && let Err(groups) = admits.check(&stream, cred.uid(), cred.gid())
            {
                let groups = groups
                    .map(|g| format!(" (supplementary groups: {g})"))
                    .unwrap_or_default();
                tracing::warn!(
                    "{}: refused a connection from pid {} uid {} gid {}{groups}: {admits}",
                    self.describe,
                    pid.map_or_else(|| "?".to_owned(), |p| p.to_string()),
                    cred.uid(),
                    cred.gid(),
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

    /// Resolves once another server has put its socket at our path (a
    /// takeover, or a server that judged ours stale), with that server's
    /// pid where the OS tells. A listener whose file someone removed keeps
    /// serving the connections it has and says so once; a socket handed
    /// over by a service manager is never watched.
    pub(crate) async fn name_lost(&self) -> Option<u32> {
        /// How often the file is looked at: a stat is cheap, and a takeover
        /// is noticed this quickly.
        const LOOK_EVERY: std::time::Duration = std::time::Duration::from_millis(100);
        let Some(identity) = self.identity else {
            return std::future::pending().await;
        };
        let mut said_removed = false;
        loop {
            tokio::time::sleep(LOOK_EVERY).await;
            match fs::symlink_metadata(&self.path) {
                Ok(meta) if (meta.dev(), meta.ino()) == identity => {}
                Ok(_) => {
                    let pid = UnixStream::connect(&self.path)
                        .await
                        .ok()
                        .and_then(|s| s.peer_cred().ok())
                        .and_then(|cred| cred.pid())
                        .and_then(|pid| u32::try_from(pid).ok());
                    return pid;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && !said_removed => {
                    said_removed = true;
                    tracing::warn!(
                        "{}: the socket file was removed: new clients cannot reach this server; restart it to serve the name again",
                        self.describe
                    );
                }
                Err(_) => {}
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.release();
    }
}

/// The live server a takeover replaces, once it is known to run as our
/// user: `Some` with its pid (where the OS tells). Nothing at the path, or
/// a stale socket, means there is nothing to take over: `None`, and the
/// bind is a fresh start.
async fn predecessor(path: &Path, endpoint: &Endpoint) -> Result<Option<Option<u32>>> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(Error::at(Kind::NotASocket(path.to_owned()), endpoint));
        }
        _ => {}
    }
    match connect(endpoint).await {
        // The connection only asks the OS who serves; the old server sees
        // a client that leaves without a word.
        Ok((stream, peer)) => {
            check_same_user(&stream, &peer).map_err(|detail| refused_peer(endpoint, detail))?;
            Ok(Some(peer.pid))
        }
        Err(ConnectFailure::Absent(_)) => Ok(None),
        Err(ConnectFailure::Busy(source)) => {
            Err(Error::at(Kind::Bind, endpoint).with_source(source))
        }
        Err(ConnectFailure::Fatal(e)) => Err(e),
    }
}

/// What a socket file is given before anyone may connect: its mode, and
/// the one group it belongs to, if access was granted to a group.
struct Access {
    mode: u32,
    group: Option<Account>,
}

impl Access {
    fn apply(&self, file: &Path) -> io::Result<()> {
        if let Some(group) = &self.group {
            std::os::unix::fs::chown(file, None, Some(group.id)).map_err(|e| {
                if e.kind() == io::ErrorKind::PermissionDenied {
                    io::Error::new(
                        e.kind(),
                        format!(
                            "cannot give the socket to {group}: only root or a member of that group may; run the server as one"
                        ),
                    )
                } else {
                    e
                }
            })?;
        }
        fs::set_permissions(file, fs::Permissions::from_mode(self.mode))
    }
}

/// A listening socket bound at `path` itself, given its group and mode
/// before it listens, so nobody can connect while the file has the looser
/// mode (or the group) it was made with. Its own address is `path`, which
/// is what `ss` and the peers' `getpeername` show.
fn bind_in_place(path: &Path, access: &Access) -> io::Result<(Socket, Identity)> {
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.bind(&SockAddr::unix(path)?)?;
    let ours = fs::symlink_metadata(path)?;
    let identity = (ours.dev(), ours.ino());
    let placed = access.apply(path).and_then(|()| socket.listen(BACKLOG));
    // Another server may have judged our file stale in the instant before
    // it listened, and put its own there: then the name is not ours.
    let still_ours = fs::symlink_metadata(path).is_ok_and(|now| (now.dev(), now.ino()) == identity);
    match placed {
        Ok(()) if still_ours => Ok((socket, identity)),
        Ok(()) => Err(io::ErrorKind::AddrInUse.into()),
        Err(e) => {
            if still_ours {
                let _ = fs::remove_file(path);
            }
            Err(e)
        }
    }
}

/// A listening socket moved over whatever is at `path` in one step, for a
/// takeover: the name is never unserved. It is created and given its group
/// and mode in a private directory beside `path` first, so the file never
/// exists at the public path with a looser mode or another group than
/// asked; its own address is the path it was made at there.
fn replace(path: &Path, access: &Access) -> io::Result<(Socket, Identity)> {
    let private = PrivateDir::create(path)?;
    let name = path.file_name().unwrap_or_default();
    let mut staged = private.path.join(name);
    if check_path_len(&staged).is_err() {
        staged = private.path.join("s");
    }
    check_path_len(&staged)?;
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.bind(&SockAddr::unix(&staged)?)?;
    access.apply(&staged)?;
    socket.listen(BACKLOG)?;
    // Taken before the rename (which keeps the inode): once the file is at
    // `path`, another successor may rename its own over it at any moment.
    let staged_meta = fs::symlink_metadata(&staged)?;
    fs::rename(&staged, path)?;
    Ok((socket, (staged_meta.dev(), staged_meta.ino())))
}

/// A socket file's device and inode: which file is ours, whoever renames
/// what over the path.
type Identity = (u64, u64);

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
///
/// A socket made moments ago that refuses connections may belong to a
/// server that is starting (bound, not yet listening): it is probed again
/// until it listens (in use) or is a second old (stale).
async fn clear_stale(path: &Path, endpoint: &Endpoint) -> Result<()> {
    const STARTING: std::time::Duration = std::time::Duration::from_secs(1);
    let bind_err = |source: io::Error| Error::at(Kind::Bind, endpoint).with_source(source);
    loop {
        let meta = match fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(source) => return Err(bind_err(source)),
        };
        if !meta.file_type().is_socket() {
            return Err(Error::at(Kind::NotASocket(path.to_owned()), endpoint));
        }
        // Another user's socket can neither be probed (its mode admits only
        // that user) nor removed (the temp directory is sticky): say whose
        // it is.
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
            Ok(()) => return Err(Error::at(Kind::AddrInUse, endpoint)),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return Err(not_ours(e)),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                let age = std::time::SystemTime::now()
                    .duration_since(meta.modified().map_err(bind_err)?)
                    .unwrap_or_default();
                if age < STARTING {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
                tracing::info!(
                    "{}: removing the stale socket file a stopped server left",
                    Named(endpoint, Some(path))
                );
                return match fs::remove_file(path) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                    Err(source) => Err(not_ours(source)),
                };
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            // A full backlog means a live, busy server.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(Error::at(Kind::AddrInUse, endpoint));
            }
            Err(source) => return Err(bind_err(source)),
        }
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
        // Only what this process put there: a socket it staged and did not
        // move into place.
        if let Ok(entries) = fs::read_dir(&self.path) {
            for entry in entries.flatten() {
                let _ = fs::remove_file(entry.path());
            }
        }
        let _ = fs::remove_dir(&self.path);
    }
}

pub(crate) async fn connect(endpoint: &Endpoint) -> Result<(Stream, PeerInfo), ConnectFailure> {
    let path = endpoint_path(endpoint);
    let fatal =
        |source| ConnectFailure::Fatal(Error::at(Kind::Connect, endpoint).with_source(source));
    check_path_len(&path).map_err(fatal)?;
    let stream = match connect_path(&path).await {
        Ok(stream) => stream,
        Err(e) => {
            return Err(match e.kind() {
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                    ConnectFailure::Absent(e)
                }
                io::ErrorKind::WouldBlock => ConnectFailure::Busy(e),
                io::ErrorKind::PermissionDenied => fatal(denied(&path, e)),
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

/// A connect the socket file's mode refused, said with whose socket it
/// is, so the user knows who can let them in.
fn denied(path: &Path, e: io::Error) -> io::Error {
    let Ok(meta) = fs::metadata(path) else {
        return e;
    };
    let owner = meta.uid();
    let name = user_name(owner)
        .ok()
        .flatten()
        .map(|n| format!(" ({n})"))
        .unwrap_or_default();
    io::Error::new(
        e.kind(),
        format!(
            "permission denied: the socket belongs to uid {owner}{name} and has mode {:o}, which does not admit uid {}: run as that user (or root), or have its server admit this user or one of its groups",
            meta.mode() & 0o777,
            current_uid()
        ),
    )
}

/// Connects to the socket at `path`; on Linux a path that starts with a NUL
/// byte names a socket in the abstract namespace (curl's
/// `--abstract-unix-socket`), which has no file.
async fn connect_path(path: &Path) -> io::Result<UnixStream> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use std::os::linux::net::SocketAddrExt;
        use std::os::unix::ffi::OsStrExt;
        if let Some(name) = path.as_os_str().as_bytes().strip_prefix(b"\0") {
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            return UnixStream::connect_addr(&addr.into()).await;
        }
    }
    UnixStream::connect(path).await
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

/// The takeover's check: the old server must run as our user.
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

/// The client's check of the server's user: ours, root (who can act as
/// anyone anyway) or one of `allowed`, which is resolved only when the
/// server is neither.
pub(crate) fn check_server_user(
    endpoint: &Endpoint,
    _stream: &Stream,
    peer: &PeerInfo,
    allowed: &[String],
) -> Result<()> {
    let ours = current_uid();
    let Some(uid) = peer.uid else {
        return Err(super::refused_server(
            endpoint,
            "the OS did not say which user runs the server".into(),
        ));
    };
    if uid == ours || uid == 0 {
        return Ok(());
    }
    let mut admitted = vec![Account::of_user(ours).to_string()];
    if ours != 0 {
        admitted.push("root".into());
    }
    for spec in allowed {
        let account = resolve_user(spec).map_err(|e| {
            Error::options(format!("ClientBuilder::allow_server_user: {e}")).with_endpoint(endpoint)
        })?;
        if account.id == uid {
            return Ok(());
        }
        admitted.push(account.to_string());
    }
    Err(super::refused_server(
        endpoint,
        format!(
            "the server runs as {}{}, and this client accepts only {}",
            Account::of_user(uid),
            peer.pid.map(|p| format!(" in pid {p}")).unwrap_or_default(),
            Listed(&admitted)
        ),
    ))
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

/// Socket activation is systemd's, so Linux's: elsewhere no sockets come.
#[cfg(not(target_os = "linux"))]
pub(crate) fn activated() -> Result<Vec<(Activated, String)>> {
    Ok(Vec::new())
}

/// The listening sockets systemd passed to this process by socket
/// activation (`LISTEN_PID`, `LISTEN_FDS`, `LISTEN_FDNAMES`), each with its
/// name. Empty when the variables are absent or meant for another process.
/// The sockets are taken once; later calls find none.
#[cfg(target_os = "linux")]
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
                admits: None,
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

/// A user or group, resolved from a name or a numeric id, with the name
/// the user database gives it, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Account {
    id: u32,
    group: bool,
    name: Option<String>,
}

impl Account {
    fn of_user(uid: u32) -> Self {
        Self {
            id: uid,
            group: false,
            name: user_name(uid).ok().flatten(),
        }
    }

    fn of_group(gid: u32) -> Self {
        Self {
            id: gid,
            group: true,
            name: group_name(gid).ok().flatten(),
        }
    }
}

impl std::fmt::Display for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = if self.group { "gid" } else { "uid" };
        write!(f, "{what} {}", self.id)?;
        match &self.name {
            Some(name) => write!(f, " ({name})"),
            None => Ok(()),
        }
    }
}

/// `a`, `a and b`, `a, b and c`.
struct Listed<'a, T>(&'a [T]);

impl<T: std::fmt::Display> std::fmt::Display for Listed<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, item) in self.0.iter().enumerate() {
            match i {
                0 => {}
                i if i + 1 == self.0.len() => f.write_str(" and ")?,
                _ => f.write_str(", ")?,
            }
            write!(f, "{item}")?;
        }
        Ok(())
    }
}

/// A user named by `spec`: a name in the user database, or a numeric uid.
fn resolve_user(spec: &str) -> std::result::Result<Account, String> {
    resolve(spec, "user", user_by_name, Account::of_user)
}

/// A group named by `spec`: a name in the group database, or a numeric gid.
fn resolve_group(spec: &str) -> std::result::Result<Account, String> {
    resolve(spec, "group", group_by_name, Account::of_group)
}

fn resolve(
    spec: &str,
    what: &str,
    by_name: fn(&CStr) -> io::Result<Option<u32>>,
    by_id: fn(u32) -> Account,
) -> std::result::Result<Account, String> {
    let spec = spec.trim();
    if let Ok(id) = spec.parse::<u32>() {
        return Ok(by_id(id));
    }
    let name = CString::new(spec).map_err(|_| format!("{spec:?} is no {what} name"))?;
    match by_name(&name) {
        Ok(Some(id)) => Ok(Account {
            id,
            group: what == "group",
            name: Some(spec.to_owned()),
        }),
        Ok(None) => Err(format!(
            "there is no {what} '{spec}' on this system: check the name, or give a numeric id"
        )),
        Err(e) => Err(format!("cannot look up the {what} '{spec}': {e}")),
    }
}

/// Runs a `getpwnam_r`-style lookup with a buffer that grows while the
/// entry does not fit. `Ok(None)` when there is no such entry.
fn lookup<T>(
    mut call: impl FnMut(&mut [libc::c_char]) -> (libc::c_int, Option<T>),
) -> io::Result<Option<T>> {
    let mut buf = vec![0; 1024];
    loop {
        match call(&mut buf) {
            (0, found) => return Ok(found),
            (libc::ERANGE, _) if buf.len() < 1 << 20 => buf.resize(buf.len() * 4, 0),
            // POSIX allows these for "no such entry" (glibc returns 0).
            (libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM, _) => return Ok(None),
            (code, _) => return Err(io::Error::from_raw_os_error(code)),
        }
    }
}

fn user_by_name(name: &CStr) -> io::Result<Option<u32>> {
    entry(
        |e, buf, len, found| {
            // SAFETY: every pointer is valid for the call; `buf` for `len`.
            unsafe { libc::getpwnam_r(name.as_ptr(), e, buf, len, found) }
        },
        |e: &libc::passwd| e.pw_uid,
    )
}

fn group_by_name(name: &CStr) -> io::Result<Option<u32>> {
    entry(
        |e, buf, len, found| {
            // SAFETY: every pointer is valid for the call; `buf` for `len`.
            unsafe { libc::getgrnam_r(name.as_ptr(), e, buf, len, found) }
        },
        |e: &libc::group| e.gr_gid,
    )
}

fn user_name(uid: u32) -> io::Result<Option<String>> {
    entry(
        |e, buf, len, found| {
            // SAFETY: every pointer is valid for the call; `buf` for `len`.
            unsafe { libc::getpwuid_r(uid, e, buf, len, found) }
        },
        // SAFETY: a found entry's name is a NUL-terminated string in the
        // buffer, which lives until `entry` returns.
        |e: &libc::passwd| unsafe { text(e.pw_name) },
    )
}

fn group_name(gid: u32) -> io::Result<Option<String>> {
    entry(
        |e, buf, len, found| {
            // SAFETY: every pointer is valid for the call; `buf` for `len`.
            unsafe { libc::getgrgid_r(gid, e, buf, len, found) }
        },
        // SAFETY: as in `user_name`.
        |e: &libc::group| unsafe { text(e.gr_name) },
    )
}

/// What `pick` takes from the `passwd` or `group` entry a `get*_r` call
/// finds. The call points the entry's strings into a buffer that lives
/// only while `pick` runs, so `pick` copies what it keeps.
fn entry<E, T>(
    mut call: impl FnMut(*mut E, *mut libc::c_char, usize, *mut *mut E) -> libc::c_int,
    pick: impl Fn(&E) -> T,
) -> io::Result<Option<T>> {
    lookup(|buf| {
        // SAFETY: `E` is `passwd` or `group`, plain C data for the call to
        // fill; all zeros is a valid value of either.
        let mut e: E = unsafe { std::mem::zeroed() };
        let mut found = std::ptr::null_mut();
        let rc = call(&mut e, buf.as_mut_ptr(), buf.len(), &mut found);
        (rc, (!found.is_null()).then(|| pick(&e)))
    })
}

/// A C string as an owned `String`.
///
/// # Safety
/// `ptr` must point to a NUL-terminated string.
unsafe fn text(ptr: *const libc::c_char) -> String {
    // SAFETY: the caller's promise.
    unsafe { CStr::from_ptr(ptr) }
        .to_string_lossy()
        .into_owned()
}

/// Who a listener with `current_user_only` admits: its own user, then the
/// allowed users and the members of the allowed groups.
#[derive(Debug)]
struct Admits {
    uid: u32,
    users: Vec<Account>,
    groups: Vec<Account>,
}

impl Admits {
    fn resolve(options: &PipeOptions) -> std::result::Result<Self, String> {
        let users = options
            .allow_users
            .iter()
            .map(|u| resolve_user(u).map_err(|e| format!("allow_users: {e}")))
            .collect::<std::result::Result<_, _>>()?;
        let groups = options
            .allow_groups
            .iter()
            .map(|g| resolve_group(g).map_err(|e| format!("allow_groups: {e}")))
            .collect::<std::result::Result<_, _>>()?;
        Ok(Self {
            uid: current_uid(),
            users,
            groups,
        })
    }

    /// Whether the peer on `stream`, of `uid` and group `gid`, may connect;
    /// when not, its supplementary groups if they were looked at, for the log.
    fn check(
        &self,
        stream: &UnixStream,
        uid: u32,
        gid: u32,
    ) -> std::result::Result<(), Option<String>> {
        if uid == self.uid || self.users.iter().any(|u| u.id == uid) {
            return Ok(());
        }
        if self.groups.is_empty() {
            return Err(None);
        }
        if self.groups.iter().any(|g| g.id == gid) {
            return Ok(());
        }
        let allowed = |g: &u32| self.groups.iter().any(|a| a.id == *g);
        match peer_groups(stream, uid, gid) {
            Ok(groups) if groups.iter().any(allowed) => Ok(()),
            Ok(groups) if groups.is_empty() => Err(Some("none".into())),
            Ok(groups) => {
                let listed: Vec<String> = groups.iter().map(u32::to_string).collect();
                Err(Some(listed.join(",")))
            }
            // Groups that cannot be read admit nobody: the peer is refused.
            Err(e) => Err(Some(format!("unknown: {e}"))),
        }
    }
}

impl std::fmt::Display for Admits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let own = Account::of_user(self.uid);
        if self.users.is_empty() && self.groups.is_empty() {
            return write!(f, "current_user_only admits {own} only");
        }
        let mut admitted = vec![own.to_string()];
        admitted.extend(self.users.iter().map(ToString::to_string));
        admitted.extend(self.groups.iter().map(|g| format!("members of {g}")));
        write!(f, "it admits {}", Listed(&admitted))
    }
}

/// The supplementary groups of the peer on `stream`.
///
/// Linux: as the kernel recorded them when the peer connected
/// (`SO_PEERGROUPS`, Linux 4.13), which cannot race with the peer exiting
/// or changing its groups the way reading `/proc/PID/status` can, and which
/// counts groups a process holds without the user database listing them
/// (`setgroups`, `newgrp`), just as the socket file's mode does. Elsewhere,
/// and on older kernels, the groups the user database gives the peer's uid
/// (`getgrouplist`); macOS has no `/proc` either.
#[cfg_attr(
    not(any(target_os = "linux", target_os = "android")),
    allow(unused_variables)
)]
fn peer_groups(stream: &UnixStream, uid: u32, gid: u32) -> io::Result<Vec<u32>> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    match kernel_peer_groups(stream) {
        Err(e) if e.raw_os_error() == Some(libc::ENOPROTOOPT) => {}
        result => return result,
    }
    database_groups(uid, gid)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn kernel_peer_groups(stream: &UnixStream) -> io::Result<Vec<u32>> {
    use std::os::fd::AsRawFd;
    const SIZE: usize = size_of::<libc::gid_t>();
    let mut groups: Vec<libc::gid_t> = vec![0; 32];
    loop {
        let mut len = libc::socklen_t::try_from(groups.len() * SIZE).map_err(io::Error::other)?;
        // SAFETY: `groups` has room for `len` bytes; the kernel writes at
        // most that many and sets `len` to what it wrote or would need.
        let rc = unsafe {
            libc::getsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let count = len as usize / SIZE;
        if rc == 0 {
            groups.truncate(count);
            return Ok(groups);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ERANGE) && count > groups.len() {
            groups.resize(count, 0);
            continue;
        }
        return Err(err);
    }
}

/// The groups the user database gives `uid`, whose primary group is `gid`.
// The casts convert where macOS's int differs from gid_t, and are no-ops elsewhere.
#[cfg_attr(not(target_vendor = "apple"), allow(clippy::unnecessary_cast))]
fn database_groups(uid: u32, gid: u32) -> io::Result<Vec<u32>> {
    // macOS declares getgrouplist with int where others use gid_t.
    #[cfg(target_vendor = "apple")]
    type GroupId = libc::c_int;
    #[cfg(not(target_vendor = "apple"))]
    type GroupId = libc::gid_t;

    let Some(name) = user_name(uid)? else {
        // A uid without a database entry has no supplementary groups there.
        return Ok(vec![gid]);
    };
    let name = CString::new(name).map_err(io::Error::other)?;
    let mut groups: Vec<GroupId> = vec![0; 64];
    loop {
        let mut count = libc::c_int::try_from(groups.len()).unwrap_or(libc::c_int::MAX);
        // SAFETY: `groups` holds `count` entries; the call writes at most
        // that many and sets `count` to what it wrote or would need.
        let rc = unsafe {
            libc::getgrouplist(
                name.as_ptr(),
                gid as GroupId,
                groups.as_mut_ptr(),
                &mut count,
            )
        };
        let count = usize::try_from(count).unwrap_or(0);
        if rc >= 0 {
            return Ok(groups[..count.min(groups.len())]
                .iter()
                .map(|&g| g as u32)
                .collect());
        }
        if groups.len() >= 1 << 16 {
            return Err(io::Error::other("more than 65536 groups"));
        }
        let len = count.max(groups.len() * 2);
        groups.resize(len, 0);
    }
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
