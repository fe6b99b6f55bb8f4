//! Windows named pipes: behaviour that only a real pipe shows. These tests
//! run under Wine in CI; where Wine does not enforce a behaviour they say so
//! and skip.
#![cfg(windows)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::sample::SampleApp;
use pipehttp::address::PipeName;
use pipehttp::transport::pipe_endpoint;
use pipehttp::{Client, Server};
use testkit::running_under_wine;
use tokio::net::windows::named_pipe::{ClientOptions, NamedPipeClient};
use tokio::sync::oneshot;

const ERROR_FILE_NOT_FOUND: i32 = 2;
const ERROR_PIPE_BUSY: i32 = 231;

/// A sample server on a fresh pipe, stopped when the guard drops.
struct Running {
    name: String,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn start(builder: pipehttp::ServerBuilder, prefix: &str) -> Running {
    let name = testkit::unique_name(prefix);
    let server = builder
        .listen(format!("http://pipe:/{name}"))
        .bind()
        .await
        .unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server.serve_with_shutdown(SampleApp::new(), async {
        let _ = stopped.await;
    }));
    Running {
        name,
        stop: Some(stop),
    }
}

/// Opens the pipe, waiting while every instance is busy: the server makes
/// the next instance right after a client takes one, but not instantly.
async fn open_when_free(pipe: &std::path::Path) -> NamedPipeClient {
    let deadline = tokio::time::Instant::now() + testkit::READY_TIMEOUT;
    loop {
        match ClientOptions::new().open(pipe) {
            Ok(raw) => return raw,
            Err(e) if e.raw_os_error() == Some(ERROR_PIPE_BUSY) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the pipe stayed busy"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(e) => panic!("cannot open {}: {e}", pipe.display()),
        }
    }
}

fn path(name: &str) -> std::path::PathBuf {
    pipe_endpoint(&PipeName::new(name).unwrap())
}

/// Opens `count` instances of `server`'s pipe one after the other, keeping
/// each open so that the next is a new instance, and passes each to
/// `check`. With more than the server's queue, later instances are made by
/// its instance tasks after the first.
async fn each_instance(server: &Running, count: usize, mut check: impl FnMut(&NamedPipeClient)) {
    let pipe = path(&server.name);
    let mut held = Vec::new();
    for _ in 0..count {
        let raw = open_when_free(&pipe).await;
        check(&raw);
        held.push(raw);
    }
}

