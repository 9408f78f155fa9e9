//! Label selectors (`app=ehr,tier!=cache,owner,!legacy`), matched against one object's
//! labels, so that coffre selects among the Secrets it may read (`get`) without the right to
//! list every Secret of a namespace.

use std::collections::BTreeMap;

use super::{Cluster, api_error};
use crate::error::{Error, Result};

/// One term of a selector.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Term {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    Absent(String),
}

/// A parsed equality-based selector: every term must hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selector(Vec<Term>);

impl Selector {
    pub fn parse(text: &str) -> Result<Self> {
        let bad = |term: &str| {
            Error::config(format!(
                "--selector '{text}': '{term}' is not a label term: write key=value, key!=value, key or !key, joined by commas"
            ))
        };
        let valid = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
        };
        let mut terms = Vec::new();
        for term in text.split(',').map(str::trim) {
            let parsed = if let Some((k, v)) = term.split_once("!=") {
                Term::NotEquals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                Term::Equals(k.trim().into(), v.trim().into())
            } else if let Some(k) = term.strip_prefix('!') {
                Term::Absent(k.trim().into())
            } else {
                Term::Exists(term.into())
            };
            let ok = match &parsed {
                Term::Equals(k, v) | Term::NotEquals(k, v) => {
                    valid(k) && (v.is_empty() || valid(v))
                }
                Term::Exists(k) | Term::Absent(k) => valid(k),
            };
            if !ok {
                return Err(bad(term));
            }
            terms.push(parsed);
        }
        Ok(Self(terms))
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|term| match term {
            Term::Equals(k, v) => labels.get(k) == Some(v),
            Term::NotEquals(k, v) => labels.get(k) != Some(v),
            Term::Exists(k) => labels.contains_key(k),
            Term::Absent(k) => !labels.contains_key(k),
        })
    }
}

impl Cluster {
    /// The labels of Secret `namespace/name` (none when it does not exist).
    pub async fn secret_labels(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<BTreeMap<String, String>>> {
        let secret = self
            .secrets(namespace)
            .get_opt(name)
            .await
            .map_err(|e| api_error(e, &format!("reading Secret {namespace}/{name}")))?;
        Ok(secret.map(|mut s| {
            // Only the labels are wanted: drop the values at once, overwritten.
            for value in s.data.iter_mut().flat_map(|d| d.values_mut()) {
                zeroize::Zeroize::zeroize(&mut value.0);
            }
            s.metadata.labels.unwrap_or_default()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_match_as_kubectl_does() {
        let labels: BTreeMap<String, String> = [("app", "ehr"), ("tier", "web")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let yes = ["app=ehr", "app==ehr,tier", "tier!=cache", "!legacy", "app"];
        let no = [
            "app=pharmacy",
            "app=ehr,tier=db",
            "legacy",
            "!app",
            "app!=ehr",
        ];
        for s in yes {
            assert!(Selector::parse(s).unwrap().matches(&labels), "{s}");
        }
        for s in no {
            assert!(!Selector::parse(s).unwrap().matches(&labels), "{s}");
        }
        assert!(Selector::parse("app in (a,b)").is_err());
        assert!(Selector::parse("").is_err());
    }
}
