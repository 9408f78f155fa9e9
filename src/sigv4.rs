//! AWS requests that object_store makes no call for (S3 Object Lock and upload listings,
//! Secrets Manager), signed with object_store's own SigV4 signer and credential chain
//! (environment, web identity for IRSA, instance metadata) rather than the AWS SDK, which would
//! double the build for a handful of calls.

use object_store::aws::{AwsAuthorizer, AwsCredentialProvider};
use object_store::client::{
    ClientOptions, HttpClient, HttpConnector, HttpRequestBody, ReqwestConnector,
};

use crate::error::{Error, Result};

/// An HTTP client whose requests are signed for one AWS service in one region.
#[derive(Debug)]
pub struct SignedClient {
    http: HttpClient,
    credentials: AwsCredentialProvider,
    service: &'static str,
    region: String,
}

impl SignedClient {
    /// `allow_http`: plain-HTTP endpoints (test servers) are refused unless set.
    pub fn new(
        credentials: AwsCredentialProvider,
        service: &'static str,
        region: &str,
        allow_http: bool,
    ) -> Result<Self> {
        let http = ReqwestConnector::default()
            .connect(&ClientOptions::new().with_allow_http(allow_http))
            .map_err(|e| Error::config(format!("{service} client: {e}")).caused_by(e))?;
        Ok(Self {
            http,
            credentials,
            service,
            region: region.to_string(),
        })
    }

    /// Sign `request` and send it; the status and body of the answer. `what` names the request
    /// in errors: credentials that cannot be had are an auth error, a request that cannot be
    /// made or sent a store error.
    pub async fn exchange(
        &self,
        mut request: http::Request<HttpRequestBody>,
        what: &str,
    ) -> Result<(http::StatusCode, Vec<u8>)> {
        let credential = self
            .credentials
            .get_credential()
            .await
            .map_err(|e| Error::auth(format!("{what}: AWS credentials: {e}")).caused_by(e))?;
        AwsAuthorizer::new(&credential, self.service, &self.region)
            .try_authorize(&mut request, None)
            .map_err(|e| Error::store(format!("{what}: signing: {e}")).caused_by(e))?;
        let response = self
            .http
            .execute(request)
            .await
            .map_err(|e| Error::store(format!("{what}: {e}: is it reachable?")).caused_by(e))?;
        let status = response.status();
        let body = response.into_body().bytes().await.unwrap_or_default();
        Ok((status, body.to_vec()))
    }
}
