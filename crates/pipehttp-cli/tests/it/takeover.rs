//! `pipehttp serve --takeover` under load: 8 client tasks send 5,000
//! requests through one shared `pipehttp::Client` while the server is
//! replaced three times; not one request may fail, every old server must
//! drain and exit 0 by itself, and requests must reach each new server.
//! Then two edges of the handover: an old server with every connection
//! slot taken, and a request still in the listen queue when it drains.

#![cfg(unix)]

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use pipehttp::Client;
use pipehttp::address::PipeName;
use pipehttp::transport::pipe_endpoint;
use testkit::{RemoveOnDrop, Serve};
use tokio::sync::watch;

const BIN: &str = env!("CARGO_BIN_EXE_pipehttp");
const REQUESTS: usize = 5_000;
const TASKS: usize = 8;
const TAKEOVERS: usize = 3;
/// Requests per stretch: takeover k happens within the k-th stretch.
const STRETCH: usize = REQUESTS / (TAKEOVERS + 1);
/// How far into a stretch the next takeover starts.
const LEAD: usize = STRETCH / 4;

/// `pipehttp serve --urls http://pipe:/NAME EXTRA…`.
fn serve_command(name: &str, extra: &[&str]) -> Command {
    let mut cmd = testkit::command(BIN, None);
    cmd.arg("serve")
        .arg("--urls")
        .arg(format!("http://pipe:/{name}"))
        .args(extra);
    cmd
}

/// The same, started, once it listens.
fn serve_with(name: &str, extra: &[&str]) -> Serve {
    Serve::start(serve_command(name, extra), 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_thousand_requests_across_three_takeovers_all_succeed() {
    let name = testkit::unique_name("takeover");
    let path = pipe_endpoint(&PipeName::new(&name).unwrap());
    let _cleanup = RemoveOnDrop(path.clone());
    let first = serve_with(&name, &[]);
    let mut server_pids = vec![first.id()];

    let client = Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(20))
        .build();
    let target = format!("http://pipe:/{name}:/test");

    // Requests handed out, requests finished, and takeovers started so far.
    let next = Arc::new(AtomicUsize::new(0));
    let (done_tx, done_rx) = watch::channel(0usize);
    let done_tx = Arc::new(done_tx);
    let (started_tx, started_rx) = watch::channel(0usize);
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let answered_by = Arc::new(Mutex::new(BTreeSet::<u32>::new()));

    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let (client, target, next, done_tx) = (
            client.clone(),
            target.clone(),
            next.clone(),
            done_tx.clone(),
        );
        let mut started_rx = started_rx.clone();
        let (failures, answered_by) = (failures.clone(), answered_by.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                if n >= REQUESTS {
                    break;
                }
                // Stretch k+1 starts only once takeover k has begun, so all
                // three happen while requests are still being sent.
                let needed = (n / STRETCH).min(TAKEOVERS);
                started_rx
                    .wait_for(|started| *started >= needed)
                    .await
                    .expect("the driver is alive");
                let outcome = async {
                    let res = client.get(target.as_str()).send().await?;
                    let status = res.status();
                    let pid = res.peer().and_then(|p| p.pid);
                    let text = res.text().await?;
                    Ok::<_, pipehttp::Error>((status, pid, text))
                }
                .await;
                match outcome {
                    Ok((status, pid, text)) if status == 200 && text == "Hello world!" => {
                        answered_by.lock().unwrap().extend(pid);
                    }
                    Ok((status, _, text)) => failures
                        .lock()
                        .unwrap()
                        .push(format!("request {n}: {status} {text:?}")),
                    Err(e) => failures.lock().unwrap().push(format!("request {n}: {e}")),
                }
                done_tx.send_modify(|done| *done += 1);
            }
        }));
    }

    // The driver: three takeovers in sequence, each started part way into
    // its stretch of requests, each waited on until the old server drained
    // and exited by itself.
    let driver_client = client.clone();
    let whoami = format!("http://pipe:/{name}:/whoami");
    let handle = tokio::runtime::Handle::current();
    let driver = tokio::task::spawn_blocking(move || {
        let mut current = first.into_process();
        let mut pids = Vec::new();
        for k in 1..=TAKEOVERS {
            let mut done_rx = done_rx.clone();
            handle
                .block_on(done_rx.wait_for(|done| *done >= (k - 1) * STRETCH + LEAD))
                .expect("the clients are alive");
            let successor = testkit::Spawned::start(serve_command(&name, &["--takeover"]));
            started_tx.send_replace(k);
            successor.wait_for_line("Now listening on:");
            let status = current.wait_exit();
            assert!(
                status.success(),
                "takeover {k}: the old server (pid {}) exited with {status}; its output:\n{}",
                current.id(),
                current.output()
            );
            assert!(
                current.output().contains("handing over"),
                "takeover {k}: the old server did not say it handed over; its output:\n{}",
                current.output()
            );
            // The old server is gone: whoever answers now is the new one.
            let (server_pid, caller_pid) = handle.block_on(async {
                let res = driver_client.get(whoami.as_str()).send().await.unwrap();
                let server_pid = res.peer().and_then(|p| p.pid);
                let body: serde_json::Value = res.json().await.unwrap();
                (server_pid, body["pid"].as_u64())
            });
            assert_eq!(
                server_pid,
                Some(successor.id()),
                "takeover {k}: /whoami was not answered by the new server"
            );
            assert_eq!(caller_pid, Some(u64::from(std::process::id())));
            pids.push(successor.id());
            current = successor;
        }
        (current, pids)
    });

    // The driver first: if it fails, its message is the one to see.
    let (mut last, pids) = driver.await.expect("driver");
    for task in tasks {
        task.await.expect("client task");
    }
    server_pids.extend(pids);

    let failures = failures.lock().unwrap().clone();
    let answered_by = answered_by.lock().unwrap().clone();
    let done = *done_tx.borrow();
    println!(
        "requests={done} failed={} takeovers={TAKEOVERS}",
        failures.len()
    );
    assert_eq!(done, REQUESTS);
    assert!(
        failures.is_empty(),
        "{} of {REQUESTS} requests failed across {TAKEOVERS} takeovers:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        answered_by.iter().all(|pid| server_pids.contains(pid)),
        "answers came from {answered_by:?}, servers were {server_pids:?}"
    );
    assert!(
        answered_by.contains(server_pids.last().unwrap()),
        "the last server answered none of the loop's requests: {answered_by:?}"
    );

    last.terminate();
    let status = last.wait_exit();
    assert!(status.success(), "the last server exited with {status}");
    assert!(!path.exists(), "{} left behind", path.display());
}

