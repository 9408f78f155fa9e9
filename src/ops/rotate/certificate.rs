//! Certificates as rotation credentials: every rotation makes a new private key, gets it
//! certified (by the internal CA, or an ACME server answered over HTTP-01) and publishes a
//! kubernetes.io/tls-shaped secret: tls.crt (the chain), tls.key and ca.crt. The internal CA is
//! a target too; rotating it keeps the old CA in ca.crt until it expires.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::time::Duration;

use crate::config::{CaTarget, CertificateIssuer, CertificateTarget};
use crate::error::{Error, Result};
use crate::rotation::acme::{self, AcmeServer};
use crate::rotation::certificate::{self as cert, Names};
use crate::rotation::credential::{Begun, Credential, Due, Revoked};
use crate::rotation::journal::Record;
use crate::secretstore::{Fields, Resolver};

pub(super) struct Certificate {
    pub settings: CertificateTarget,
    pub secrets: Resolver,
}

pub(super) struct InternalCa {
    pub settings: CaTarget,
}

const NOTHING_TO_REVOKE: &str = "nothing to revoke: the old private key left with the old secret";

impl Certificate {
    fn names(&self) -> Names {
        Names {
            dns: self.settings.dns_names.clone(),
            ips: self.settings.ip_addresses.clone(),
        }
    }

    /// The internal CA's secret: its certificate, key and ca.crt bundle.
    async fn ca(&self) -> Result<Option<(Fields, String)>> {
        let CertificateIssuer::Internal { ca, .. } = &self.settings.issuer else {
            return Ok(None);
        };
        let store = self.secrets.stores.open(ca.backend).await?;
        let fields = store
            .read(&ca.name)
            .await?
            .ok_or_else(|| {
                Error::config(format!(
                    "the CA secret {ca} does not exist: rotate its kind = \"ca\" target first"
                ))
            })?
            .fields;
        if fields.get("tls.crt").is_none() || fields.get("tls.key").is_none() {
            return Err(Error::config(format!(
                "the CA secret {ca} has no tls.crt and tls.key"
            )));
        }
        let bundle = fields
            .get("ca.crt")
            .or(fields.get("tls.crt"))
            .unwrap_or_default()
            .to_string();
        Ok(Some((fields, bundle)))
    }

    async fn order(
        &self,
        settings: &crate::config::AcmeSettings,
        key: &str,
    ) -> Result<(String, String)> {
        let account_store = match &settings.account {
            Some(a) => Some((self.secrets.stores.open(a.backend).await?, a)),
            None => None,
        };
        let account = match &account_store {
            Some((store, at)) => store.read(&at.name).await?,
            None => None,
        };
        let issued = acme::order(
            &AcmeServer {
                directory: &settings.directory,
                contact: &settings.contact,
                http01_listen: settings.http01_listen,
                server_root: settings.server_root.as_ref(),
            },
            account.as_ref().and_then(|a| a.fields.get("account")),
            &self.names(),
            key,
        )
        .await?;
        if let (Some(new), Some((store, at))) = (&issued.new_account, &account_store) {
            // Create-only: a run that raced this one keeps its account; both are valid.
            store
                .write(&at.name, &Fields::new().with("account", new), None)
                .await?;
        }
        let ca = match &settings.ca_bundle {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| Error::config(format!("acme.ca_bundle {}: {e}", path.display())))?,
            None => cert::top_of_chain(&issued.chain)?,
        };
        Ok((issued.chain, ca))
    }
}

