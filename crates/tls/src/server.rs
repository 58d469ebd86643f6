//! The front door's TLS: certificates replaceable for new connections, optional or
//! required client certificates, and the client's identity from its certificate.

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::CertificateDer;

use crate::inspect::CertInfo;
use crate::{TlsError, load_certs, load_key, provider};

/// What the listener says about TLS.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// Certificate chain file.
    pub cert: PathBuf,
    /// Private key file.
    pub key: PathBuf,
    /// CA bundle for client certificates; when set, clients must present one.
    pub client_ca: Option<PathBuf>,
}

/// The server certificate, replaceable while serving: new handshakes use the new one,
/// connections already open keep theirs.
pub struct SwappableCert {
    current: ArcSwap<CertifiedKey>,
    tls: ServerTls,
}

impl std::fmt::Debug for SwappableCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwappableCert")
            .field("cert", &self.tls.cert)
            .finish_non_exhaustive()
    }
}

fn certified(tls: &ServerTls) -> Result<CertifiedKey, TlsError> {
    CertifiedKey::from_der(load_certs(&tls.cert)?, load_key(&tls.key)?, &provider()).map_err(
        |source| TlsError::Rustls {
            context: format!("{} and {}", tls.cert.display(), tls.key.display()),
            source,
        },
    )
}

impl SwappableCert {
    /// Reads the files again and serves what they hold from the next handshake on. On
    /// error the current certificate stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        self.current.store(Arc::new(certified(&self.tls)?));
        Ok(())
    }

    /// The chain being served.
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        self.current.load().cert.clone()
    }
}

impl ResolvesServerCert for SwappableCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// Builds the listener's config: TLS 1.2+, ALPN h2 and http/1.1, client certificates
/// required and verified against `client_ca` when it is set.
pub fn server_config(tls: &ServerTls) -> Result<(Arc<ServerConfig>, Arc<SwappableCert>), TlsError> {
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(rustls::ALL_VERSIONS)
        .map_err(|source| TlsError::Rustls {
            context: "TLS versions".into(),
            source,
        })?;
    let builder = match &tls.client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in load_certs(ca)? {
                roots.add(cert).map_err(|source| TlsError::Rustls {
                    context: format!("client CA {}", ca.display()),
                    source,
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::Other(format!("client CA {}: {e}", ca.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let resolver = Arc::new(SwappableCert {
        current: ArcSwap::from_pointee(certified(tls)?),
        tls: tls.clone(),
    });
    let mut config = builder.with_cert_resolver(resolver.clone());
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((Arc::new(config), resolver))
}

/// The identities a verified client certificate carries, each of its own kind: a URI
/// SAN is never taken for a DNS name or a common name, nor the reverse (a certificate
/// whose CN spells another client's SPIFFE id is not that client).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerIdentity {
    /// URI SANs (SPIFFE ids, say).
    pub uris: Vec<String>,
    /// DNS SANs, lowercase.
    pub dns: Vec<String>,
    /// The subject's common name.
    pub common_name: Option<String>,
}

impl PeerIdentity {
    /// Whether the certificate presented nothing (no client certificate).
    pub fn is_empty(&self) -> bool {
        self.uris.is_empty() && self.dns.is_empty() && self.common_name.is_none()
    }
}

/// The identities of a verified client certificate chain's leaf.
pub fn peer_identities(chain: &[CertificateDer<'_>]) -> PeerIdentity {
    let Some(leaf) = chain.first() else {
        return PeerIdentity::default();
    };
    let Ok(info) = CertInfo::from_der(leaf) else {
        return PeerIdentity::default();
    };
    PeerIdentity {
        uris: info.uri_sans,
        dns: info
            .dns_sans
            .iter()
            .map(|d| d.to_ascii_lowercase())
            .collect(),
        common_name: info.common_name,
    }
}
