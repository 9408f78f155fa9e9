//! S3 calls object_store does not make, built here and signed by `crate::sigv4`:
//! - Object Lock: a retain-until date on each object of a backup, set with PutObjectRetention
//!   right after the object is written. Until then no one, coffre included, can delete or
//!   overwrite that object version (compliance mode: not even the account root).
//! - ListMultipartUploads: the uploads a killed backup left open, which hold storage (and cost)
//!   until aborted. Aborting goes through object_store.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, SecondsFormat, Utc};
use http::Method;
use md5::{Digest, Md5};
use object_store::MultipartId;
use object_store::aws::AmazonS3;
use object_store::client::HttpRequestBody;
use object_store::multipart::MultipartStore;
use object_store::path::Path as ObjectPath;
use serde::Deserialize;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::manifest::LockMode;
use crate::sigv4::SignedClient;

fn s3_mode_name(mode: LockMode) -> &'static str {
    match mode {
        LockMode::Governance => "GOVERNANCE",
        LockMode::Compliance => "COMPLIANCE",
    }
}

/// Requests to one S3 bucket that object_store has no call for.
#[derive(Debug)]
pub struct S3Api {
    s3: Arc<AmazonS3>,
    client: SignedClient,
    bucket_url: String,
}

/// A multipart upload that was started and neither completed nor aborted.
#[derive(Clone, Debug)]
pub struct OpenUpload {
    pub path: ObjectPath,
    pub upload_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListUploadsPage {
    #[serde(default)]
    is_truncated: bool,
    next_key_marker: Option<String>,
    next_upload_id_marker: Option<String>,
    #[serde(default, rename = "Upload")]
    uploads: Vec<ListedUpload>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListedUpload {
    key: String,
    upload_id: String,
}

/// Percent-encoding for a query value or a key segment, as SigV4 canonicalizes them.
fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
        .replace('*', "%2A")
        .replace("%7E", "~")
}

impl S3Api {
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
        let client = SignedClient::new(s3.credentials().clone(), "s3", region, allow_http)
            .map_err(|e| e.context("store (s3)"))?;
        Ok(Self {
            s3,
            client,
            bucket_url,
        })
    }

    /// Lock the current version of `path` until `until`.
    pub async fn retain(
        &self,
        path: &ObjectPath,
        mode: LockMode,
        until: DateTime<Utc>,
    ) -> Result<()> {
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
             <Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
             <Mode>{}</Mode><RetainUntilDate>{}</RetainUntilDate></Retention>",
            s3_mode_name(mode),
            until.to_rfc3339_opts(SecondsFormat::Secs, true)
        );
        let key: Vec<String> = path.parts().map(|p| encode(p.as_ref())).collect();
        let url = format!("{}/{}?retention", self.bucket_url, key.join("/"));
        let what = format!("setting object lock on {path}");
        self.send(Method::PUT, &url, Some(body), &what)
            .await
            .map_err(|e| {
                e.with_hint(
                    "is Object Lock enabled on the bucket, and may these credentials s3:PutObjectRetention?",
                )
            })?;
        Ok(())
    }

    /// Every open multipart upload under `prefix`.
    pub async fn open_uploads(&self, prefix: &ObjectPath) -> Result<Vec<OpenUpload>> {
        let mut uploads = Vec::new();
        let mut markers: Option<(String, String)> = None;
        let what = format!("listing open multipart uploads under {prefix}");
        loop {
            let mut url = format!(
                "{}?uploads&prefix={}",
                self.bucket_url,
                encode(&format!("{prefix}/"))
            );
            if let Some((key, id)) = &markers {
                url.push_str(&format!(
                    "&key-marker={}&upload-id-marker={}",
                    encode(key),
                    encode(id)
                ));
            }
            let (status, body) = self.exchange(Method::GET, &url, None, &what).await?;
            // Some S3-compatible servers cannot list uploads: the bucket's lifecycle rule
            // (docs/OPERATIONS.md) is then the only cleanup.
            if status == http::StatusCode::NOT_IMPLEMENTED {
                tracing::warn!(
                    "{what}: the server does not implement it; rely on the bucket's AbortIncompleteMultipartUpload lifecycle rule"
                );
                return Ok(Vec::new());
            }
            check_status(status, &body, &what)?;
            let page: ListUploadsPage = quick_xml::de::from_reader(body.as_slice())
                .map_err(|e| Error::store(format!("{what}: unexpected answer: {e}")))?;
            uploads.extend(page.uploads.into_iter().map(|u| OpenUpload {
                path: ObjectPath::from(u.key),
                upload_id: u.upload_id,
            }));
            match (
                page.is_truncated,
                page.next_key_marker,
                page.next_upload_id_marker,
            ) {
                (true, Some(key), Some(id)) => markers = Some((key, id)),
                _ => return Ok(uploads),
            }
        }
    }

    /// Abort an open upload: its parts are deleted.
    pub async fn abort_upload(&self, upload: &OpenUpload) -> Result<()> {
        let id: MultipartId = upload.upload_id.clone();
        self.s3
            .abort_multipart(&upload.path, &id)
            .await
            .map_err(|e| super::errors::store_error("aborting the open upload of", &upload.path, e))
    }

    /// Sign and send one request; the body of a successful answer.
    async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<String>,
        what: &str,
    ) -> Result<Vec<u8>> {
        let (status, body) = self.exchange(method, url, body, what).await?;
        check_status(status, &body, what)?;
        Ok(body)
    }

    /// Sign and send one request; the status and body of the answer.
    async fn exchange(
        &self,
        method: Method,
        url: &str,
        body: Option<String>,
        what: &str,
    ) -> Result<(http::StatusCode, Vec<u8>)> {
        let mut builder = http::Request::builder().method(method).uri(url);
        if let Some(body) = &body {
            builder = builder
                .header("content-type", "application/xml")
                .header("content-md5", B64.encode(Md5::digest(body.as_bytes())));
        }
        let request = builder
            .body(HttpRequestBody::from(body.unwrap_or_default()))
            .map_err(|e| Error::store(format!("{what}: {e}")))?;
        self.client.exchange(request, what).await
    }
}

/// An unsuccessful answer as an error: refused credentials are an auth error (fixing them,
/// not retrying, helps), anything else a store error.
fn check_status(status: http::StatusCode, body: &[u8], what: &str) -> Result<()> {
    if status.is_success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(body);
    let code = text
        .split("<Code>")
        .nth(1)
        .and_then(|rest| rest.split("</Code>").next())
        .unwrap_or("no error code");
    let why = format!("{what}: HTTP {status} {code}");
    if status == http::StatusCode::FORBIDDEN
        && matches!(
            code,
            "SignatureDoesNotMatch" | "InvalidAccessKeyId" | "AccessDenied"
        )
    {
        return Err(Error::auth(why));
    }
    Err(Error::store(why))
}
