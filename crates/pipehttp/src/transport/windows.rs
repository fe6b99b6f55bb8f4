//! Named pipes on Windows, through tokio's named-pipe module and windows-sys.

use std::ffi::c_void;
use std::io;
use std::os::windows::io::AsRawHandle;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::windows::named_pipe::{
    ClientOptions, NamedPipeClient, NamedPipeServer, ServerOptions,
};
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinSet;
use windows_sys::Win32::Foundation::{
    CloseHandle, ERROR_ACCESS_DENIED, ERROR_BAD_DEV_TYPE, ERROR_FILE_NOT_FOUND, ERROR_PIPE_BUSY,
    HANDLE, INVALID_HANDLE_VALUE, LocalFree,
};
use windows_sys::Win32::Security::Authorization::{
    ConvertSidToStringSidW, ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
};
use windows_sys::Win32::Security::{
    EqualSid, GetTokenInformation, PSECURITY_DESCRIPTOR, SECURITY_ATTRIBUTES, TOKEN_QUERY,
    TOKEN_USER, TokenUser,
};
use windows_sys::Win32::Storage::FileSystem::{
    FindClose, FindFirstFileW, FindNextFileW, WIN32_FIND_DATAW,
};
use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleW, GetProcAddress};
use windows_sys::Win32::System::Pipes::{GetNamedPipeClientProcessId, GetNamedPipeServerProcessId};
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, OpenProcess, OpenProcessToken, PROCESS_QUERY_LIMITED_INFORMATION,
};

use super::{Activated, ConnectFailure, PeerInfo, PipeEntry, PipeState, Transport, refused_peer};
use crate::address::{Endpoint, PipeName};
use crate::error::{Error, Kind, Named, Result};
use crate::options::PipeOptions;

pub(crate) fn pipe_endpoint(name: &PipeName) -> PathBuf {
    PathBuf::from(format!(r"\\.\pipe\{name}"))
}

/// A pipe end, server or client side.
#[derive(Debug)]
pub(crate) enum Stream {
    Server(NamedPipeServer),
    Client(NamedPipeClient),
}

macro_rules! delegate {
    ($self:ident, $io:ident => $e:expr) => {
        match $self.get_mut() {
            Stream::Server($io) => $e,
            Stream::Client($io) => $e,
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, io => Pin::new(io).poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, io => Pin::new(io).poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, io => Pin::new(io).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, io => Pin::new(io).poll_shutdown(cx))
    }
}

impl Stream {
    pub(crate) fn is_write_vectored(&self) -> bool {
        false
    }

    fn handle(&self) -> HANDLE {
        match self {
            Stream::Server(s) => s.as_raw_handle(),
            Stream::Client(c) => c.as_raw_handle(),
        }
    }
}

/// Connected pipe instances handed from the instance tasks to `accept`.
type Incoming = mpsc::Receiver<io::Result<(NamedPipeServer, PeerInfo)>>;

#[derive(Debug)]
pub(crate) struct Listener {
    path: PathBuf,
    incoming: Mutex<Incoming>,
    /// Each task keeps one instance waiting for a client; aborted on
    /// release or drop, which closes the waiting instances.
    tasks: std::sync::Mutex<JoinSet<()>>,
}

/// Everything needed to create one more instance of the pipe.
struct InstanceFactory {
    path: PathBuf,
    options: ServerOptions,
    security: Option<SecurityDescriptor>,
}

impl InstanceFactory {
    fn create(&self, first: bool) -> io::Result<NamedPipeServer> {
        let mut options = self.options.clone();
        options.first_pipe_instance(first);
        match &self.security {
            None => options.create(&self.path),
            Some(sd) => {
                let mut attrs = SECURITY_ATTRIBUTES {
                    nLength: size_of::<SECURITY_ATTRIBUTES>() as u32,
                    lpSecurityDescriptor: sd.0,
                    bInheritHandle: 0,
                };
                // SAFETY: `attrs` points at a valid descriptor that lives as
                // long as the factory, and the call only reads it.
                unsafe {
                    options.create_with_security_attributes_raw(
                        &self.path,
                        (&raw mut attrs).cast::<c_void>(),
                    )
                }
            }
        }
    }
}

