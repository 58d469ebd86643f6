//! Why a TLS handshake failed, as a sentence a person can act on.

use std::error::Error as StdError;
use std::fmt;

use rustls::{
    AlertDescription as Alert, CertificateError as Cert, Error as E, PeerIncompatible as P,
};

/// A handshake failure, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsFailure {
    /// The server's certificate expired (unix seconds).
    Expired {
        /// When it expired, if known.
        not_after: Option<u64>,
        /// The time of the check.
        now: u64,
    },
    /// The server's certificate is not valid yet: a clock is wrong somewhere.
    NotYetValid {
        /// When it becomes valid, if known.
        not_before: Option<u64>,
        /// The time of the check.
        now: u64,
    },
    /// Issued by a CA the route does not trust.
    UnknownIssuer,
    /// Issued for other names.
    NameMismatch {
        /// The name verified.
        expected: String,
        /// The names the certificate has.
        presented: Vec<String>,
    },
    /// Some other problem with the server's certificate.
    BadCertificate(String),
    /// No TLS version in common (mcp-edge speaks 1.2 and 1.3).
    ProtocolVersion(String),
    /// The server refused our client certificate (or wanted one and got none).
    ClientCertificateRejected(String),
    /// The server sent another alert.
    Alert(String),
    /// The server closed the TLS connection, without an alert, before answering: how
    /// some servers (Python's `ssl`, for one) refuse a missing or untrusted client
    /// certificate under TLS 1.3.
    ClosedBeforeAnswer,
    /// The server hung up in the middle of the handshake, without an alert: what an
    /// OpenSSL server that speaks only TLS 1.0/1.1 does to a TLS 1.2+ client, and
    /// what a port that does not speak TLS at all looks like.
    ClosedDuringHandshake,
    /// Anything else.
    Other(String),
}

fn date(unix: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp(i64::try_from(unix).unwrap_or(i64::MAX))
        .map(|t| {
            let d = t.date();
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02} UTC",
                d.year(),
                u8::from(d.month()),
                d.day(),
                t.hour(),
                t.minute()
            )
        })
        .unwrap_or_else(|_| format!("{unix} (unix time)"))
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsFailure::Expired { not_after: Some(t), now } => write!(
                f,
                "the server's certificate expired on {} (it is now {}); the server must renew it",
                date(*t),
                date(*now)
            ),
            TlsFailure::Expired { not_after: None, .. } => f.write_str("the server's certificate has expired"),
            TlsFailure::NotYetValid { not_before: Some(t), now } => write!(
                f,
                "the server's certificate is not valid until {} (it is now {}); check the clock here and on the server",
                date(*t),
                date(*now)
            ),
            TlsFailure::NotYetValid { not_before: None, .. } => {
                f.write_str("the server's certificate is not valid yet; check the clock")
            }
            TlsFailure::UnknownIssuer => f.write_str(
                "the server's certificate was issued by a CA this route does not trust; set tls.ca to the CA bundle that issued it",
            ),
            TlsFailure::NameMismatch { expected, presented } => write!(
                f,
                "the server's certificate is for {}, not {expected}; fix the URL, or set tls.server_name to a name the certificate has",
                if presented.is_empty() { "other names".to_owned() } else { presented.join(", ") }
            ),
            TlsFailure::BadCertificate(why) => write!(f, "the server's certificate is not acceptable: {why}"),
            TlsFailure::ProtocolVersion(why) => {
                write!(f, "no TLS version in common: mcp-edge speaks TLS 1.2 and 1.3 ({why})")
            }
            TlsFailure::ClientCertificateRejected(alert) => write!(
                f,
                "the server rejected mcp-edge's client certificate ({alert}); check tls.client_cert and tls.client_key and the CA the server trusts"
            ),
            TlsFailure::Alert(alert) => write!(f, "the server ended the handshake ({alert})"),
            TlsFailure::ClosedBeforeAnswer => f.write_str(
                "the server closed the TLS connection before answering: it most likely rejected mcp-edge's client certificate (or wanted one); check tls.client_cert and tls.client_key and the CA the server trusts",
            ),
            TlsFailure::ClosedDuringHandshake => f.write_str(
                "the server hung up during the TLS handshake without saying why: it most likely speaks only TLS 1.0/1.1 or shares no cipher suite with mcp-edge (which speaks TLS 1.2 and 1.3), or this port does not serve TLS; check the server's TLS settings",
            ),
            TlsFailure::Other(why) => write!(f, "TLS failed: {why}"),
        }
    }
}

impl TlsFailure {
    /// Classifies a rustls error.
    pub fn classify(error: &rustls::Error) -> TlsFailure {
        match error {
            E::InvalidCertificate(cert) => match cert {
                Cert::ExpiredContext { time, not_after } => TlsFailure::Expired {
                    not_after: Some(not_after.as_secs()),
                    now: time.as_secs(),
                },
                Cert::Expired => TlsFailure::Expired {
                    not_after: None,
                    now: 0,
                },
                Cert::NotValidYetContext { time, not_before } => TlsFailure::NotYetValid {
                    not_before: Some(not_before.as_secs()),
                    now: time.as_secs(),
                },
                Cert::NotValidYet => TlsFailure::NotYetValid {
                    not_before: None,
                    now: 0,
                },
                Cert::UnknownIssuer => TlsFailure::UnknownIssuer,
                Cert::NotValidForNameContext {
                    expected,
                    presented,
                } => TlsFailure::NameMismatch {
                    expected: expected.to_str().into_owned(),
                    presented: presented.iter().map(|p| plain_name(p)).collect(),
                },
                Cert::NotValidForName => TlsFailure::NameMismatch {
                    expected: String::new(),
                    presented: Vec::new(),
                },
                other => TlsFailure::BadCertificate(format!("{other:?}")),
            },
            E::PeerIncompatible(
                p @ (P::ServerDoesNotSupportTls12Or13
                | P::ServerTlsVersionIsDisabledByOurConfig
                | P::Tls12NotOffered
                | P::Tls12NotOfferedOrEnabled
                | P::SupportedVersionsExtensionRequired),
            ) => TlsFailure::ProtocolVersion(format!("{p:?}")),
            E::AlertReceived(Alert::ProtocolVersion) => {
                TlsFailure::ProtocolVersion("the server sent protocol_version".into())
            }
            E::AlertReceived(
                a @ (Alert::BadCertificate
                | Alert::UnsupportedCertificate
                | Alert::CertificateRevoked
                | Alert::CertificateExpired
                | Alert::CertificateUnknown
                | Alert::UnknownCA
                | Alert::AccessDenied
                | Alert::CertificateRequired),
            ) => TlsFailure::ClientCertificateRejected(format!("{a:?}")),
            E::AlertReceived(a) => TlsFailure::Alert(format!("{a:?}")),
            other => TlsFailure::Other(other.to_string()),
        }
    }

