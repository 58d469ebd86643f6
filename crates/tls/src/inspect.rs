//! What a certificate says: subject, SANs, issuer, validity, days left.

use std::net::IpAddr;

use x509_parser::prelude::{FromDer, GeneralName, Pem, X509Certificate};

/// A certificate, summarized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The subject, `CN=…, O=…`.
    pub subject: String,
    /// The issuer.
    pub issuer: String,
    /// The subject's common name.
    pub common_name: Option<String>,
    /// DNS names, IP addresses and URIs from the subject alternative names.
    pub sans: Vec<String>,
    /// The DNS names among the subject alternative names.
    pub dns_sans: Vec<String>,
    /// The URIs among the subject alternative names (SPIFFE ids, say).
    pub uri_sans: Vec<String>,
    /// Valid from (unix seconds).
    pub not_before: i64,
    /// Valid until (unix seconds).
    pub not_after: i64,
    /// A CA certificate.
    pub is_ca: bool,
}

impl CertInfo {
    /// Parses one DER certificate.
    pub fn from_der(der: &[u8]) -> Result<CertInfo, String> {
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|e| format!("not an X.509 certificate: {e}"))?;
        let (mut sans, mut dns_sans, mut uri_sans) = (Vec::new(), Vec::new(), Vec::new());
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(d) => {
                        sans.push((*d).to_owned());
                        dns_sans.push((*d).to_owned());
                    }
                    GeneralName::URI(u) => {
                        sans.push((*u).to_owned());
                        uri_sans.push((*u).to_owned());
                    }
                    GeneralName::IPAddress(bytes) => {
                        let ip = match bytes.len() {
                            4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
                            16 => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
                            _ => None,
                        };
                        if let Some(ip) = ip {
                            sans.push(ip.to_string());
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(CertInfo {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            common_name: cert
                .subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .map(str::to_owned),
            sans,
            dns_sans,
            uri_sans,
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            is_ca: cert
                .basic_constraints()
                .ok()
                .flatten()
                .is_some_and(|bc| bc.value.ca),
        })
    }

    /// Every certificate of a PEM bundle.
    pub fn from_pem(pem: &[u8]) -> Result<Vec<CertInfo>, String> {
        let mut out = Vec::new();
        for block in Pem::iter_from_buffer(pem) {
            let block = block.map_err(|e| format!("bad PEM: {e}"))?;
            if block.label == "CERTIFICATE" {
                out.push(CertInfo::from_der(&block.contents)?);
            }
        }
        if out.is_empty() {
            return Err("no CERTIFICATE in it".into());
        }
        Ok(out)
    }

    /// Whole days until it expires (negative once expired).
    pub fn days_left(&self, now: i64) -> i64 {
        (self.not_after - now).div_euclid(86_400)
    }
}

/// The current unix time.
pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// A unix time as `YYYY-MM-DD HH:MM UTC`.
pub fn format_time(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .map(|t| {
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02} UTC",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute()
            )
        })
        .unwrap_or_else(|_| format!("{unix} (unix time)"))
}
