//! TLS for `https://` endpoints and targets: rustls with its ring provider
//! (so the Windows target builds with mingw and no C toolchain beyond it).
//!
//! A server takes a certificate and key from PEM files (or a PKCS#12 file,
//! [`Certificate::from_pkcs12_file`]):
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

use rustls::server::WebPkiClientVerifier;

use crate::address::ListenAddress;
#[cfg(feature = "config")]
use crate::config::CertificateConfig;
use crate::error::{Error, Remedy, Result};
use crate::options::{ClientCertificateMode, Protocols, SslProtocols};

/// What accepts TLS on an https endpoint.
pub(crate) type Acceptor = tokio_rustls::TlsAcceptor;

/// ALPN protocols a server offers, best first.
const SERVER_ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server certificate chain and its private key: PEM files (the key
/// possibly encrypted, PKCS#8), or a PKCS#12 (`.pfx`/`.p12`) file, as
/// Kestrel's `Certificate` configuration gives them. Files are read when
/// the server binds, so errors name the endpoint that needs them.
///
/// ```
/// use pipehttp::tls::Certificate;
/// let pem = Certificate::from_pem_files("cert.pem", "key.pem");
/// let encrypted = Certificate::from_pem_files("cert.pem", "key.pem").with_password("secret");
/// let pfx = Certificate::from_pkcs12_file("cert.pfx", "secret");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    source: Source,
    password: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// A PEM chain and its key; without a key file, a PKCS#12 file or a
    /// PEM file holding both.
    Files {
        cert: PathBuf,
        key: Option<PathBuf>,
    },
    Pem {
        cert: Vec<u8>,
        key: Vec<u8>,
    },
}

/// What an https endpoint negotiates besides its certificate.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) protocols: Protocols,
    pub(crate) versions: SslProtocols,
    pub(crate) client_certificates: ClientCertificateMode,
}

impl Certificate {
    /// The chain in `cert` (leaf first) and the key in `key`, PEM files.
    #[must_use]
    pub fn from_pem_files(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        Self {
            source: Source::Files {
                cert: cert.into(),
                key: Some(key.into()),
            },
            password: None,
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
            password: None,
        }
    }

    /// A PKCS#12 file (`.pfx`, `.p12`) holding the key and its chain, with
    /// its password (empty for none). PBES2 (AES) files, as OpenSSL 3 and
    /// .NET write them, and the older PBES1 (3DES, RC2) ones are read.
    #[must_use]
    pub fn from_pkcs12_file(path: impl Into<PathBuf>, password: impl Into<String>) -> Self {
        Self {
            source: Source::Files {
                cert: path.into(),
                key: None,
            },
            password: Some(password.into()),
        }
    }

