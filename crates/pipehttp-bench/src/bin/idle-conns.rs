//! Opens many idle keep-alive HTTP/1.1 connections to a server and reports
//! the server's resident memory before, with them open, and after they
//! have closed.
//!
//! ```text
//! idle-conns --unix PATH | --tcp HOST:PORT --count 10000 --server-pid PID [--settle-secs 1] [--hold-secs 0]
//! ```
//! `--hold-secs` keeps the connections open that much longer after the
//! measurement, for a profiler to look at the server meanwhile.
//! `--body-bytes N` makes each connection's request a `POST /echo` of N
//! bytes instead, to see what a connection keeps after a large body.
//! The baseline is taken after one request on a connection of its own, so
//! what a server allocates for its first request is not counted as the
//! connections' cost. Each connection sends one `GET /test` and reads its
//! answer, so the server holds a real, served, idle keep-alive connection,
//! not one still in the accept queue. Memory and descriptors are those of
//! the server and the processes below it (nginx's workers). Once the
//! connections close, the server's descriptors are watched until they are
//! back to the baseline's, so "after" is measured once the server has let
//! go of every connection. Prints one JSON object.

#[cfg(unix)]
fn main() {
    imp::main();
}

#[cfg(not(unix))]
fn main() {
    eprintln!("idle-conns reads /proc; it runs on Linux only");
}

#[cfg(unix)]
mod imp {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::os::unix::net::UnixStream;
    use std::time::{Duration, Instant};

    use pipehttp_bench::procfs;
    use pipehttp_bench::{Flags, HELLO};
    use serde_json::json;

    trait Duplex: Read + Write {}
    impl<T: Read + Write> Duplex for T {}

    /// How long the server may take to close every connection.
    const CLOSE_WAIT: Duration = Duration::from_secs(30);

    /// Allows as many descriptors as the hard limit lets this process have.
    fn raise_fd_limit() {
        // SAFETY: getrlimit/setrlimit with a valid, initialised struct.
        unsafe {
            let mut lim = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
                lim.rlim_cur = lim.rlim_max;
                libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            }
        }
    }

    fn connect(flags: &Flags) -> std::io::Result<Box<dyn Duplex>> {
        if let Some(path) = flags.value("--unix") {
            // A full accept queue answers EAGAIN: wait for the server to drain it.
            loop {
                match UnixStream::connect(path) {
                    Ok(s) => return Ok(Box::new(s)),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        let addr = flags.value("--tcp").unwrap_or("127.0.0.1:80");
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        Ok(Box::new(s))
    }

    /// One request: `GET /test` read until its `Hello world!` body has
    /// arrived, or with `body` bytes, `POST /echo` read until they are back.
    fn request(conn: &mut dyn Duplex, body: usize) -> std::io::Result<()> {
        if body == 0 {
            conn.write_all(b"GET /test HTTP/1.1\r\nHost: localhost\r\n\r\n")?;
        } else {
            let head = format!(
                "POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\n\
                 Content-Length: {body}\r\n\r\n"
            );
            conn.write_all(head.as_bytes())?;
            conn.write_all(&vec![b'x'; body])?;
        }
        let mut got = Vec::with_capacity(256);
        let mut buf = [0u8; 8192];
        let done = |got: &[u8]| match body {
            0 => got.ends_with(HELLO),
            n => got
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .is_some_and(|end| got.len() >= end + 4 + n),
        };
        while !done(&got) {
            match conn.read(&mut buf)? {
                0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                n => got.extend_from_slice(&buf[..n]),
            }
        }
        Ok(())
    }

    pub fn main() {
        let flags = Flags::from_env();
        let count: usize = flags.parse_or("--count", 10_000);
        let pid: u32 = flags.parse_or("--server-pid", 0);
        let settle = flags.seconds_or("--settle-secs", 1.0);
        let hold = flags.seconds_or("--hold-secs", 0.0);
        let body: usize = flags.parse_or("--body-bytes", 0);
        raise_fd_limit();
        let tree = procfs::process_tree(pid);
        let rss = || procfs::rss_kib(&tree).unwrap_or_default();
        let fail = |what: String| -> ! {
            eprintln!("idle-conns: {what}");
            std::process::exit(1)
        };
        let open = |i: usize| {
            let mut conn =
                connect(&flags).unwrap_or_else(|e| fail(format!("connection {i} failed: {e}")));
            if let Err(e) = request(&mut *conn, body) {
                fail(format!("request on connection {i} failed: {e}"));
            }
            conn
        };

        drop(open(0));
        std::thread::sleep(settle);
        let before = rss();
        let fds_before = procfs::open_fds(&tree);
        let start = Instant::now();
        let conns: Vec<_> = (1..=count).map(open).collect();
        let opened_in = start.elapsed();
        std::thread::sleep(settle);
        let with = rss();
        if !hold.is_zero() {
            eprintln!("idle-conns: {count} connections open; holding them for {hold:?}");
            std::thread::sleep(hold);
        }
        drop(conns);
        let closing = Instant::now();
        while procfs::open_fds(&tree) > fds_before && closing.elapsed() < CLOSE_WAIT {
            std::thread::sleep(Duration::from_millis(10));
        }
        let closed_in = closing.elapsed();
        std::thread::sleep(settle);
        let after = rss();
        println!(
            "{}",
            json!({
                "connections": count,
                "opened_in_s": opened_in.as_secs_f64(),
                "closed_in_s": closed_in.as_secs_f64(),
                "server_pid": pid,
                "server_processes": tree.len(),
                "server_rss_kib_before": before.0,
                "server_rss_kib_with": with.0,
                "server_rss_kib_after_close": after.0,
                "server_peak_rss_kib": after.1,
                "per_connection_bytes": (with.0.saturating_sub(before.0) * 1024) as f64 / count.max(1) as f64,
            })
        );
    }
}
