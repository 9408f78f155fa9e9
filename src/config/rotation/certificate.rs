//! `kind = "tls"` targets (a certificate and its new private key, issued by coffre's internal
//! CA or by an ACME server) and `kind = "ca"` targets (the internal CA itself).

use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::TargetKind;
use super::database::strip_file;
use crate::duration::HumanDuration;
use crate::error::{Error, Result};
use crate::rotation::certificate::KeyAlgorithm;
use crate::secretstore::Location;

/// A certificate target's own settings.
#[derive(Clone, Debug)]
pub struct CertificateTarget {
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub key: KeyAlgorithm,
    /// Renew when this much of its life remains (default: a third of its lifetime).
    pub renew_before: Option<Duration>,
    pub issuer: CertificateIssuer,
}

/// Who signs a certificate.
#[derive(Clone, Debug)]
pub enum CertificateIssuer {
    /// coffre's CA, kept in a secret written by a `kind = "ca"` target.
    Internal {
        ca: Location,
        validity: Duration,
    },
    Acme(AcmeSettings),
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeSettings {
    /// The ACME directory URL (Let's Encrypt: https://acme-v02.api.letsencrypt.org/directory).
    pub directory: String,
    /// Where the ACME account's key is kept between runs (created on first use).
    pub account: Option<Location>,
    #[serde(default)]
    pub contact: Vec<String>,
    /// Where coffre answers HTTP-01 challenges; the names' port 80 must reach it.
    #[serde(default = "default_http01")]
    pub http01_listen: SocketAddr,
    /// A PEM file of the roots the ACME server's own TLS chains to (a private ACME server).
    pub server_root: Option<PathBuf>,
    /// A PEM file of the roots published as ca.crt (default: the chain's topmost certificate).
    pub ca_bundle: Option<PathBuf>,
}

fn default_http01() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8089))
}

/// A CA target's own settings.
#[derive(Clone, Debug)]
pub struct CaTarget {
    pub common_name: String,
    pub key: KeyAlgorithm,
    pub validity: Duration,
    pub renew_before: Option<Duration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    #[serde(default)]
    dns_names: Vec<String>,
    #[serde(default)]
    ip_addresses: Vec<IpAddr>,
    #[serde(default)]
    key: KeyAlgorithm,
    renew_before: Option<HumanDuration>,
    issuer: String,
    ca: Option<Location>,
    validity: Option<HumanDuration>,
    acme: Option<AcmeSettings>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaFile {
    common_name: String,
    #[serde(default)]
    key: KeyAlgorithm,
    validity: Option<HumanDuration>,
    renew_before: Option<HumanDuration>,
}

const DAY: u64 = 86_400;

pub(super) fn parse_tls(value: toml::Value, file: &Path, at: &str) -> Result<TargetKind> {
    let t: TlsFile = super::super::deserialize_toml(value, file)
        .map_err(|e| Error::config(format!("{at}: {}", strip_file(e.message(), file))))?;
    let base = super::super::parent_dir(file);
    if t.dns_names.is_empty() && t.ip_addresses.is_empty() {
        return Err(Error::config(format!(
            "{at}: a certificate needs dns_names = [...] or ip_addresses = [...]"
        )));
    }
    if let Some(bad) = t.dns_names.iter().find(|n| !valid_dns_name(n)) {
        return Err(Error::config(format!(
            "{at}: dns_names: '{bad}' is not a DNS name"
        )));
    }
    let issuer = match (t.issuer.as_str(), t.ca, t.acme) {
        ("internal", Some(ca), None) => CertificateIssuer::Internal {
            ca: ca.relative_to(&base, super::super::resolve),
            validity: t.validity.map_or(Duration::from_secs(90 * DAY), |d| d.0),
        },
        ("acme", None, Some(mut acme)) if t.validity.is_none() => {
            acme.account = acme
                .account
                .map(|a| a.relative_to(&base, super::super::resolve));
            acme.server_root = acme.server_root.map(|p| super::super::resolve(&base, &p));
            acme.ca_bundle = acme.ca_bundle.map(|p| super::super::resolve(&base, &p));
            CertificateIssuer::Acme(acme)
        }
        _ => {
            return Err(Error::config(format!(
                "{at}: set issuer = \"internal\" with ca = \"k8s:NS/NAME\" (a kind = \"ca\" target's secret) and optionally validity, or issuer = \"acme\" with an [target.acme] table (the ACME server sets the validity)"
            )));
        }
    };
    Ok(TargetKind::Certificate(CertificateTarget {
        dns_names: t.dns_names,
        ip_addresses: t.ip_addresses,
        key: t.key,
        renew_before: t.renew_before.map(|d| d.0),
        issuer,
    }))
}

pub(super) fn parse_ca(value: toml::Value, file: &Path, at: &str) -> Result<TargetKind> {
    let t: CaFile = super::super::deserialize_toml(value, file)
        .map_err(|e| Error::config(format!("{at}: {}", strip_file(e.message(), file))))?;
    if t.common_name.trim().is_empty() {
        return Err(Error::config(format!("{at}: common_name is empty")));
    }
    Ok(TargetKind::Ca(CaTarget {
        common_name: t.common_name,
        key: t.key,
        validity: t
            .validity
            .map_or(Duration::from_secs(5 * 365 * DAY), |d| d.0),
        renew_before: t.renew_before.map(|d| d.0),
    }))
}

/// Letters, digits and '-' in dot-separated labels, with an optional leading wildcard label.
fn valid_dns_name(name: &str) -> bool {
    let name = name.strip_prefix("*.").unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}