    /// The password of an encrypted PEM key (`-----BEGIN ENCRYPTED PRIVATE
    /// KEY-----`, PKCS#8), or of a PKCS#12 file.
    #[must_use]
    pub fn with_password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// A rustls server configuration with `settings`, or an error naming
    /// `endpoint` and the file at fault.
    pub(crate) fn server_config(
        &self,
        endpoint: &str,
        settings: &Settings,
    ) -> Result<Arc<ServerConfig>> {
        let fail = |what: String| Error::tls(format!("{endpoint}: {what}"));
        let (chain, key, names) = self.load(&fail)?;
        let mut versions: Vec<&'static rustls::SupportedProtocolVersion> = Vec::new();
        if settings.versions.tls13 {
            versions.push(&rustls::version::TLS13);
        }
        if settings.versions.tls12 {
            versions.push(&rustls::version::TLS12);
        }
        let builder = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&versions)
            .map_err(|e| fail("no usable TLS protocol version".into()).with_source(e))?;
        let builder = match settings.client_certificates {
            ClientCertificateMode::NoCertificate => builder.with_no_client_auth(),
            mode => {
                // Kestrel checks a client's chain against the system's
                // trusted roots unless the application validates it itself.
                let roots = Arc::new(Trust::default().roots()?.0);
                let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider());
                let verifier = if mode == ClientCertificateMode::AllowCertificate {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                let verifier = verifier.build().map_err(|e| {
                    fail(format!(
                        "ClientCertificateMode {mode} needs the platform's trusted roots, and none are usable"
                    ))
                    .with_source(e)
                })?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_single_cert(chain, key).map_err(|e| {
            fail(format!(
                "the key in {} does not fit the certificate in {}",
                names.1, names.0
            ))
            .with_source(e)
        })?;
        config.alpn_protocols = SERVER_ALPN
            .iter()
            .filter(|p| match **p {
                b"h2" => settings.protocols.http2(),
                _ => settings.protocols.http1(),
            })
            .map(|p| p.to_vec())
            .collect();
        Ok(Arc::new(config))
    }

    /// The chain, the key, and the names of where they came from.
    #[allow(clippy::type_complexity)]
    fn load(
        &self,
        fail: &dyn Fn(String) -> Error,
    ) -> Result<(
        Vec<CertificateDer<'static>>,
        PrivateKeyDer<'static>,
        (String, String),
    )> {
        let read = |path: &Path| {
            std::fs::read(path)
                .map_err(|e| fail(format!("cannot read {}", path.display())).with_source(e))
        };
        let (cert_pem, key_pem, cert_name, key_name) = match &self.source {
            Source::Files {
                cert,
                key: Some(key),
            } => (
                read(cert)?,
                read(key)?,
                cert.display().to_string(),
                key.display().to_string(),
            ),
            Source::Files { cert, key: None } => {
                let data = read(cert)?;
                let name = cert.display().to_string();
                if !is_pem(&data) {
                    let (chain, key) = self.pkcs12(&data, &name, fail)?;
                    return Ok((chain, key, (name.clone(), name)));
                }
                // A PEM file with the key beside the chain.
                (data.clone(), data, name.clone(), name)
            }
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
        let key = self.pem_key(&key_pem, &key_name, fail)?;
        Ok((chain, key, (cert_name, key_name)))
    }

    /// The key of a PEM file: plain, or PKCS#8 encrypted with the password.
    fn pem_key(
        &self,
        pem: &[u8],
        name: &str,
        fail: &dyn Fn(String) -> Error,
    ) -> Result<PrivateKeyDer<'static>> {
        const BEGIN: &str = "-----BEGIN ENCRYPTED PRIVATE KEY-----";
        const END: &str = "-----END ENCRYPTED PRIVATE KEY-----";
        let text = String::from_utf8_lossy(pem);
        if let (Some(start), Some(end)) = (text.find(BEGIN), text.find(END)) {
            let Some(password) = &self.password else {
                return Err(fail(format!(
                    "{name} holds an encrypted key: give its Password"
                )));
            };
            let section = &text[start..end + END.len()];
            let (_, der) = pkcs8::der::pem::decode_vec(section.as_bytes()).map_err(|e| {
                fail(format!("{name}: the encrypted key is not PEM")).with_source(e)
            })?;
            let info =
                pkcs8::EncryptedPrivateKeyInfoRef::try_from(der.as_slice()).map_err(|e| {
                    fail(format!("{name}: the encrypted key is not PKCS#8")).with_source(e)
                })?;
            let plain = info.decrypt(password).map_err(|e| {
                fail(format!(
                    "{name}: the key cannot be decrypted: wrong password, or an unsupported cipher"
                ))
                .with_source(e)
            })?;
            return Ok(PrivateKeyDer::Pkcs8(plain.as_bytes().to_vec().into()));
        }
        if text.contains("Proc-Type: 4,ENCRYPTED") {
            return Err(fail(format!(
                "{name} is encrypted in OpenSSL's legacy format: convert it with `openssl pkcs8 -topk8 -in {name}`"
            )));
        }
        PrivateKeyDer::from_pem_slice(pem).map_err(|e| {
            let hint = if self.password.is_some() || name.contains("PEM") {
                ""
            } else {
                " (a PEM certificate needs its key: give KeyPath)"
            };
            fail(format!("{name} holds no usable private key{hint}")).with_source(e)
        })
    }

    /// The key and chain of a PKCS#12 file.
    fn pkcs12(
        &self,
        data: &[u8],
        name: &str,
        fail: &dyn Fn(String) -> Error,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
        let password = self.password.as_deref().unwrap_or("");
        let store = p12_keystore::KeyStore::from_pkcs12(
            data,
            password,
            p12_keystore::Pkcs12ImportPolicy::Strict,
        )
        .map_err(|e| {
            fail(format!(
                "{name} cannot be read as PKCS#12 (.pfx): a wrong or missing Password, or not a certificate file"
            ))
            .with_source(e)
        })?;
        let Some((_, chain)) = store.private_key_chain() else {
            return Err(fail(format!(
                "{name} holds no private key with its certificate"
            )));
        };
        let certs: Vec<CertificateDer<'static>> = chain
            .certs()
            .iter()
            .map(|c| CertificateDer::from(c.as_der().to_vec()))
            .collect();
        if certs.is_empty() {
            return Err(fail(format!("{name} holds no certificate")));
        }
        let key = PrivateKeyDer::Pkcs8(chain.key().as_der().to_vec().into());
        Ok((certs, key))
    }
}

/// Whether a file is PEM text rather than DER (PKCS#12).
fn is_pem(data: &[u8]) -> bool {
    String::from_utf8_lossy(&data[..data.len().min(4096)]).contains("-----BEGIN ")
}

#[cfg(feature = "config")]
impl From<&CertificateConfig> for Certificate {
    fn from(config: &CertificateConfig) -> Self {
        Self {
            source: Source::Files {
                cert: config.path.clone(),
                key: config.key_path.clone(),
            },
            password: config.password.clone(),
        }
    }
}

/// The TLS configuration of an https endpoint with `certificate`; `None`
/// is a mistake worth stopping for.
pub(crate) fn acceptor_for(
    address: &ListenAddress,
    certificate: Option<&Certificate>,
    settings: &Settings,
) -> Result<Acceptor> {
    match certificate {
        Some(certificate) => Ok(Acceptor::from(
            certificate.server_config(&address.to_string(), settings)?,
        )),
        None => Err(Error::options(format!("{address} needs a certificate"))
            .with_remedy(Remedy::GiveCertificate)),
    }
}

/// What a client trusts, and the certificate it shows.
#[derive(Debug, Clone, Default)]
pub(crate) struct Trust {
    /// CA certificates (PEM) trusted beside the platform's roots. A server
    /// whose own certificate is exactly one of these is trusted too (see
    /// [`Verifier`]).
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
        let webpki = if self.insecure {
            None
        } else {
            let (roots, exact) = self.roots()?;
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| Error::tls("no usable root certificate").with_source(e))?;
            Some((webpki, exact))
        };
        let verifier = Verifier {
            webpki,
            algorithms: provider().signature_verification_algorithms,
        };
        let builder = builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier));
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
    /// they are, for [`Verifier`].
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

/// How a client checks server certificates: web PKI, plus one case it
/// refuses and curl, Python and .NET accept: the server's own certificate
/// is exactly one the user trusts, and that certificate is marked as a CA
/// (what `openssl req -x509` makes). Such a certificate is checked for
/// the name and, as web PKI does before it looks at the CA mark, for its
/// dates; anything else is verified as usual. Without web PKI (behind
/// `danger_accept_invalid_certs`) every certificate is accepted; the
/// handshake signatures are checked either way.
#[derive(Debug)]
struct Verifier {
    /// The web PKI verifier and the certificates trusted as they are.
    webpki: Option<(Arc<WebPkiServerVerifier>, Vec<CertificateDer<'static>>)>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some((webpki, exact)) = &self.webpki else {
            return Ok(ServerCertVerified::assertion());
        };
        let err = match webpki.verify_server_cert(
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
        if !ca_as_end_entity || !exact.iter().any(|c| c.as_ref() == end_entity.as_ref()) {
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
