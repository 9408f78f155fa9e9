//! Certificates, with rcgen and x509-parser: a new private key for every certificate, the
//! internal CA (self-signed) and the certificates it signs, and what coffre reads back from a
//! PEM chain (validity, names, which key it certifies, whom it chains to).

use chrono::{DateTime, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData, SerialNumber,
};
use serde::Deserialize;
use std::net::IpAddr;
use std::time::Duration;
use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// The private key of a certificate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyAlgorithm {
    #[default]
    EcdsaP256,
    Rsa2048,
    Rsa3072,
}

impl std::fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyAlgorithm::EcdsaP256 => "ECDSA P-256",
            KeyAlgorithm::Rsa2048 => "RSA 2048",
            KeyAlgorithm::Rsa3072 => "RSA 3072",
        })
    }
}

/// A new private key, as PKCS#8 PEM.
pub fn generate_key(algorithm: KeyAlgorithm) -> Result<Zeroizing<String>> {
    let key = match algorithm {
        KeyAlgorithm::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        KeyAlgorithm::Rsa2048 => {
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        }
        KeyAlgorithm::Rsa3072 => {
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_3072)
        }
    }
    .map_err(|e| Error::internal(format!("generating a private key: {e}")))?;
    Ok(Zeroizing::new(key.serialize_pem()))
}

fn key_pair(pem: &str, what: &str) -> Result<KeyPair> {
    KeyPair::from_pem(pem).map_err(|_| {
        Error::integrity(format!(
            "{what} is not a private key coffre can read (PKCS#8 PEM, ECDSA P-256 or RSA)"
        ))
    })
}

/// The names a certificate is for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Names {
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
}

impl Names {
    fn sorted(mut self) -> Self {
        self.dns.sort();
        self.dns.dedup();
        self.ips.sort();
        self.ips.dedup();
        self
    }
}

fn validity(params: &mut CertificateParams, lifetime: Duration) {
    // Back-dated a little, so that a consumer whose clock lags still accepts it.
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::seconds(lifetime.as_secs() as i64);
    let mut serial = [0u8; 16];
    getrandom::fill(&mut serial).expect("the system's random source");
    serial[0] &= 0x7f;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
}

/// A self-signed CA certificate for `key_pem`.
pub fn self_signed_ca(key_pem: &str, common_name: &str, lifetime: Duration) -> Result<String> {
    let key = key_pair(key_pem, "the CA's pending key")?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, lifetime);
    let cert = params
        .self_signed(&key)
        .map_err(|e| Error::internal(format!("signing the CA certificate: {e}")))?;
    Ok(cert.pem())
}

/// A server certificate for `key_pem`'s public key and `names`, signed by the CA.
pub fn issue(
    key_pem: &str,
    names: &Names,
    lifetime: Duration,
    ca_cert_pem: &str,
    ca_key_pem: &str,
) -> Result<String> {
    let key = key_pair(key_pem, "the pending key")?;
    let ca_key = key_pair(ca_key_pem, "the CA's tls.key")?;
    // A certificate must not outlive the CA that vouches for it.
    let ca_ends = inspect(ca_cert_pem)?.not_after;
    let left = (ca_ends - Utc::now()).to_std().unwrap_or_default();
    if left < Duration::from_secs(3600) {
        return Err(Error::integrity(format!(
            "the internal CA expires {}: rotate the CA target first",
            ca_ends.format("%Y-%m-%d %H:%M UTC")
        )));
    }
    let lifetime = lifetime.min(left);
    let issuer = Issuer::from_ca_cert_pem(ca_cert_pem, ca_key)
        .map_err(|e| Error::integrity(format!("the CA's tls.crt cannot be read: {e}")))?;
    let mut sans: Vec<String> = names.dns.clone();
    sans.extend(names.ips.iter().map(IpAddr::to_string));
    let mut params = CertificateParams::new(sans)
        .map_err(|e| Error::config(format!("the certificate's names: {e}")))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    if let Some(first) = names.dns.first() {
        params.distinguished_name.push(DnType::CommonName, first);
    }
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, lifetime);
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|e| Error::internal(format!("signing the certificate: {e}")))?;
    Ok(cert.pem())
}

