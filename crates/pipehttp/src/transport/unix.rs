//! Named pipes and Unix domain sockets on Unix: both are socket files.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use socket2::{Domain, SockAddr, Socket, Type};
use tokio::net::{UnixListener, UnixStream};

use super::{ConnectFailure, PeerInfo, Transport};
use crate::address::{Endpoint, PipeName};
use crate::error::{Error, Result};
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
    // .NET's Path.GetTempPath(): $TMPDIR, or /tmp when unset or empty.
    let tmp = std::env::var_os("TMPDIR")
        .filter(|dir| !dir.is_empty())
        .map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    tmp.join(format!("CoreFxPipe_{name}"))
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
    /// Device and inode of our socket file, so that dropping the listener
    /// never removes a socket another server has put at the path since.
    identity: (u64, u64),
    current_user_only: bool,
    uid: u32,
    describe: String,
}

impl Listener {
    pub(crate) fn bind(endpoint: &Endpoint, options: &PipeOptions) -> Result<Self> {
        let path = endpoint_path(endpoint);
        let describe = endpoint.describe();
        let bind_err = |source| Error::Bind {
            endpoint: describe.clone(),
            source,
        };
        check_path_len(&path).map_err(bind_err)?;
        let mode = options.socket_mode().map_err(Error::InvalidOptions)?;
        clear_stale(&path, &describe)?;

        // The socket is created and chmod'ed in a private directory, then
        // linked into place, so the file never exists at the public path
        // with a looser mode than asked, and link() refuses to replace a
        // socket that another server bound meanwhile.
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
        match fs::hard_link(&staged, &path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(Error::AddrInUse { endpoint: describe });
            }
            Err(e) => return Err(bind_err(e)),
        }
        drop(private);
        let meta = fs::symlink_metadata(&path).map_err(bind_err)?;
        let listener = UnixListener::from_std(std::os::unix::net::UnixListener::from(socket))
            .map_err(bind_err)?;
        Ok(Self {
            listener,
            path,
            identity: (meta.dev(), meta.ino()),
            current_user_only: options.current_user_only,
            uid: current_uid(),
            describe,
        })
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
        let ours =
            fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.identity);
        if ours {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Makes way for a new socket at `path`: nothing there is fine; a socket
/// that refuses connections is stale and removed; a live socket, or
/// anything that is not a socket, stops the bind.
fn clear_stale(path: &Path, describe: &str) -> Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(Error::Bind {
                endpoint: describe.to_owned(),
                source,
            });
        }
    };
    if !meta.file_type().is_socket() {
        return Err(Error::NotASocket {
            endpoint: describe.to_owned(),
            path: path.to_owned(),
        });
    }
    match probe(path) {
        Ok(()) => Err(Error::AddrInUse {
            endpoint: describe.to_owned(),
        }),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!("{describe}: removing the stale socket file a stopped server left");
            match fs::remove_file(path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(source) => Err(Error::Bind {
                    endpoint: describe.to_owned(),
                    source,
                }),
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        // A full backlog means a live, busy server.
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(Error::AddrInUse {
            endpoint: describe.to_owned(),
        }),
        Err(source) => Err(Error::Bind {
            endpoint: describe.to_owned(),
            source,
        }),
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
    let fatal = |source| {
        ConnectFailure::Fatal(Error::Connect {
            endpoint: endpoint.describe(),
            source,
        })
    };
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

pub(crate) fn running_under_wine() -> bool {
    false
}

pub(crate) fn create_private_file(path: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // The mode above applies to new files only; an old one may be looser.
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

pub(crate) async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::warn!("cannot install signal handlers; stop the server another way");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
}
