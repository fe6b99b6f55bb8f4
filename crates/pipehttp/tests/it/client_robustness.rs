//! The client against servers that misbehave: garbage for an answer, a
//! close in the middle of the head or body, an endless body, silence.
//! Each server is a few lines on a raw [`Listener`]. Whatever it does, the
//! client must return a clear error (one that names the pipe) within its
//! timeouts, never hang and never panic.
//!
//! Everything here goes through pipe names, so it runs on Windows too.

use std::future::Future;
use std::sync::Arc;
use std::sync::Once;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pipehttp::transport::{Connection, Listener};
use pipehttp::{Client, Error, PipeOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

/// The request timeout the clients here use.
const TIMEOUT: Duration = Duration::from_secs(2);
/// Time on top of a timeout before the client counts as hung.
const SLACK: Duration = Duration::from_secs(3);

static WORKER_PANICS: AtomicUsize = AtomicUsize::new(0);

/// Counts panics on tokio's worker threads, where the client's connection
/// tasks run (the tests' own assertions run on the test threads).
fn count_worker_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current()
                .name()
                .is_some_and(|n| n.starts_with("tokio-runtime-worker"))
            {
                WORKER_PANICS.fetch_add(1, Ordering::SeqCst);
            }
            previous(info);
        }));
    });
}

/// A raw listener bound on a new pipe name; returns the name and the listener.
pub(crate) async fn bind_new_pipe(prefix: &str) -> (String, Listener) {
    let name = testkit::unique_name(prefix);
    let address = format!("http://pipe:/{name}").parse().unwrap();
    let listener = Listener::bind(&address, &PipeOptions::default())
        .await
        .unwrap_or_else(|e| panic!("cannot bind {name}: {e}"));
    (name, listener)
}