    /// Like [`TlsFailure::find`], for an error on a TLS connection: there, a connection
    /// reset right after the handshake is how some servers refuse a client certificate.
    pub fn find_on_tls(error: &(dyn StdError + 'static)) -> Option<TlsFailure> {
        if let Some(failure) = TlsFailure::find(error) {
            return Some(failure);
        }
        let mut current: Option<&(dyn StdError + 'static)> = Some(error);
        while let Some(e) = current {
            if let Some(io) = e.downcast_ref::<std::io::Error>()
                && io.kind() == std::io::ErrorKind::ConnectionReset
            {
                return Some(TlsFailure::ClosedBeforeAnswer);
            }
            current = e.source();
        }
        None
    }

    /// Finds and classifies the TLS failure in an error chain, if there is one.
    ///
    /// Over HTTP/2 a TLS 1.3 client-certificate rejection arrives after the handshake
    /// and reaches the caller only as text; that text is recognized too.
    pub fn find(error: &(dyn StdError + 'static)) -> Option<TlsFailure> {
        if let Some(e) = find_rustls_error(error) {
            return Some(TlsFailure::classify(e));
        }
        let mut current: Option<&(dyn StdError + 'static)> = Some(error);
        while let Some(e) = current {
            let text = e.to_string();
            if text.contains("peer closed connection without sending TLS close_notify") {
                return Some(TlsFailure::ClosedBeforeAnswer);
            }
            // tokio-rustls: the peer closed before the handshake finished.
            if text == "tls handshake eof" {
                return Some(TlsFailure::ClosedDuringHandshake);
            }
            if let Some(rest) = text.split("received fatal alert: ").nth(1) {
                let alert = rest.split_whitespace().next().unwrap_or(rest).to_owned();
                let cert_related = [
                    "BadCertificate",
                    "UnsupportedCertificate",
                    "CertificateRevoked",
                    "CertificateExpired",
                    "CertificateUnknown",
                    "UnknownCA",
                    "AccessDenied",
                    "CertificateRequired",
                ];
                return Some(if cert_related.iter().any(|a| alert.starts_with(a)) {
                    TlsFailure::ClientCertificateRejected(alert)
                } else {
                    TlsFailure::Alert(alert)
                });
            }
            current = e.source();
        }
        None
    }
}

/// rustls names a certificate's SANs in Debug form (`DnsName("a.example")`,
/// `IpAddress(10.0.0.1)`); a person wants the name.
fn plain_name(presented: &str) -> String {
    let inner = presented
        .split_once('(')
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .unwrap_or(presented);
    inner.trim_matches('"').to_owned()
}

/// The rustls error inside an error chain. `io::Error::source()` skips its payload, so
/// the payload is looked into with `get_ref()` as well.
pub fn find_rustls_error<'a>(mut error: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    loop {
        if let Some(e) = error.downcast_ref::<rustls::Error>() {
            return Some(e);
        }
        if let Some(io) = error.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(e) = find_rustls_error(inner)
        {
            return Some(e);
        }
        error = error.source()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_version_in_common_is_named_as_such() {
        let old = rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::ServerTlsVersionIsDisabledByOurConfig,
        );
        assert!(matches!(
            TlsFailure::classify(&old),
            TlsFailure::ProtocolVersion(_)
        ));
        let alert = rustls::Error::AlertReceived(rustls::AlertDescription::ProtocolVersion);
        assert!(
            TlsFailure::classify(&alert)
                .to_string()
                .starts_with("no TLS version in common: mcp-edge speaks TLS 1.2 and 1.3")
        );
    }

    #[test]
    fn names_are_shown_plainly() {
        assert_eq!(plain_name("DnsName(\"localhost\")"), "localhost");
        assert_eq!(plain_name("IpAddress(10.0.0.1)"), "10.0.0.1");
        assert_eq!(plain_name("already.plain"), "already.plain");
    }

    #[test]
    fn sentences_name_the_dates_and_the_fix() {
        let expired = TlsFailure::Expired {
            not_after: Some(1_777_777_777),
            now: 1_800_000_000,
        };
        assert_eq!(
            expired.to_string(),
            "the server's certificate expired on 2026-05-03 03:09 UTC (it is now 2027-01-15 08:00 UTC); the server must renew it"
        );
        let name = TlsFailure::NameMismatch {
            expected: "a.example".into(),
            presented: vec!["b.example".into()],
        };
        assert!(
            name.to_string()
                .contains("is for b.example, not a.example; fix the URL, or set tls.server_name")
        );
    }
}