/// 64 clients at once against 4 waiting instances: every one is served,
/// and no client ever finds the name without an instance (a raw open gets
/// a connection or "all instances busy", never "no such pipe").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_clients_than_instances_are_all_served_and_the_name_never_unserved() {
    let server = start(Server::builder().listener_queue_count(4), "queue").await;
    let pipe = path(&server.name);
    let client = Client::new();
    let unserved = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let client = client.clone();
            let target = format!("http://pipe:/{}:/test", server.name);
            let pipe = pipe.clone();
            let unserved = unserved.clone();
            tokio::spawn(async move {
                for _ in 0..10 {
                    match ClientOptions::new().open(&pipe) {
                        Ok(raw) => drop(raw),
                        Err(e) if e.raw_os_error() == Some(ERROR_FILE_NOT_FOUND) => {
                            unserved.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => assert_eq!(e.raw_os_error(), Some(ERROR_PIPE_BUSY), "{e}"),
                    }
                    let text = client.get(&target).send().await?.text().await?;
                    assert_eq!(text, "Hello world!");
                }
                Ok::<_, pipehttp::Error>(())
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(unserved.load(Ordering::Relaxed), 0, "the name was unserved");
}

/// With every instance taken, a raw open gets ERROR_PIPE_BUSY; the client
/// waits through that and is served once a connection closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_waits_through_pipe_busy_until_an_instance_frees() {
    let server = start(
        Server::builder()
            .listener_queue_count(1)
            .max_concurrent_connections(Some(1)),
        "busy",
    )
    .await;
    let pipe = path(&server.name);
    // Take instances until the name answers "busy": one served connection,
    // one in the waiting room, and the instances already connected behind.
    let mut held = Vec::new();
    let busy = loop {
        match ClientOptions::new().open(&pipe) {
            Ok(raw) => held.push(raw),
            Err(e) if e.raw_os_error() == Some(ERROR_PIPE_BUSY) => break true,
            Err(e) => panic!("unexpected open error: {e}"),
        }
        assert!(held.len() < 16, "the pipe never became busy");
    };
    assert!(busy);
    let target = format!("http://pipe:/{}:/test", server.name);
    let waiting = tokio::spawn(async move {
        Client::builder()
            .connect_timeout(Duration::from_secs(30))
            .build()
            .get(&target)
            .send()
            .await?
            .text()
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "the request did not wait");
    drop(held);
    assert_eq!(waiting.await.unwrap().unwrap(), "Hello world!");
}

/// Every pipe instance, not only the first, carries the current-user DACL:
/// one allow entry, for our own SID, protected from inherited entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_instance_carries_the_current_user_dacl() {
    let server = start(Server::builder().listener_queue_count(2), "dacl").await;
    let me = security::current_user_sid();
    // More instances than the queue holds.
    each_instance(&server, 6, |raw| {
        let dacl = security::dacl_sddl(raw);
        assert!(dacl.starts_with("D:P("), "not protected: {dacl}");
        assert_eq!(dacl.matches('(').count(), 1, "more than one entry: {dacl}");
        assert!(dacl.starts_with("D:P(A;"), "not an allow entry: {dacl}");
        assert!(
            dacl.ends_with(&format!(";{me})")),
            "not our SID ({me}): {dacl}"
        );
    })
    .await;
}

/// The allow lists add a read/write entry per account (resolved by name or
/// SID) to every instance's descriptor, beside our own full-control entry,
/// and the descriptor names us as the owner, which clients check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_accounts_are_granted_in_every_instance_dacl() {
    let builder = Server::builder()
        .listener_queue_count(2)
        .allow_group(r"BUILTIN\Administrators")
        .allow_user("S-1-5-18");
    let server = start(builder, "allow").await;
    let me = security::current_user_sid();
    each_instance(&server, 4, |raw| {
        assert_eq!(security::owner_sid(raw), me);
        let dacl = security::dacl_sddl(raw);
        assert!(dacl.starts_with("D:P("), "not protected: {dacl}");
        let entries: Vec<&str> = dacl[4..].trim_end_matches(')').split(")(").collect();
        assert_eq!(entries.len(), 3, "{dacl}");
        let entry = |sids: &[&str]| {
            *entries
                .iter()
                .find(|e| sids.iter().any(|sid| e.ends_with(&format!(";{sid}"))))
                .unwrap_or_else(|| panic!("no entry for {sids:?}: {dacl}"))
        };
        let full = ["GA", "FA"];
        assert!(
            full.iter()
                .any(|r| entry(&[me.as_str()]).starts_with(&format!("A;;{r};"))),
            "{dacl}"
        );
        for others in [["BA", "S-1-5-32-544"], ["SY", "S-1-5-18"]] {
            let granted = entry(&others);
            assert!(granted.starts_with("A;;"), "{dacl}");
            assert!(
                !full
                    .iter()
                    .any(|r| granted.starts_with(&format!("A;;{r};"))),
                "{dacl}"
            );
        }
    })
    .await;
}

