//! TLS with rustls (no OpenSSL): certificates for servers, trust for clients.
//!
//! A server given a [`ServerTls`] serves `https://` (long-polling) and `wss://` on the
//! same listener. Clients verify certificates by default against the Mozilla roots
//! (`webpki-roots`), plus any CA bundle you add, or against the operating system's store
//! ([`ClientTls::native_roots`]); SNI is sent. The only way to skip
//! verification is [`ClientTls::danger_accept_invalid_certs`], meant for development.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite};

/// Why a TLS configuration could not be built or a TLS connection failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The PEM text holds no certificate.
    #[error("no certificate found in the PEM data")]
    NoCertificate,
    /// The PEM text holds no usable private key.
    #[error("no private key found in the PEM data: {0}")]
    NoKey(String),
    /// A certificate could not be parsed.
    #[error("invalid certificate: {0}")]
    InvalidCertificate(String),
    /// rustls refused the configuration.
    #[error("tls configuration error: {0}")]
    Config(#[from] rustls::Error),
    /// The host name is not valid for SNI / verification.
    #[error("invalid server name {0}")]
    InvalidServerName(String),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(pem).collect();
    let certs = certs.map_err(|e| TlsError::InvalidCertificate(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    Ok(certs)
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// A server's certificate chain and key.
#[derive(Clone)]
pub struct ServerTls {
    pub(crate) config: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerTls")
    }
}

impl ServerTls {
    /// From PEM text: the certificate chain (leaf first) and the private key
    /// (PKCS#8, PKCS#1 or SEC1).
    pub fn from_pem(cert_chain: &[u8], key: &[u8]) -> Result<Self, TlsError> {
        let certs = certs_from_pem(cert_chain)?;
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| TlsError::NoKey(e.to_string()))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(ServerTls {
            config: Arc::new(config),
        })
    }

    /// From PEM files.
    pub fn from_pem_files(
        cert_chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self, TlsError> {
        Self::from_pem(&read(cert_chain.as_ref())?, &read(key.as_ref())?)
    }

    pub(crate) fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.clone())
    }
}

/// What a client trusts.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientTls")
    }
}

impl Default for ClientTls {
    fn default() -> Self {
        Self::webpki_roots()
    }
}

impl ClientTls {
    fn build(roots: rustls::RootCertStore) -> Result<Self, TlsError> {
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(ClientTls {
            config: Arc::new(config),
        })
    }

    fn mozilla_roots() -> rustls::RootCertStore {
        rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        }
    }

    /// Trust the Mozilla root certificates (the default).
    pub fn webpki_roots() -> Self {
        // Building from the bundled roots with the ring provider cannot fail; fall back to
        // an empty store rather than panic if it ever did.
        Self::build(Self::mozilla_roots()).unwrap_or_else(|_| ClientTls {
            config: Arc::new(
                rustls::ClientConfig::builder()
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
            ),
        })
    }

    /// Trust the operating system's certificate store instead of the bundled Mozilla roots
    /// (through `rustls-native-certs`): on Linux the OpenSSL locations (`/etc/ssl/certs`
    /// and the like, or the `SSL_CERT_FILE` / `SSL_CERT_DIR` environment variables), the
    /// keychain on macOS, the system store on Windows. Certificates that cannot be read or
    /// parsed are skipped (logged at debug level).
    ///
    /// Errors: [`TlsError::NoCertificate`] when the store holds no usable certificate.
    /// This reads files (or asks the OS) each time: call it once and clone the result.
    pub fn native_roots() -> Result<Self, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        Self::add_native(&mut roots);
        if roots.is_empty() {
            return Err(TlsError::NoCertificate);
        }
        Self::build(roots)
    }

    /// Trust both the operating system's store (see [`ClientTls::native_roots`]) and the
    /// Mozilla roots. Never fails for want of native certificates.
    pub fn native_and_webpki_roots() -> Result<Self, TlsError> {
        let mut roots = Self::mozilla_roots();
        Self::add_native(&mut roots);
        Self::build(roots)
    }

    fn add_native(roots: &mut rustls::RootCertStore) {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::debug!(error = %e, "native certificate store");
        }
        let (added, ignored) = roots.add_parsable_certificates(found.certs);
        tracing::debug!(added, ignored, "native root certificates loaded");
    }

    /// Trust the Mozilla roots and the CA certificates in `pem`.
    pub fn with_ca_pem(pem: &[u8]) -> Result<Self, TlsError> {
        let mut roots = Self::mozilla_roots();
        for c in certs_from_pem(pem)? {
            roots
                .add(c)
                .map_err(|e| TlsError::InvalidCertificate(e.to_string()))?;
        }
        Self::build(roots)
    }

    /// Trust only the CA certificates in `pem` (a private PKI).
    pub fn only_ca_pem(pem: &[u8]) -> Result<Self, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        for c in certs_from_pem(pem)? {
            roots
                .add(c)
                .map_err(|e| TlsError::InvalidCertificate(e.to_string()))?;
        }
        Self::build(roots)
    }

    /// Trust the CA certificates in a PEM file, beside the Mozilla roots.
    pub fn with_ca_file(path: impl AsRef<Path>) -> Result<Self, TlsError> {
        Self::with_ca_pem(&read(path.as_ref())?)
    }

    /// **DANGER — development only.** Accept any certificate for any host: the
    /// connection is encrypted but not authenticated, so anyone on the path can read and
    /// change it. Never ship this.
    pub fn danger_accept_invalid_certs() -> Self {
        let provider = provider();
        let config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map(|b| {
                b.dangerous()
                    .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
                    .with_no_client_auth()
            });
        match config {
            Ok(c) => ClientTls {
                config: Arc::new(c),
            },
            Err(_) => Self::webpki_roots(),
        }
    }

    pub(crate) async fn connect<S>(
        &self,
        host: &str,
        stream: S,
    ) -> Result<tokio_rustls::client::TlsStream<S>, std::io::Error>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let name = ServerName::try_from(host.to_owned()).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("invalid server name {host}"),
            )
        })?;
        tokio_rustls::TlsConnector::from(self.config.clone())
            .connect(name, stream)
            .await
    }
}

#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A byte stream of either kind (plain TCP or TLS), boxed.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}
pub(crate) type BoxIo = Box<dyn Io>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_roots_load_without_panicking() {
        // The store may be empty in a minimal container: then a typed error.
        match ClientTls::native_roots() {
            Ok(_) | Err(TlsError::NoCertificate) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
        assert!(ClientTls::native_and_webpki_roots().is_ok());
    }
}
