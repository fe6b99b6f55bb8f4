//! The library's error type.

use std::io;
use std::time::Duration;

use crate::address::AddressError;

/// Everything that can go wrong in pipehttp. Each message is one line that
/// names the pipe or socket and says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An address did not parse.
    #[error(transparent)]
    Address(#[from] AddressError),

    /// A live server already holds the name.
    #[error("{endpoint} is already in use by a running server: stop it, or choose another name")]
    AddrInUse {
        /// The endpoint, described with its path.
        endpoint: String,
    },

    /// Something other than a socket sits where the socket file should go.
    #[error(
        "{endpoint}: {path} exists and is not a socket, so it was left alone: remove it yourself, or choose another name"
    )]
    NotASocket {
        /// The endpoint, described with its path.
        endpoint: String,
        /// The path that holds something else.
        path: std::path::PathBuf,
    },

    /// The OS refused to create the listener.
    #[error("cannot listen on {endpoint}: {source}")]
    Bind {
        /// The endpoint, described with its path.
        endpoint: String,
        /// What the OS said.
        #[source]
        source: io::Error,
    },

    /// Nothing listens on the endpoint, and waiting did not change that.
    #[error("no server is listening on {endpoint}: start it, or check the name")]
    NoServer {
        /// The endpoint, described with its path.
        endpoint: String,
    },

    /// Every pipe instance stayed busy, or the server never accepted, for
    /// the whole connect timeout.
    #[error(
        "{endpoint} did not accept a connection within {timeout:?}: the server is overloaded or stuck; retry later or raise the connect timeout"
    )]
    ConnectTimeout {
        /// The endpoint, described with its path.
        endpoint: String,
        /// How long the client waited.
        timeout: Duration,
    },

    /// Connecting failed for another reason (permissions, for instance).
    #[error("cannot connect to {endpoint}: {source}")]
    Connect {
        /// The endpoint, described with its path.
        endpoint: String,
        /// What the OS said.
        #[source]
        source: io::Error,
    },

    /// The peer runs as another user and `current_user_only` is on.
    #[error(
        "{endpoint}: refusing a peer that runs as another user ({detail}) because current_user_only is on"
    )]
    PeerNotAllowed {
        /// The endpoint, described with its path.
        endpoint: String,
        /// Who the peer is and who was expected.
        detail: String,
    },

    /// Options that contradict each other or are out of range.
    #[error("invalid options: {0}")]
    InvalidOptions(String),

    /// A configuration file or variable that cannot be used.
    #[error("{source_name}: {message}")]
    Config {
        /// The file path or variable name.
        source_name: String,
        /// What is wrong, naming the key.
        message: String,
    },

    /// A TLS setting that cannot be used.
    #[error("{0}")]
    Tls(String),

    /// An I/O error on an endpoint, after it was set up.
    #[error("{endpoint}: {source}")]
    Io {
        /// The endpoint, described with its path.
        endpoint: String,
        /// What the OS said.
        #[source]
        source: io::Error,
    },

    /// An HTTP-level failure talking to a peer.
    #[error("{endpoint}: {message}")]
    Http {
        /// The endpoint, described with its path.
        endpoint: String,
        /// What went wrong.
        message: String,
    },

    /// A request took longer than its timeout.
    #[error(
        "{endpoint}: no complete response within {timeout:?}: the server is slow or stuck; retry, or raise the timeout"
    )]
    Timeout {
        /// The endpoint, described with its path.
        endpoint: String,
        /// The timeout that ran out.
        timeout: Duration,
    },
}

/// `Result` with pipehttp's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<std::convert::Infallible> for Error {
    fn from(never: std::convert::Infallible) -> Self {
        match never {}
    }
}

impl Error {
    /// Whether the request never reached a server: nothing listening, no
    /// free instance in time, or a server this client refuses. Command-line
    /// tools map these to curl's exit code 7.
    ///
    /// ```
    /// let e = pipehttp::Error::NoServer { endpoint: "pipe 'x'".into() };
    /// assert!(e.is_connect());
    /// ```
    #[must_use]
    pub fn is_connect(&self) -> bool {
        matches!(
            self,
            Error::NoServer { .. }
                | Error::ConnectTimeout { .. }
                | Error::Connect { .. }
                | Error::PeerNotAllowed { .. }
        )
    }

    /// A copy of an error that is only borrowed, as errors are inside
    /// another library's error chain. I/O errors keep their kind and text.
    pub(crate) fn duplicate(&self) -> Error {
        let io = |e: &io::Error| io::Error::new(e.kind(), e.to_string());
        match self {
            Error::Address(e) => Error::Address(e.clone()),
            Error::AddrInUse { endpoint } => Error::AddrInUse {
                endpoint: endpoint.clone(),
            },
            Error::NotASocket { endpoint, path } => Error::NotASocket {
                endpoint: endpoint.clone(),
                path: path.clone(),
            },
            Error::Bind { endpoint, source } => Error::Bind {
                endpoint: endpoint.clone(),
                source: io(source),
            },
            Error::NoServer { endpoint } => Error::NoServer {
                endpoint: endpoint.clone(),
            },
            Error::ConnectTimeout { endpoint, timeout } => Error::ConnectTimeout {
                endpoint: endpoint.clone(),
                timeout: *timeout,
            },
            Error::Connect { endpoint, source } => Error::Connect {
                endpoint: endpoint.clone(),
                source: io(source),
            },
            Error::PeerNotAllowed { endpoint, detail } => Error::PeerNotAllowed {
                endpoint: endpoint.clone(),
                detail: detail.clone(),
            },
            Error::InvalidOptions(m) => Error::InvalidOptions(m.clone()),
            Error::Config {
                source_name,
                message,
            } => Error::Config {
                source_name: source_name.clone(),
                message: message.clone(),
            },
            Error::Tls(m) => Error::Tls(m.clone()),
            Error::Io { endpoint, source } => Error::Io {
                endpoint: endpoint.clone(),
                source: io(source),
            },
            Error::Http { endpoint, message } => Error::Http {
                endpoint: endpoint.clone(),
                message: message.clone(),
            },
            Error::Timeout { endpoint, timeout } => Error::Timeout {
                endpoint: endpoint.clone(),
                timeout: *timeout,
            },
        }
    }
}
