//! TLS for the broker's endpoint, with ALPN `h2` and `http/1.1`.
//!
//! The Java SDK only speaks SubscribeToShard over HTTP/2 on TLS, so a broker that serves Java KCL
//! fan-out needs this. Either a self-signed certificate is generated at start-up (its PEM is
//! available from [`crate::RunningBroker::certificate_pem`] for clients to trust), or the user
//! supplies a certificate chain and key.

use std::path::PathBuf;
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Where the broker's TLS certificate comes from.
#[derive(Debug, Clone)]
pub enum TlsSettings {
    /// Generate a self-signed certificate for `localhost` and `127.0.0.1` at start-up.
    SelfSigned,
    /// Load a PEM certificate chain and a PEM private key.
    Files { cert: PathBuf, key: PathBuf },
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot read {path}: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("invalid TLS configuration: {0}")]
    Config(#[from] tokio_rustls::rustls::Error),
}

/// A ready acceptor and the certificate it presents (PEM).
pub struct Tls {
    pub acceptor: TlsAcceptor,
    pub certificate_pem: String,
}

impl TlsSettings {
    /// Builds the acceptor.
    pub fn load(&self) -> Result<Tls, TlsError> {
        let (chain, key, pem) = match self {
            TlsSettings::SelfSigned => {
                let generated = rcgen::generate_simple_self_signed(vec![
                    "localhost".to_owned(),
                    "127.0.0.1".to_owned(),
                ])?;
                let pem = generated.cert.pem();
                let key = PrivateKeyDer::Pkcs8(generated.signing_key.serialize_der().into());
                (vec![generated.cert.der().clone()], key, pem)
            }
            TlsSettings::Files { cert, key } => {
                let pem_error = |path: &PathBuf, e: &dyn std::fmt::Display| TlsError::Pem {
                    path: path.clone(),
                    message: e.to_string(),
                };
                let pem = std::fs::read_to_string(cert).map_err(|e| pem_error(cert, &e))?;
                let chain = CertificateDer::pem_slice_iter(pem.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| pem_error(cert, &e))?;
                let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error(key, &e))?;
                (chain, key_der, pem)
            }
        };
        let mut config = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Tls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            certificate_pem: pem,
        })
    }
}
