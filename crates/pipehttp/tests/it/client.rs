//! The client library end to end, through real sockets: against pipehttp's
//! own server on pipes, Unix sockets and TCP, against a hand-served
//! listener that counts connections, and (Unix) against Python's and
//! nginx's HTTP servers. Every test has its own pipe names and temp dirs.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::sample::{RepeatBody, SampleApp};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use pipehttp::address::{Endpoint, PipeName};
use pipehttp::client::{Body, RetryPolicy};
use pipehttp::server::BoundAddress;
use pipehttp::transport::pipe_endpoint;
use pipehttp::transport::{Listener, Transport};
use pipehttp::{Client, Error, PipeOptions, Server};
use testkit::{assert_same_bytes, pseudo_random, unique_name};

use crate::client_robustness::{Misbehaving, hold, replying};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A fresh pipe name and its listen address `http://pipe:/NAME`.
fn fresh_pipe(prefix: &str) -> (String, String) {
    let name = unique_name(prefix);
    let url = format!("http://pipe:/{name}");
    (name, url)
}

/// The sample app served in this process. Dropping it stops the server.
struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<pipehttp::Result<()>>,
    addresses: Vec<BoundAddress>,
}

/// Binds `url` and serves the sample app; clients may connect on return.
async fn start(url: &str) -> Running {
    let server = Server::builder()
        .listen(url)
        .bind()
        .await
        .unwrap_or_else(|e| panic!("cannot bind {url}: {e}"));
    let addresses = server.local_addresses();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.serve_with_shutdown(SampleApp::new(), async {
        let _ = stopped.await;
    }));
    Running {
        stop,
        task,
        addresses,
    }
}

impl Running {
    /// Asks for a graceful stop and waits until the server has finished.
    async fn stop(self) {
        let _ = self.stop.send(());
        self.task
            .await
            .expect("the server task panicked")
            .expect("the server failed");
    }
}

/// A hand-served listener: counts the connections it accepts and answers
/// every request with `METHOD HOST PATH?QUERY`, over HTTP/1.1 or HTTP/2.
struct Counting {
    accepts: Arc<AtomicUsize>,
    _task: AbortOnDrop,
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn counting_server(url: &str) -> Counting {
    let address = url.parse().unwrap();
    let listener = Listener::bind(&address, &PipeOptions::default())
        .await
        .unwrap();
    let accepts = Arc::new(AtomicUsize::new(0));
    let count = accepts.clone();
    let task = tokio::spawn(async move {
        loop {
            let conn = listener.accept().await.expect("accept");
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|req: Request<hyper::body::Incoming>| {
                    let host = req
                        .headers()
                        .get(http::header::HOST)
                        .map(|h| h.to_str().unwrap().to_owned())
                        .or_else(|| req.uri().authority().map(ToString::to_string))
                        .unwrap_or_default();
                    let path = req
                        .uri()
                        .path_and_query()
                        .map(ToString::to_string)
                        .unwrap_or_default();
                    let text = format!("{} {host} {path}", req.method());
                    async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text)))) }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(conn), service)
                    .await;
            });
        }
    });
    Counting {
        accepts,
        _task: AbortOnDrop(task),
    }
}

/// A default client, which speaks HTTP/1.1 to pipehttp's server, and one
/// with HTTP/2 prior knowledge; each with the version it is answered in.
fn http1_and_http2_clients() -> [(Client, Version); 2] {
    [
        (Client::new(), Version::HTTP_11),
        (
            Client::builder().http2_prior_knowledge().build(),
            Version::HTTP_2,
        ),
    ]
}

/// POST `body` to `target` and return the answer's body text.
async fn post_text(client: &Client, target: &str, body: &'static str) -> String {
    let res = client.post(target).body(body).send().await.unwrap();
    res.text().await.unwrap()
}

/// GET `target`, which must be answered.
async fn get(client: &Client, target: &str) -> pipehttp::client::Response {
    client
        .get(target)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {target}: {e}"))
}

/// GET `target` and return the status, version and body text.
async fn get_text(client: &Client, target: &str) -> (StatusCode, Version, String) {
    let res = get(client, target).await;
    let (status, version) = (res.status(), res.version());
    (status, version, res.text().await.unwrap())
}