#[async_trait]
impl Credential for Certificate {
    fn key_field(&self) -> &'static str {
        "tls.key"
    }

    fn describe(&self) -> String {
        match &self.settings.issuer {
            CertificateIssuer::Internal { ca, .. } => format!("internal CA {ca}"),
            CertificateIssuer::Acme(a) => format!("ACME {}", a.directory),
        }
    }

    async fn check(&self) -> Result<()> {
        self.ca().await.map(|_| ())
    }

    async fn due(&self, published: Option<&Fields>, now: DateTime<Utc>) -> Result<Due> {
        let Some(chain) = published.and_then(|p| p.get("tls.crt")) else {
            return Ok(Due::Now("no certificate is published yet".into()));
        };
        let Ok(info) = cert::inspect(chain) else {
            return Ok(Due::Now("the published tls.crt cannot be read".into()));
        };
        if !cert::names_match(&info, &self.names()) {
            return Ok(Due::Now("the configured names changed".into()));
        }
        let renew_at = info.renew_at(self.settings.renew_before);
        if now >= renew_at {
            return Ok(Due::Now(format!(
                "renewal due since {} (it expires {})",
                renew_at.format("%Y-%m-%d %H:%M UTC"),
                info.not_after.format("%Y-%m-%d %H:%M UTC")
            )));
        }
        if let Some((ca, _)) = self.ca().await? {
            let key = published.and_then(|p| p.get("tls.key")).unwrap_or_default();
            if cert::verify(chain, key, ca.get("tls.crt").unwrap_or_default()).is_err() {
                return Ok(Due::Now(
                    "the internal CA was rotated since it was issued".into(),
                ));
            }
        }
        Ok(Due::NotYet(format!(
            "valid until {}, renewed from {}",
            info.not_after.format("%Y-%m-%d %H:%M UTC"),
            renew_at.format("%Y-%m-%d %H:%M UTC")
        )))
    }

    fn plan(&self, _: Option<&Fields>, _: Option<Duration>) -> String {
        let mut names: Vec<String> = self.settings.dns_names.clone();
        names.extend(self.settings.ip_addresses.iter().map(|i| i.to_string()));
        format!(
            "new {} key and certificate for {} from {}",
            self.settings.key,
            names.join(", "),
            self.describe()
        )
    }

    async fn begin(&self, _: Option<&Fields>) -> Result<Begun> {
        self.check().await?;
        let names = self.names();
        let subject = names
            .dns
            .first()
            .cloned()
            .or_else(|| names.ips.first().map(|i| i.to_string()))
            .unwrap_or_default();
        Ok(Begun {
            subject,
            note: None,
        })
    }

    fn generate(&self, _: &str) -> Result<Fields> {
        Ok(Fields::new().with("tls.key", &cert::generate_key(self.settings.key)?))
    }

    async fn apply(&self, _: &Record, pending: &mut Fields) -> Result<Option<String>> {
        let key = pending_key(pending)?.to_string();
        if let (Some(chain), Some(ca)) = (pending.get("tls.crt"), pending.get("ca.crt"))
            && cert::verify(chain, &key, ca).is_ok()
        {
            return Ok(Some("already issued by an earlier run".into()));
        }
        let (chain, ca) = match &self.settings.issuer {
            CertificateIssuer::Internal { validity, .. } => {
                let (ca, bundle) = self.ca().await?.expect("an internal issuer");
                let chain = cert::issue(
                    &key,
                    &self.names(),
                    *validity,
                    ca.get("tls.crt").unwrap_or_default(),
                    ca.get("tls.key").unwrap_or_default(),
                )?;
                (chain, bundle)
            }
            CertificateIssuer::Acme(settings) => self.order(settings, &key).await?,
        };
        pending.insert("tls.crt", &chain);
        pending.insert("ca.crt", &ca);
        let info = cert::inspect(&chain)?;
        Ok(Some(format!(
            "issued, valid until {}",
            info.not_after.format("%Y-%m-%d %H:%M UTC")
        )))
    }

    async fn test(&self, _: &Record, pending: &Fields) -> Result<()> {
        let chain = pending
            .get("tls.crt")
            .ok_or_else(|| Error::integrity("the journal holds no issued certificate"))?;
        cert::verify(
            chain,
            pending_key(pending)?,
            pending.get("ca.crt").unwrap_or_default(),
        )?;
        if !cert::names_match(&cert::inspect(chain)?, &self.names()) {
            return Err(Error::integrity(
                "the issued certificate does not carry the configured names",
            ));
        }
        Ok(())
    }

    fn published(&self, rotation: &Record, pending: &Fields, _: Option<&Fields>) -> Fields {
        tls_fields(rotation, pending, pending.get("ca.crt").unwrap_or_default())
    }

    async fn revoke(&self, _: &Record, _: &Fields) -> Result<Revoked> {
        Ok(Revoked {
            detail: NOTHING_TO_REVOKE.into(),
            published: None,
        })
    }
}

