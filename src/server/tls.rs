//! TLS for the wire server: the rustls acceptor built from `--tls-cert`/`--tls-key`.
//!
//! Every problem (a missing or unreadable file, no certificate in it, a key that is not
//! PEM or does not belong to the certificate) is a start-up error naming the file: a
//! server asked to use TLS never falls back to plaintext.

use std::path::Path;
use std::sync::Arc;

use pgwire::tokio::TlsAcceptor;
use pgwire::tokio::tokio_rustls::rustls::{self, ServerConfig};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{WsError, WsResult, sqlstate};

/// ALPN name of PostgreSQL 17's direct TLS negotiation (`sslnegotiation=direct`), which
/// pgwire accepts only when the handshake agreed on it.
const POSTGRESQL_ALPN: &[u8] = b"postgresql";

fn config_error(path: &Path, what: &str, detail: impl std::fmt::Display) -> WsError {
    WsError::new(sqlstate::CONFIG_FILE_ERROR, format!("TLS {what} {}: {detail}", path.display()))
}

fn read(path: &Path, what: &str) -> WsResult<Vec<u8>> {
    std::fs::read(path).map_err(|error| config_error(path, what, error))
}

/// Loads the certificate chain and key and checks that they belong together.
pub fn acceptor(cert_path: &Path, key_path: &Path) -> WsResult<TlsAcceptor> {
    let cert_pem = read(cert_path, "certificate")?;
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| config_error(cert_path, "certificate", format!("not PEM: {error}")))?;
    if certs.is_empty() {
        return Err(config_error(cert_path, "certificate", "no CERTIFICATE block in the file"));
    }
    let key_pem = read(key_path, "key")?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|error| config_error(key_path, "key", format!("no usable PEM private key: {error}")))?;
    // An explicit provider: nothing depends on a process-wide default being installed.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| WsError::internal(format!("TLS protocol versions: {error}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|error| {
            WsError::new(
                sqlstate::CONFIG_FILE_ERROR,
                format!(
                    "TLS certificate {} and key {} do not work together: {error}",
                    cert_path.display(),
                    key_path.display()
                ),
            )
        })?;
    config.alpn_protocols = vec![POSTGRESQL_ALPN.to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