impl Listener {
    /// Binds the pipe name. With `takeover`, a live server on the name is
    /// not an error: a client connection to it is opened first (so it
    /// cannot land on one of our own instances), then our instances join
    /// the name without the first-instance flag.
    pub(crate) async fn bind(
        endpoint: &Endpoint,
        options: &PipeOptions,
        takeover: bool,
    ) -> Result<(Self, Option<(Stream, PeerInfo)>)> {
        let Endpoint::Pipe(_) = endpoint else {
            return Err(Error::at(Kind::Bind, endpoint).with_source(io::Error::new(
                io::ErrorKind::Unsupported,
                "Unix socket paths are not served on Windows: use http://pipe:/NAME",
            )));
        };
        let path = endpoint.path().expect("pipes have a path");
        let describe = Named(endpoint, Some(&path)).to_string();
        let bind_err = |source| Error::at(Kind::Bind, endpoint).with_source(source);
        let predecessor = if takeover {
            predecessor(endpoint).await?
        } else {
            // FILE_FLAG_FIRST_PIPE_INSTANCE alone would do on Windows, but
            // Wine does not enforce it: a client open that succeeds, or
            // finds every instance busy, proves the name is served already.
            match ClientOptions::new().open(&path) {
                Ok(_) => return Err(Error::at(Kind::AddrInUse, endpoint)),
                Err(e) if is_busy(&e) || e.raw_os_error() == Some(ERROR_ACCESS_DENIED as i32) => {
                    return Err(Error::at(Kind::AddrInUse, endpoint));
                }
                Err(_) => None,
            }
        };
        let mut server_options = ServerOptions::new();
        server_options
            .reject_remote_clients(true)
            .in_buffer_size(u32::try_from(options.max_read_buffer_size).unwrap_or(u32::MAX))
            .out_buffer_size(u32::try_from(options.max_write_buffer_size).unwrap_or(u32::MAX));
        let security = if options.current_user_only {
            Some(SecurityDescriptor::current_user_only().map_err(bind_err)?)
        } else {
            None
        };
        let factory = std::sync::Arc::new(InstanceFactory {
            path: path.clone(),
            options: server_options,
            security,
        });
        let first = match factory.create(predecessor.is_none()) {
            Ok(first) => first,
            Err(e) if e.raw_os_error() == Some(ERROR_ACCESS_DENIED as i32) => {
                return Err(Error::at(Kind::AddrInUse, endpoint));
            }
            Err(e) => return Err(bind_err(e)),
        };
        let queue = options.listener_queue_count.max(1);
        let (tx, rx) = mpsc::channel(queue);
        let mut tasks = JoinSet::new();
        let mut first = Some(first);
        for _ in 0..queue {
            let instance = match first.take() {
                Some(first) => first,
                None => factory.create(false).map_err(bind_err)?,
            };
            tasks.spawn(serve_instances(
                instance,
                factory.clone(),
                tx.clone(),
                describe.clone(),
            ));
        }
        let listener = Self {
            path,
            incoming: Mutex::new(rx),
            tasks: std::sync::Mutex::new(tasks),
        };
        Ok((listener, predecessor))
    }

