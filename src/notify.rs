//! Telling people and monitors about runs: a heartbeat URL pinged at the start and end of each
//! run of a job (healthchecks.io style: `URL/start`, `URL`, `URL/fail`), and a webhook told of
//! every failed run (a Slack-compatible body: `{"text": ...}`, plus the details for programs).
//! A notification that cannot be sent is logged; it never fails the run. Bodies carry the job,
//! its kind, the class and message of the failure: never a secret (messages never hold one).

use serde_json::json;
use zeroize::Zeroizing;

use crate::config::{Config, Task};
use crate::error::{Error, Result};
use crate::manifest::rfc3339;
use crate::secretstore::SecretRef;
use crate::store::RunRecord;

/// Where notifications go, with their URLs read from their secret references.
pub struct Notifier {
    http: reqwest::Client,
    webhook: Option<Zeroizing<String>>,
}

/// A job's heartbeat URL, read from its secret reference.
pub struct Heartbeat(Zeroizing<String>);

impl Notifier {
    pub async fn from_config(config: &Config) -> Result<Self> {
        // A webhook that cannot be read must not stop the backups it would report on.
        let webhook = match &config.notify.webhook {
            Some(r) => match read_url(config, r, "notify.webhook").await {
                Ok(url) => Some(url),
                Err(e) => {
                    tracing::error!("{e}: failed runs will not be announced");
                    None
                }
            },
            None => None,
        };
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(15))
            .build()
            .map_err(|e| crate::error::Error::internal(format!("http client: {e}")))?;
        Ok(Self { http, webhook })
    }

    /// The heartbeat of `task`, if it has one.
    pub async fn heartbeat(&self, config: &Config, task: &Task) -> Result<Option<Heartbeat>> {
        match &task.heartbeat {
            Some(r) => {
                let what = format!("job '{}': heartbeat", task.name);
                Ok(Some(Heartbeat(read_url(config, r, &what).await?)))
            }
            None => Ok(None),
        }
    }

    /// A run starts.
    pub async fn started(&self, heartbeat: Option<&Heartbeat>) {
        if let Some(Heartbeat(url)) = heartbeat {
            self.ping(&format!("{}/start", url.trim_end_matches('/')))
                .await;
        }
    }

    /// A run ended as `record` says.
    pub async fn finished(&self, heartbeat: Option<&Heartbeat>, record: &RunRecord) {
        if let Some(Heartbeat(url)) = heartbeat {
            let url = url.trim_end_matches('/');
            match record.succeeded() {
                true => self.ping(url).await,
                false => self.ping(&format!("{url}/fail")).await,
            }
        }
        if let (false, Some(webhook)) = (record.succeeded(), &self.webhook) {
            let body = failure_body(record);
            let sent = self
                .http
                .post(webhook.as_str())
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await;
            if let Err(e) = sent {
                tracing::warn!(
                    "job '{}': the failure webhook: {}",
                    record.task,
                    e.without_url()
                );
            }
        }
    }

    async fn ping(&self, url: &str) {
        match self.http.post(url).send().await {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => tracing::warn!("heartbeat: HTTP {}", r.status()),
            // The URL is the heartbeat's secret: never in a log line.
            Err(e) => tracing::warn!("heartbeat: {}", e.without_url()),
        }
    }
}

/// A notification URL from its secret reference: an http(s) URL, never echoed (it is a
/// credential).
pub async fn read_url(config: &Config, r: &SecretRef, what: &str) -> Result<Zeroizing<String>> {
    let url = config.secrets.resolve(r, what).await?.text(what)?;
    match url::Url::parse(url.trim()) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {
            Ok(Zeroizing::new(url.trim().to_string()))
        }
        _ => Err(Error::config(format!(
            "{what}: {r} does not hold an http(s) URL: write the URL alone in it"
        ))),
    }
}

/// What a failure webhook receives.
pub fn failure_body(record: &RunRecord) -> serde_json::Value {
    let class = record.class.as_deref().unwrap_or("internal");
    let error = record.error.as_deref().unwrap_or("");
    json!({
        "text": format!(
            "coffre: job '{}' ({}) failed on {}: {class} error: {error}",
            record.task, record.kind, record.holder
        ),
        "coffre": {
            "job": record.task,
            "kind": record.kind,
            "status": record.status,
            "class": class,
            "error": error,
            "holder": record.holder,
            "started_at": rfc3339::format(&record.started_at),
            "finished_at": rfc3339::format(&record.finished_at),
            "last_success_at": record.last_success_at.as_ref().map(rfc3339::format),
        }
    })
}