// --- pipehttp's own server ---------------------------------------------

#[tokio::test]
async fn pipe_http1_get_returns_sample_body_from_server_process() {
    let (_, url) = fresh_pipe("h1");
    let _server = start(&url).await;
    let res = get(&Client::new(), &format!("{url}:/test")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.version(), Version::HTTP_11);
    assert_eq!(
        res.headers()["content-type"],
        "text/plain; charset=utf-8",
        "the sample app's content type"
    );
    let peer = res
        .peer()
        .expect("a pipe response carries the server's peer info");
    assert_eq!(peer.transport, Transport::Pipe);
    assert_eq!(peer.pid, Some(std::process::id()), "served by this process");
    assert_eq!(res.text().await.unwrap(), "Hello world!");
}

#[tokio::test]
async fn pipe_http2_prior_knowledge_is_answered_in_http2() {
    let (_, url) = fresh_pipe("h2");
    let _server = start(&url).await;
    let client = Client::builder().http2_prior_knowledge().build();
    let (status, version, body) = get_text(&client, &format!("{url}:/test")).await;
    assert_eq!((status, version), (StatusCode::OK, Version::HTTP_2));
    assert_eq!(body, "Hello world!");
}

#[tokio::test]
async fn tcp_port_zero_server_is_reached_on_its_bound_port_in_http1_and_http2() {
    let server = start("http://127.0.0.1:0").await;
    let port = match server.addresses[0].address.endpoint() {
        Endpoint::Tcp { port, .. } => *port,
        other => panic!("a TCP address was bound, not {other:?}"),
    };
    assert_ne!(port, 0, "local_addresses() reports the real port");
    let target = format!("http://127.0.0.1:{port}/test");

    for (client, version) in http1_and_http2_clients() {
        let (status, got, body) = get_text(&client, &target).await;
        assert_eq!((status, got), (StatusCode::OK, version));
        assert_eq!(body, "Hello world!");
    }
}

#[tokio::test]
async fn whoami_reports_this_process_as_the_caller() {
    let (_, url) = fresh_pipe("whoami");
    let _server = start(&url).await;
    let res = get(&Client::new(), &format!("{url}:/whoami")).await;
    let json: serde_json::Value = res.json().await.unwrap();
    assert_eq!(json["transport"], "pipe");
    assert_eq!(json["pid"], std::process::id());
}

