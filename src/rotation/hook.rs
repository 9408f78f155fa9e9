//! Issuer hooks: how coffre tells the service that accepts an API key about a new key
//! (`register`) and that an old one must stop working (`revoke`). A hook is a command, which
//! reads a JSON request on stdin, or an HTTP endpoint, which gets it as a POST body: the key
//! is never in an argument, a URL or an environment variable.
//!
//! The request: `{"event": "register" | "revoke", "target", "rotation_id", "key",
//! "fingerprint"}`. A hook must accept a request it already carried out (a resumed rotation
//! sends it again): registering a key the issuer has, revoking one it no longer has.

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

use crate::duration::HumanDuration;
use crate::error::{Error, Result};
use crate::secretstore::{Resolver, SecretRef};

/// A hook as configured: `{ command = ["prog", "arg"] }` or `{ url = "https://...", bearer = "k8s:NS/S#token" }`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hook {
    pub command: Option<Vec<String>>,
    pub url: Option<String>,
    /// Sent as `Authorization: Bearer ...` to the URL.
    pub bearer: Option<SecretRef>,
    pub timeout: Option<HumanDuration>,
    /// Allow a plain-HTTP URL: the key would cross the network in clear (a sidecar on
    /// localhost, a test issuer).
    #[serde(default)]
    pub allow_http: bool,
}

/// What a hook is asked to do, and about which key.
pub struct Request<'a> {
    pub event: &'a str,
    pub target: &'a str,
    pub rotation_id: uuid::Uuid,
    pub key: &'a str,
    pub fingerprint: &'a str,
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

impl Hook {
    /// One of command or url, each well formed.
    pub fn check(&self) -> std::result::Result<(), String> {
        match (&self.command, &self.url) {
            (Some(argv), None) if !argv.is_empty() && !argv[0].is_empty() => Ok(()),
            (None, Some(url)) => match url::Url::parse(url) {
                Ok(u) if u.scheme() == "https" => Ok(()),
                Ok(u) if u.scheme() == "http" && self.allow_http => Ok(()),
                Ok(u) if u.scheme() == "http" => Err(format!(
                    "url '{url}' would send the key in clear: use https, or set allow_http = true for an issuer on this host"
                )),
                _ => Err(format!("url '{url}' is not an http(s) URL")),
            },
            _ if self.bearer.is_some() && self.url.is_none() => {
                Err("bearer goes with url".to_string())
            }
            _ => Err(
                "set command = [\"PROGRAM\", \"ARG\"...] or url = \"https://...\" (one of them)"
                    .to_string(),
            ),
        }
    }

    /// The program, or the URL's host, for plans.
    pub fn describe(&self) -> String {
        match (&self.command, &self.url) {
            (Some(argv), _) => argv[0].clone(),
            (_, Some(url)) => url::Url::parse(url)
                .ok()
                .and_then(|u| u.host_str().map(str::to_string))
                .unwrap_or_else(|| url.clone()),
            _ => "nothing".into(),
        }
    }

    pub fn relative_to(mut self, base: &Path, resolve: impl Fn(&Path, &Path) -> PathBuf) -> Self {
        self.bearer = self.bearer.map(|b| b.relative_to(base, &resolve));
        self
    }

    /// Carry out `request`: Ok once the issuer confirmed it.
    pub async fn call(&self, request: &Request<'_>, secrets: &Resolver) -> Result<()> {
        let body = zeroize::Zeroizing::new(
            serde_json::json!({
                "event": request.event,
                "target": request.target,
                "rotation_id": request.rotation_id,
                "key": request.key,
                "fingerprint": request.fingerprint,
            })
            .to_string(),
        );
        let timeout = self.timeout.map_or(DEFAULT_TIMEOUT, |t| t.0);
        let what = format!("the {} hook of target '{}'", request.event, request.target);
        let called = tokio::time::timeout(timeout, async {
            match (&self.command, &self.url) {
                (Some(argv), _) => run_command(argv, &body, request).await,
                (_, Some(url)) => self.post(url, &body, secrets).await,
                _ => Err(Error::config("the hook has neither command nor url")),
            }
        })
        .await
        .unwrap_or_else(|_| {
            Err(Error::source_failed(format!(
                "no answer within {}s",
                timeout.as_secs()
            )))
        });
        // Whatever the hook said, it must not carry the key into a message.
        called.map_err(|e| {
            Error::new(
                e.class(),
                format!("{what}: {}", e.message().replace(request.key, "[key]")),
            )
        })
    }

    async fn post(&self, url: &str, body: &str, secrets: &Resolver) -> Result<()> {
        let mut post = reqwest::Client::new()
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(bearer) = &self.bearer {
            let token = secrets
                .resolve(bearer, "the hook's bearer token")
                .await?
                .text("the hook's bearer token")?;
            post = post.bearer_auth(token.as_str());
        }
        let response = post
            .send()
            .await
            .map_err(|e| Error::source_failed(format!("{url}: {}", without_url(&e))))?;
        let status = response.status();
        match status.as_u16() {
            200..=299 => Ok(()),
            401 | 403 => Err(Error::auth(format!(
                "{url} answered {status}: check the hook's bearer token"
            ))),
            _ => Err(Error::source_failed(format!("{url} answered {status}"))),
        }
    }
}

async fn run_command(argv: &[String], body: &str, request: &Request<'_>) -> Result<()> {
    let mut command = tokio::process::Command::from(crate::process::clean_command(&argv[0], &[]));
    command
        .args(&argv[1..])
        .env("COFFRE_HOOK_EVENT", request.event)
        .env("COFFRE_TARGET", request.target)
        .env("COFFRE_FINGERPRINT", request.fingerprint)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|e| {
        Error::config(format!(
            "cannot run {}: {e}: check the hook's command",
            argv[0]
        ))
    })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that exits without reading its input is judged by its exit status.
        let _ = stdin.write_all(body.as_bytes()).await;
    }
    let output = child
        .wait_with_output()
        .await
        .map_err(|e| Error::source_failed(format!("{}: {e}", argv[0])))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
    Err(Error::source_failed(format!(
        "{} failed ({}){}",
        argv[0],
        crate::process::describe_status(output.status),
        last.map(|l| format!(": {}", l.trim())).unwrap_or_default()
    )))
}

/// A reqwest error without the URL it repeats (the message names it once).
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(&format!(" ({url})"), "");
    }
    use std::error::Error as _;
    match e.source() {
        Some(source) => format!("{text}: {source}"),
        None => text,
    }
}
