//! A small Kubernetes API server for tests, since no real one can run here: namespaced objects
//! of any resource (`/api/v1/...` and `/apis/GROUP/VERSION/...`), read, created and replaced
//! with the API server's own rules, which coffre's correctness rests on:
//! - create fails with 409 AlreadyExists when the name is taken;
//! - replace carries the resourceVersion it read and fails with 409 Conflict when the object
//!   changed since; every write gets a new resourceVersion;
//! - a missing object is 404 NotFound; errors are `Status` objects, as kube expects;
//! - RBAC: a test can forbid a verb on a resource (403 Forbidden);
//! - list a collection; merge-patch (RFC 7386) an object; a workload's spec change bumps its
//!   `metadata.generation`, and a stand-in controller rolls it out at once (its status says so)
//!   unless the test stalls it;
//! - TokenReview: the service account tokens it issued (`issue_token`) review as authenticated,
//!   which is what Vault's Kubernetes auth method asks of the API server.
//!
//! coffre reaches it through the real kube client, with a kubeconfig (`kubeconfig()`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

/// One request as received: method and path (without the query).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
}

#[derive(Default)]
struct State {
    /// By (resource path, namespace, name): "coordination.k8s.io/v1/leases", "coffre", "x".
    objects: BTreeMap<(String, String, String), Value>,
    version: u64,
    /// (verb, resource) pairs refused with 403.
    forbidden: BTreeSet<(String, String)>,
    requests: Vec<Request>,
    /// Workloads whose rollouts never finish (by name).
    stalled: BTreeSet<String>,
    /// Service account tokens issued: token -> (namespace, name, uid).
    tokens: BTreeMap<String, (String, String, String)>,
}

pub struct KubeApi {
    pub url: String,
    state: Arc<Mutex<State>>,
}

/// Where a request points.
struct Target {
    /// group/version/resource ("v1/secrets" for the core group).
    kind: String,
    /// resource.group, as Kubernetes names it in messages ("leases.coordination.k8s.io").
    qualified: String,
    resource: String,
    namespace: String,
    name: Option<String>,
}

fn parse_path(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let (namespace, resource, name) = match rest {
        ["namespaces", ns, resource] => (*ns, *resource, None),
        ["namespaces", ns, resource, name] => (*ns, *resource, Some(name.to_string())),
        _ => return None,
    };
    let kind = match group {
        "" => format!("{version}/{resource}"),
        group => format!("{group}/{version}/{resource}"),
    };
    let qualified = match group {
        "" => resource.to_string(),
        group => format!("{resource}.{group}"),
    };
    Some(Target {
        kind,
        qualified,
        resource: resource.to_string(),
        namespace: namespace.to_string(),
        name,
    })
}

fn status(code: u16, reason: &str, message: String) -> (u16, Value) {
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    });
    (code, body)
}

impl State {
    fn handle(&mut self, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
        if method == "POST" && path == "/apis/authentication.k8s.io/v1/tokenreviews" {
            return self.review(body);
        }
        let Some(target) = parse_path(path) else {
            return status(404, "NotFound", format!("the server could not find {path}"));
        };
        let verb = match (method, &target.name) {
            ("GET", Some(_)) => "get",
            ("GET", None) => "list",
            ("PATCH", Some(_)) => "patch",
            ("POST", None) => "create",
            ("PUT", Some(_)) => "update",
            ("DELETE", Some(_)) => "delete",
            _ => {
                return status(
                    405,
                    "MethodNotAllowed",
                    format!("{method} {path} is not served by the test API server"),
                );
            }
        };
        if self
            .forbidden
            .contains(&(verb.to_string(), target.resource.clone()))
        {
            let name = target.name.as_deref().unwrap_or_default();
            return status(
                403,
                "Forbidden",
                format!(
                    "{} \"{name}\" is forbidden: User \"system:serviceaccount:{ns}:coffre\" cannot {verb} resource \"{}\" in the namespace \"{ns}\"",
                    target.qualified,
                    target.resource,
                    ns = target.namespace
                ),
            );
        }
        let body: Value = match verb {
            "get" | "delete" | "list" => Value::Null,
            _ => match serde_json::from_slice(body) {
                Ok(v) => v,
                Err(e) => return status(400, "BadRequest", format!("invalid body: {e}")),
            },
        };
        match verb {
            "get" => self.get(&target),
            "list" => self.list(&target),
            "patch" => self.patch(&target, &body),
            "delete" => self.delete(&target),
            "create" => self.create(&target, body),
            _ => self.replace(&target, body),
        }
    }

