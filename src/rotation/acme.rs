//! Certificates from an ACME server (Let's Encrypt, or a private one) with instant-acme: coffre
//! answers the HTTP-01 challenges itself, on a port the names' port 80 is routed to, and sends a
//! CSR for the private key it generated, so the key never leaves the rotation.

use http_body_util::Full;
use hyper::body::Bytes;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use zeroize::Zeroizing;

use super::certificate::Names;
use crate::error::{Error, Result};

/// Where and how to order.
pub struct AcmeServer<'a> {
    pub directory: &'a str,
    pub contact: &'a [String],
    pub http01_listen: SocketAddr,
    /// Roots for the ACME server's own TLS (a private server); the system's otherwise.
    pub server_root: Option<&'a PathBuf>,
}

/// What an order gave: the chain, and the account's credentials when it made a new account.
pub struct Issued {
    pub chain: String,
    pub new_account: Option<Zeroizing<String>>,
}

/// Order a certificate for `names` and `key_pem`'s key, as the account in `account_json`
/// (a new account when none).
pub async fn order(
    server: &AcmeServer<'_>,
    account_json: Option<&str>,
    names: &Names,
    key_pem: &str,
) -> Result<Issued> {
    let failed = |doing: &str, e: instant_acme::Error| {
        Error::source_failed(format!(
            "{}: {doing}: {}",
            server.directory,
            with_causes(&e)
        ))
    };
    let builder = match server.server_root {
        Some(root) => Account::builder_with_root(root),
        None => Account::builder(),
    }
    .map_err(|e| Error::config(format!("the ACME client: {e}")))?;
    let (account, new_account) = match account_json {
        Some(json) => {
            let credentials: AccountCredentials = serde_json::from_str(json).map_err(|_| {
                Error::config("the ACME account secret is not an instant-acme account (move it away to make a new account)")
            })?;
            let account = builder
                .from_credentials(credentials)
                .await
                .map_err(|e| failed("loading the account", e))?;
            (account, None)
        }
        None => {
            let contact: Vec<&str> = server.contact.iter().map(String::as_str).collect();
            let (account, credentials) = builder
                .create(
                    &NewAccount {
                        contact: &contact,
                        terms_of_service_agreed: true,
                        only_return_existing: false,
                    },
                    server.directory.to_string(),
                    None,
                )
                .await
                .map_err(|e| failed("creating an account", e))?;
            let json = serde_json::to_string(&credentials).expect("credentials serialize");
            (account, Some(Zeroizing::new(json)))
        }
    };
    let identifiers: Vec<Identifier> = names
        .dns
        .iter()
        .map(|d| Identifier::Dns(d.clone()))
        .chain(names.ips.iter().map(|ip| Identifier::Ip(*ip)))
        .collect();
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(|e| failed("placing the order", e))?;
    let responder = Responder::shared(server.http01_listen).await?;
    let mut tokens = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let mut authorization = authorization.map_err(|e| failed("reading an authorization", e))?;
        if authorization.status == AuthorizationStatus::Valid {
            continue;
        }
        let mut challenge = authorization
            .challenge(ChallengeType::Http01)
            .ok_or_else(|| {
                Error::source_failed(format!(
                    "{}: no HTTP-01 challenge offered",
                    server.directory
                ))
            })?;
        let token = challenge.token.clone();
        responder.answer(&token, challenge.key_authorization().as_str());
        tokens.push(token);
        challenge
            .set_ready()
            .await
            .map_err(|e| failed("answering a challenge", e))?;
    }
    let retries = RetryPolicy::new().timeout(Duration::from_secs(120));
    let status = order.poll_ready(&retries).await;
    for token in &tokens {
        responder.forget(token);
    }
    match status.map_err(|e| failed("waiting for validation", e))? {
        OrderStatus::Ready => {}
        other => {
            return Err(Error::source_failed(format!(
                "{}: the order is {other:?}, not ready: check that port 80 of each name reaches coffre's HTTP-01 listener {}",
                server.directory, server.http01_listen
            )));
        }
    }
    let csr = csr(names, key_pem)?;
    order
        .finalize_csr(&csr)
        .await
        .map_err(|e| failed("finalizing the order", e))?;
    let chain = order
        .poll_certificate(&retries)
        .await
        .map_err(|e| failed("downloading the certificate", e))?;
    Ok(Issued { chain, new_account })
}

/// An error and what caused it, as one line ("client error (Connect): invalid peer certificate").
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn csr(names: &Names, key_pem: &str) -> Result<Vec<u8>> {
    let key = rcgen::KeyPair::from_pem(key_pem)
        .map_err(|_| Error::integrity("the pending key cannot be read"))?;
    let sans: Vec<String> = names
        .dns
        .iter()
        .cloned()
        .chain(names.ips.iter().map(|ip| ip.to_string()))
        .collect();
    let mut params = rcgen::CertificateParams::new(sans)
        .map_err(|e| Error::config(format!("the certificate's names: {e}")))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let request = params
        .serialize_request(&key)
        .map_err(|e| Error::internal(format!("making the CSR: {e}")))?;
    Ok(request.der().to_vec())
}

/// Answers `/.well-known/acme-challenge/TOKEN` on one address for every order of this
/// process (several certificates may be ordered at once).
struct Responder {
    answers: Mutex<HashMap<String, String>>,
}

static RESPONDERS: OnceLock<tokio::sync::Mutex<HashMap<SocketAddr, Arc<Responder>>>> =
    OnceLock::new();

impl Responder {
    async fn shared(addr: SocketAddr) -> Result<Arc<Responder>> {
        let mut all = RESPONDERS.get_or_init(Default::default).lock().await;
        if let Some(r) = all.get(&addr) {
            return Ok(Arc::clone(r));
        }
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            Error::config(format!(
                "acme.http01_listen {addr}: {e}: choose a free port (and route the names' port 80 to it)"
            ))
        })?;
        let responder = Arc::new(Responder {
            answers: Mutex::new(HashMap::new()),
        });
        tokio::spawn(serve(listener, Arc::clone(&responder)));
        all.insert(addr, Arc::clone(&responder));
        Ok(responder)
    }

    fn answer(&self, token: &str, key_authorization: &str) {
        self.answers
            .lock()
            .expect("not poisoned")
            .insert(token.to_string(), key_authorization.to_string());
    }

    fn forget(&self, token: &str) {
        self.answers.lock().expect("not poisoned").remove(token);
    }

    fn respond<B>(&self, request: &hyper::Request<B>) -> hyper::Response<Full<Bytes>> {
        let answer = request
            .uri()
            .path()
            .strip_prefix("/.well-known/acme-challenge/")
            .and_then(|token| {
                self.answers
                    .lock()
                    .expect("not poisoned")
                    .get(token)
                    .cloned()
            });
        let (status, body) = match answer {
            Some(a) => (hyper::StatusCode::OK, a),
            None => (hyper::StatusCode::NOT_FOUND, "not found\n".to_string()),
        };
        hyper::Response::builder()
            .status(status)
            .header("content-type", "text/plain")
            .body(Full::new(Bytes::from(body)))
            .expect("a valid response")
    }
}

async fn serve(listener: tokio::net::TcpListener, responder: Arc<Responder>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let responder = Arc::clone(&responder);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let response = responder.respond(&request);
                async move { Ok::<_, std::convert::Infallible>(response) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}
