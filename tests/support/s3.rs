//! The S3 test server (moto_server, started by scripts/test): store configs and what the
//! S3 API says is in the bucket.

use super::Workspace;

pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run scripts/test"))
}

pub fn s3_store(prefix: &str) -> String {
    format!(
        "[store]\nkind = \"s3\"\nbucket = \"coffre-test\"\nendpoint = \"{}\"\npath_style = true\nallow_http = true\nprefix = \"{prefix}\"\naccess_key_id_env = \"TEST_S3_KEY\"\nsecret_access_key_env = \"TEST_S3_SECRET\"\n",
        env("COFFRE_TEST_S3")
    )
}

pub const S3_ENV: [(&str, &str); 2] = [("TEST_S3_KEY", "testing"), ("TEST_S3_SECRET", "testing")];

/// A workspace whose config uses `store` instead of the local disk.
pub fn workspace_with_store(store: &str) -> Workspace {
    let ws = Workspace::new();
    ws.write(
        "coffre.toml",
        &format!(
            "jobs = [\"jobs/*.toml\"]\n\n[upload]\npart_size_mib = 5\n\n{store}\n[encryption]\nkeys = [{{ file = \"backup.key\" }}]\n"
        ),
    );
    ws
}

/// Keys of the backups' objects under `prefix` in the test bucket, via the S3 API (the audit
/// trail and the run records beside them aside).
pub fn s3_keys(prefix: &str) -> Vec<String> {
    let url = format!(
        "{}/coffre-test?list-type=2&prefix={prefix}/",
        env("COFFRE_TEST_S3")
    );
    let mut keys = xml_values(&curl(&url), "Key");
    keys.retain(|k| !k.contains("/_audit/") && !k.contains("/_runs/"));
    keys
}

/// The bytes of object `key` of the test bucket.
pub fn s3_get(key: &str) -> Vec<u8> {
    let url = format!("{}/coffre-test/{key}", env("COFFRE_TEST_S3"));
    // Reading an object needs a signed request (listings do not).
    let out = std::process::Command::new("curl")
        .args(["-sf", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user"])
        .arg("testing:testing")
        .arg(&url)
        .output()
        .unwrap();
    assert!(out.status.success(), "GET {url} failed");
    out.stdout
}

/// Multipart uploads still open under `prefix`.
pub fn s3_open_uploads(prefix: &str) -> Vec<String> {
    let url = format!(
        "{}/coffre-test?uploads&prefix={prefix}/",
        env("COFFRE_TEST_S3")
    );
    xml_values(&curl(&url), "UploadId")
}

pub fn curl(url: &str) -> String {
    let out = std::process::Command::new("curl")
        .args(["-sf", url])
        .output()
        .unwrap();
    assert!(out.status.success(), "GET {url} failed");
    String::from_utf8(out.stdout).unwrap()
}

pub fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    xml.split(&open)
        .skip(1)
        .filter_map(|rest| rest.split(&close).next())
        .map(str::to_string)
        .collect()
}