    /// A TokenReview: authenticated for a token this server issued, as the API server answers.
    fn review(&self, body: &[u8]) -> (u16, Value) {
        let review: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let token = review["spec"]["token"].as_str().unwrap_or_default();
        let status = match self.tokens.get(token) {
            Some((namespace, name, uid)) => json!({
                "authenticated": true,
                "user": {
                    "username": format!("system:serviceaccount:{namespace}:{name}"),
                    "uid": uid,
                    "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{namespace}")],
                },
            }),
            None => json!({"authenticated": false, "error": "invalid bearer token"}),
        };
        (
            201,
            json!({"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1", "metadata": {}, "spec": review["spec"], "status": status}),
        )
    }

    fn key(target: &Target, name: &str) -> (String, String, String) {
        (
            target.kind.clone(),
            target.namespace.clone(),
            name.to_string(),
        )
    }

    fn get(&self, target: &Target) -> (u16, Value) {
        let name = target.name.as_deref().unwrap_or_default();
        match self.objects.get(&Self::key(target, name)) {
            Some(object) => (200, object.clone()),
            None => status(
                404,
                "NotFound",
                format!("{} \"{name}\" not found", target.qualified),
            ),
        }
    }

    fn list(&self, target: &Target) -> (u16, Value) {
        let items: Vec<Value> = self
            .objects
            .iter()
            .filter(|((kind, ns, _), _)| *kind == target.kind && *ns == target.namespace)
            .map(|(_, o)| o.clone())
            .collect();
        (
            200,
            json!({"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": self.version.to_string()}, "items": items}),
        )
    }

    /// A JSON merge patch; a workload whose spec changed gets a new generation, rolled out by
    /// the stand-in controller unless stalled.
    fn patch(&mut self, target: &Target, patch: &Value) -> (u16, Value) {
        let name = target.name.clone().unwrap_or_default();
        let key = Self::key(target, &name);
        let Some(mut object) = self.objects.get(&key).cloned() else {
            return status(
                404,
                "NotFound",
                format!("{} \"{name}\" not found", target.qualified),
            );
        };
        let spec_before = object["spec"].clone();
        merge_patch(&mut object, patch);
        let workload =
            ["deployments", "statefulsets", "daemonsets"].contains(&target.resource.as_str());
        if workload && object["spec"] != spec_before {
            let generation = object["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
            object["metadata"]["generation"] = json!(generation);
            if !self.stalled.contains(&name) {
                roll_out(&mut object, &target.resource);
            }
        }
        self.stamp(&mut object, target);
        self.objects.insert(key, object.clone());
        (200, object)
    }

    fn delete(&mut self, target: &Target) -> (u16, Value) {
        let name = target.name.as_deref().unwrap_or_default();
        match self.objects.remove(&Self::key(target, name)) {
            Some(_) => (
                200,
                json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}),
            ),
            None => status(
                404,
                "NotFound",
                format!("{} \"{name}\" not found", target.qualified),
            ),
        }
    }

    fn stamp(&mut self, object: &mut Value, target: &Target) {
        self.version += 1;
        let meta = &mut object["metadata"];
        meta["resourceVersion"] = json!(self.version.to_string());
        meta["namespace"] = json!(target.namespace);
    }

    fn create(&mut self, target: &Target, mut object: Value) -> (u16, Value) {
        let Some(name) = object["metadata"]["name"].as_str().map(str::to_string) else {
            return status(
                422,
                "Invalid",
                format!(
                    "{} is invalid: metadata.name: Required value",
                    target.qualified
                ),
            );
        };
        if !object["metadata"]["resourceVersion"].is_null() {
            return status(
                400,
                "BadRequest",
                "resourceVersion should not be set on objects to be created".into(),
            );
        }
        let key = Self::key(target, &name);
        if self.objects.contains_key(&key) {
            return status(
                409,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", target.qualified),
            );
        }
        object["metadata"]["uid"] = json!(format!("uid-{}", self.version + 1));
        object["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
        self.stamp(&mut object, target);
        self.objects.insert(key, object.clone());
        (201, object)
    }

    fn replace(&mut self, target: &Target, mut object: Value) -> (u16, Value) {
        let name = target.name.clone().unwrap_or_default();
        if object["metadata"]["name"].as_str() != Some(name.as_str()) {
            return status(
                400,
                "BadRequest",
                "the name of the object does not match the name on the URL".into(),
            );
        }
        let key = Self::key(target, &name);
        let Some(current) = self.objects.get(&key) else {
            return status(
                404,
                "NotFound",
                format!("{} \"{name}\" not found", target.qualified),
            );
        };
        let sent = object["metadata"]["resourceVersion"].as_str().unwrap_or("");
        if !sent.is_empty() && sent != current["metadata"]["resourceVersion"] {
            return status(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                    target.qualified
                ),
            );
        }
        object["metadata"]["uid"] = current["metadata"]["uid"].clone();
        object["metadata"]["creationTimestamp"] = current["metadata"]["creationTimestamp"].clone();
        self.stamp(&mut object, target);
        self.objects.insert(key, object.clone());
        (200, object)
    }
}

