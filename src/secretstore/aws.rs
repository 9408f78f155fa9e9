//! AWS Secrets Manager secrets (by name or ARN), whose SecretString is a JSON object of fields,
//! as the AWS rotation functions keep database credentials. Versions follow the same stages
//! as AWS's own rotation: a new value is put as AWSPENDING, then AWSCURRENT moves to it from
//! the version that was read (`RemoveFromVersionId`), and AWS makes the old one AWSPREVIOUS.
//! That move fails when AWSCURRENT is no longer on the version read, which makes it a
//! conditional write.
//!
//! Requests are the service's JSON API, signed by `crate::sigv4`.

use async_trait::async_trait;
use object_store::aws::AmazonS3Builder;
use object_store::client::HttpRequestBody;
use serde::Deserialize;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::versioned::{Fields, SecretStore, Versioned, Written};
use super::{FileAccess, SecretRef};
use crate::error::{Error, Result};
use crate::sigv4::SignedClient;

/// `[secrets_manager]` in the config.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsManagerConfig {
    /// Default: `AWS_REGION`, else us-east-1.
    pub region: Option<String>,
    /// Another endpoint (a VPC endpoint, a test server).
    pub endpoint: Option<String>,
    /// Explicit credentials (env: or file:); default the AWS credential chain.
    pub access_key_id: Option<SecretRef>,
    pub secret_access_key: Option<SecretRef>,
}

pub struct SecretsManagerStore {
    url: String,
    client: SignedClient,
}

impl SecretsManagerStore {
    pub fn new(config: &SecretsManagerConfig, file_access: FileAccess) -> Result<Self> {
        let region = config
            .region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .unwrap_or_else(|| "us-east-1".into());
        let url = config
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://secretsmanager.{region}.amazonaws.com"));
        // object_store's S3 builder resolves the credential chain; the bucket is never used.
        let mut builder = AmazonS3Builder::from_env()
            .with_region(&region)
            .with_bucket_name("coffre-secrets-manager");
        let read = |r: &SecretRef, what: &str| super::read_local(r, what, file_access);
        if let Some(r) = &config.access_key_id {
            builder = builder.with_access_key_id(read(r, "the AWS access key id")?.as_str());
        }
        if let Some(r) = &config.secret_access_key {
            builder =
                builder.with_secret_access_key(read(r, "the AWS secret access key")?.as_str());
        }
        let s3 = builder
            .build()
            .map_err(|e| Error::config(format!("[secrets_manager]: {e}")))?;
        let client = SignedClient::new(
            s3.credentials().clone(),
            "secretsmanager",
            &region,
            url.starts_with("http://"),
        )
        .map_err(|e| e.context("[secrets_manager]"))?;
        Ok(Self { url, client })
    }

    /// Call one action; the answer, or the error type AWS named and its message.
    async fn call(
        &self,
        action: &str,
        body: &str,
    ) -> Result<std::result::Result<Value, (String, String)>> {
        let what = format!("AWS Secrets Manager at {}: {action}", self.url);
        let request = http::Request::builder()
            .method(http::Method::POST)
            .uri(&self.url)
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", format!("secretsmanager.{action}"))
            .body(HttpRequestBody::from(body.to_string()))
            .map_err(|e| Error::store(format!("{what}: {e}")))?;
        let (status, bytes) = self.client.exchange(request, &what).await?;
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(Ok(value));
        }
        let kind = value["__type"]
            .as_str()
            .unwrap_or("no error type")
            .rsplit('#')
            .next()
            .unwrap_or_default()
            .to_string();
        let message = value["message"]
            .as_str()
            .or(value["Message"].as_str())
            .unwrap_or_default()
            .to_string();
        if status.as_u16() == 403
            || matches!(
                kind.as_str(),
                "AccessDeniedException"
                    | "UnrecognizedClientException"
                    | "InvalidSignatureException"
            )
        {
            return Err(Error::auth(format!(
                "AWS Secrets Manager: {action}: {kind} {message}: allow it in coffre's IAM policy"
            )));
        }
        Ok(Err((kind, message)))
    }

    fn unexpected(action: &str, name: &str, (kind, message): (String, String)) -> Error {
        Error::store(format!(
            "AWS Secrets Manager: {action} {name}: {kind} {message}"
        ))
    }

    /// Move `stage` to version `to` (if any) from version `from` (if any).
    async fn move_stage(
        &self,
        name: &str,
        stage: &str,
        to: Option<&str>,
        from: Option<&str>,
    ) -> Result<std::result::Result<Value, (String, String)>> {
        let mut body = json!({"SecretId": name, "VersionStage": stage});
        if let Some(to) = to {
            body["MoveToVersionId"] = json!(to);
        }
        if let Some(from) = from {
            body["RemoveFromVersionId"] = json!(from);
        }
        self.call("UpdateSecretVersionStage", &body.to_string())
            .await
    }
}