/// A server that runs `behave` on every connection it accepts.
pub(crate) struct Misbehaving {
    name: String,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Misbehaving {
    pub(crate) async fn start<F, Fut>(prefix: &str, behave: F) -> Self
    where
        F: Fn(Connection) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        count_worker_panics();
        let (name, listener) = bind_new_pipe(prefix).await;
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok(conn) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(behave(conn));
            }
        });
        Self {
            name,
            accepted,
            task,
        }
    }

    pub(crate) fn target(&self, path: &str) -> String {
        format!("http://pipe:/{}:{path}", self.name)
    }

    /// A name no server accepts on (none, or one that never accepts).
    fn nobody(name: String) -> Self {
        count_worker_panics();
        Self {
            name,
            accepted: Arc::new(AtomicUsize::new(0)),
            task: tokio::spawn(async {}),
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Misbehaving {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads until the end of a request head; false if the stream ended first.
pub(crate) async fn read_head(conn: &mut Connection) -> bool {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    true
}

/// Keeps a connection open, reading and dropping whatever comes, until the
/// client closes it.
pub(crate) async fn hold(mut conn: Connection) {
    let mut buf = [0u8; 4096];
    while matches!(conn.read(&mut buf).await, Ok(n) if n > 0) {}
}

fn client() -> Client {
    Client::builder()
        .timeout(TIMEOUT)
        .connect_timeout(TIMEOUT)
        .build()
}

/// Runs `call` and checks the client's promise: an error, not a hang (in
/// at most `TIMEOUT` + `SLACK`) and not a panic, whose message names the
/// pipe. Returns the error.
async fn fails_clearly<T: std::fmt::Debug>(
    server: &Misbehaving,
    call: impl Future<Output = pipehttp::Result<T>>,
) -> Error {
    let panics = WORKER_PANICS.load(Ordering::SeqCst);
    let started = Instant::now();
    let result = tokio::time::timeout(TIMEOUT + SLACK, call)
        .await
        .unwrap_or_else(|_| panic!("the client hung for {:?}", TIMEOUT + SLACK));
    let elapsed = started.elapsed();
    let err = match result {
        Ok(value) => panic!("the client took a broken answer as good: {value:?}"),
        Err(err) => err,
    };
    let message = err.to_string();
    println!("after {elapsed:.1?}: {message}");
    assert!(
        message.contains(&server.name),
        "the error does not name the pipe {}: {message}",
        server.name
    );
    assert!(!message.contains('\n'), "a multi-line error: {message}");
    assert_eq!(
        WORKER_PANICS.load(Ordering::SeqCst),
        panics,
        "a client task panicked"
    );
    err
}

/// A GET of `/` from `server`, which must fail clearly and in time.
async fn get_fails(server: &Misbehaving) -> Error {
    fails_clearly(server, client().get(server.target("/")).send()).await
}

/// The error of an exchange that failed at the HTTP level: no response
/// head came, or its body could not be read.
fn http_error(err: &Error) -> bool {
    err.is_request() || err.is_body()
}

fn assert_http_error(err: &Error) {
    assert!(http_error(err), "{err:?}");
}

/// The error of a body that ended before it was complete.
fn broke_off(err: &Error) -> bool {
    err.is_body() && err.to_string().contains("broke off")
}

/// A server that reads a request head, answers `reply`, and then holds the
/// connection open without another byte.
pub(crate) async fn replying(prefix: &str, reply: &'static [u8]) -> Misbehaving {
    Misbehaving::start(prefix, move |mut conn| async move {
        read_head(&mut conn).await;
        let _ = conn.write_all(reply).await;
        hold(conn).await;
    })
    .await
}

/// A server that reads a request head, answers `reply`, and closes the
/// connection.
async fn replying_then_closing(prefix: &str, reply: &'static [u8]) -> Misbehaving {
    Misbehaving::start(prefix, move |mut conn| async move {
        read_head(&mut conn).await;
        let _ = conn.write_all(reply).await;
    })
    .await
}

/// A server that reads a request head, answers `head`, and then sends
/// `piece` again and again, one every `every`, until the client goes.
async fn pacing(prefix: &str, head: &'static [u8], piece: Vec<u8>, every: Duration) -> Misbehaving {
    let piece = Arc::new(piece);
    Misbehaving::start(prefix, move |mut conn| {
        let piece = piece.clone();
        async move {
            read_head(&mut conn).await;
            let _ = conn.write_all(head).await;
            while conn.write_all(&piece).await.is_ok() {
                tokio::time::sleep(every).await;
            }
        }
    })
    .await
}

/// The response head a GET of `/` from `server` gets, which must come.
async fn head_from(server: &Misbehaving) -> pipehttp::client::Response {
    client()
        .get(server.target("/"))
        .send()
        .await
        .expect("a head")
}

fn is_timeout(err: &Error) -> bool {
    err.is_timeout()
}

fn timeout_or_request(err: &Error) -> bool {
    err.is_timeout() || err.is_request()
}

/// What a broken server sends after each request head.
#[derive(Clone, Copy)]
enum Serves {
    /// These bytes, then holds the connection open without another byte.
    Holds(&'static [u8]),
    /// These bytes, then closes the connection.
    Closes(&'static [u8]),
    /// `head`, then `piece` again and again, one every `every`.
    Paces {
        head: &'static [u8],
        piece: &'static [u8],
        every: Duration,
    },
}

impl Serves {
    async fn start(self) -> Misbehaving {
        match self {
            Serves::Holds(reply) => replying("broken", reply).await,
            Serves::Closes(reply) => replying_then_closing("broken", reply).await,
            Serves::Paces { head, piece, every } => {
                pacing("broken", head, piece.to_vec(), every).await
            }
        }
    }
}

/// Where a broken answer must make the exchange fail.
#[derive(Clone, Copy)]
enum FailsAt {
    /// `send()` fails: no usable response head comes.
    Head,
    /// A `200` head comes; reading its body fails.
    Body,
}

/// A server answering every request in the same broken way, and the
/// error the client must make of it.
struct Broken {
    /// What the case proves; its failure message starts with it.
    proves: &'static str,
    serves: Serves,
    fails_at: FailsAt,
    error: fn(&Error) -> bool,
}

/// An empty HTTP/2 SETTINGS frame, then a GOAWAY.
const H2_FRAMES: &[u8] = &[
    0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
];

const BROKEN: &[Broken] = &[
    Broken {
        proves: "garbage instead of a response is an error",
        serves: Serves::Holds(b"\x00\x01\x02 this is not HTTP at all\r\n\r\n"),
        fails_at: FailsAt::Head,
        error: http_error,
    },
    Broken {
        proves: "HTTP/2 frames to an HTTP/1 request are an error",
        serves: Serves::Holds(H2_FRAMES),
        fails_at: FailsAt::Head,
        error: http_error,
    },
    Broken {
        proves: "an invalid Content-Length is an error",
        serves: Serves::Holds(b"HTTP/1.1 200 OK\r\nContent-Length: 12abc\r\n\r\nHello world!"),
        fails_at: FailsAt::Head,
        error: http_error,
    },
    Broken {
        proves: "a close in the middle of the head is an error",
        serves: Serves::Closes(b"HTTP/1.1 200 OK\r\nContent-Le"),
        fails_at: FailsAt::Head,
        error: http_error,
    },
    Broken {
        proves: "a close in the middle of the body is an error",
        serves: Serves::Closes(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly this much"),
        fails_at: FailsAt::Body,
        error: broke_off,
    },
    Broken {
        proves: "a close in the middle of a chunked body is an error",
        serves: Serves::Closes(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n100\r\nshort",
        ),
        fails_at: FailsAt::Body,
        error: broke_off,
    },
    Broken {
        proves: "invalid chunk framing is an error",
        serves: Serves::Holds(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        ),
        fails_at: FailsAt::Body,
        error: Error::is_body,
    },
    Broken {
        proves: "a head without its body hits the timeout",
        serves: Serves::Holds(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"),
        fails_at: FailsAt::Body,
        error: is_timeout,
    },
    Broken {
        proves: "a body dribbled byte by byte hits the timeout",
        serves: Serves::Paces {
            head: b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n",
            piece: b"z",
            every: Duration::from_millis(100),
        },
        fails_at: FailsAt::Body,
        error: is_timeout,
    },
    Broken {
        proves: "endless informational responses hit the timeout",
        serves: Serves::Paces {
            head: b"",
            piece: b"HTTP/1.1 100 Continue\r\n\r\n",
            every: Duration::from_millis(10),
        },
        fails_at: FailsAt::Head,
        error: timeout_or_request,
    },
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_answers_are_clear_errors_of_their_kind() {
    // One case after the other on the test's thread: a failed assertion
    // there is not a panic on a worker, which the other cases would count.
    for case in BROKEN {
        // Shown with the failure of a check inside `fails_clearly`.
        println!("case: {}", case.proves);
        let server = case.serves.start().await;
        let err = match case.fails_at {
            FailsAt::Head => get_fails(&server).await,
            FailsAt::Body => {
                let res = head_from(&server).await;
                assert_eq!(res.status(), 200, "{}", case.proves);
                fails_clearly(&server, res.bytes()).await
            }
        };
        assert!((case.error)(&err), "{}: {err:?}", case.proves);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_response_head_is_an_error() {
    let server = Misbehaving::start("endlesshead", |mut conn| async move {
        read_head(&mut conn).await;
        let _ = conn.write_all(b"HTTP/1.1 200 OK\r\n").await;
        let line = b"X-Again: and again and again\r\n".repeat(1000);
        while conn.write_all(&line).await.is_ok() {}
    })
    .await;
    assert_http_error(&get_fails(&server).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_before_any_answer_is_an_error_after_one_retry() {
    let server = Misbehaving::start("closes", |mut conn| async move {
        read_head(&mut conn).await;
        drop(conn);
    })
    .await;
    assert_http_error(&get_fails(&server).await);
    // A GET is retried once on a fresh connection (the pooled-connection
    // case), and only once.
    assert_eq!(server.accepted(), 2);

    // A POST is not idempotent: no retry.
    let before = server.accepted();
    let err = fails_clearly(
        &server,
        client().post(server.target("/echo")).body("x").send(),
    )
    .await;
    assert!(err.is_request(), "{err:?}");
    assert_eq!(server.accepted() - before, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_body_ends_at_the_timeout() {
    // Endless but paced (1 KiB every 10 ms), so the body collected until the
    // timeout stays small.
    let chunk = [b"400\r\n".as_slice(), &[b'x'; 0x400], b"\r\n"].concat();
    let server = pacing(
        "endlessbody",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        chunk,
        Duration::from_millis(10),
    )
    .await;
    let started = Instant::now();
    let res = head_from(&server).await;
    let err = fails_clearly(&server, res.bytes()).await;
    assert!(is_timeout(&err), "{err:?}");
    assert!(
        started.elapsed() >= TIMEOUT,
        "timed out early, after {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_fast_body_can_be_read_in_part_and_dropped() {
    // As fast as the pipe takes it: the caller reads some chunks and stops;
    // dropping the response closes the connection, which the server sees.
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<()>();
    let closed_tx = std::sync::Mutex::new(Some(closed_tx));
    let closed_tx = Arc::new(closed_tx);
    let server = Misbehaving::start("fastbody", move |mut conn| {
        let closed_tx = closed_tx.clone();
        async move {
            read_head(&mut conn).await;
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\n\r\n")
                .await;
            let block = vec![b'y'; 64 * 1024];
            while conn.write_all(&block).await.is_ok() {}
            if let Some(tx) = closed_tx.lock().unwrap().take() {
                let _ = tx.send(());
            }
        }
    })
    .await;
    let mut res = head_from(&server).await;
    let mut read = 0;
    while read < 4 * 1024 * 1024 {
        let chunk = tokio::time::timeout(TIMEOUT + SLACK, res.chunk())
            .await
            .expect("a chunk in time")
            .expect("a chunk")
            .expect("more body");
        read += chunk.len();
    }
    drop(res);
    tokio::time::timeout(TIMEOUT + SLACK, closed_rx)
        .await
        .expect("the server saw the connection close")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_hits_the_timeout() {
    let server = Misbehaving::start("silent", hold).await;
    let started = Instant::now();
    let err = get_fails(&server).await;
    assert!(is_timeout(&err), "{err:?}");
    assert!(started.elapsed() >= TIMEOUT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_accepts_hits_a_timeout() {
    // Bound, but accept() is never called: on Unix the connection waits in
    // the listen queue, on Windows for a pipe instance.
    let (name, listener) = bind_new_pipe("noaccept").await;
    let server = Misbehaving::nobody(name);
    let err = get_fails(&server).await;
    assert!(is_timeout(&err), "{err:?}");
    drop(listener);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_server_at_all_is_a_connect_error_within_the_connect_timeout() {
    let server = Misbehaving::nobody(testkit::unique_name("nobodyhome"));
    let client = Client::builder()
        .connect_timeout(Duration::from_millis(500))
        .build();
    let err = fails_clearly(&server, client.get(server.target("/")).send()).await;
    assert!(
        err.is_no_server() || (err.is_connect() && err.is_timeout()),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_still_works_after_every_kind_of_failure() {
    // One client through a series of broken servers, then a good one: a
    // failure leaves nothing behind in the pool that spoils the next call.
    let client = client();
    let garbage = replying_then_closing("seq-garbage", b"garbage\r\n\r\n").await;
    let silent = Misbehaving::start("seq-silent", hold).await;
    let good = Misbehaving::start("seq-good", |mut conn| async move {
        while read_head(&mut conn).await {
            if conn
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .await
                .is_err()
            {
                return;
            }
        }
    })
    .await;
    fails_clearly(&garbage, client.get(garbage.target("/")).send()).await;
    fails_clearly(&silent, client.get(silent.target("/")).send()).await;
    for _ in 0..3 {
        let res = client.get(good.target("/")).send().await.expect("served");
        assert_eq!(res.text().await.unwrap(), "ok");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_sent_before_the_upload_ends_is_the_response() {
    // A server that refuses an upload as soon as it sees the head (413),
    // and closes without reading the body, as servers without a lingering
    // close do. The client must report the 413 it can read, not the broken
    // pipe its next write meets.
    let server = replying_then_closing(
        "early413",
        b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbig!",
    )
    .await;
    let client = client();
    for _ in 0..20 {
        let body = vec![b'x'; 8 * 1024 * 1024];
        let res = client
            .post(server.target("/echo"))
            .body(body)
            .send()
            .await
            .expect("the server's early answer, not a write error");
        assert_eq!(res.status(), 413);
        assert_eq!(res.text().await.unwrap(), "big!");
    }
}