impl KubeApi {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = Arc::clone(&shared);
                std::thread::spawn(move || serve(stream, &state));
            }
        });
        Self { url, state }
    }

    /// A kubeconfig for this server, with `namespace` as its context's namespace.
    pub fn kubeconfig(&self, path: &Path, namespace: &str) {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\nusers:\n- name: test\n  user: {{}}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n    namespace: {namespace}\ncurrent-context: test\n",
            self.url
        );
        std::fs::write(path, text).unwrap();
    }

    /// A service account token (a JWT, as the kubelet mounts it) that TokenReviews accept.
    pub fn issue_token(&self, namespace: &str, name: &str) -> String {
        use base64::Engine;
        let b64 =
            |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let uid = uuid::Uuid::new_v4().to_string();
        let claims = json!({
            "iss": "kubernetes/serviceaccount",
            "sub": format!("system:serviceaccount:{namespace}:{name}"),
            "kubernetes.io/serviceaccount/namespace": namespace,
            "kubernetes.io/serviceaccount/service-account.name": name,
            "kubernetes.io/serviceaccount/service-account.uid": uid,
        });
        let token = format!(
            "{}.{}.{}",
            b64(&json!({"alg": "RS256", "kid": "test"})),
            b64(&claims),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(uid.as_bytes())
        );
        let mut state = self.state.lock().unwrap();
        state.tokens.insert(
            token.clone(),
            (namespace.to_string(), name.to_string(), uid),
        );
        token
    }

    /// Stall (or release) the rollouts of workload `name`: its status stops following its spec.
    pub fn stall(&self, name: &str, stalled: bool) {
        let mut state = self.state.lock().unwrap();
        match stalled {
            true => state.stalled.insert(name.to_string()),
            false => state.stalled.remove(name),
        };
        if !stalled {
            let objects: Vec<_> = state
                .objects
                .iter_mut()
                .filter(|((_, _, n), _)| n == name)
                .collect();
            for ((kind, _, _), object) in objects {
                let resource = kind.rsplit('/').next().unwrap_or_default().to_string();
                roll_out(object, &resource);
            }
        }
    }

    /// Refuse `verb` (get, create, update) on `resource` (leases), as a Role without it would.
    pub fn forbid(&self, verb: &str, resource: &str) {
        let mut state = self.state.lock().unwrap();
        state
            .forbidden
            .insert((verb.to_string(), resource.to_string()));
    }

    /// The object `name` of `kind` ("coordination.k8s.io/v1/leases") in `namespace`.
    pub fn object(&self, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let state = self.state.lock().unwrap();
        let key = (kind.to_string(), namespace.to_string(), name.to_string());
        state.objects.get(&key).cloned()
    }

    /// Put an object in place, as if someone else had written it.
    pub fn put(&self, kind: &str, namespace: &str, mut object: Value) {
        let mut state = self.state.lock().unwrap();
        state.version += 1;
        object["metadata"]["resourceVersion"] = json!(state.version.to_string());
        object["metadata"]["namespace"] = json!(namespace);
        let name = object["metadata"]["name"].as_str().unwrap().to_string();
        state
            .objects
            .insert((kind.to_string(), namespace.to_string(), name), object);
    }

    /// The decoded data of Secret `namespace/name`, and its type.
    pub fn secret(
        &self,
        namespace: &str,
        name: &str,
    ) -> Option<(BTreeMap<String, String>, String)> {
        use base64::Engine;
        let object = self.object("v1/secrets", namespace, name)?;
        let data = object["data"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(v.as_str().unwrap_or_default())
                    .unwrap();
                (k.clone(), String::from_utf8(bytes).unwrap())
            })
            .collect();
        Some((
            data,
            object["type"].as_str().unwrap_or("Opaque").to_string(),
        ))
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().requests.clone()
    }
}

