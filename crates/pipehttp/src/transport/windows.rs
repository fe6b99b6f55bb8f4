//! Named pipes on Windows, through tokio's named-pipe module and windows-sys.

use std::ffi::c_void;
use std::io;
use std::os::windows::io::AsRawHandle;
use std::path::{Path, PathBuf};

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
    ConvertSidToStringSidW, ConvertStringSecurityDescriptorToSecurityDescriptorW,
    ConvertStringSidToSidW, GetSecurityInfo, SDDL_REVISION_1, SE_KERNEL_OBJECT,
};
use windows_sys::Win32::Security::{
    EqualSid, GetTokenInformation, LookupAccountNameW, LookupAccountSidW,
    OWNER_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR, PSID, SECURITY_ATTRIBUTES, SID_NAME_USE,
    TOKEN_QUERY, TOKEN_USER, TokenUser,
};
use windows_sys::Win32::Storage::FileSystem::{
    FindClose, FindFirstFileW, FindNextFileW, WIN32_FIND_DATAW,
};
use windows_sys::Win32::System::Pipes::{GetNamedPipeClientProcessId, GetNamedPipeServerProcessId};
use windows_sys::Win32::System::Threading::{
    CreateEventW, EVENT_MODIFY_STATE, GetCurrentProcess, INFINITE, OpenEventW, OpenProcess,
    OpenProcessToken, PROCESS_QUERY_LIMITED_INFORMATION, SetEvent, WaitForSingleObject,
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

delegate_io!(Stream, Stream { Server, Client });

impl Stream {
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
    /// Set by a server that takes the name over from this one.
    takeover: std::sync::Arc<TakeoverEvent>,
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
    /// Binds the pipe name. With `takeover`, a live server of our user on
    /// the name is not an error: our instances join the name without the
    /// first-instance flag, then the servers we take over from are told
    /// through their takeover events (see [`TakeoverEvent`]). Returns their
    /// pids.
    pub(crate) async fn bind(
        endpoint: &Endpoint,
        options: &PipeOptions,
        takeover: bool,
    ) -> Result<(Self, Vec<u32>)> {
        let Endpoint::Pipe(_) = endpoint else {
            return Err(Error::at(Kind::Bind, endpoint).with_source(io::Error::new(
                io::ErrorKind::Unsupported,
                "Unix socket paths are not served on Windows: use http://pipe:/NAME",
            )));
        };
        let path = endpoint.path().expect("pipes have a path");
        let describe = Named(endpoint, Some(&path)).to_string();
        let bind_err = |source| Error::at(Kind::Bind, endpoint).with_source(source);
        // Binds of one name, takeovers or not, go one at a time, each
        // recording itself as the name's server, so a successor tells the
        // right one and exactly one server is left however many start.
        let owner = OwnerRecord::lock(&path).await.map_err(bind_err)?;
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
        let me = NameHolder::next(&path);
        let event = TakeoverEvent::create(&me).map_err(bind_err)?;
        let mut server_options = ServerOptions::new();
        server_options
            .reject_remote_clients(true)
            .in_buffer_size(u32::try_from(options.max_read_buffer_size).unwrap_or(u32::MAX))
            .out_buffer_size(u32::try_from(options.max_write_buffer_size).unwrap_or(u32::MAX));
        let security = match &options.pipe_sddl {
            Some(sddl) => Some(SecurityDescriptor::from_sddl(sddl).map_err(|e| {
                Error::options(format!(
                    "{describe}: pipe_sddl {sddl:?} is no security descriptor Windows accepts ({e}): write one in SDDL, such as \"D:P(A;;GA;;;OW)\""
                ))
            })?),
            None if options.current_user_only => {
                let sddl = current_user_descriptor(options)
                    .map_err(|e| Error::options(format!("{describe}: {e}")))?;
                Some(SecurityDescriptor::from_sddl(&sddl).map_err(bind_err)?)
            }
            None => None,
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
        // Our instances serve the name now: tell the server before us, the
        // one on record (which the probe may or may not have reached).
        let mut predecessors = Vec::new();
        if predecessor.is_some()
            && let Some(before) = owner.read(&path)
            && before != me
            && TakeoverEvent::signal(&before)
        {
            predecessors.push(before.pid);
        }
        owner.write(&me).map_err(bind_err)?;
        let listener = Self {
            path,
            incoming: Mutex::new(rx),
            tasks: std::sync::Mutex::new(tasks),
            takeover: std::sync::Arc::new(event),
        };
        Ok((listener, predecessors))
    }

    /// Resolves once a successor has taken the name over (and told us).
    pub(crate) async fn name_lost(&self) -> Option<u32> {
        let event = self.takeover.clone();
        let signalled = tokio::task::spawn_blocking(move || event.wait()).await;
        match signalled {
            Ok(true) => None,
            // The listener is going away: nothing was lost.
            _ => std::future::pending().await,
        }
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
        // Ends the thread that waits for a successor's word.
        self.takeover.close();
    }
}

/// The live server a takeover joins, once it is known to run as our user:
/// `Some` with its pid where Windows tells; `None` when nothing serves the
/// name. The probe is a client connection that leaves without a word.
async fn predecessor(endpoint: &Endpoint) -> Result<Option<Option<u32>>> {
    let mut attempt = 0;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match connect(endpoint).await {
            Ok((stream, peer)) => {
                check_same_user(&stream, &peer).map_err(|detail| refused_peer(endpoint, detail))?;
                return Ok(Some(peer.pid));
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

/// The takeover's check: the process serving the pipe must run as our user.
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

/// LocalSystem, Windows' root: a client accepts it as a server whatever
/// its allow list, as a Unix client accepts root.
const SYSTEM: &str = "S-1-5-18";
/// BUILTIN\Administrators, the owner an elevated process gives what it
/// creates.
const ADMINISTRATORS: &str = "S-1-5-32-544";

/// The client's check of the server's user: ours, SYSTEM, or one of
/// `allowed`, which is resolved only when the server is none of the others.
///
/// The user is read from the token of the process serving the pipe
/// (`GetNamedPipeServerProcessId`, then `OpenProcessToken`). A process of
/// another user usually cannot be opened; then the pipe's owner stands in,
/// which a process can set only to its own user (or, elevated, to the
/// Administrators group), so a squatter cannot borrow ours.
pub(crate) fn check_server_user(
    endpoint: &Endpoint,
    stream: &Stream,
    peer: &PeerInfo,
    allowed: &[String],
) -> Result<()> {
    let refused = |detail: String| super::refused_server(endpoint, detail);
    let ours = TokenUserSid::of_process(None)
        .and_then(|t| t.to_sddl())
        .map_err(|e| refused(format!("cannot read this process's user: {e}")))?;
    let pid = peer.pid.or_else(|| server_process_id(stream.handle()));
    let from_token = pid.map(|pid| TokenUserSid::of_process(Some(pid)).and_then(|t| t.to_sddl()));
    let (server, by_owner) = match from_token {
        Some(Ok(sid)) => (sid, false),
        other => match pipe_owner(stream.handle()) {
            Ok(sid) => (sid, true),
            Err(e) => {
                let token = match other {
                    Some(Err(token)) => format!("its process: {token}; "),
                    _ => String::new(),
                };
                return Err(refused(format!(
                    "cannot tell which user serves the pipe ({token}its owner: {e})"
                )));
            }
        },
    };
    if server == ours || server == SYSTEM || (by_owner && server == ADMINISTRATORS) {
        return Ok(());
    }
    let mut admitted = vec![named(&ours), "SYSTEM".into()];
    for spec in allowed {
        let sid = account_sid(spec).map_err(|e| {
            Error::options(format!(
                "ClientBuilder::allow_server_user: Windows knows no account '{spec}' ({e}): check the name, or give its SID"
            ))
            .with_endpoint(endpoint)
        })?;
        if sid == server {
            return Ok(());
        }
        admitted.push(named(&sid));
    }
    let whose = if by_owner {
        "the pipe is owned by"
    } else {
        "the server runs as"
    };
    Err(refused(format!(
        "{whose} {}{}, and this client accepts only {}",
        named(&server),
        pid.map(|p| format!(" in pid {p}")).unwrap_or_default(),
        admitted.join(", ")
    )))
}

/// The owner of the pipe behind `handle`, as a SID string.
fn pipe_owner(handle: HANDLE) -> io::Result<String> {
    let mut owner: PSID = std::ptr::null_mut();
    let mut sd: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
    // SAFETY: `handle` is an open pipe handle (opened for reading, which
    // includes READ_CONTROL); `owner` points into `sd`, freed below.
    unsafe {
        let status = GetSecurityInfo(
            handle,
            SE_KERNEL_OBJECT,
            OWNER_SECURITY_INFORMATION,
            &mut owner,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            &mut sd,
        );
        if status != 0 {
            return Err(io::Error::from_raw_os_error(status as i32));
        }
        let sid = if owner.is_null() {
            Err(io::Error::other("the pipe has no owner"))
        } else {
            sid_string(owner)
        };
        LocalFree(sd);
        sid
    }
}

fn wide(text: &str) -> Vec<u16> {
    text.encode_utf16().chain(std::iter::once(0)).collect()
}

/// A SID in its `S-1-…` string form, the form SDDL and messages use; two
/// SIDs are the same exactly when these strings are.
fn sid_string(sid: PSID) -> io::Result<String> {
    let mut text: *mut u16 = std::ptr::null_mut();
    // SAFETY: the caller passes a valid SID; the returned string is freed below.
    unsafe {
        if ConvertSidToStringSidW(sid, &mut text) == 0 {
            return Err(io::Error::last_os_error());
        }
        let len = (0..).take_while(|&i| *text.add(i) != 0).count();
        let s = String::from_utf16_lossy(std::slice::from_raw_parts(text, len));
        LocalFree(text.cast());
        Ok(s)
    }
}

/// The SID, as a string, of an account name (`name`, `DOMAIN\name`,
/// `BUILTIN\Administrators`) or of a SID string (`S-1-5-…`).
fn account_sid(spec: &str) -> io::Result<String> {
    let spec = spec.trim();
    if spec.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("S-")) {
        let text = wide(spec);
        let mut sid: PSID = std::ptr::null_mut();
        // SAFETY: `text` is NUL-terminated; the SID the call allocates is
        // freed below.
        unsafe {
            if ConvertStringSidToSidW(text.as_ptr(), &mut sid) == 0 {
                return Err(io::Error::last_os_error());
            }
            let canonical = sid_string(sid);
            LocalFree(sid);
            return canonical;
        }
    }
    let name = wide(spec);
    let mut sid_len = 0u32;
    let mut domain_len = 0u32;
    let mut kind: SID_NAME_USE = 0;
    // SAFETY: the first call only sizes the buffers; the second fills
    // buffers of those sizes.
    unsafe {
        LookupAccountNameW(
            std::ptr::null(),
            name.as_ptr(),
            std::ptr::null_mut(),
            &mut sid_len,
            std::ptr::null_mut(),
            &mut domain_len,
            &mut kind,
        );
        if sid_len == 0 {
            return Err(io::Error::last_os_error());
        }
        let mut sid = vec![0u64; (sid_len as usize).div_ceil(8)];
        let mut domain = vec![0u16; domain_len.max(1) as usize];
        let ok = LookupAccountNameW(
            std::ptr::null(),
            name.as_ptr(),
            sid.as_mut_ptr().cast(),
            &mut sid_len,
            domain.as_mut_ptr(),
            &mut domain_len,
            &mut kind,
        );
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        sid_string(sid.as_mut_ptr().cast())
    }
}

/// `SID (DOMAIN\name)` for messages, or the SID alone when it has no name.
fn named(sid: &str) -> String {
    match account_name(sid) {
        Some(name) => format!("{sid} ({name})"),
        None => sid.to_owned(),
    }
}

fn account_name(sid: &str) -> Option<String> {
    let text = wide(sid);
    let mut psid: PSID = std::ptr::null_mut();
    // SAFETY: `text` is NUL-terminated; the first lookup only sizes the
    // buffers, the second fills them; the SID is freed before returning.
    unsafe {
        if ConvertStringSidToSidW(text.as_ptr(), &mut psid) == 0 {
            return None;
        }
        let (mut name_len, mut domain_len): (u32, u32) = (0, 0);
        let mut kind: SID_NAME_USE = 0;
        LookupAccountSidW(
            std::ptr::null(),
            psid,
            std::ptr::null_mut(),
            &mut name_len,
            std::ptr::null_mut(),
            &mut domain_len,
            &mut kind,
        );
        let mut name = vec![0u16; name_len.max(1) as usize];
        let mut domain = vec![0u16; domain_len.max(1) as usize];
        let ok = name_len > 0
            && LookupAccountSidW(
                std::ptr::null(),
                psid,
                name.as_mut_ptr(),
                &mut name_len,
                domain.as_mut_ptr(),
                &mut domain_len,
                &mut kind,
            ) != 0;
        LocalFree(psid);
        if !ok {
            return None;
        }
        let name = String::from_utf16_lossy(&name[..name_len as usize]);
        let domain = String::from_utf16_lossy(&domain[..domain_len as usize]);
        Some(if domain.is_empty() {
            name
        } else {
            format!("{domain}\\{name}")
        })
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
        sid_string(self.sid())
    }
}

/// The descriptor of a current-user-only pipe in SDDL: owned by `owner`
/// (so that a client can tell whose pipe it is, as .NET's `CurrentUserOnly`
/// does), protected from inherited entries, with one entry granting
/// `owner` everything and one granting each of `others` read and write.
/// Read and write is what dockerd grants its `--group` on Windows; generic
/// write, which clients open a pipe with, takes in the right to create
/// instances too.
pub(crate) fn current_user_only_sddl(owner: &str, others: &[String]) -> String {
    let mut sddl = format!("O:{owner}D:P(A;;GA;;;{owner})");
    for sid in others {
        sddl.push_str(&format!("(A;;GRGW;;;{sid})"));
    }
    sddl
}

/// The SDDL for `current_user_only` with the allow lists, their names
/// resolved.
fn current_user_descriptor(options: &PipeOptions) -> Result<String, String> {
    let me = TokenUserSid::of_process(None)
        .and_then(|t| t.to_sddl())
        .map_err(|e| format!("cannot read this process's user: {e}"))?;
    let mut others = Vec::new();
    for (list, names) in [
        ("allow_users", &options.allow_users),
        ("allow_groups", &options.allow_groups),
    ] {
        for name in names {
            let sid = account_sid(name).map_err(|e| {
                format!(
                    "{list}: Windows knows no account '{name}' ({e}): check the name, or give its SID"
                )
            })?;
            others.push(sid);
        }
    }
    Ok(current_user_only_sddl(&me, &others))
}

/// A self-relative security descriptor built from SDDL, freed on drop.
struct SecurityDescriptor(PSECURITY_DESCRIPTOR);

// SAFETY: the descriptor is immutable after creation and only read.
unsafe impl Send for SecurityDescriptor {}
// SAFETY: as above.
unsafe impl Sync for SecurityDescriptor {}

impl SecurityDescriptor {
    fn from_sddl(sddl: &str) -> io::Result<Self> {
        let sddl = wide(sddl);
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
            .field("security", &self.security.is_some())
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

/// One server's hold on one pipe name: its process and a number that
/// tells apart the listeners of one process (a process may take its own
/// name over, to serve a new configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
struct NameHolder {
    pid: u32,
    seq: u64,
    hash: u64,
}

impl NameHolder {
    /// A new listener of this process on `path`.
    fn next(path: &Path) -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        Self {
            pid: std::process::id(),
            seq: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            hash: name_hash(path),
        }
    }

    fn event_name(&self) -> Vec<u16> {
        format!(
            r"Local\pipehttp-takeover-{}-{}-{:016x}",
            self.pid, self.seq, self.hash
        )
        .encode_utf16()
        .chain(std::iter::once(0))
        .collect()
    }
}

/// How a server learns that a successor took its name: a named event,
/// `Local\pipehttp-takeover-PID-SEQ-HASH` (see [`NameHolder`]; HASH of the
/// pipe name), that the server creates when it binds and waits on, and
/// that a successor opens and sets once its own instances serve the name.
/// Only processes of the same user (the event's default DACL) can open it,
/// and a request on the pipe has no way to set it.
struct TakeoverEvent {
    handle: HANDLE,
    closing: std::sync::atomic::AtomicBool,
}

// SAFETY: an event handle may be used from any thread.
unsafe impl Send for TakeoverEvent {}
// SAFETY: as above; the waits and sets are thread-safe Win32 calls.
unsafe impl Sync for TakeoverEvent {}

impl std::fmt::Debug for TakeoverEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TakeoverEvent")
    }
}

impl TakeoverEvent {
    fn create(server: &NameHolder) -> io::Result<Self> {
        let name = server.event_name();
        // SAFETY: `name` is NUL-terminated; a manual-reset event, unset.
        let handle = unsafe { CreateEventW(std::ptr::null(), 1, 0, name.as_ptr()) };
        if handle.is_null() {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            handle,
            closing: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Sets the event of `server`; false when it has none (it is gone).
    fn signal(server: &NameHolder) -> bool {
        let name = server.event_name();
        // SAFETY: `name` is NUL-terminated; the handle is closed below.
        unsafe {
            let handle = OpenEventW(EVENT_MODIFY_STATE, 0, name.as_ptr());
            if handle.is_null() {
                return false;
            }
            let set = SetEvent(handle) != 0;
            CloseHandle(handle);
            set
        }
    }

    /// Blocks until the event is set: true for a successor's word, false
    /// when the listener closes it.
    fn wait(&self) -> bool {
        // SAFETY: the handle is open for as long as `self` lives.
        unsafe { WaitForSingleObject(self.handle, INFINITE) };
        !self.closing.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Releases a thread blocked in `wait`.
    fn close(&self) {
        self.closing
            .store(true, std::sync::atomic::Ordering::SeqCst);
        // SAFETY: the handle is open for as long as `self` lives.
        unsafe { SetEvent(self.handle) };
    }
}

impl Drop for TakeoverEvent {
    fn drop(&mut self) {
        // SAFETY: created by CreateEventW and closed only here.
        unsafe { CloseHandle(self.handle) };
    }
}

/// A stable hash of a pipe name (FNV-1a over its lowercase UTF-16, since
/// pipe names are case-insensitive), for the names of the objects above.
fn name_hash(path: &Path) -> u64 {
    let lower = path.to_string_lossy().to_lowercase();
    lower
        .encode_utf16()
        .fold(0xcbf2_9ce4_8422_2325, |hash, unit| {
            (hash ^ u64::from(unit)).wrapping_mul(0x0000_0100_0000_01b3)
        })
}

/// Which server bound a pipe name last: a file in the temp directory
/// holding its pid and sequence number, read and written under an
/// exclusive lock that also makes the binds of one name go one at a time.
struct OwnerRecord {
    file: std::fs::File,
}

impl OwnerRecord {
    /// Waits (up to 10 s) for the name's lock.
    async fn lock(path: &Path) -> io::Result<Self> {
        let record =
            std::env::temp_dir().join(format!("pipehttp-takeover-{:016x}.pid", name_hash(path)));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&record)?;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Self { file }),
                Err(std::fs::TryLockError::WouldBlock)
                    if tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("another takeover of this name holds {}", record.display()),
                    ));
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(e),
            }
        }
    }

    fn read(&self, path: &Path) -> Option<NameHolder> {
        use std::io::{Read, Seek};
        let mut text = String::new();
        let mut file = &self.file;
        file.seek(io::SeekFrom::Start(0)).ok()?;
        file.read_to_string(&mut text).ok()?;
        let (pid, seq) = text.trim().split_once(' ')?;
        Some(NameHolder {
            pid: pid.parse().ok()?,
            seq: seq.parse().ok()?,
            hash: name_hash(path),
        })
    }

    fn write(self, server: &NameHolder) -> io::Result<()> {
        use std::io::{Seek, Write};
        let mut file = &self.file;
        file.seek(io::SeekFrom::Start(0))?;
        file.set_len(0)?;
        write!(file, "{} {}", server.pid, server.seq)?;
        // The lock goes with the handle.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_grants_the_owner_all_and_the_others_read_write() {
        assert_eq!(
            current_user_only_sddl("S-1-5-21-1-2-3-1001", &[]),
            "O:S-1-5-21-1-2-3-1001D:P(A;;GA;;;S-1-5-21-1-2-3-1001)"
        );
        assert_eq!(
            current_user_only_sddl("S-1-5-21-1-2-3-1001", &["S-1-5-32-545".into()]),
            "O:S-1-5-21-1-2-3-1001D:P(A;;GA;;;S-1-5-21-1-2-3-1001)(A;;GRGW;;;S-1-5-32-545)"
        );
    }

    #[test]
    fn descriptor_for_the_current_user_builds() {
        let sddl = current_user_descriptor(&PipeOptions::default()).unwrap();
        SecurityDescriptor::from_sddl(&sddl).expect("a descriptor for our own user");
        let me = TokenUserSid::of_process(None).unwrap();
        assert!(me.to_sddl().unwrap().starts_with("S-1-"));
        assert!(me.equals(&TokenUserSid::of_process(Some(std::process::id())).unwrap()));
    }

    #[test]
    fn accounts_resolve_by_name_and_by_sid() {
        assert_eq!(account_sid("s-1-5-32-544").unwrap(), ADMINISTRATORS);
        assert_eq!(
            account_sid(r"BUILTIN\Administrators").unwrap(),
            ADMINISTRATORS
        );
        assert!(account_sid("no-such-account-anywhere").is_err());
        assert!(account_sid("S-1-bogus").is_err());
    }
}
