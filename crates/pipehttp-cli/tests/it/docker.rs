//! The Docker CLI driving a real dockerd through `pipehttp proxy`, both
//! from Debian's docker.io: dockerd listens on a Unix socket in a temp
//! dir, the proxy puts it on a pipe, and the CLI talks to the pipe's
//! socket. Covered: plain requests, an image upload (`docker import`), the
//! attach stream of `docker run` (Docker's `Upgrade: tcp` hijack), stdin
//! closed half-way (`docker run -i`), `docker exec`, and the never-ending
//! streams of `docker logs -f` and `docker events`.
//!
//! dockerd needs root and runs with no networking of its own
//! (`--iptables=false --bridge=none`); containers run with `--network
//! none` from a busybox image made offline from Debian's busybox-static.
//! Without root, docker.io or busybox-static the test says it is skipped;
//! in CI (`CI=true`) it fails instead.

#![cfg(target_os = "linux")]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use testkit::{Serve, Spawned, TempDir, tempdir, unique_name};

use crate::proxy::{installed, proxy, skipped};

const DOCKERD: &str = "/usr/sbin/dockerd";
/// Debian's CLI, whatever else is on PATH.
const DOCKER: &str = "/usr/bin/docker";
const BUSYBOX: &str = "/bin/busybox";
const IMAGE: &str = "pipehttp-busybox:test";

/// A dockerd of the test's own, stopped with SIGTERM (so it stops its
/// containers and its containerd) when dropped.
struct Dockerd {
    process: Spawned,
    socket: PathBuf,
}

impl Dockerd {
    /// Starts dockerd with everything under `dir`; `None` if it cannot
    /// run here (said on stderr; a failure in CI).
    fn start(dir: &Path) -> Option<Self> {
        let socket = dir.join("docker.sock");
        let mut cmd = Command::new(DOCKERD);
        // Its own containerd namespaces, in case a system containerd is
        // running and this dockerd uses it.
        cmd.args(["--iptables=false", "--ip6tables=false", "--bridge=none"])
            .args(["--containerd-namespace", "pipehttp-test"])
            .args(["--containerd-plugins-namespace", "pipehttp-test-plugins"])
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("docker.pid"));
        let process = Spawned::start(cmd);
        // dockerd says when its API is up; it may also give up first.
        let ready = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            process.wait_for_line("API listen on");
        }));
        if ready.is_err() {
            let why = format!("dockerd cannot run here; its output:\n{}", process.output());
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
            skipped(&why);
            return None;
        }
        Some(Self { process, socket })
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        self.process.terminate();
        // Polled, not waited on with a deadline that panics: this may run
        // while a failed assertion unwinds.
        let stat = format!("/proc/{}/stat", self.process.id());
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            match std::fs::read_to_string(&stat) {
                Ok(s) if !s.contains(") Z ") => std::thread::sleep(Duration::from_millis(50)),
                _ => break,
            }
        }
    }
}

/// The Docker CLI pointed at `host`, with its own config dir.
fn docker(host: &Path, config: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(DOCKER);
    cmd.env("DOCKER_HOST", format!("unix://{}", host.display()))
        .env("DOCKER_CONFIG", config)
        .args(args);
    cmd
}

fn ok(mut cmd: Command, stdin: Option<&[u8]>) -> String {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        let input = input.to_vec();
        // Written from a thread so a full stdout pipe cannot block it;
        // dropping the pipe ends stdin.
        std::thread::spawn(move || pipe.write_all(&input));
    }
    let out: Output = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A root file system of busybox and a few of its applets, as a tar file
/// for `docker import`.
fn busybox_tar(dir: &TempDir) -> PathBuf {
    let root = dir.path().join("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy(BUSYBOX, root.join("bin/busybox")).unwrap();
    for applet in ["sh", "echo", "cat", "sleep", "true"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    let tar = dir.path().join("rootfs.tar");
    let status = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    tar
}

#[test]
fn the_docker_cli_drives_dockerd_through_the_proxy() {
    if !installed(DOCKERD, "docker.io") || !installed(BUSYBOX, "busybox-static") {
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        let why = "dockerd needs root";
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
        skipped(why);
        return;
    }
    let dir = tempdir().unwrap();
    let Some(dockerd) = Dockerd::start(dir.path()) else {
        return;
    };
    let name = unique_name("docker");
    let front: Serve = proxy(
        &dir,
        &format!("http://pipe:/{name}"),
        &format!("http://unix:{}", dockerd.socket.display()),
        &["-v"],
    );
    let pipe = front.path(0).to_owned();
    let config = dir.path().join("docker-config");
    let d = |args: &[&str]| docker(&pipe, &config, args);

    let version = ok(d(&["version", "--format", "{{.Server.APIVersion}}"]), None);
    assert!(version.trim().starts_with("1."), "{version}");

    // The image goes up as a streamed request body.
    let tar = busybox_tar(&dir);
    ok(d(&["import", tar.to_str().unwrap(), IMAGE]), None);
    let images = ok(d(&["images", "--format", "{{.Repository}}:{{.Tag}}"]), None);
    assert!(images.lines().any(|l| l == IMAGE), "{images}");

    // docker run attaches to the container's output over the hijacked
    // connection before starting it.
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .saturating_sub(1)
        .to_string();
    let hello = unique_name("hello");
    let out = ok(
        d(&[
            "run",
            "--rm",
            "--network",
            "none",
            "--name",
            &hello,
            IMAGE,
            "echo",
            "hi",
        ]),
        None,
    );
    assert_eq!(out, "hi\n");

    // stdin: the CLI closes its half when input ends; cat only ends, and
    // its output only comes back, if that half-close reaches the container.
    let input: String = (0..5000).map(|i| format!("line {i}\n")).collect();
    let out = ok(
        d(&["run", "-i", "--rm", "--network", "none", IMAGE, "cat"]),
        Some(input.as_bytes()),
    );
    assert!(
        out == input,
        "cat gave back {} of {} bytes",
        out.len(),
        input.len()
    );

    // A container that keeps printing, followed by logs -f and exec.
    let ticker = ok(
        d(&[
            "run",
            "-d",
            "--network",
            "none",
            IMAGE,
            "sh",
            "-c",
            "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.05; done",
        ]),
        None,
    );
    let ticker = ticker.trim();
    let follow = Spawned::start(d(&["logs", "-f", ticker]));
    follow.wait_for_line("tick 5");
    assert_eq!(
        ok(d(&["exec", ticker, "echo", "in exec"]), None),
        "in exec\n"
    );
    assert_eq!(
        ok(
            d(&["exec", "-i", ticker, "cat"]),
            Some(b"through exec stdin\n")
        ),
        "through exec stdin\n"
    );
    ok(d(&["rm", "-f", ticker]), None);
    let mut follow = follow;
    assert!(follow.wait_exit().success(), "{}", follow.output());

    // The event stream, from before the first run: it never ends by
    // itself, so every line came through as dockerd sent it.
    let events = Spawned::start(d(&[
        "events",
        "--since",
        &since,
        "--filter",
        "type=container",
        "--format",
        "{{.Status}} {{.Actor.Attributes.name}}",
    ]));
    for status in ["create", "start", "die", "destroy"] {
        events.wait_for_line(&format!("{status} {hello}"));
    }
    drop(events);

    // One access-log line per request, upgrades included.
    front.wait_for_line("/attach?");
    let attach = front.wait_for_line("/attach?");
    assert!(attach.contains(" 101 "), "{attach}");
}