    /// Stops offering pipe instances: the waiting ones close, so new
    /// clients reach another server on the name, while clients already
    /// connected can still be accepted.
    pub(crate) fn release(&self) {
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.abort_all();
        }
    }

    pub(crate) async fn accept(&self, transport: Transport) -> io::Result<(Stream, PeerInfo)> {
        let next = self.incoming.lock().await.recv().await;
        match next {
            Some(Ok((server, mut peer))) => {
                peer.transport = transport;
                Ok((Stream::Server(server), peer))
            }
            Some(Err(e)) => Err(e),
            None => Err(io::Error::other("every pipe instance task has stopped")),
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

/// The live server a takeover joins: a connection to it, once it is known
/// to run as our user; `None` when nothing serves the name.
async fn predecessor(endpoint: &Endpoint) -> Result<Option<(Stream, PeerInfo)>> {
    let mut attempt = 0;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match connect(endpoint).await {
            Ok((stream, peer)) => {
                check_same_user(&stream, &peer).map_err(|detail| refused_peer(endpoint, detail))?;
                return Ok(Some((stream, peer)));
            }
            Err(ConnectFailure::Absent(_)) => return Ok(None),
            Err(ConnectFailure::Busy(source)) if tokio::time::Instant::now() >= deadline => {
                return Err(Error::at(Kind::Bind, endpoint).with_source(source));
            }
            Err(ConnectFailure::Busy(_)) => {
                tokio::time::sleep(super::retry_delay(attempt)).await;
                attempt += 1;
            }
            Err(ConnectFailure::Fatal(e)) => return Err(e),
        }
    }
}

/// Keeps one instance waiting for a client. When a client connects, the
/// next instance is created before the connected one is handed on, so the
/// name is never without a waiting instance.
async fn serve_instances(
    mut instance: NamedPipeServer,
    factory: std::sync::Arc<InstanceFactory>,
    tx: mpsc::Sender<io::Result<(NamedPipeServer, PeerInfo)>>,
    describe: String,
) {
    loop {
        if let Err(e) = instance.connect().await {
            // A client that connected and left at once; serve the next one.
            tracing::debug!("{describe}: pipe connect failed: {e}");
        }
        let next = match factory.create(false) {
            Ok(next) => next,
            Err(e) => {
                tracing::warn!("{describe}: cannot create another pipe instance: {e}");
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        let connected = std::mem::replace(&mut instance, next);
        let mut peer = PeerInfo::new(Transport::Pipe);
        peer.pid = client_process_id(connected.as_raw_handle());
        if tx.send(Ok((connected, peer))).await.is_err() {
            return;
        }
    }
}

fn client_process_id(handle: HANDLE) -> Option<u32> {
    let mut pid = 0;
    // SAFETY: `handle` is an open pipe handle owned by the caller.
    (unsafe { GetNamedPipeClientProcessId(handle, &mut pid) } != 0).then_some(pid)
}

fn server_process_id(handle: HANDLE) -> Option<u32> {
    let mut pid = 0;
    // SAFETY: `handle` is an open pipe handle owned by the caller.
    (unsafe { GetNamedPipeServerProcessId(handle, &mut pid) } != 0).then_some(pid)
}

fn is_busy(e: &io::Error) -> bool {
    e.raw_os_error() == Some(ERROR_PIPE_BUSY as i32)
}

pub(crate) async fn connect(endpoint: &Endpoint) -> Result<(Stream, PeerInfo), ConnectFailure> {
    let path = endpoint.path().expect("local endpoints have a path");
    match ClientOptions::new().open(&path) {
        Ok(client) => {
            let mut peer = PeerInfo::new(Transport::Pipe);
            peer.pid = server_process_id(client.as_raw_handle());
            Ok((Stream::Client(client), peer))
        }
        Err(e) if is_busy(&e) => Err(ConnectFailure::Busy(e)),
        Err(e) if e.raw_os_error() == Some(ERROR_FILE_NOT_FOUND as i32) => {
            Err(ConnectFailure::Absent(e))
        }
        Err(e) if matches!(endpoint, Endpoint::Unix(_)) => Err(ConnectFailure::Fatal(
            Error::at(Kind::Connect, endpoint).with_source(io::Error::new(
                e.kind(),
                "Unix socket paths are not reachable on Windows: use http://pipe:/NAME",
            )),
        )),
        Err(e) => Err(ConnectFailure::Fatal(
            Error::at(Kind::Connect, endpoint).with_source(e),
        )),
    }
}

/// Every pipe in `\\.\pipe\`, by FindFirstFileW/FindNextFileW over the
/// pipe file system: it lists names without opening (and so without
/// connecting to) any pipe.
pub(crate) async fn list_pipes(dir: Option<&Path>, _all: bool) -> io::Result<Vec<PipeEntry>> {
    if dir.is_some() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            r"pipes on Windows all live in \\.\pipe\; a directory to list applies to Unix only",
        ));
    }
    let pattern: Vec<u16> = r"\\.\pipe\*"
        .encode_utf16()
        .chain(std::iter::once(0))
        .collect();
    let mut entries = Vec::new();
    // SAFETY: WIN32_FIND_DATAW is plain data for which all zeroes is valid.
    let mut data: WIN32_FIND_DATAW = unsafe { std::mem::zeroed() };
    // SAFETY: `pattern` is NUL-terminated and `data` is a valid out buffer.
    let find = unsafe { FindFirstFileW(pattern.as_ptr(), &mut data) };
    if find == INVALID_HANDLE_VALUE {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            // No pipe at all is an empty list, not an error.
            Some(code) if code == ERROR_FILE_NOT_FOUND as i32 => Ok(entries),
            // Wine has pipes but no directory of them to list.
            Some(code) if code == ERROR_BAD_DEV_TYPE as i32 => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(r"this system cannot list \\.\pipe\ (Wine does not implement it): {e}"),
            )),
            _ => Err(io::Error::new(e.kind(), format!(r"\\.\pipe\: {e}"))),
        };
    }
    loop {
        let len = data
            .cFileName
            .iter()
            .position(|&c| c == 0)
            .unwrap_or(data.cFileName.len());
        let name = String::from_utf16_lossy(&data.cFileName[..len]);
        if !name.is_empty() {
            let path = PathBuf::from(format!(r"\\.\pipe\{name}"));
            entries.push(PipeEntry {
                address: super::pipe_address(&name, &path),
                name,
                path,
                state: PipeState::Live,
                owner_uid: None,
                server_pid: None,
            });
        }
        // SAFETY: `find` is the open search handle; `data` a valid out buffer.
        if unsafe { FindNextFileW(find, &mut data) } == 0 {
            break;
        }
    }
    // SAFETY: `find` came from FindFirstFileW and is closed once.
    unsafe { FindClose(find) };
    Ok(entries)
}

