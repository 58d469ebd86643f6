//! TLS for mcp-edge, on rustls with the `ring` provider.
//!
//! - [`client`]: the config a route uses to reach its tool server: its CA bundle or the
//!   Mozilla roots built into the binary (works offline, in any image), an optional
//!   client certificate for mTLS, TLS 1.2 minimum, ALPN h2 and http/1.1.
//! - [`failure`]: why a handshake failed, as a sentence a person can act on (expired
//!   with the date, not yet valid, unknown issuer, name mismatch, protocol version,
//!   client certificate rejected).
//! - [`server`]: the front door's config, with certificates that can be replaced for
//!   new connections without a restart, optional client certificates, and the client's
//!   identity from its certificate.
//! - [`inspect`]: subject, SANs, issuer, validity and days left of a certificate.
//! - [`pki`]: the development PKI behind `mcp-edge certs init` and the tests.

pub mod client;
pub mod failure;
pub mod inspect;
pub mod pki;
pub mod server;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

pub use client::{ClientTls, client_config};
pub use failure::{TlsFailure, find_rustls_error};
pub use inspect::CertInfo;
pub use server::{PeerIdentity, ServerTls, SwappableCert, peer_identities, server_config};

/// The crypto provider, named explicitly everywhere: rustls panics at run time if two
/// providers end up in the build and none was chosen.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Why TLS material could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
    /// A file holds no usable PEM block of the expected kind.
    #[error("{path} holds no {what} in PEM form")]
    NoPem {
        /// The file.
        path: PathBuf,
        /// `certificate` or `private key`.
        what: &'static str,
    },
    /// rustls refused the material (a key that does not match its certificate, say).
    #[error("{context}: {source}")]
    Rustls {
        /// What was being built.
        context: String,
        /// rustls's reason.
        source: rustls::Error,
    },
    /// Anything else, in words.
    #[error("{0}")]
    Other(String),
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Read {
        path: path.to_path_buf(),
        reason: e.kind().to_string(),
    })
}

/// Every certificate in a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsError::NoPem {
            path: path.to_path_buf(),
            what: "certificate",
        });
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, SEC1 or PKCS#1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|_| TlsError::NoPem {
        path: path.to_path_buf(),
        what: "private key",
    })
}