/// Answer the requests of one connection, one at a time, closing it after each.
fn serve(stream: TcpStream, state: &Mutex<State>) {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("");
    let path = target.split('?').next().unwrap_or("").to_string();
    let mut length = 0;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
            assert!(
                !name.eq_ignore_ascii_case("transfer-encoding"),
                "the test API server reads bodies by content-length only"
            );
        }
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let (code, value) = {
        let mut state = state.lock().unwrap();
        state.requests.push(Request {
            method: method.clone(),
            path: path.clone(),
        });
        state.handle(&method, &path, &body)
    };
    let body = value.to_string();
    let response = format!(
        "HTTP/1.1 {code} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = reader.get_mut().write_all(response.as_bytes());
}

/// RFC 7386: objects merge key by key, null removes, anything else replaces.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(fields) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let object = target.as_object_mut().unwrap();
    for (key, value) in fields {
        if value.is_null() {
            object.remove(key);
        } else {
            merge_patch(object.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// What a workload controller reports once every replica runs the latest spec.
fn roll_out(object: &mut Value, resource: &str) {
    let generation = object["metadata"]["generation"].clone();
    let replicas = object["spec"]["replicas"].as_i64().unwrap_or(1);
    object["status"] = match resource {
        "daemonsets" => {
            json!({"observedGeneration": generation, "desiredNumberScheduled": replicas,
            "currentNumberScheduled": replicas, "numberMisscheduled": 0, "numberReady": replicas,
            "updatedNumberScheduled": replicas, "numberAvailable": replicas})
        }
        _ => {
            json!({"observedGeneration": generation, "replicas": replicas, "updatedReplicas": replicas,
            "readyReplicas": replicas, "availableReplicas": replicas})
        }
    };
}

/// A workload of `resource` ("deployments"...) whose pods run `pod`, rolled out.
pub fn workload(api: &KubeApi, resource: &str, name: &str, pod: Value) {
    workload_in(api, resource, "prod", name, pod)
}

/// A workload of `resource` in `namespace` whose pods run `pod`, rolled out.
pub fn workload_in(api: &KubeApi, resource: &str, namespace: &str, name: &str, pod: Value) {
    let kind = match resource {
        "deployments" => "Deployment",
        "statefulsets" => "StatefulSet",
        _ => "DaemonSet",
    };
    let mut spec = json!({
        "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}}, "spec": pod},
    });
    if resource != "daemonsets" {
        spec["replicas"] = json!(2);
    }
    if resource == "statefulsets" {
        spec["serviceName"] = json!(name);
    }
    let status = match resource {
        "daemonsets" => {
            json!({"observedGeneration": 1, "desiredNumberScheduled": 2, "currentNumberScheduled": 2,
            "numberMisscheduled": 0, "numberReady": 2, "updatedNumberScheduled": 2, "numberAvailable": 2})
        }
        _ => {
            json!({"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2})
        }
    };
    api.put(
        &format!("apps/v1/{resource}"),
        namespace,
        json!({"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name, "generation": 1},
               "spec": spec, "status": status}),
    );
}

/// A container spec with `extra` fields (env, envFrom...).
pub fn container(extra: Value) -> Value {
    let mut c = json!({"name": "app", "image": "registry.example/app:1"});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}