/// Sends `GET /test` on a raw connection and reads the answer, up to its
/// body (keep-alive) or to the end of the stream (`Connection: close`).
fn get_test(conn: &mut UnixStream, close: bool) -> std::io::Result<String> {
    let connection = if close { "close" } else { "keep-alive" };
    write!(
        conn,
        "GET /test HTTP/1.1\r\nHost: localhost\r\nConnection: {connection}\r\n\r\n"
    )?;
    read_answer(conn)
}

fn read_answer(conn: &mut UnixStream) -> std::io::Result<String> {
    conn.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.ends_with(b"Hello world!") {
        match conn.read(&mut buf)? {
            0 => break,
            n => answer.extend_from_slice(&buf[..n]),
        }
    }
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// A server on a new pipe named from `prefix` with one connection slot
/// (`--max-concurrent-connections 1`), which a keep-alive client holds:
/// the pipe's name, a guard that removes its socket, the server, and the
/// client's connection.
fn one_slot_held(prefix: &str) -> (String, RemoveOnDrop, Serve, UnixStream) {
    let name = testkit::unique_name(prefix);
    let path = pipe_endpoint(&PipeName::new(&name).unwrap());
    let cleanup = RemoveOnDrop(path.clone());
    let server = serve_with(&name, &["--max-concurrent-connections", "1"]);
    let mut held = UnixStream::connect(&path).unwrap();
    let answer = get_test(&mut held, false).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    (name, cleanup, server, held)
}

/// The successor asks the old server to hand over on a connection of its
/// own, which the old server must accept even when every connection slot
/// (`--max-concurrent-connections`) is taken by a keep-alive client.
#[test]
fn takeover_reaches_an_old_server_whose_connection_slots_are_all_taken() {
    let (name, _cleanup, mut old, mut held) = one_slot_held("takeover-full");
    let mut new = serve_with(&name, &["--takeover"]);
    // Handing over, the old server closes the idle keep-alive connection…
    let mut rest = Vec::new();
    held.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let closed = held.read_to_end(&mut rest);
    assert!(
        closed.is_ok(),
        "the old server never handed over ({closed:?}); successor:\n{}\nold server:\n{}",
        new.output(),
        old.output()
    );
    // …and exits by itself.
    let status = old.wait_exit();
    assert!(status.success(), "{status}\n{}", old.output());

    new.terminate();
    assert!(new.wait_exit().success(), "{}", new.output());
}

/// A client whose connection is still in the listen queue when a server
/// drains (the path a takeover and SIGTERM share) connected before the
/// stop and is owed an answer.
#[test]
fn a_request_queued_when_the_server_drains_is_answered() {
    // With the only slot held, the next connection waits in the listen
    // queue, its request sent.
    let (_name, cleanup, mut server, _held) = one_slot_held("drain-queued");
    let mut queued = UnixStream::connect(&cleanup.0).unwrap();
    queued
        .write_all(b"GET /test HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();

    server.terminate();
    let answer = read_answer(&mut queued);
    assert!(
        answer.as_ref().is_ok_and(|a| a.starts_with("HTTP/1.1 200")),
        "the queued request got {answer:?} instead of an answer; server:\n{}",
        server.output()
    );
    let status = server.wait_exit();
    assert!(status.success(), "{status}\n{}", server.output());
}
