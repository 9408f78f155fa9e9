//! Where a whole secret is, in a store coffre can write: `k8s:NAMESPACE/NAME`,
//! `vault:MOUNT/PATH`, `aws-sm:SECRET_ID` or `file:PATH` (what a rotation target's `publish`
//! names). Journals live beside the secret they publish, in the same store.

use std::fmt;

/// The kind of store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Backend {
    File,
    Kubernetes,
    Vault,
    SecretsManager,
}

impl Backend {
    pub fn scheme(self) -> &'static str {
        match self {
            Backend::File => "file",
            Backend::Kubernetes => "k8s",
            Backend::Vault => "vault",
            Backend::SecretsManager => "aws-sm",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub backend: Backend,
    /// The name within the store (see `SecretStore`).
    pub name: String,
}

impl Location {
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "'{text}' is not a secret location: write k8s:NAMESPACE/NAME, vault:MOUNT/PATH, aws-sm:SECRET_ID or file:PATH"
            )
        };
        let (scheme, name) = text.split_once(':').ok_or_else(bad)?;
        let backend = match scheme {
            "file" => Backend::File,
            "k8s" => Backend::Kubernetes,
            "vault" => Backend::Vault,
            "aws-sm" => Backend::SecretsManager,
            _ => return Err(bad()),
        };
        let parts = name.split('/').filter(|p| !p.is_empty()).count();
        let ok = match backend {
            Backend::File => !name.is_empty() && !name.ends_with('/'),
            Backend::Kubernetes => parts == 2 && name.split('/').count() == 2,
            Backend::Vault => parts >= 2,
            Backend::SecretsManager => !name.is_empty(),
        };
        if !ok || name.contains('#') {
            return Err(bad());
        }
        Ok(Self {
            backend,
            name: name.to_string(),
        })
    }

    /// The journal of rotation target `target`, in the same store (and namespace, or mount,
    /// or directory) as this secret. In Vault and Secrets Manager, which several deployments
    /// may share, it is named after the published secret too, so that two configs with a
    /// target of the same name never share a journal.
    pub fn journal_for(&self, target: &str) -> Location {
        let name = match self.backend {
            Backend::Kubernetes => {
                let namespace = self.name.split('/').next().unwrap_or_default();
                format!("{namespace}/coffre-journal-{target}")
            }
            Backend::Vault => {
                let (mount, path) = self.name.split_once('/').unwrap_or_default();
                let path = path.strip_prefix("data/").unwrap_or(path);
                format!("{mount}/coffre/journal/{path}/{target}")
            }
            Backend::SecretsManager => {
                // An ARN's secret part (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME).
                let id = self
                    .name
                    .rsplit_once(":secret:")
                    .map_or(self.name.as_str(), |(_, n)| n);
                format!("coffre/journal/{id}/{target}")
            }
            Backend::File => {
                let dir = std::path::Path::new(&self.name)
                    .parent()
                    .unwrap_or(std::path::Path::new(""));
                dir.join("journal")
                    .join(format!("{target}.json"))
                    .display()
                    .to_string()
            }
        };
        Location {
            backend: self.backend,
            name,
        }
    }

    /// A file location made relative to `base` (the directory of the file that names it).
    pub fn relative_to(
        mut self,
        base: &std::path::Path,
        resolve: impl Fn(&std::path::Path, &std::path::Path) -> std::path::PathBuf,
    ) -> Self {
        if self.backend == Backend::File {
            self.name = resolve(base, std::path::Path::new(&self.name))
                .display()
                .to_string();
        }
        self
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.backend.scheme(), self.name)
    }
}

impl<'de> serde::Deserialize<'de> for Location {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Location::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_and_journals_sit_beside_them() {
        let cases = [
            ("k8s:prod/app-db", "k8s:prod/coffre-journal-app"),
            (
                "vault:secret/apps/db",
                "vault:secret/coffre/journal/apps/db/app",
            ),
            (
                "vault:secret/data/apps/db",
                "vault:secret/coffre/journal/apps/db/app",
            ),
            (
                "aws-sm:prod/app-db",
                "aws-sm:coffre/journal/prod/app-db/app",
            ),
            (
                "aws-sm:arn:aws:secretsmanager:eu-west-3:1:secret:prod/db-Ab12",
                "aws-sm:coffre/journal/prod/db-Ab12/app",
            ),
            ("file:/run/s/app.json", "file:/run/s/journal/app.json"),
        ];
        for (text, journal) in cases {
            let location = Location::parse(text).unwrap();
            assert_eq!(location.to_string(), text);
            assert_eq!(location.journal_for("app").to_string(), journal);
        }
        for bad in [
            "k8s:app",
            "k8s:a/b/c",
            "vault:secret",
            "s3:x",
            "file:",
            "k8s:a/b#c",
        ] {
            assert!(Location::parse(bad).is_err(), "{bad}");
        }
    }
}
