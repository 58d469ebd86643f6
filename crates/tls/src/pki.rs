//! The development PKI: a CA, a server certificate for the gateway, client
//! certificates. `mcp-edge certs init` writes them; tests make their own, including
//! expired and not-yet-valid ones.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

/// A certificate and its key, in PEM.
#[derive(Debug, Clone)]
pub struct Pem {
    /// The certificate.
    pub cert: String,
    /// The private key.
    pub key: String,
}

/// When a certificate is valid, in days relative to now (negative: in the past).
#[derive(Debug, Clone, Copy)]
pub struct Validity {
    /// Start, days from now.
    pub from_days: i64,
    /// End, days from now.
    pub until_days: i64,
}

impl Validity {
    /// From five minutes ago (clock skew) for `days`.
    pub fn days(days: i64) -> Validity {
        Validity {
            from_days: 0,
            until_days: days,
        }
    }

    fn apply(self, params: &mut CertificateParams) {
        let now = OffsetDateTime::now_utc();
        params.not_before = now + Duration::days(self.from_days) - Duration::minutes(5);
        params.not_after = now + Duration::days(self.until_days);
    }
}

/// A certificate authority that can sign.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// The CA's own certificate and key.
    pub pem: Pem,
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, "mcp-edge development PKI");
    dn
}

type Result<T> = std::result::Result<T, rcgen::Error>;

impl Ca {
    /// A new self-signed CA.
    pub fn new(cn: &str, validity: Validity) -> Result<Ca> {
        let mut params = CertificateParams::default();
        params.distinguished_name = name(cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity.apply(&mut params);
        let key = KeyPair::generate()?;
        let key_pem = key.serialize_pem();
        let issuer = CertifiedIssuer::self_signed(params, key)?;
        let pem = Pem {
            cert: issuer.pem(),
            key: key_pem,
        };
        Ok(Ca { issuer, pem })
    }

    /// A server certificate for DNS names and IP addresses.
    pub fn server(&self, names: &[String], validity: Validity) -> Result<Pem> {
        let mut params = CertificateParams::new(names.to_vec())?;
        params.distinguished_name = name(names.first().map_or("server", String::as_str));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        validity.apply(&mut params);
        self.sign(&params)
    }

    /// A client certificate with this common name and, optionally, a URI SAN (such as
    /// a SPIFFE id).
    pub fn client(&self, cn: &str, uri: Option<&str>, validity: Validity) -> Result<Pem> {
        let mut params = CertificateParams::default();
        params.distinguished_name = name(cn);
        if let Some(uri) = uri {
            params.subject_alt_names.push(SanType::URI(uri.try_into()?));
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        validity.apply(&mut params);
        self.sign(&params)
    }

    fn sign(&self, params: &CertificateParams) -> Result<Pem> {
        let key = KeyPair::generate()?;
        let issuer: &Issuer<'_, KeyPair> = &self.issuer;
        let cert = params.signed_by(&key, issuer)?;
        Ok(Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }
}