/// `pipe_sddl` is every instance's descriptor as given, as Kestrel's
/// `PipeSecurity`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipe_sddl_is_every_instance_descriptor() {
    let me = security::current_user_sid();
    let sddl = format!("D:P(A;;GA;;;{me})(A;;GR;;;WD)");
    let server = start(
        Server::builder()
            .listener_queue_count(1)
            .pipe_sddl(Some(sddl)),
        "sddl",
    )
    .await;
    each_instance(&server, 3, |raw| {
        let dacl = security::dacl_sddl(raw);
        assert!(dacl.starts_with("D:P("), "{dacl}");
        assert_eq!(dacl.matches('(').count(), 2, "{dacl}");
        assert!(dacl.contains(&format!(";{me})")), "{dacl}");
        assert!(
            dacl.contains(";WD)") || dacl.contains(";S-1-1-0)"),
            "{dacl}"
        );
    })
    .await;
}

/// A descriptor Windows cannot read, or an account it does not know, fails
/// the bind with one line naming the pipe and the option.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_descriptor_or_unknown_account_fails_the_bind() {
    let name = testkit::unique_name("badsd");
    for (builder, expected) in [
        (
            Server::builder().pipe_sddl(Some("not a descriptor".into())),
            "pipe_sddl",
        ),
        (
            Server::builder().allow_user("no-such-account-anywhere"),
            "allow_users: Windows knows no account 'no-such-account-anywhere'",
        ),
    ] {
        let err = builder
            .listen(format!("http://pipe:/{name}"))
            .bind()
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(err.is_builder(), "{err:?}");
        assert!(text.starts_with(&format!("pipe '{name}'")), "{text}");
        assert!(text.contains(expected), "{text}");
    }
}

/// A pipe whose DACL does not admit us is refused with a clear error that
/// names the pipe. Wine does not enforce DACLs, so there it is skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipe_that_does_not_admit_us_is_refused_clearly() {
    if running_under_wine() {
        println!("skipped: Wine does not enforce pipe DACLs");
        return;
    }
    let name = testkit::unique_name("denied");
    let _pipe = security::pipe_for_system_only(&path(&name));
    let err = Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .build()
        .get(format!("http://pipe:/{name}:/test"))
        .send()
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(err.is_connect(), "{text}");
    assert!(text.contains(&name), "{text}");
}

/// Remote clients are rejected: the pipe opened through the network
/// redirector (`\\127.0.0.1\pipe\NAME`) counts as remote. Wine has no
/// redirector, so there it is skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_clients_are_rejected() {
    if running_under_wine() {
        println!("skipped: Wine has no network redirector for remote pipe clients");
        return;
    }
    let server = start(Server::builder(), "remote").await;
    let remote = format!(r"\\127.0.0.1\pipe\{}", server.name);
    assert!(
        ClientOptions::new().open(&remote).is_err(),
        "a remote client reached the pipe"
    );
    let local = Client::new()
        .get(format!("http://pipe:/{}:/test", server.name))
        .send()
        .await
        .unwrap();
    assert_eq!(local.text().await.unwrap(), "Hello world!");
}

mod security {
    use std::os::windows::io::AsRawHandle;
    use std::path::Path;

