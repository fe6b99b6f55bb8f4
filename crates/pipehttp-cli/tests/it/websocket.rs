//! WebSocket through `pipehttp proxy`, with client and server from Python's
//! `websockets` library: text, binary, a 4 MiB message and both closing
//! handshakes, from TCP to a pipe and from a pipe to TCP.

#![cfg(unix)]

use std::process::Command;

use testkit::{Spawned, tempdir, unique_name};

use crate::proxy::{installed, proxy};
use crate::proxy_peers::{PYTHON, peer_script};

/// Where Debian's python3-websockets puts the library.
const WEBSOCKETS: &str = "/usr/lib/python3/dist-packages/websockets/__init__.py";

fn ws(args: &[&str]) -> Command {
    let mut cmd = Command::new(PYTHON);
    cmd.arg(peer_script("ws.py")).args(args);
    cmd
}

/// Runs the client; it prints "ok" once every check passed.
fn client_passes(args: &[&str]) {
    let mut client = Spawned::start(ws(args));
    let status = client.wait_exit();
    assert!(
        status.success(),
        "the WebSocket client failed:\n{}",
        client.output()
    );
    client.wait_for_line("ok");
}

#[test]
fn websocket_from_tcp_to_a_pipe() {
    if !installed(WEBSOCKETS, "python3-websockets") {
        return;
    }
    let dir = tempdir().unwrap();
    let name = unique_name("ws-pipe");
    let socket = dir.path().join(format!("CoreFxPipe_{name}"));
    // A server on the pipe's socket file is a server on the pipe.
    let server = Spawned::start(ws(&["server", "unix", socket.to_str().unwrap()]));
    server.wait_for_line("listening");
    let front = proxy(
        &dir,
        "http://127.0.0.1:0",
        &format!("http://pipe:/{name}"),
        &[],
    );
    let uri = front.url(0).replace("http://", "ws://") + "/chat";
    client_passes(&["client", &uri]);
}

#[test]
fn websocket_from_a_pipe_to_tcp() {
    if !installed(WEBSOCKETS, "python3-websockets") {
        return;
    }
    let dir = tempdir().unwrap();
    let server = Spawned::start(ws(&["server", "tcp"]));
    let port = server
        .wait_for_line("listening ")
        .rsplit(' ')
        .next()
        .unwrap()
        .to_owned();
    let name = unique_name("ws-front");
    let _front = proxy(
        &dir,
        &format!("http://pipe:/{name}"),
        &format!("http://127.0.0.1:{port}"),
        &[],
    );
    let socket = dir.path().join(format!("CoreFxPipe_{name}"));
    client_passes(&["client", "ws://localhost/chat", socket.to_str().unwrap()]);
}
