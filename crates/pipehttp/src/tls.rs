//! TLS for `https://` endpoints and targets: rustls with its ring provider
//! (so the Windows target builds with mingw and no C toolchain beyond it).
//!
//! A server takes a certificate and key from PEM files:
//!
//! ```no_run
//! # use pipehttp::server::{HttpBody, HttpService};
//! # async fn run<B: HttpBody>(app: impl HttpService<B>) -> pipehttp::Result<()> {
//! use pipehttp::{Server, tls::Certificate};
//!
//! Server::builder()
//!     .listen("https://pipe:/secure")
//!     .default_certificate(Certificate::from_pem_files("cert.pem", "key.pem"))
//!     .bind()
//!     .await?
//!     .serve(app)
//!     .await
//! # }
//! ```
//!
//! Over a pipe or Unix socket the client checks the server's certificate for
//! the name `localhost` unless told another.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::address::{ListenAddress, Scheme};
#[cfg(feature = "config")]
use crate::config::CertificateConfig;
use crate::error::{Error, Remedy, Result};

/// What accepts TLS on an https endpoint.
pub(crate) type Acceptor = tokio_rustls::TlsAcceptor;

/// ALPN protocols a server offers, best first.
const SERVER_ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server certificate chain and its private key, in PEM. Files are read
/// when the server binds, so errors name the endpoint that needs them.
///
/// ```
/// let cert = pipehttp::tls::Certificate::from_pem_files("cert.pem", "key.pem");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    source: Source,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Files { cert: PathBuf, key: PathBuf },
    Pem { cert: Vec<u8>, key: Vec<u8> },
}

impl Certificate {
    /// The chain in `cert` (leaf first) and the key in `key`, PEM files.
    #[must_use]
    pub fn from_pem_files(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        Self {
            source: Source::Files {
                cert: cert.into(),
                key: key.into(),
            },
        }
    }

    /// The chain and key as PEM text already in memory.
    #[must_use]
    pub fn from_pem(cert: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> Self {
        Self {
            source: Source::Pem {
                cert: cert.into(),
                key: key.into(),
            },
        }
    }

    /// A rustls server configuration offering h2 and http/1.1, or an error
    /// naming `endpoint` and the file at fault.
    pub(crate) fn server_config(&self, endpoint: &str) -> Result<Arc<ServerConfig>> {
        let fail = |what: String| Error::tls(format!("{endpoint}: {what}"));
        let read = |path: &Path| {
            std::fs::read(path)
                .map_err(|e| fail(format!("cannot read {}", path.display())).with_source(e))
        };
        let (cert_pem, key_pem, cert_name, key_name) = match &self.source {
            Source::Files { cert, key } => (
                read(cert)?,
                read(key)?,
                cert.display().to_string(),
                key.display().to_string(),
            ),
            Source::Pem { cert, key } => (
                cert.clone(),
                key.clone(),
                "the certificate PEM".to_owned(),
                "the key PEM".to_owned(),
            ),
        };
        let chain = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| fail(format!("{cert_name} is not a PEM certificate")).with_source(e))?;
        if chain.is_empty() {
            return Err(fail(format!("{cert_name} holds no certificate")));
        }
        let key = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| fail(format!("{key_name} holds no usable private key")).with_source(e))?;
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| fail("no usable TLS protocol version".into()).with_source(e))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| {
                fail(format!(
                    "the key in {key_name} does not fit the certificate in {cert_name}"
                ))
                .with_source(e)
            })?;
        config.alpn_protocols = SERVER_ALPN.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }
}

#[cfg(feature = "config")]
impl From<&CertificateConfig> for Certificate {
    fn from(config: &CertificateConfig) -> Self {
        Self::from_pem_files(&config.path, &config.key_path)
    }
}

/// The TLS configuration of one endpoint: its own certificate, else the
/// default one; `https` without either, or `http` with a certificate of its
/// own, is a mistake worth stopping for.
pub(crate) fn acceptor_for(
    address: &ListenAddress,
    own: Option<&Certificate>,
    default: Option<&Certificate>,
) -> Result<Option<Acceptor>> {
    match (address.scheme(), own.or(default)) {
        (Scheme::Http, _) if own.is_some() => Err(Error::options(format!(
            "{address} has a certificate but is not https: write https://"
        ))),
        (Scheme::Http, _) => Ok(None),
        (Scheme::Https, Some(certificate)) => Ok(Some(Acceptor::from(
            certificate.server_config(&address.to_string())?,
        ))),
        (Scheme::Https, None) => Err(Error::options(format!("{address} needs a certificate"))
            .with_remedy(Remedy::GiveCertificate)),
    }
}

