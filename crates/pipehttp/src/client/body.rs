//! Request bodies: bytes that can be sent again on a retry, or a stream.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use tokio::io::{AsyncRead, ReadBuf};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How much a streamed reader body reads at a time.
const READ_CHUNK: usize = 64 * 1024;

/// The body of a client request.
///
/// ```
/// use pipehttp::client::Body;
/// let from_text = Body::from("hello");
/// let from_file = Body::from_reader(tokio::io::empty());
/// ```
#[derive(Debug)]
pub struct Body {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    /// Kept whole, so a retry can send it again.
    Bytes(Option<Bytes>),
    Stream(UnsyncBoxBody<Bytes, BoxError>),
}

impl Body {
    /// No body.
    #[must_use]
    pub fn empty() -> Self {
        Self {
            kind: Kind::Bytes(None),
        }
    }

    /// A body read from `reader` as it is sent, without holding it in
    /// memory. It cannot be replayed, so a request with it is never retried
    /// once written.
    pub fn from_reader<R>(reader: R) -> Self
    where
        R: AsyncRead + Send + 'static,
    {
        Self::wrap(ReaderBody {
            reader: Box::pin(reader),
            buf: BytesMut::new(),
            done: false,
        })
    }

    /// Any `http_body::Body`, streamed.
    pub fn wrap<B>(body: B) -> Self
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        Self {
            kind: Kind::Stream(body.map_err(Into::into).boxed_unsync()),
        }
    }

    /// A copy for a retry, when the body is plain bytes.
    pub(crate) fn try_clone(&self) -> Option<Self> {
        match &self.kind {
            Kind::Bytes(bytes) => Some(Self {
                kind: Kind::Bytes(bytes.clone()),
            }),
            Kind::Stream(_) => None,
        }
    }
}

impl Default for Body {
    fn default() -> Self {
        Self::empty()
    }
}

impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Self {
        Self {
            kind: Kind::Bytes((!bytes.is_empty()).then_some(bytes)),
        }
    }
}

impl From<Vec<u8>> for Body {
    fn from(bytes: Vec<u8>) -> Self {
        Bytes::from(bytes).into()
    }
}

impl From<String> for Body {
    fn from(text: String) -> Self {
        Bytes::from(text).into()
    }
}

impl From<&'static str> for Body {
    fn from(text: &'static str) -> Self {
        Bytes::from_static(text.as_bytes()).into()
    }
}

impl From<&'static [u8]> for Body {
    fn from(bytes: &'static [u8]) -> Self {
        Bytes::from_static(bytes).into()
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().kind {
            Kind::Bytes(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Stream(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Bytes(bytes) => bytes.is_none(),
            Kind::Stream(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Bytes(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            Kind::Stream(body) => body.size_hint(),
        }
    }
}

struct ReaderBody {
    reader: Pin<Box<dyn AsyncRead + Send>>,
    /// Kept across polls so a read that is not ready costs no allocation.
    buf: BytesMut,
    done: bool,
}

impl http_body::Body for ReaderBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if this.buf.len() < READ_CHUNK {
            this.buf.resize(READ_CHUNK, 0);
        }
        let mut read = ReadBuf::new(&mut this.buf);
        match this.reader.as_mut().poll_read(cx, &mut read) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Ok(())) => {
                let n = read.filled().len();
                if n == 0 {
                    this.done = true;
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Ok(Frame::data(this.buf.split_to(n).freeze()))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}
