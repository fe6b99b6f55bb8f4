//! The machine's floor, to put HTTP figures in proportion: a raw ping-pong
//! of 64-byte messages (round-trip latency) and a raw one-way stream
//! (bandwidth), over a Unix socket and over TCP loopback, with blocking
//! threads and with tokio (one single-threaded runtime per side, as a
//! client process and a server process would have).
//!
//! ```text
//! floor [--seconds 2] [--size 64] [--stream-mib 2048] [--chunk 262144]
//! ```
//! Prints one JSON object on stdout.

#[cfg(unix)]
fn main() {
    imp::main();
}

#[cfg(not(unix))]
fn main() {
    eprintln!("floor measures Unix sockets; it runs on Linux and macOS only");
}

#[cfg(unix)]
mod imp {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    use hdrhistogram::Histogram;
    use pipehttp_bench::{Flags, micros};
    use serde_json::{Value, json};
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

    pub fn main() {
        let flags = Flags::from_env();
        let seconds = flags.seconds_or("--seconds", 2.0);
        let size: usize = flags.parse_or("--size", 64);
        let stream_bytes: u64 = flags.parse_or::<u64>("--stream-mib", 2048) << 20;
        let chunk: usize = flags.parse_or("--chunk", 256 * 1024);

        let dir = std::env::temp_dir().join(format!("pipehttp-floor-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create a temp dir");
        let path = dir.join("floor.sock");

        let report = json!({
            "message_bytes": size,
            "stream_chunk_bytes": chunk,
            "unix": {
                "pingpong_blocking": pingpong_blocking(Kind::Unix(path.clone()), size, seconds),
                "pingpong_tokio": pingpong_tokio(Kind::Unix(path.clone()), size, seconds),
                "stream_blocking_bytes_per_s": stream_blocking(Kind::Unix(path.clone()), stream_bytes, chunk),
                "stream_tokio_bytes_per_s": stream_tokio(Kind::Unix(path.clone()), stream_bytes, chunk),
            },
            "tcp": {
                "pingpong_blocking": pingpong_blocking(Kind::Tcp, size, seconds),
                "pingpong_tokio": pingpong_tokio(Kind::Tcp, size, seconds),
                "stream_blocking_bytes_per_s": stream_blocking(Kind::Tcp, stream_bytes, chunk),
            },
        });
        let _ = std::fs::remove_dir_all(&dir);
        println!("{report}");
    }

    #[derive(Clone)]
    enum Kind {
        Unix(PathBuf),
        Tcp,
    }

    trait Duplex: Read + Write + Send + 'static {}
    impl<T: Read + Write + Send + 'static> Duplex for T {}

    /// A connected pair of sockets, (client, server), not yet tied to a
    /// thread or a runtime: the blocking runs use them as they are, the
    /// tokio runs register them with the runtime of the thread that ends up
    /// using them.
    enum Socket {
        Unix(UnixStream),
        Tcp(TcpStream),
    }

    fn pair(kind: &Kind) -> (Socket, Socket) {
        match kind {
            Kind::Unix(path) => {
                let _ = std::fs::remove_file(path);
                let listener = UnixListener::bind(path).expect("bind the floor socket");
                let client = UnixStream::connect(path).expect("connect");
                let (server, _) = listener.accept().expect("accept");
                (Socket::Unix(client), Socket::Unix(server))
            }
            Kind::Tcp => {
                let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
                let client = TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
                let (server, _) = listener.accept().expect("accept");
                client.set_nodelay(true).unwrap();
                server.set_nodelay(true).unwrap();
                (Socket::Tcp(client), Socket::Tcp(server))
            }
        }
    }

    impl Socket {
        fn into_blocking(self) -> Box<dyn Duplex> {
            match self {
                Socket::Unix(s) => Box::new(s),
                Socket::Tcp(s) => Box::new(s),
            }
        }

        fn into_async(self) -> Box<dyn AsyncDuplex> {
            match self {
                Socket::Unix(s) => {
                    s.set_nonblocking(true).unwrap();
                    Box::new(tokio::net::UnixStream::from_std(s).unwrap())
                }
                Socket::Tcp(s) => {
                    s.set_nonblocking(true).unwrap();
                    Box::new(tokio::net::TcpStream::from_std(s).unwrap())
                }
            }
        }
    }

    /// A connected pair of blocking sockets: (client, server).
    fn blocking_pair(kind: &Kind) -> (Box<dyn Duplex>, Box<dyn Duplex>) {
        let (client, server) = pair(kind);
        (client.into_blocking(), server.into_blocking())
    }

    fn summary(h: &Histogram<u64>, elapsed: Duration) -> Value {
        json!({
            "round_trips": h.len(),
            "round_trips_per_s": h.len() as f64 / elapsed.as_secs_f64(),
            "min_us": micros(h.min()),
            "p50_us": micros(h.value_at_quantile(0.5)),
            "p90_us": micros(h.value_at_quantile(0.9)),
            "p99_us": micros(h.value_at_quantile(0.99)),
            "mean_us": h.mean() / 1000.0,
        })
    }

    fn histogram() -> Histogram<u64> {
        Histogram::new_with_max(10_000_000_000, 3).expect("valid bounds")
    }

    fn nanos(d: Duration) -> u64 {
        u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1)
    }

