//! curl's exit codes, for every command that sends requests, so scripts
//! written for curl keep working; and the one failure type that carries
//! a code and a message to `main`.

use std::process::ExitCode;

/// A failure not listed below, or some requests of a `bench` run failed.
pub const FAILURE: u8 = 1;
/// An `http://`/`https://` URL is all we speak; curl says 1 for the rest.
pub const UNSUPPORTED_PROTOCOL: u8 = 1;
/// Bad command-line arguments (clap's usage errors exit 2 as well).
pub const USAGE: u8 = 2;
pub const URL_MALFORMAT: u8 = 3;
pub const COULDNT_CONNECT: u8 = 7;
pub const WEIRD_SERVER_REPLY: u8 = 8;
pub const HTTP2: u8 = 16;
pub const PARTIAL_FILE: u8 = 18;
pub const HTTP_RETURNED_ERROR: u8 = 22;
pub const WRITE_ERROR: u8 = 23;
pub const READ_ERROR: u8 = 26;
pub const OPERATION_TIMEDOUT: u8 = 28;
/// -C: the server does not do ranges.
pub const RANGE_ERROR: u8 = 33;
pub const SSL_CONNECT_ERROR: u8 = 35;
pub const TOO_MANY_REDIRECTS: u8 = 47;
pub const GOT_NOTHING: u8 = 52;
pub const SEND_ERROR: u8 = 55;
pub const RECV_ERROR: u8 = 56;
pub const SSL_CERTPROBLEM: u8 = 58;
pub const PEER_FAILED_VERIFICATION: u8 = 60;
pub const BAD_CONTENT_ENCODING: u8 = 61;
/// --max-filesize: the response is larger.
pub const FILESIZE_EXCEEDED: u8 = 63;
/// A redirect needs the body again, and it came from stdin.
pub const SEND_FAIL_REWIND: u8 = 65;
pub const SSL_CACERT_BADFILE: u8 = 77;

/// A failure with the exit code it maps to. An empty message prints
/// nothing (the code says it all, as for `--fail`'s 22 under `-s`).
#[derive(Debug, Clone)]
pub struct Failure {
    pub code: u8,
    pub message: String,
    /// The connection was refused (ECONNREFUSED), which is what curl's
    /// --retry-connrefused retries; a socket path with nothing at it is not.
    pub refused: bool,
}

impl Failure {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            refused: false,
        }
    }

    /// Bad arguments: curl's exit code 2.
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(USAGE, message)
    }

    /// Prints the message as `pipehttp: (CODE) message` and returns the code.
    pub fn report(&self) -> ExitCode {
        if !self.message.is_empty() {
            eprintln!("pipehttp: ({}) {}", self.code, self.message);
        }
        ExitCode::from(self.code)
    }
}

impl From<pipehttp::Error> for Failure {
    fn from(e: pipehttp::Error) -> Self {
        let mut failure = Self::new(code_of(&e), crate::errors::describe(&e));
        let mut source = std::error::Error::source(&e);
        while let Some(err) = source {
            failure.refused |= err
                .downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused);
            source = err.source();
        }
        failure
    }
}

/// curl's code for a library error.
pub fn code_of(e: &pipehttp::Error) -> u8 {
    if e.is_timeout() {
        OPERATION_TIMEDOUT
    } else if e.is_connect() {
        COULDNT_CONNECT
    } else if e.is_tls() {
        if certificate_refused(e) {
            PEER_FAILED_VERIFICATION
        } else {
            SSL_CONNECT_ERROR
        }
    } else {
        FAILURE
    }
}

/// Whether a TLS error is the server's certificate being refused (curl's
/// 60) rather than a handshake that failed otherwise (35).
fn certificate_refused(e: &pipehttp::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(err) = source {
        if let Some(rustls::Error::InvalidCertificate(_)) = err.downcast_ref::<rustls::Error>() {
            return true;
        }
        source = err.source();
    }
    false
}