/// What coffre reads from the first certificate of a PEM chain.
#[derive(Clone, Debug)]
pub struct CertInfo {
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    pub names: Names,
    /// The DER SubjectPublicKeyInfo it certifies.
    pub public_key: Vec<u8>,
}

impl CertInfo {
    /// When to renew: `renew_before` its end, or once a third of its lifetime remains.
    pub fn renew_at(&self, renew_before: Option<Duration>) -> DateTime<Utc> {
        let before = match renew_before {
            Some(d) => chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX),
            None => (self.not_after - self.not_before) / 3,
        };
        self.not_after - before
    }
}

/// The DER certificates of a PEM text, in order.
pub fn pem_certificates(pem: &str) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for block in Pem::iter_from_buffer(pem.as_bytes()) {
        let block =
            block.map_err(|e| Error::integrity(format!("not a PEM certificate chain ({e})")))?;
        if block.label == "CERTIFICATE" {
            out.push(block.contents);
        }
    }
    if out.is_empty() {
        return Err(Error::integrity("no certificate in the PEM text"));
    }
    Ok(out)
}

fn parse(der: &[u8]) -> Result<x509_parser::certificate::X509Certificate<'_>> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, c)| c)
        .map_err(|e| Error::integrity(format!("a certificate cannot be parsed ({e})")))
}

fn time_of(t: x509_parser::time::ASN1Time) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or_default()
}