#[tokio::test]
async fn post_and_put_echo_body_and_content_type() {
    let (_, url) = fresh_pipe("echo");
    let _server = start(&url).await;
    let client = Client::new();

    let res = client
        .post(format!("{url}:/echo"))
        .json(&serde_json::json!({"id": 7, "name": "pipe"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-type"], "application/json");
    let back: serde_json::Value = res.json().await.unwrap();
    assert_eq!(back, serde_json::json!({"id": 7, "name": "pipe"}));

    let binary = pseudo_random(100_000, 1);
    let res = client
        .put(format!("{url}:/echo"))
        .header("content-type", "application/octet-stream")
        .body(binary.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "application/octet-stream");
    assert_same_bytes(&res.bytes().await.unwrap(), &binary);
}

#[tokio::test]
async fn method_and_status_reach_the_caller_unchanged() {
    let (_, url) = fresh_pipe("status");
    let _server = start(&url).await;
    let client = Client::new();
    let res = client.delete(format!("{url}:/echo")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    let res = get(&client, &format!("{url}:/nowhere")).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(res.text().await.unwrap(), "not found");
}

#[tokio::test]
async fn body_streamed_from_a_reader_echoes_back_intact() {
    let (_, url) = fresh_pipe("stream");
    let _server = start(&url).await;
    let data = pseudo_random(8 * 1024 * 1024, 2);
    let reader = std::io::Cursor::new(data.clone());
    let res = Client::new()
        .post(format!("{url}:/echo"))
        .body(Body::from_reader(reader))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_same_bytes(&res.bytes().await.unwrap(), &data);
}

#[tokio::test]
async fn large_download_arrives_intact_chunk_by_chunk() {
    let (_, url) = fresh_pipe("bytes");
    let _server = start(&url).await;
    let len: u64 = 20 * 1024 * 1024 + 3;
    let mut res = get(&Client::new(), &format!("{url}:/bytes/{len}")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let mut offset = 0u64;
    while let Some(chunk) = res.chunk().await.unwrap() {
        for &b in chunk.iter() {
            assert_eq!(b, RepeatBody::byte_at(offset), "byte {offset}");
            offset += 1;
        }
    }
    assert_eq!(offset, len);
}

#[tokio::test]
async fn current_user_only_client_accepts_a_server_of_its_own_user() {
    let (_, url) = fresh_pipe("same-user");
    let _server = start(&url).await;
    let client = Client::builder().current_user_only(true).build();
    let (status, _, body) = get_text(&client, &format!("{url}:/test")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "Hello world!");
}

// --- connections: reuse, Host, timeouts --------------------------------

/// Sends 20 GETs one after another with `client`, each answered in
/// `version`, and checks they all went over one connection.
async fn reuses_one_connection(prefix: &str, client: Client, version: Version) {
    let (_, url) = fresh_pipe(prefix);
    let server = counting_server(&url).await;
    for i in 0..20 {
        let (status, got, body) = get_text(&client, &format!("{url}:/n/{i}")).await;
        assert_eq!((status, got), (StatusCode::OK, version));
        assert_eq!(body, format!("GET localhost /n/{i}"));
    }
    assert_eq!(server.accepts.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn http1_and_http2_clients_reuse_one_connection_for_20_sequential_requests() {
    for (client, version) in http1_and_http2_clients() {
        reuses_one_connection("reuse", client, version).await;
    }
}

#[tokio::test]
async fn clones_of_a_client_share_its_pooled_connection() {
    let (_, url) = fresh_pipe("clones");
    let server = counting_server(&url).await;
    let client = Client::new();
    for _ in 0..5 {
        let (status, _, _) = get_text(&client.clone(), &format!("{url}:/")).await;
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(server.accepts.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn pipe_request_sends_host_localhost_method_path_and_query() {
    let (_, url) = fresh_pipe("host");
    let _server = counting_server(&url).await;
    let client = Client::new();
    let (_, _, body) = get_text(&client, &format!("{url}:/a/b?x=1&y=two")).await;
    assert_eq!(body, "GET localhost /a/b?x=1&y=two");
    let res = client.request(Method::PATCH, &url).send().await.unwrap();
    assert_eq!(
        res.text().await.unwrap(),
        "PATCH localhost /",
        "no path is /"
    );
}

/// The per-request timeout of the two tests below.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(500);

/// GET `/test` from `server` with a per-request timeout of `REQUEST_TIMEOUT`.
async fn get_with_timeout(server: &Misbehaving) -> pipehttp::Result<pipehttp::client::Response> {
    Client::new()
        .get(server.target("/test"))
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await
}

#[tokio::test]
async fn request_to_a_server_that_never_answers_fails_with_timeout() {
    // Accepts and holds connections without ever answering.
    let server = Misbehaving::start("mute", hold).await;
    let err = get_with_timeout(&server)
        .await
        .expect_err("no answer ever comes");
    assert!(
        err.is_timeout() && err.timeout() == Some(REQUEST_TIMEOUT),
        "{err:?}"
    );
}

#[tokio::test]
async fn timeout_also_covers_a_body_that_stalls_after_the_head() {
    // A peer that promises 10 bytes, sends 3, and then says nothing more.
    let server = replying("stall", b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc").await;
    let res = get_with_timeout(&server)
        .await
        .expect("the head arrives in time");
    assert_eq!(res.status(), StatusCode::OK);
    let err = res.bytes().await.expect_err("the body never completes");
    assert!(err.is_timeout(), "{err:?}");
}

#[tokio::test]
async fn many_concurrent_requests_from_one_client_all_succeed() {
    let (_, url) = fresh_pipe("concurrent");
    let _server = start(&url).await;
    let client = Client::new();
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let client = client.clone();
            let target = format!("{url}:/echo");
            tokio::spawn(async move {
                let body = format!("request {i}");
                let res = client.post(target).body(body.clone()).send().await?;
                Ok::<_, Error>((body, res.text().await?))
            })
        })
        .collect();
    for task in tasks {
        let (sent, received) = task.await.unwrap().unwrap();
        assert_eq!(received, sent);
    }
}

// --- waiting for a server, and its restart ------------------------------

/// GETs `/test` with `client` from a new pipe that no server listens on
/// yet, checks that after `waiting` the request is still waiting for one
/// (not done or failed), then starts the server: the request is answered.
async fn answered_once_its_server_appears(prefix: &str, client: Client, waiting: Duration) {
    let (_, url) = fresh_pipe(prefix);
    let target = format!("{url}:/test");
    let mut request = tokio::spawn(async move { client.get(target).send().await?.text().await });
    let early = tokio::time::timeout(waiting, &mut request).await;
    assert!(early.is_err(), "finished with no server: {early:?}");

    let _server = start(&url).await;
    let body = request.await.unwrap().unwrap();
    assert_eq!(body, "Hello world!");
}

#[tokio::test]
async fn request_started_before_its_server_exists_succeeds_once_it_appears() {
    let client = Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .build();
    answered_once_its_server_appears("later", client, Duration::from_millis(300)).await;
}

#[tokio::test]
async fn no_server_fails_within_connect_timeout_naming_the_pipe_and_its_path() {
    let (name, url) = fresh_pipe("absent");
    let client = Client::builder()
        .connect_timeout(Duration::from_secs(1))
        .build();
    let err = client
        .get(format!("{url}:/test"))
        .send()
        .await
        .expect_err("nothing listens");
    assert!(err.is_no_server(), "{err:?}");
    assert!(err.is_connect());
    let path = pipe_endpoint(&PipeName::new(&name).unwrap());
    let message = err.to_string();
    assert!(
        message.starts_with("no server is listening on pipe '"),
        "{message}"
    );
    assert!(
        message.contains(&format!("pipe '{name}' ({})", path.display())),
        "names the pipe and its path: {message}"
    );
    assert!(
        message.ends_with(": start it, or check the name"),
        "{message}"
    );
}

#[tokio::test]
async fn retry_policy_tries_again_after_the_connect_timeout_ran_out() {
    let client = Client::builder()
        .connect_timeout(Duration::from_millis(100))
        .retry(RetryPolicy::new(5, Duration::from_millis(300)))
        .build();
    // Past the first connect timeout, without retries it would have failed.
    answered_once_its_server_appears("retry", client, Duration::from_millis(400)).await;
}

/// GETs `/test` with `client` from a server that is then stopped and
/// started again on the same name, and checks that the same client, with
/// no error handling, carries on in `version` past the dead pooled
/// connection.
async fn carries_on_after_a_restart(prefix: &str, client: Client, version: Version) {
    let (_, url) = fresh_pipe(prefix);
    let test = format!("{url}:/test");
    let first = start(&url).await;
    let (status, got, _) = get_text(&client, &test).await;
    assert_eq!((status, got), (StatusCode::OK, version));

    first.stop().await;
    let _second = start(&url).await;

    let (status, got, body) = get_text(&client, &test).await;
    assert_eq!(
        (status, got),
        (StatusCode::OK, version),
        "after the restart"
    );
    assert_eq!(body, "Hello world!");
    let echoed = post_text(&client, &format!("{url}:/echo"), "after restart").await;
    assert_eq!(echoed, "after restart");
}

#[tokio::test]
async fn same_http1_or_http2_client_carries_on_after_its_server_restarts_on_the_same_name() {
    for (client, version) in http1_and_http2_clients() {
        carries_on_after_a_restart("restart", client, version).await;
    }
}

// --- Unix: unix: paths, servers no one here wrote ------------------------

#[cfg(unix)]
mod unix {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    use testkit::fixture_files::write_file;
    use testkit::{Nginx, RemoveOnDrop, Spawned, tempdir, wait_accepting};

    use super::*;

    const PYTHON_SERVER: &str = r#"
import http.server, socket, socketserver, sys

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path == "/test":
            self.reply(200, b"hello from python")
        else:
            self.reply(404, b"no such page")

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.reply(200, self.headers.get("Host", "").encode() + b" " + body)

    def reply(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

class UnixHTTPServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    address_family = socket.AF_UNIX
    daemon_threads = True

    def server_bind(self):
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "localhost", 0

UnixHTTPServer(sys.argv[1], Handler).serve_forever()
"#;

    /// Python's standard-library HTTP server on the Unix socket `socket`.
    fn python_server(dir: &Path, socket: &Path) -> Spawned {
        let script = write_file(dir, "server.py", PYTHON_SERVER);
        let mut cmd = Command::new("python3");
        cmd.arg(&script).arg(socket);
        let server = Spawned::start(cmd);
        wait_accepting(socket, &server);
        server
    }

    #[tokio::test]
    async fn unix_socket_target_reaches_own_server() {
        let dir = tempdir().unwrap();
        let socket = dir.path().join("own.sock");
        let url = format!("http://unix:{}", socket.display());
        let _server = start(&url).await;
        let res = get(&Client::new(), &format!("{url}:/test")).await;
        let peer = res.peer().unwrap().clone();
        assert_eq!(peer.transport, Transport::Unix);
        // SAFETY: geteuid has no preconditions.
        assert_eq!(peer.uid, Some(unsafe { libc::geteuid() }));
        assert_eq!(res.text().await.unwrap(), "Hello world!");
    }

    #[tokio::test]
    async fn python_http_server_on_a_unix_socket_answers_get_and_post() {
        let dir = tempdir().unwrap();
        let socket = dir.path().join("python.sock");
        let server = python_server(dir.path(), &socket);
        let base = format!("http://unix:{}", socket.display());
        let client = Client::new();

        let res = get(&client, &format!("{base}:/test")).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.version(), Version::HTTP_11);
        let banner = res.headers()["server"].to_str().unwrap().to_owned();
        assert!(banner.starts_with("BaseHTTP/"), "Python answered: {banner}");
        assert_eq!(res.peer().unwrap().pid, Some(server.id()));
        assert_eq!(res.text().await.unwrap(), "hello from python");

        let echoed = post_text(&client, &format!("{base}:/anything"), "posted").await;
        assert_eq!(echoed, "localhost posted");

        let (status, _, _) = get_text(&client, &format!("{base}:/missing")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn pipe_name_reaches_a_foreign_server_at_the_dotnet_socket_path() {
        // What a .NET NamedPipeServerStream would bind for this name.
        let name = unique_name("dotnet");
        let tmp = std::env::var_os("TMPDIR")
            .filter(|d| !d.is_empty())
            .map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
        let socket = tmp.join(format!("CoreFxPipe_{name}"));
        assert_eq!(pipe_endpoint(&PipeName::new(&name).unwrap()), socket);
        let _cleanup = RemoveOnDrop(socket.clone());
        let dir = tempdir().unwrap();
        let _server = python_server(dir.path(), &socket);

        let (status, _, body) =
            get_text(&Client::new(), &format!("http://pipe:/{name}:/test")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "hello from python");
    }

    #[tokio::test]
    async fn nginx_on_a_unix_socket_answers_on_one_kept_alive_connection() {
        let nginx = Nginx::start(|dir, _| {
            let d = dir.display();
            format!(
                r#"
    log_format conn '$connection $connection_requests $request';
    access_log {d}/access.log conn;
    server {{
        listen unix:{d}/nginx.sock;
        location / {{ return 200 "hello from nginx"; }}
    }}
"#
            )
        });
        let socket = nginx.dir().join("nginx.sock");

        let client = Client::new();
        let target = format!("http://unix:{}:/", socket.display());
        for _ in 0..5 {
            let res = get(&client, &target).await;
            assert_eq!(res.status(), StatusCode::OK);
            let banner = res.headers()["server"].to_str().unwrap().to_owned();
            assert!(banner.starts_with("nginx"), "nginx answered: {banner}");
            assert_eq!(res.peer().unwrap().pid, Some(nginx.id()));
            assert_eq!(res.text().await.unwrap(), "hello from nginx");
        }

        // nginx logs each request with its connection number: all one.
        let log = nginx.access_log(5);
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), 5, "{log}");
        let connection = lines[0].split(' ').next().unwrap();
        for (i, line) in lines.iter().enumerate() {
            assert_eq!(
                *line,
                format!("{connection} {} GET / HTTP/1.1", i + 1),
                "{log}"
            );
        }
    }
}