#[async_trait]
impl Credential for InternalCa {
    fn key_field(&self) -> &'static str {
        "tls.key"
    }

    fn describe(&self) -> String {
        format!("internal CA '{}'", self.settings.common_name)
    }

    async fn check(&self) -> Result<()> {
        Ok(())
    }

    async fn due(&self, published: Option<&Fields>, now: DateTime<Utc>) -> Result<Due> {
        let info = published
            .and_then(|p| p.get("tls.crt"))
            .and_then(|c| cert::inspect(c).ok());
        Ok(match info {
            None => Due::Now("no CA certificate is published yet".into()),
            Some(info) if now >= info.renew_at(self.settings.renew_before) => Due::Now(format!(
                "renewal due (the CA expires {})",
                info.not_after.format("%Y-%m-%d")
            )),
            Some(info) => Due::NotYet(format!(
                "the CA is valid until {}",
                info.not_after.format("%Y-%m-%d")
            )),
        })
    }

    fn plan(&self, published: Option<&Fields>, _: Option<Duration>) -> String {
        match published.and_then(|p| p.get("tls.crt")) {
            Some(_) => {
                "new CA key and certificate; the old CA stays in ca.crt until it expires".into()
            }
            None => "first CA key and certificate".into(),
        }
    }

    async fn begin(&self, _: Option<&Fields>) -> Result<Begun> {
        Ok(Begun {
            subject: self.settings.common_name.clone(),
            note: None,
        })
    }

    fn generate(&self, _: &str) -> Result<Fields> {
        Ok(Fields::new().with("tls.key", &cert::generate_key(self.settings.key)?))
    }

    async fn apply(&self, _: &Record, pending: &mut Fields) -> Result<Option<String>> {
        let key = pending_key(pending)?.to_string();
        if pending
            .get("tls.crt")
            .is_some_and(|c| cert::verify(c, &key, c).is_ok())
        {
            return Ok(Some("already made by an earlier run".into()));
        }
        let ca = cert::self_signed_ca(&key, &self.settings.common_name, self.settings.validity)?;
        pending.insert("tls.crt", &ca);
        Ok(None)
    }

    async fn test(&self, _: &Record, pending: &Fields) -> Result<()> {
        let ca = pending
            .get("tls.crt")
            .ok_or_else(|| Error::integrity("the journal holds no CA certificate"))?;
        cert::verify(ca, pending_key(pending)?, ca)
    }

    /// ca.crt: the new CA, and every older one in the bundle that has not expired, so that
    /// certificates the old CA signed keep verifying until they are renewed.
    fn published(&self, rotation: &Record, pending: &Fields, current: Option<&Fields>) -> Fields {
        let new = pending.get("tls.crt").unwrap_or_default();
        let old = current
            .and_then(|c| c.get("ca.crt").or(c.get("tls.crt")))
            .unwrap_or_default();
        let bundle =
            cert::unexpired(&format!("{new}{old}"), Utc::now()).unwrap_or_else(|_| new.to_string());
        tls_fields(rotation, pending, &bundle)
    }

    async fn revoke(&self, _: &Record, _: &Fields) -> Result<Revoked> {
        Ok(Revoked {
            detail: NOTHING_TO_REVOKE.into(),
            published: None,
        })
    }
}

fn tls_fields(rotation: &Record, pending: &Fields, ca: &str) -> Fields {
    Fields::new()
        .with("tls.crt", pending.get("tls.crt").unwrap_or_default())
        .with("tls.key", pending.get("tls.key").unwrap_or_default())
        .with("ca.crt", ca)
        .with("rotation_id", &rotation.rotation_id.to_string())
}

fn pending_key(pending: &Fields) -> Result<&str> {
    pending.get("tls.key").ok_or_else(|| {
        Error::integrity(
            "the journal holds no pending key: see docs/ROTATION.md, recovering by hand",
        )
    })
}