#[async_trait]
impl SecretStore for SecretsManagerStore {
    async fn read(&self, name: &str) -> Result<Option<Versioned>> {
        let body = json!({"SecretId": name, "VersionStage": "AWSCURRENT"}).to_string();
        let mut answer = match self.call("GetSecretValue", &body).await? {
            Ok(answer) => answer,
            Err((kind, _)) if kind == "ResourceNotFoundException" => return Ok(None),
            Err(other) => return Err(Self::unexpected("GetSecretValue", name, other)),
        };
        let text = Zeroizing::new(
            answer["SecretString"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
        drop(answer["SecretString"].take());
        let bad = || {
            Error::store(format!(
                "AWS Secrets Manager {name}: its SecretString is not a JSON object of strings, so coffre did not write it"
            ))
        };
        let value: Value = serde_json::from_str(&text).map_err(|_| bad())?;
        let fields = Fields::from_json(&value).ok_or_else(bad)?;
        let version = answer["VersionId"].as_str().unwrap_or_default().to_string();
        Ok(Some(Versioned { fields, version }))
    }

    async fn write(&self, name: &str, fields: &Fields, expected: Option<&str>) -> Result<Written> {
        let token = uuid::Uuid::new_v4().to_string();
        let secret = fields.to_json();
        let Some(expected) = expected else {
            let body = Zeroizing::new(
                json!({"Name": name, "SecretString": secret.as_str(), "ClientRequestToken": token})
                    .to_string(),
            );
            return match self.call("CreateSecret", &body).await? {
                Ok(answer) => Ok(Written::Done(
                    answer["VersionId"].as_str().unwrap_or(&token).to_string(),
                )),
                Err((kind, _)) if kind == "ResourceExistsException" => Ok(Written::Conflict),
                Err(other) => Err(Self::unexpected("CreateSecret", name, other)),
            };
        };
        let body = Zeroizing::new(
            json!({"SecretId": name, "SecretString": secret.as_str(), "ClientRequestToken": token,
                   "VersionStages": ["AWSPENDING"]})
            .to_string(),
        );
        match self.call("PutSecretValue", &body).await? {
            Ok(_) => {}
            Err((kind, _)) if kind == "ResourceNotFoundException" => return Ok(Written::Conflict),
            Err(other) => return Err(Self::unexpected("PutSecretValue", name, other)),
        }
        let moved = self
            .move_stage(name, "AWSCURRENT", Some(&token), Some(expected))
            .await?;
        // Clear AWSPENDING either way: a current or abandoned version is no longer pending.
        let _ = self
            .move_stage(name, "AWSPENDING", None, Some(&token))
            .await;
        match moved {
            Ok(_) => Ok(Written::Done(token)),
            // AWSCURRENT is no longer on the version read: someone else wrote.
            Err((kind, _)) if kind == "InvalidParameterException" => Ok(Written::Conflict),
            Err(other) => Err(Self::unexpected("UpdateSecretVersionStage", name, other)),
        }
    }

    async fn delete(&self, name: &str) -> Result<()> {
        let body = json!({"SecretId": name, "ForceDeleteWithoutRecovery": true}).to_string();
        match self.call("DeleteSecret", &body).await? {
            Ok(_) => Ok(()),
            Err((kind, _)) if kind == "ResourceNotFoundException" => Ok(()),
            Err(other) => Err(Self::unexpected("DeleteSecret", name, other)),
        }
    }
}