/// What a client trusts, and the certificate it shows.
#[derive(Debug, Clone, Default)]
pub(crate) struct Trust {
    /// CA certificates (PEM) trusted beside the platform's roots. A server
    /// whose own certificate is exactly one of these is trusted too (see
    /// [`ExactTrust`]).
    pub(crate) extra_roots: Vec<Vec<u8>>,
    /// Accept any certificate. For development only.
    pub(crate) insecure: bool,
    /// A client certificate chain and its key (PEM), for servers that ask.
    pub(crate) identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl Trust {
    /// A rustls client configuration: the platform's roots plus the extra
    /// ones, offering `alpn`, with the client certificate if there is one.
    pub(crate) fn client_config(&self, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::tls("no usable TLS protocol version").with_source(e))?;
        let builder = if self.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(
                    provider().signature_verification_algorithms,
                )))
        } else {
            let (roots, exact) = self.roots()?;
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| Error::tls("no usable root certificate").with_source(e))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ExactTrust { webpki, exact }))
        };
        let mut config = match &self.identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = CertificateDer::pem_slice_iter(cert)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| Error::tls("the client certificate is not PEM").with_source(e))?;
                if chain.is_empty() {
                    return Err(Error::tls(
                        "the client certificate PEM holds no certificate",
                    ));
                }
                let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| {
                    Error::tls("the client key PEM holds no usable private key").with_source(e)
                })?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    Error::tls("the client key does not fit the client certificate").with_source(e)
                })?
            }
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }

    /// The platform's roots plus the extra ones, and the extra ones as
    /// they are, for [`ExactTrust`].
    fn roots(&self) -> Result<(RootCertStore, Vec<CertificateDer<'static>>)> {
        let mut roots = RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for e in &native.errors {
            tracing::debug!("skipping a platform root certificate: {e}");
        }
        roots.add_parsable_certificates(native.certs);
        let mut exact = Vec::new();
        for pem in &self.extra_roots {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| Error::tls("a CA file is not PEM").with_source(e))?;
                roots
                    .add(cert.clone())
                    .map_err(|e| Error::tls("a CA certificate is unusable").with_source(e))?;
                exact.push(cert);
            }
        }
        Ok((roots, exact))
    }
}

/// The name a client checks the server's certificate against.
pub(crate) fn server_name(name: &str) -> Result<ServerName<'static>> {
    ServerName::try_from(name.to_owned())
        .map_err(|e| Error::tls(format!("'{name}' is not a valid TLS server name")).with_source(e))
}

/// A verifier that trusts every certificate but still checks the
/// handshake signatures, behind `--insecure`.
#[derive(Debug)]
struct AcceptAnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// Web PKI verification, plus one case it refuses and curl, Python and
/// .NET accept: the server's own certificate is exactly one the user
/// trusts, and that certificate is marked as a CA (what `openssl req
/// -x509` makes). Such a certificate is checked for the name and, as
/// web PKI does before it looks at the CA mark, for its dates; anything
/// else is verified as usual.
#[derive(Debug)]
struct ExactTrust {
    webpki: Arc<WebPkiServerVerifier>,
    exact: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for ExactTrust {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let err = match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(verified) => return Ok(verified),
            Err(err) => err,
        };
        let ca_as_end_entity = matches!(
            &err,
            rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other))
                if matches!(other.0.downcast_ref::<webpki::Error>(), Some(webpki::Error::CaUsedAsEndEntity))
        );
        if !ca_as_end_entity || !self.exact.iter().any(|c| c.as_ref() == end_entity.as_ref()) {
            return Err(err);
        }
        let cert = webpki::EndEntityCert::try_from(end_entity).map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
        })?;
        cert.verify_is_valid_for_subject_name(server_name)
            .map_err(|_| {
                rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName)
            })?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}
