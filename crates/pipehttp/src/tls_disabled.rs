//! Stand-ins for the `tls` module in a build without pipehttp's `tls`
//! feature, so that the server compiles the same way either way: no TLS
//! acceptor can exist (the type has no values), and an `https` endpoint is
//! refused at bind with an error that names the feature.

use crate::address::ListenAddress;
use crate::error::{Error, Result};

/// A certificate asked for (by a config file) in a build that cannot use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Certificate;

#[cfg(feature = "config")]
impl From<&crate::config::CertificateConfig> for Certificate {
    fn from(_: &crate::config::CertificateConfig) -> Self {
        Certificate
    }
}

/// What an https endpoint would negotiate; never read without TLS.
#[derive(Debug, Clone, Copy)]
#[allow(dead_code)]
pub(crate) struct Settings {
    pub(crate) protocols: crate::options::Protocols,
    pub(crate) versions: crate::options::SslProtocols,
    pub(crate) client_certificates: crate::options::ClientCertificateMode,
}

/// What would accept TLS; it cannot be made.
#[derive(Debug, Clone)]
pub(crate) enum Acceptor {}

impl Acceptor {
    pub(crate) async fn accept<IO>(&self, _io: IO) -> std::io::Result<IO> {
        match *self {}
    }
}

/// An https endpoint in a build without TLS.
pub(crate) fn acceptor_for(
    address: &ListenAddress,
    _certificate: Option<&Certificate>,
    _settings: &Settings,
) -> Result<Acceptor> {
    Err(Error::options(format!(
        "{address}: https needs pipehttp built with its `tls` feature"
    )))
}
