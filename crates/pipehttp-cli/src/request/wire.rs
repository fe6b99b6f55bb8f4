//! The connection as it is on the wire: a tap on its I/O that keeps the
//! bytes hyper wrote and read, so `-i`, `-D` and `-v` show exactly what
//! went over the connection for HTTP/1, and counts them for `-w`.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use pipehttp::client::Stream;

/// How much of each direction a tap keeps: heads, not bodies.
const KEEP: usize = 256 * 1024;

/// What a tap saw.
#[derive(Debug, Default)]
pub struct Log {
    /// Bytes written since the tap was made, up to [`KEEP`].
    pub written: Vec<u8>,
    /// Bytes read since the tap was made, up to [`KEEP`].
    pub read: Vec<u8>,
    pub written_total: u64,
    pub read_total: u64,
    /// A write failed (the peer had closed): curl's 55 rather than 56.
    pub write_failed: bool,
}

/// A connection whose bytes are logged as they pass.
pub struct Tap {
    inner: Stream,
    log: Arc<Mutex<Log>>,
}

impl Tap {
    pub fn new(inner: Stream) -> (Self, Arc<Mutex<Log>>) {
        let log = Arc::new(Mutex::new(Log::default()));
        (
            Self {
                inner,
                log: log.clone(),
            },
            log,
        )
    }
}

fn keep(into: &mut Vec<u8>, bytes: &[u8]) {
    let room = KEEP.saturating_sub(into.len());
    into.extend_from_slice(&bytes[..bytes.len().min(room)]);
}

impl hyper::rt::Read for Tap {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // Read into our own buffer to see the bytes, then hand them on.
        let mut scratch = vec![0u8; buf.remaining().min(64 * 1024)];
        let mut read = hyper::rt::ReadBuf::new(&mut scratch);
        match Pin::new(&mut this.inner).poll_read(cx, read.unfilled()) {
            Poll::Ready(Ok(())) => {
                let filled = read.filled();
                let mut log = this.log.lock().expect("tap log");
                log.read_total += filled.len() as u64;
                keep(&mut log.read, filled);
                drop(log);
                buf.put_slice(filled);
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl hyper::rt::Write for Tap {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        match &poll {
            Poll::Ready(Ok(n)) => {
                let mut log = this.log.lock().expect("tap log");
                log.written_total += *n as u64;
                keep(&mut log.written, &buf[..*n]);
            }
            Poll::Ready(Err(_)) => this.log.lock().expect("tap log").write_failed = true,
            Poll::Pending => {}
        }
        poll
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The response heads at the start of `read`, as received: any 1xx heads,
/// then the final one. Empty if the bytes hold no complete final head.
pub fn response_heads(read: &[u8]) -> Vec<&[u8]> {
    let mut heads = Vec::new();
    let mut at = 0;
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 256];
        let mut res = httparse::Response::new(&mut headers);
        match res.parse(&read[at..]) {
            Ok(httparse::Status::Complete(len)) => {
                heads.push(&read[at..at + len]);
                at += len;
                // 101 switches protocols; other 1xx heads precede the answer.
                match res.code {
                    Some(code) if (100..200).contains(&code) && code != 101 => continue,
                    _ => return heads,
                }
            }
            _ => return Vec::new(),
        }
    }
}

/// The request head at the start of `written`.
pub fn request_head(written: &[u8]) -> &[u8] {
    match written.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => &written[..i + 4],
        None => written,
    }
}
