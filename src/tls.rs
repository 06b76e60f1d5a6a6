//! TLS to Redis servers and sentinels (rustls, ring), and the PEM reading
//! shared with the exporter's own TLS endpoint (`web.rs`).

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{
    verify_tls12_signature, verify_tls13_signature, CryptoProvider,
};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::config::Tls;

/// The crypto provider everywhere: ring, as reqwest uses (no C build).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate of a PEM file, at least one. Errors name the file but
/// never quote it.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let at = |e: String| format!("{}: {e}", path.display());
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| at(pem_error(e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| at(pem_error(e)))?;
    if certs.is_empty() {
        return Err(at("no PEM certificate (BEGIN CERTIFICATE) in it".into()));
    }
    Ok(certs)
}

/// The private key of a PEM file. Errors never quote the file: a key's
/// content must not end up in a log.
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        let why = match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "no PEM private key (BEGIN PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY) in it"
                    .to_string()
            }
            other => pem_error(other),
        };
        format!("{}: {why}", path.display())
    })
}

fn pem_error(e: rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(e) => format!("cannot read it: {e}"),
        _ => "not a valid PEM file".into(),
    }
}

/// The CA certificates of `ca_file` as a trust store.
pub fn roots(ca_file: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(ca_file)? {
        roots
            .add(cert)
            .map_err(|e| format!("{}: not a usable CA certificate: {e}", ca_file.display()))?;
    }
    Ok(roots)
}

/// The client configuration for `tls`, its files read now: trust the CA of
/// `ca_file` (the system's roots are not read: Redis deployments use their
/// own CA), present `cert_file`/`key_file` when given (mutual TLS).
pub fn client_config(tls: &Tls) -> Result<ClientConfig, String> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = if tls.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider())))
    } else {
        let ca = tls
            .ca_file
            .as_deref()
            .ok_or("`ca_file` is required unless `insecure_skip_verify: true`")?;
        builder.with_root_certificates(roots(ca)?)
    };
    match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(certificates(cert)?, private_key(key)?)
            .map_err(|e| {
                format!(
                    "the key in {} does not go with the certificate in {}: {e}",
                    key.display(),
                    cert.display()
                )
            }),
        (None, None) => Ok(builder.with_no_client_auth()),
        _ => Err("`cert_file` and `key_file` go together".into()),
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
