//! Telling HTTP/2 prior knowledge from HTTP/1 by a connection's first
//! bytes, so each is served by hyper's own builder.
//!
//! hyper-util's auto builder reads exactly the 24 bytes of the HTTP/2
//! preface first: one system call more per connection, and hyper's first
//! read then returns only those bytes and its read buffer grows to twice
//! its size to take the rest. Here the first read takes what the client
//! sent (a whole request head, usually), and [`Replay`] hands hyper those
//! bytes and what more the socket has in one read.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

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
            let filled = self.buf.len();
            self.buf.resize(FIRST_READ, 0);
            let mut read = ReadBuf::new(&mut self.buf[filled..]);
            let polled = Pin::new(&mut *io).poll_read(cx, &mut read);
            let n = read.filled().len();
            self.buf.truncate(filled + n);
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

/// A connection's I/O that first returns bytes read before: hyper reads
/// what the sniff took, then the connection itself.
pub(crate) struct Replay<T> {
    io: T,
    first: Vec<u8>,
    /// How much of `first` hyper has been given.
    given: usize,
    /// A read error met after replayed bytes were returned, for the next read.
    error: Option<io::Error>,
}

impl<T> Replay<T> {
    pub(crate) fn new(io: T, first: Vec<u8>) -> Self {
        Self {
            io,
            first,
            given: 0,
            error: None,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Replay<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(e) = this.error.take() {
            return Poll::Ready(Err(e));
        }
        if this.given == this.first.len() {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        }
        let n = (this.first.len() - this.given).min(buf.remaining());
        buf.put_slice(&this.first[this.given..this.given + n]);
        this.given += n;
        if this.given < this.first.len() {
            return Poll::Ready(Ok(()));
        }
        // All replayed: the buffer goes, and the same read takes what the
        // connection has besides. After a first read that drained the
        // socket, tokio knows it is not ready and makes no system call.
        this.first = Vec::new();
        this.given = 0;
        if buf.remaining() > 0
            && let Poll::Ready(Err(e)) = Pin::new(&mut this.io).poll_read(cx, buf)
        {
            this.error = Some(e);
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Replay<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn sniff(sent: &[&[u8]]) -> (Sniffed, Vec<u8>) {
        let (mut client, mut server) = tokio::io::duplex(4096);
        for part in sent {
            client.write_all(part).await.unwrap();
        }
        drop(client);
        let mut sniff = Sniff::new();
        let found = std::future::poll_fn(|cx| sniff.poll(&mut server, cx))
            .await
            .unwrap();
        let mut replayed = Vec::new();
        Replay::new(server, sniff.into_bytes())
            .read_to_end(&mut replayed)
            .await
            .unwrap();
        (found, replayed)
    }

    #[tokio::test]
    async fn tells_the_versions_apart_and_replays_every_byte() {
        let get = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let (found, replayed) = sniff(&[get]).await;
        assert!(matches!(found, Sniffed::Http1));
        assert_eq!(replayed, get);

        let mut h2 = H2_PREFACE.to_vec();
        h2.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        let (found, replayed) = sniff(&[&h2]).await;
        assert!(matches!(found, Sniffed::Http2));
        assert_eq!(replayed, h2);

        // Longer than the first read: the rest comes from the connection.
        let long = vec![b'a'; 3000];
        let (found, replayed) = sniff(&[&long]).await;
        assert!(matches!(found, Sniffed::Http1));
        assert_eq!(replayed, long);

        // A preface cut short is HTTP/1's to refuse.
        let (found, replayed) = sniff(&[b"PRI * HTTP"]).await;
        assert!(matches!(found, Sniffed::Http1));
        assert_eq!(replayed, b"PRI * HTTP");

        let (found, replayed) = sniff(&[]).await;
        assert!(matches!(found, Sniffed::Closed));
        assert!(replayed.is_empty());
    }
}