pub(crate) fn is_same_user(peer: &PeerInfo) -> bool {
    let (Some(pid), Ok(ours)) = (peer.pid, TokenUserSid::of_process(None)) else {
        return false;
    };
    TokenUserSid::of_process(Some(pid)).is_ok_and(|theirs| ours.equals(&theirs))
}

/// The client side of `current_user_only`: the process serving the pipe
/// must run as our user.
pub(crate) fn check_same_user(stream: &Stream, peer: &PeerInfo) -> Result<(), String> {
    let Some(pid) = peer.pid.or_else(|| server_process_id(stream.handle())) else {
        return Err("Windows did not say which process serves the pipe".into());
    };
    let ours =
        TokenUserSid::of_process(None).map_err(|e| format!("cannot read our own user: {e}"))?;
    let theirs = TokenUserSid::of_process(Some(pid))
        .map_err(|e| format!("cannot read the user of server pid {pid}: {e}"))?;
    if ours.equals(&theirs) {
        Ok(())
    } else {
        Err(format!(
            "the server (pid {pid}) runs as {}, this process as {}",
            theirs.to_sddl().unwrap_or_else(|_| "another user".into()),
            ours.to_sddl().unwrap_or_else(|_| "the current user".into())
        ))
    }
}

/// The user SID from a process token, kept in the `TOKEN_USER` buffer that
/// holds it.
struct TokenUserSid {
    buf: Vec<u64>,
}

impl TokenUserSid {
    /// Our own process's user, or that of process `pid`.
    fn of_process(pid: Option<u32>) -> io::Result<Self> {
        // SAFETY: plain Win32 calls on handles this function opens and
        // closes; buffers are sized by the first GetTokenInformation call.
        unsafe {
            let process = match pid {
                None => GetCurrentProcess(),
                Some(pid) => {
                    let h = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid);
                    if h.is_null() {
                        return Err(io::Error::last_os_error());
                    }
                    h
                }
            };
            let mut token: HANDLE = std::ptr::null_mut();
            let opened = OpenProcessToken(process, TOKEN_QUERY, &mut token);
            if pid.is_some() {
                CloseHandle(process);
            }
            if opened == 0 {
                return Err(io::Error::last_os_error());
            }
            let mut len = 0u32;
            GetTokenInformation(token, TokenUser, std::ptr::null_mut(), 0, &mut len);
            let mut buf = vec![0u64; (len as usize).div_ceil(8)];
            let ok = GetTokenInformation(token, TokenUser, buf.as_mut_ptr().cast(), len, &mut len);
            let err = io::Error::last_os_error();
            CloseHandle(token);
            if ok == 0 {
                return Err(err);
            }
            Ok(Self { buf })
        }
    }

    fn sid(&self) -> *mut c_void {
        // SAFETY: `buf` holds a TOKEN_USER written by GetTokenInformation
        // and is 8-byte aligned.
        unsafe { (*self.buf.as_ptr().cast::<TOKEN_USER>()).User.Sid }
    }

    fn equals(&self, other: &Self) -> bool {
        // SAFETY: both SIDs are valid while their buffers live.
        unsafe { EqualSid(self.sid(), other.sid()) != 0 }
    }

    /// The SID in its `S-1-5-…` string form.
    fn to_sddl(&self) -> io::Result<String> {
        let mut text: *mut u16 = std::ptr::null_mut();
        // SAFETY: the SID is valid; the returned string is freed below.
        unsafe {
            if ConvertSidToStringSidW(self.sid(), &mut text) == 0 {
                return Err(io::Error::last_os_error());
            }
            let len = (0..).take_while(|&i| *text.add(i) != 0).count();
            let s = String::from_utf16_lossy(std::slice::from_raw_parts(text, len));
            LocalFree(text.cast());
            Ok(s)
        }
    }
}

