//! Telling HTTP/2 prior knowledge from HTTP/1 by a connection's first
//! bytes, so each is served by hyper's own builder.
//!
//! hyper-util's auto builder reads exactly the 24 bytes of the HTTP/2
//! preface first: one system call more per connection, and hyper's first
//! read then returns only those bytes and its read buffer grows to twice
//! its size to take the rest. Here the first read takes what the client
//! sent (a whole request head, usually), and the connection's reader
//! (`Monitored::replay`) hands hyper those bytes and what more the socket
//! has in one read.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, ReadBuf};

/// The whole HTTP/2 connection preface (RFC 9113, section 3.4).
pub(crate) const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How much the first read takes: a typical request head. A longer one is
/// read on by hyper in the same read as the replayed bytes.
const FIRST_READ: usize = 1024;

/// What a connection's first bytes say.
pub(crate) enum Sniffed {
    Http1,
    Http2,
    /// The client closed without sending anything.
    Closed,
}

/// The connection's first bytes, while they are read.
pub(crate) struct Sniff {
    buf: Vec<u8>,
}

impl Sniff {
    pub(crate) fn new() -> Self {
        Self { buf: Vec::new() }
    }

    /// Reads until the bytes tell the versions apart: they stop matching
    /// the preface (HTTP/1), match all of it (HTTP/2), or end.
    pub(crate) fn poll<T: AsyncRead + Unpin>(
        &mut self,
        io: &mut T,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<Sniffed>> {
        loop {
            // Read on the stack and kept at the size read: a connection
            // that waits here (new, or resting; see `REST_AFTER`) holds no
            // buffer meanwhile.
            let filled = self.buf.len();
            let mut chunk = [0u8; FIRST_READ];
            let mut read = ReadBuf::new(&mut chunk[..FIRST_READ - filled]);
            let polled = Pin::new(&mut *io).poll_read(cx, &mut read);
            let n = read.filled().len();
            self.buf.extend_from_slice(read.filled());
            ready!(polled)?;
            if n == 0 {
                // A partial preface that ends is a malformed HTTP/1 request
                // to hyper, which answers it as it answers any.
                return Poll::Ready(Ok(if filled == 0 {
                    Sniffed::Closed
                } else {
                    Sniffed::Http1
                }));
            }
            let len = self.buf.len().min(H2_PREFACE.len());
            if self.buf[..len] != H2_PREFACE[..len] {
                return Poll::Ready(Ok(Sniffed::Http1));
            }
            if len == H2_PREFACE.len() {
                return Poll::Ready(Ok(Sniffed::Http2));
            }
        }
    }

    /// The bytes read, to replay.
    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::server::watchdog::{ConnState, Monitored};
    use crate::transport::Transport;

    /// What the sniff finds in `sent`, and every byte hyper then reads.
    async fn sniff(sent: &[u8]) -> (Sniffed, Vec<u8>) {
        let (mut client, server) = tokio::io::duplex(4096);
        client.write_all(sent).await.unwrap();
        drop(client);
        let state = Arc::new(ConnState::new(Transport::Unix));
        let mut io = Monitored::new(server, state, 32 * 1024);
        let mut sniff = Sniff::new();
        let found = std::future::poll_fn(|cx| sniff.poll(&mut io, cx))
            .await
            .unwrap();
        io.replay(sniff.into_bytes());
        let mut read = Vec::new();
        io.read_to_end(&mut read).await.unwrap();
        (found, read)
    }

    #[tokio::test]
    async fn tells_the_versions_apart_and_replays_every_byte() {
        let get = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let (found, read) = sniff(get).await;
        assert!(matches!(found, Sniffed::Http1));
        assert_eq!(read, get);

        let mut h2 = H2_PREFACE.to_vec();
        h2.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        let (found, read) = sniff(&h2).await;
        assert!(matches!(found, Sniffed::Http2));
        assert_eq!(read, h2);

        // Longer than the first read: the rest comes from the connection.
        let long = [b"GET /".as_slice(), &[b'a'; 3000]].concat();
        let (found, read) = sniff(&long).await;
        assert!(matches!(found, Sniffed::Http1));
        assert_eq!(read, long);

        // A preface cut short is HTTP/1's to refuse.
        let (found, read) = sniff(b"PRI * HTTP").await;
        assert!(matches!(found, Sniffed::Http1));
        assert_eq!(read, b"PRI * HTTP");

        let (found, read) = sniff(b"").await;
        assert!(matches!(found, Sniffed::Closed));
        assert!(read.is_empty());
    }
}
