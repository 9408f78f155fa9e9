//! S3 Object Lock: a retain-until date on each object of a backup, set with
//! PutObjectRetention right after the object is written. Until then no one, coffre included,
//! can delete or overwrite that object version (compliance mode: not even the account root).
//!
//! object_store has no call for this, so the request is built here and signed with
//! object_store's own SigV4 signer and credentials.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, SecondsFormat, Utc};
use md5::{Digest, Md5};
use object_store::aws::{AmazonS3, AwsAuthorizer};
use object_store::client::{
    ClientOptions, HttpClient, HttpConnector, HttpRequestBody, ReqwestConnector,
};
use object_store::path::Path as ObjectPath;
use serde::Deserialize;
use std::sync::Arc;

use crate::error::{Error, Result};

/// Object Lock settings of a job (`[object_lock]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockConfig {
    pub mode: LockMode,
    /// Days each backup stays locked after it is written.
    pub days: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LockMode {
    /// Users with s3:BypassGovernanceRetention can still delete.
    Governance,
    /// Nobody can delete or shorten the lock until it expires.
    Compliance,
}

impl LockMode {
    fn s3_name(self) -> &'static str {
        match self {
            LockMode::Governance => "GOVERNANCE",
            LockMode::Compliance => "COMPLIANCE",
        }
    }
}

/// Sets retention on objects of one S3 bucket.
#[derive(Debug)]
pub struct ObjectLocker {
    s3: Arc<AmazonS3>,
    http: HttpClient,
    bucket_url: String,
    region: String,
}

impl ObjectLocker {
    pub fn new(
        s3: Arc<AmazonS3>,
        bucket: &str,
        region: &str,
        endpoint: Option<&str>,
        path_style: bool,
        allow_http: bool,
    ) -> Result<Self> {
        let bucket_url = match (endpoint, path_style) {
            (Some(endpoint), true) => format!("{}/{bucket}", endpoint.trim_end_matches('/')),
            (Some(endpoint), false) => match endpoint.split_once("://") {
                Some((scheme, host)) => {
                    format!("{scheme}://{bucket}.{}", host.trim_end_matches('/'))
                }
                None => {
                    return Err(Error::config(format!(
                        "store.endpoint '{endpoint}' has no scheme"
                    )));
                }
            },
            (None, true) => format!("https://s3.{region}.amazonaws.com/{bucket}"),
            (None, false) => format!("https://{bucket}.s3.{region}.amazonaws.com"),
        };
        let http = ReqwestConnector::default()
            .connect(&ClientOptions::new().with_allow_http(allow_http))
            .map_err(|e| Error::config(format!("store (s3): {e}")))?;
        Ok(Self {
            s3,
            http,
            bucket_url,
            region: region.to_string(),
        })
    }

    /// Lock the current version of `path` until `until`.
    pub async fn retain(
        &self,
        path: &ObjectPath,
        mode: LockMode,
        until: DateTime<Utc>,
    ) -> Result<()> {
        let fail = |what: String| Error::store(format!("setting object lock on {path}: {what}"));
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
             <Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
             <Mode>{}</Mode><RetainUntilDate>{}</RetainUntilDate></Retention>",
            mode.s3_name(),
            until.to_rfc3339_opts(SecondsFormat::Secs, true)
        );
        let key: Vec<String> = path
            .parts()
            .map(|p| {
                url::form_urlencoded::byte_serialize(p.as_ref().as_bytes())
                    .collect::<String>()
                    .replace('+', "%20")
            })
            .collect();
        let url = format!("{}/{}?retention", self.bucket_url, key.join("/"));
        let mut request = http::Request::builder()
            .method(http::Method::PUT)
            .uri(&url)
            .header("content-type", "application/xml")
            .header("content-md5", B64.encode(Md5::digest(body.as_bytes())))
            .body(HttpRequestBody::from(body))
            .map_err(|e| fail(e.to_string()))?;
        let credential = self
            .s3
            .credentials()
            .get_credential()
            .await
            .map_err(|e| fail(e.to_string()))?;
        AwsAuthorizer::new(&credential, "s3", &self.region)
            .try_authorize(&mut request, None)
            .map_err(|e| fail(e.to_string()))?;
        let response = self
            .http
            .execute(request)
            .await
            .map_err(|e| fail(e.to_string()))?;
        if response.status().is_success() {
            return Ok(());
        }
        let status = response.status();
        let body = response.into_body().bytes().await.unwrap_or_default();
        let text = String::from_utf8_lossy(&body);
        let code = text
            .split("<Code>")
            .nth(1)
            .and_then(|rest| rest.split("</Code>").next())
            .unwrap_or("no error code");
        Err(fail(format!(
            "HTTP {status} {code} (is Object Lock enabled on the bucket, and may these credentials s3:PutObjectRetention?)"
        )))
    }
}