/// The first certificate of `pem`, read.
pub fn inspect(pem: &str) -> Result<CertInfo> {
    let ders = pem_certificates(pem)?;
    let cert = parse(&ders[0])?;
    let mut names = Names::default();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => names.dns.push(d.to_string()),
                GeneralName::IPAddress(bytes) => match bytes.len() {
                    4 => names
                        .ips
                        .push(IpAddr::from(<[u8; 4]>::try_from(*bytes).unwrap())),
                    16 => names
                        .ips
                        .push(IpAddr::from(<[u8; 16]>::try_from(*bytes).unwrap())),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    Ok(CertInfo {
        not_before: time_of(cert.validity().not_before),
        not_after: time_of(cert.validity().not_after),
        names: names.sorted(),
        public_key: cert.public_key().raw.to_vec(),
    })
}

/// Whether `names` are exactly the certificate's.
pub fn names_match(info: &CertInfo, names: &Names) -> bool {
    info.names == names.clone().sorted()
}

/// Check a chain before publishing it: the first certificate certifies `key_pem`'s key, is
/// valid now, and chains (through the chain's other certificates) to one in `anchors_pem`.
pub fn verify(chain_pem: &str, key_pem: &str, anchors_pem: &str) -> Result<()> {
    let chain = pem_certificates(chain_pem)?;
    let anchors = pem_certificates(anchors_pem)?;
    let leaf = parse(&chain[0])?;
    let key = key_pair(key_pem, "the pending key")?;
    if leaf.public_key().raw != key.subject_public_key_info().as_slice() {
        return Err(Error::integrity(
            "the certificate is not for the pending key",
        ));
    }
    if !leaf.validity().is_valid() {
        return Err(Error::integrity("the certificate is not valid now"));
    }
    let mut current = leaf;
    // Each step climbs one issuer; a chain longer than the certificates given is a loop.
    for _ in 0..=chain.len() {
        let signed_by = |der: &Vec<u8>| -> bool {
            parse(der).is_ok_and(|issuer| {
                issuer.subject() == current.issuer()
                    && current.verify_signature(Some(issuer.public_key())).is_ok()
            })
        };
        if anchors.iter().any(signed_by) {
            return Ok(());
        }
        match chain[1..].iter().find(|d| signed_by(d)) {
            Some(next) => current = parse(next)?,
            None => break,
        }
    }
    Err(Error::integrity(
        "the certificate does not chain to the CA certificates of ca.crt",
    ))
}

/// The certificates of a PEM bundle still valid at `now`, as PEM, newest first.
pub fn unexpired(bundle_pem: &str, now: DateTime<Utc>) -> Result<String> {
    let mut kept: Vec<(DateTime<Utc>, Vec<u8>)> = Vec::new();
    for der in pem_certificates(bundle_pem)? {
        let cert = parse(&der)?;
        if time_of(cert.validity().not_after) > now && !kept.iter().any(|(_, d)| *d == der) {
            kept.push((time_of(cert.validity().not_before), der));
        }
    }
    kept.sort_by_key(|k| std::cmp::Reverse(k.0));
    Ok(kept.iter().map(|(_, der)| to_pem(der)).collect())
}

fn to_pem(der: &[u8]) -> String {
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in text.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// The last certificate of a chain (the one nearest its root), as PEM.
pub fn top_of_chain(chain_pem: &str) -> Result<String> {
    let chain = pem_certificates(chain_pem)?;
    Ok(to_pem(chain.last().expect("a chain has a certificate")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Names {
        Names {
            dns: vec!["app.internal".into()],
            ips: vec!["127.0.0.1".parse().unwrap()],
        }
    }

    #[test]
    fn a_certificate_from_the_ca_verifies_against_it_and_no_other() {
        let day = Duration::from_secs(86_400);
        let ca_key = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let ca = self_signed_ca(&ca_key, "test CA", 30 * day).unwrap();
        let key = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let cert = issue(&key, &names(), 9 * day, &ca, &ca_key).unwrap();
        verify(&cert, &key, &ca).unwrap();
        let info = inspect(&cert).unwrap();
        assert!(names_match(&info, &names()));
        let third = info.renew_at(None);
        assert!((info.not_after - third).num_hours() >= 71);

        let other_key = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let other_ca = self_signed_ca(&other_key, "test CA", 30 * day).unwrap();
        assert!(verify(&cert, &key, &other_ca).is_err());
        assert!(verify(&cert, &other_key, &ca).is_err());
        // Both CAs in the bundle: either one is enough.
        verify(&cert, &key, &format!("{other_ca}{ca}")).unwrap();
    }

    #[test]
    fn a_certificate_never_outlives_its_ca() {
        let day = Duration::from_secs(86_400);
        let ca_key = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let ca = self_signed_ca(&ca_key, "short CA", 10 * day).unwrap();
        let key = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let cert = issue(&key, &names(), 90 * day, &ca, &ca_key).unwrap();
        assert!(inspect(&cert).unwrap().not_after <= inspect(&ca).unwrap().not_after);
        let dying = self_signed_ca(&ca_key, "dying CA", Duration::from_secs(60)).unwrap();
        let e = issue(&key, &names(), day, &dying, &ca_key).unwrap_err();
        assert!(e.message().contains("rotate the CA target first"), "{e}");
    }

    #[test]
    fn rsa_keys_sign_too() {
        let day = Duration::from_secs(86_400);
        let ca_key = generate_key(KeyAlgorithm::Rsa2048).unwrap();
        let ca = self_signed_ca(&ca_key, "rsa CA", day).unwrap();
        let key = generate_key(KeyAlgorithm::Rsa2048).unwrap();
        let cert = issue(&key, &names(), day, &ca, &ca_key).unwrap();
        verify(&cert, &key, &ca).unwrap();
    }

    #[test]
    fn expired_certificates_leave_the_bundle() {
        let ca_key = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let ca = self_signed_ca(&ca_key, "short", Duration::from_secs(3600)).unwrap();
        assert_eq!(
            pem_certificates(&unexpired(&ca, Utc::now()).unwrap())
                .unwrap()
                .len(),
            1
        );
        let later = Utc::now() + chrono::Duration::hours(2);
        assert!(unexpired(&ca, later).unwrap().is_empty());
    }
}