    /// Two threads in blocking reads: the kernel hands each message straight
    /// to the waiting reader. The lowest round trip this machine has.
    fn pingpong_blocking(kind: Kind, size: usize, seconds: Duration) -> Value {
        let (mut client, mut server) = blocking_pair(&kind);
        let echo = std::thread::spawn(move || {
            let mut buf = vec![0u8; size];
            while server.read_exact(&mut buf).is_ok() {
                if server.write_all(&buf).is_err() {
                    break;
                }
            }
        });
        let msg = vec![7u8; size];
        let mut buf = vec![0u8; size];
        let mut h = histogram();
        // Warm up: caches, scheduler, CPU frequency.
        let warm = Instant::now();
        while warm.elapsed() < seconds / 4 {
            client.write_all(&msg).unwrap();
            client.read_exact(&mut buf).unwrap();
        }
        let start = Instant::now();
        while start.elapsed() < seconds {
            let t = Instant::now();
            client.write_all(&msg).unwrap();
            client.read_exact(&mut buf).unwrap();
            h.saturating_record(nanos(t.elapsed()));
        }
        let elapsed = start.elapsed();
        drop(client);
        let _ = echo.join();
        summary(&h, elapsed)
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
    }

    trait AsyncDuplex: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
    impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncDuplex for T {}

    /// Both sides on tokio, each on its own thread with its own
    /// single-threaded runtime: epoll between every message, as an async
    /// client and server pay.
    fn pingpong_tokio(kind: Kind, size: usize, seconds: Duration) -> Value {
        let (client, server) = pair(&kind);
        let echo = std::thread::spawn(move || {
            runtime().block_on(async move {
                let mut server = server.into_async();
                let mut buf = vec![0u8; size];
                while server.read_exact(&mut buf).await.is_ok() {
                    if server.write_all(&buf).await.is_err() {
                        break;
                    }
                }
            });
        });
        let (h, elapsed) = runtime().block_on(async move {
            let mut client = client.into_async();
            let msg = vec![7u8; size];
            let mut buf = vec![0u8; size];
            let mut h = histogram();
            let warm = Instant::now();
            while warm.elapsed() < seconds / 4 {
                client.write_all(&msg).await.unwrap();
                client.read_exact(&mut buf).await.unwrap();
            }
            let start = Instant::now();
            while start.elapsed() < seconds {
                let t = Instant::now();
                client.write_all(&msg).await.unwrap();
                client.read_exact(&mut buf).await.unwrap();
                h.saturating_record(nanos(t.elapsed()));
            }
            (h, start.elapsed())
        });
        let _ = echo.join();
        summary(&h, elapsed)
    }

    /// One writer thread, one reader thread, `total` bytes in `chunk`-sized
    /// writes and reads.
    fn stream_blocking(kind: Kind, total: u64, chunk: usize) -> f64 {
        let (mut client, mut server) = blocking_pair(&kind);
        let start = Instant::now();
        let writer = std::thread::spawn(move || {
            let data = vec![1u8; chunk];
            let mut left = total;
            while left > 0 {
                let n = left.min(chunk as u64) as usize;
                client.write_all(&data[..n]).unwrap();
                left -= n as u64;
            }
        });
        let mut buf = vec![0u8; chunk];
        let mut got = 0u64;
        while got < total {
            match server.read(&mut buf).unwrap() {
                0 => break,
                n => got += n as u64,
            }
        }
        let elapsed = start.elapsed();
        writer.join().unwrap();
        got as f64 / elapsed.as_secs_f64()
    }

    /// The same stream with tokio on both sides.
    fn stream_tokio(kind: Kind, total: u64, chunk: usize) -> f64 {
        let (client, server) = pair(&kind);
        let start = Instant::now();
        let writer = std::thread::spawn(move || {
            runtime().block_on(async move {
                let mut client = client.into_async();
                let data = vec![1u8; chunk];
                let mut left = total;
                while left > 0 {
                    let n = left.min(chunk as u64) as usize;
                    client.write_all(&data[..n]).await.unwrap();
                    left -= n as u64;
                }
            });
        });
        let got = runtime().block_on(async move {
            let mut server = server.into_async();
            let mut buf = vec![0u8; chunk];
            let mut got = 0u64;
            while got < total {
                match server.read(&mut buf).await.unwrap() {
                    0 => break,
                    n => got += n as u64,
                }
            }
            got
        });
        let elapsed = start.elapsed();
        writer.join().unwrap();
        got as f64 / elapsed.as_secs_f64()
    }
}