/// The DACL of a current-user-only pipe in SDDL: protected from inherited
/// entries, with one entry granting everything to `sid` and nothing to anyone
/// else.
pub(crate) fn current_user_only_sddl(sid: &str) -> String {
    format!("D:P(A;;GA;;;{sid})")
}

/// A self-relative security descriptor built from SDDL, freed on drop.
struct SecurityDescriptor(PSECURITY_DESCRIPTOR);

// SAFETY: the descriptor is immutable after creation and only read.
unsafe impl Send for SecurityDescriptor {}
// SAFETY: as above.
unsafe impl Sync for SecurityDescriptor {}

impl SecurityDescriptor {
    fn current_user_only() -> io::Result<Self> {
        let sid = TokenUserSid::of_process(None)?.to_sddl()?;
        let sddl: Vec<u16> = current_user_only_sddl(&sid)
            .encode_utf16()
            .chain(std::iter::once(0))
            .collect();
        let mut sd: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
        // SAFETY: `sddl` is NUL-terminated; `sd` receives a LocalAlloc'ed
        // descriptor that Drop frees.
        let ok = unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                sddl.as_ptr(),
                SDDL_REVISION_1,
                &mut sd,
                std::ptr::null_mut(),
            )
        };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self(sd))
    }
}

impl Drop for SecurityDescriptor {
    fn drop(&mut self) {
        // SAFETY: allocated by ConvertStringSecurityDescriptorToSecurityDescriptorW.
        unsafe {
            LocalFree(self.0);
        }
    }
}

impl std::fmt::Debug for InstanceFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceFactory")
            .field("path", &self.path)
            .field("current_user_only", &self.security.is_some())
            .finish()
    }
}

#[cfg(feature = "axum")]
pub(crate) fn own_identity() -> PeerInfo {
    let mut me = PeerInfo::new(Transport::Pipe);
    me.pid = Some(std::process::id());
    me
}

/// Socket activation is systemd's; Windows services get no sockets.
pub(crate) fn activated() -> Result<Vec<(Activated, String)>> {
    Ok(Vec::new())
}

/// Installs the Ctrl-C handler now, so a stop asked right after the
/// server says it is ready is still graceful.
pub(crate) fn stop_signal() -> impl Future<Output = ()> + Send + 'static {
    let handler = tokio::signal::windows::ctrl_c();
    async move {
        match handler {
            Ok(mut ctrl_c) => {
                ctrl_c.recv().await;
            }
            Err(_) => {
                tracing::warn!("cannot install a Ctrl-C handler; stop the server another way");
                std::future::pending::<()>().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dacl_grants_only_the_given_user() {
        assert_eq!(
            current_user_only_sddl("S-1-5-21-1-2-3-1001"),
            "D:P(A;;GA;;;S-1-5-21-1-2-3-1001)"
        );
    }

    #[test]
    fn descriptor_for_the_current_user_builds() {
        SecurityDescriptor::current_user_only().expect("a descriptor for our own user");
        let me = TokenUserSid::of_process(None).unwrap();
        assert!(me.to_sddl().unwrap().starts_with("S-1-"));
        assert!(me.equals(&TokenUserSid::of_process(Some(std::process::id())).unwrap()));
    }
}
