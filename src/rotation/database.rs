//! The databases whose users coffre rotates, through native client libraries: the new
//! password never appears in a process argument, and the server only ever receives a hash of
//! it (a SCRAM-SHA-256 verifier, a mysql_native_password hash) computed here.

use async_trait::async_trait;
use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};

/// What a rotation needs of a database server.
#[async_trait]
pub trait Database: Send + Sync {
    /// Log in as `user` and run `query`: `Ok(false)` when the server refuses the password,
    /// an error when it cannot be reached or the query fails.
    async fn log_in(&self, user: &str, password: &str, query: &str) -> Result<bool>;

    /// As the admin user, set `user`'s password.
    async fn set_password(&self, user: &str, password: &str) -> Result<()>;

    /// Log in as the admin user: an auth error when the server refuses it.
    async fn check_admin(&self) -> Result<()>;

    /// As the admin user, check that `user` exists and may log in: a config error otherwise
    /// (changing its password would not let anyone in).
    async fn check_user(&self, user: &str) -> Result<()>;
}

/// The server refused the admin user's login.
pub fn admin_refused(server: &str, admin_user: &str) -> Error {
    Error::auth(format!(
        "{server}: the server refused the admin user {admin_user}: check admin_user and admin_password"
    ))
}

/// How a client talks TLS to the server: libpq's sslmode names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    Disable,
    /// TLS when the server offers it, the certificate unchecked.
    Prefer,
    /// TLS always, the certificate unchecked.
    Require,
    /// TLS always, the certificate checked against the CA and the host name.
    VerifyFull,
}

impl TlsMode {
    pub fn parse(text: Option<&str>) -> Result<Self> {
        match text.unwrap_or("prefer") {
            "disable" => Ok(TlsMode::Disable),
            "prefer" => Ok(TlsMode::Prefer),
            "require" => Ok(TlsMode::Require),
            "verify-full" => Ok(TlsMode::VerifyFull),
            other => Err(Error::config(format!(
                "sslmode = \"{other}\": a rotation target takes disable, prefer, require or verify-full"
            ))),
        }
    }
}

/// The rustls client settings for `mode`: the CA file's roots (else the system's) when
/// verifying, no verification otherwise (what libpq's require means).
pub fn rustls_config(mode: TlsMode, ca_file: Option<&Path>) -> Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::internal(format!("TLS setup: {e}")))?;
    if mode != TlsMode::VerifyFull {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(provider)))
            .with_no_client_auth());
    }
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| Error::config(format!("sslrootcert {}: {e}", path.display())))?;
            use rustls::pki_types::pem::PemObject;
            for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
                let cert = cert
                    .map_err(|e| Error::config(format!("sslrootcert {}: {e}", path.display())))?;
                roots
                    .add(cert)
                    .map_err(|e| Error::config(format!("sslrootcert {}: {e}", path.display())))?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// Accepts any server certificate (TLS encrypts, but does not authenticate the server): what
/// sslmode require and prefer mean.
#[derive(Debug)]
struct Unverified(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
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
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
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