    use tokio::net::windows::named_pipe::{NamedPipeClient, NamedPipeServer, ServerOptions};
    use windows_sys::Win32::Foundation::{CloseHandle, HANDLE, LocalFree};
    use windows_sys::Win32::Security::Authorization::{
        ConvertSecurityDescriptorToStringSecurityDescriptorW, ConvertSidToStringSidW,
        ConvertStringSecurityDescriptorToSecurityDescriptorW, GetSecurityInfo, SDDL_REVISION_1,
        SE_KERNEL_OBJECT,
    };
    use windows_sys::Win32::Security::{
        DACL_SECURITY_INFORMATION, GetTokenInformation, OBJECT_SECURITY_INFORMATION,
        OWNER_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR, SECURITY_ATTRIBUTES, TOKEN_QUERY,
        TOKEN_USER, TokenUser,
    };
    use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};

    fn wide(s: &str) -> Vec<u16> {
        s.encode_utf16().chain(std::iter::once(0)).collect()
    }

    /// Takes a LocalAlloc'ed, NUL-terminated UTF-16 string.
    unsafe fn take_string(p: *mut u16) -> String {
        // SAFETY: the caller passes a NUL-terminated string it owns.
        unsafe {
            let len = (0..).take_while(|&i| *p.add(i) != 0).count();
            let s = String::from_utf16_lossy(std::slice::from_raw_parts(p, len));
            LocalFree(p.cast());
            s
        }
    }

    /// Our user's SID, `S-1-5-…`.
    pub fn current_user_sid() -> String {
        // SAFETY: plain Win32 calls on our own process token, with buffers
        // sized by the first call.
        unsafe {
            let mut token: HANDLE = std::ptr::null_mut();
            assert_ne!(
                OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token),
                0
            );
            let mut len = 0;
            GetTokenInformation(token, TokenUser, std::ptr::null_mut(), 0, &mut len);
            let mut buf = vec![0u64; (len as usize).div_ceil(8)];
            assert_ne!(
                GetTokenInformation(token, TokenUser, buf.as_mut_ptr().cast(), len, &mut len),
                0
            );
            CloseHandle(token);
            let sid = (*buf.as_ptr().cast::<TOKEN_USER>()).User.Sid;
            let mut text = std::ptr::null_mut();
            assert_ne!(ConvertSidToStringSidW(sid, &mut text), 0);
            take_string(text)
        }
    }

    /// The DACL of the pipe instance behind a client handle, in SDDL.
    pub fn dacl_sddl(pipe: &NamedPipeClient) -> String {
        sddl(pipe, DACL_SECURITY_INFORMATION)
    }

    /// The owner of the pipe instance behind a client handle, as a SID string.
    pub fn owner_sid(pipe: &NamedPipeClient) -> String {
        let owner = sddl(pipe, OWNER_SECURITY_INFORMATION);
        owner.strip_prefix("O:").unwrap_or(&owner).to_owned()
    }

    /// The parts `info` of the descriptor of the pipe instance behind a
    /// client handle, in SDDL.
    fn sddl(pipe: &NamedPipeClient, info: OBJECT_SECURITY_INFORMATION) -> String {
        // SAFETY: the handle is open; the descriptor and string that the
        // calls allocate are freed here.
        unsafe {
            let mut sd: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
            let status = GetSecurityInfo(
                pipe.as_raw_handle(),
                SE_KERNEL_OBJECT,
                info,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                &mut sd,
            );
            assert_eq!(status, 0, "GetSecurityInfo failed: {status}");
            let mut text = std::ptr::null_mut();
            let ok = ConvertSecurityDescriptorToStringSecurityDescriptorW(
                sd,
                SDDL_REVISION_1,
                info,
                &mut text,
                std::ptr::null_mut(),
            );
            LocalFree(sd);
            assert_ne!(ok, 0);
            take_string(text)
        }
    }

    /// A pipe instance only SYSTEM may open, kept open while it lives.
    pub fn pipe_for_system_only(path: &Path) -> NamedPipeServer {
        let sddl = wide("D:P(A;;GA;;;SY)");
        // SAFETY: the SDDL is NUL-terminated; the descriptor lives until
        // the pipe is created, then is freed.
        unsafe {
            let mut sd: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
            assert_ne!(
                ConvertStringSecurityDescriptorToSecurityDescriptorW(
                    sddl.as_ptr(),
                    SDDL_REVISION_1,
                    &mut sd,
                    std::ptr::null_mut(),
                ),
                0
            );
            let mut attrs = SECURITY_ATTRIBUTES {
                nLength: size_of::<SECURITY_ATTRIBUTES>() as u32,
                lpSecurityDescriptor: sd,
                bInheritHandle: 0,
            };
            let pipe = ServerOptions::new()
                .create_with_security_attributes_raw(path, (&raw mut attrs).cast())
                .unwrap();
            LocalFree(sd);
            pipe
        }
    }
}
