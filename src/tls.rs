//! TLS to Redis servers and sentinels (rustls, ring): the settings of a
//! deployment's `tls` and the client configuration made from them; and the
//! PEM reading shared with the exporter's own TLS endpoint
//! (`config::TlsServer`).
//!
//! Nothing here knows the configuration file or the endpoint: the settings
//! are plain paths and flags, so config, web and healthcheck build on this
//! module and it on none of them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{
    verify_tls12_signature, verify_tls13_signature, CryptoProvider,
};
use tokio_rustls::rustls::pki_types::pem::{self, PemObject};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls::server::danger::ClientCertVerifier;
use tokio_rustls::rustls::server::{VerifierBuilderError, WebPkiClientVerifier};
use tokio_rustls::rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// TLS to a deployment's servers or sentinels. The files are checked when
/// the config is loaded and read again by every new connection, so renewed
/// certificates are picked up without a restart.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// PEM CA certificates the servers' certificates must chain to.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate, for servers that require one (mutual TLS).
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// The name the servers' certificates must carry (and the SNI sent);
    /// by default the address connected to (an IP address or a hostname).
    pub server_name: Option<String>,
    /// Accept any server certificate: encrypted, not authenticated.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

impl Tls {
    /// Whether a connection could be made with these settings: the files
    /// read, the server name valid.
    pub fn check(&self) -> Result<(), TlsError> {
        if let Some(name) = &self.server_name {
            ServerName::try_from(name.as_str())
                .map_err(|_| TlsError::ServerName { name: name.clone() })?;
        }
        client_config(self).map(drop)
    }
}

/// Why TLS cannot be set up. Messages name the files but never quote them:
/// a key's content must not end up in a log. rustls's own errors are boxed:
/// they are large, and config errors carry this one.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("{path}: cannot read it: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file was read but is not PEM.
    #[error("{path}: not a valid PEM file")]
    NotPem {
        /// The file.
        path: PathBuf,
    },
    /// A PEM file without a certificate where certificates were expected.
    #[error("{path}: no PEM certificate (BEGIN CERTIFICATE) in it")]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// A PEM file without a private key where a key was expected.
    #[error(
        "{path}: no PEM private key (BEGIN PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY) in it"
    )]
    NoPrivateKey {
        /// The file.
        path: PathBuf,
    },
    /// A certificate of a CA file that cannot be a trust anchor.
    #[error("{path}: not a usable CA certificate: {source}")]
    UnusableCa {
        /// The CA file.
        path: PathBuf,
        /// Why rustls refused it.
        source: Box<rustls::Error>,
    },
    /// No client verifier could be made of the CA certificates of a file.
    #[error("{path}: {source}")]
    ClientVerifier {
        /// The CA file.
        path: PathBuf,
        /// Why rustls refused it.
        source: VerifierBuilderError,
    },
    /// A certificate and a private key that are not a pair.
    #[error("the key in {key} does not go with the certificate in {cert}: {source}")]
    KeyMismatch {
        /// The key file.
        key: PathBuf,
        /// The certificate file.
        cert: PathBuf,
        /// What rustls found.
        source: Box<rustls::Error>,
    },
    /// The protocol versions asked for are not offered by the provider.
    #[error("{0}")]
    Versions(#[source] Box<rustls::Error>),
    /// Verification without anything to verify against.
    #[error("`ca_file` is required unless `insecure_skip_verify: true`")]
    NoCaFile,
    /// Only one of a client certificate and its key.
    #[error("`cert_file` and `key_file` go together")]
    CertWithoutKey,
    /// A `server_name` rustls cannot send or verify.
    #[error("server_name {name:?} is not a DNS name or an IP address")]
    ServerName {
        /// The name as written.
        name: String,
    },
}

/// The crypto provider everywhere: ring, as reqwest uses (no C build).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate of a PEM file, at least one.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { path: path.into() });
    }
    Ok(certs)
}

/// The private key of a PEM file.
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::NoPrivateKey { path: path.into() },
        other => pem_error(path, other),
    })
}

/// A PEM reading error of `path`, without the content the PEM library
/// might quote.
fn pem_error(path: &Path, e: pem::Error) -> TlsError {
    match e {
        pem::Error::Io(source) => TlsError::Read {
            path: path.into(),
            source,
        },
        _ => TlsError::NotPem { path: path.into() },
    }
}

/// The CA certificates of `ca_file` as a trust store.
pub fn roots(ca_file: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(ca_file)? {
        roots.add(cert).map_err(|source| TlsError::UnusableCa {
            path: ca_file.into(),
            source: source.into(),
        })?;
    }
    Ok(roots)
}

/// A verifier of client certificates signed by the CAs of `ca_file`, for a
/// server that requires them.
pub fn client_verifier(
    ca_file: &Path,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca_file)?), provider)
        .build()
        .map_err(|source| TlsError::ClientVerifier {
            path: ca_file.into(),
            source,
        })
}

/// The client configuration for `tls`, its files read now: trust the CA of
/// `ca_file` (the system's roots are not read: Redis deployments use their
/// own CA), present `cert_file`/`key_file` when given (mutual TLS).
pub fn client_config(tls: &Tls) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Versions(e.into()))?;
    let builder = if tls.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider())))
    } else {
        let ca = tls.ca_file.as_deref().ok_or(TlsError::NoCaFile)?;
        builder.with_root_certificates(roots(ca)?)
    };
    match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(certificates(cert)?, private_key(key)?)
            .map_err(|source| TlsError::KeyMismatch {
                key: key.clone(),
                cert: cert.clone(),
                source: source.into(),
            }),
        (None, None) => Ok(builder.with_no_client_auth()),
        _ => Err(TlsError::CertWithoutKey),
    }
}

/// `insecure_skip_verify`: any certificate is accepted (the handshake's
/// signatures are still checked, so the connection is encrypted, but not
/// authenticated).
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
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
        verify_tls12_signature(
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
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
