//! Test workspace: a temporary directory with a config, a key, job files and a local store,
//! driven through the real `coffre` binary.
#![allow(dead_code)]

pub mod db;
pub mod faulty;
pub mod http;
pub mod json_doc;
pub mod kube_api;
pub mod s3;

use coffre::error::Class;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub struct Workspace {
    pub dir: tempfile::TempDir,
}

/// The outcome of one `coffre` run.
pub struct Run {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Run {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Panics with both streams unless the run exited with `code`.
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            code,
            "expected exit {code}, got {}\nstdout: {}\nstderr: {}",
            self.code,
            self.stdout_text(),
            self.stderr
        );
        self
    }

    pub fn ok(&self) -> &Self {
        self.expect_code(0)
    }

    /// Panics with both streams unless the run failed with `class`'s exit code.
    pub fn expect_class(&self, class: Class) -> &Self {
        self.expect_code(class.exit_code())
    }

    /// Panics with both streams unless the run failed with `class`'s exit code and said
    /// `needle` on stderr.
    pub fn expect_failure(&self, class: Class, needle: &str) -> &Self {
        self.expect_class(class);
        assert!(
            self.stderr.contains(needle),
            "expected '{needle}' on stderr\nstderr: {}",
            self.stderr
        );
        self
    }
}

/// The exit code of each class of failure, as the README lists them.
pub mod exit {
    use coffre::error::Class;
    pub const CONFIG: i32 = Class::Config.exit_code();
    pub const AUTH: i32 = Class::Auth.exit_code();
    pub const SOURCE: i32 = Class::Source.exit_code();
    pub const STORE: i32 = Class::Store.exit_code();
    pub const INTEGRITY: i32 = Class::Integrity.exit_code();
    pub const TARGET: i32 = Class::Target.exit_code();
}

impl From<Output> for Run {
    fn from(out: Output) -> Self {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// Start `cmd` (a coffre run with `COFFRE_FAILPOINT` set) and wait until it stops at its
/// failpoint; the running child, or a panic after a minute (the child killed).
pub fn start_at_failpoint(cmd: &mut Command, point: &str) -> std::process::Child {
    use std::io::{BufRead, BufReader};
    let mut child = cmd
        .env("COFFRE_FAILPOINT", point)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if line.contains("failpoint") && line.contains("reached") {
                let _ = tx.send(());
            }
        }
    });
    if rx.recv_timeout(std::time::Duration::from_secs(60)).is_err() {
        child.kill().unwrap();
        let status = child.wait().unwrap();
        panic!("coffre never reached {point} ({status})");
    }
    child
}

pub fn coffre_bin() -> &'static str {
    env!("CARGO_BIN_EXE_coffre")
}

impl Workspace {
    /// A workspace with a generated key file and a config that uses it.
    pub fn new() -> Self {
        let ws = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        ws.run_raw(&["key", "generate", "backup.key"], &[]).ok();
        ws.write_config(r#"keys = [{ file = "backup.key" }]"#);
        ws
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Write `coffre.toml` with the given `[encryption]` body.
    pub fn write_config(&self, encryption: &str) {
        self.write_config_with("", encryption);
    }

    /// Write `coffre.toml` with top-level settings `top` and the `[encryption]` body.
    pub fn write_config_with(&self, top: &str, encryption: &str) {
        self.write(
            "coffre.toml",
            &format!(
                "jobs = [\"jobs/*.toml\"]\n{top}\n\n[store]\nkind = \"local\"\npath = \"store\"\nprefix = \"backups\"\n\n[encryption]\n{encryption}\n"
            ),
        );
    }

    pub fn write(&self, rel: &str, text: &str) {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// A job whose source is a shell script.
    pub fn shell_job(&self, name: &str, script: &str) {
        self.write(
            &format!("jobs/{name}.toml"),
            &format!(
                "[source]\nkind = \"command\"\ncommand = [\"sh\", \"-c\", {}]\n",
                toml_string(script)
            ),
        );
    }

    /// A job that backs up a file, in the default format (2, deduplicated).
    pub fn file_job(&self, name: &str, file: &str) {
        self.write(
            &format!("jobs/{name}.toml"),
            &format!("[source]\nkind = \"file\"\npath = \"../{file}\"\n"),
        );
    }

    /// A job that backs up a file in format 1 (one data object), with the given chunk size.
    pub fn v1_file_job(&self, name: &str, file: &str, chunk_log2: u8) {
        self.write(
            &format!("jobs/{name}.toml"),
            &format!(
                "format = 1\nchunk_log2 = {chunk_log2}\n\n[source]\nkind = \"file\"\npath = \"../{file}\"\n"
            ),
        );
    }

    /// Run `coffre --config coffre.toml ARGS` in the workspace.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_env(args, &[])
    }

    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut full = vec!["--config", "coffre.toml"];
        full.extend_from_slice(args);
        self.run_raw(&full, env)
    }

    pub fn run_raw(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        Command::new(coffre_bin())
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("COFFRE_CONFIG")
            .env("COFFRE_LOG", "debug")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .unwrap()
            .into()
    }

    /// Back up `job` and return the new backup's id.
    pub fn backup(&self, job: &str) -> String {
        let run = self.run(&["backup", job, "--json"]);
        run.ok();
        let v: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
        v["id"].as_str().unwrap().to_string()
    }

    /// The directory of a backup in the local store.
    pub fn backup_dir(&self, job: &str, id: &str) -> PathBuf {
        let job_dir = self.path("store/backups").join(job);
        std::fs::read_dir(&job_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.file_name().unwrap().to_string_lossy().ends_with(id))
            .unwrap_or_else(|| panic!("no directory for backup {id} in {}", job_dir.display()))
    }

    /// The manifest of backup `id` of `job` in the local store, as JSON.
    pub fn manifest(&self, job: &str, id: &str) -> serde_json::Value {
        let path = self.backup_dir(job, id).join("manifest.json");
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    /// Every file of the backups under the store, relative paths sorted: the audit trail, the
    /// run records and the reports kept beside them aside (`all_store_files` has those too).
    pub fn store_files(&self) -> Vec<String> {
        let beside = ["backups/_audit/", "backups/_runs/", "backups/_reports/"];
        let mut out = self.all_store_files();
        out.retain(|f| !beside.iter().any(|b| f.starts_with(b)));
        out
    }

    /// Every file under the store, relative paths sorted.
    pub fn all_store_files(&self) -> Vec<String> {
        let mut out = Vec::new();
        walk(&self.path("store"), &self.path("store"), &mut out);
        out.sort();
        out
    }
}

/// The workspace's config and store, as the library opens them.
pub async fn open_store(ws: &Workspace) -> (coffre::config::Config, coffre::store::Store) {
    let config = coffre::config::Config::load(&ws.path("coffre.toml")).unwrap();
    let store = coffre::store::Store::open(&config.store, &config.upload, &config.secrets)
        .await
        .unwrap();
    (config, store)
}

/// The keys the workspace's config names.
pub async fn configured_keys(config: &coffre::config::Config) -> Vec<coffre::crypto::keys::Secret> {
    config.encryption.load_keys(&config.secrets).await.unwrap()
}

/// The key in a key file of the workspace.
pub async fn key_file(ws: &Workspace, name: &str) -> coffre::crypto::keys::Secret {
    let key = coffre::config::KeyRef::Key(coffre::secretstore::SecretRef::File(ws.path(name)));
    let argon2 = coffre::crypto::keys::Argon2Params::default();
    key.load(argon2, &coffre::secretstore::Resolver::default())
        .await
        .unwrap()
}

/// One JSON object per line of a run's stdout.
pub fn json_lines(run: &Run) -> Vec<serde_json::Value> {
    run.stdout_text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The JSON objects of one type.
pub fn of_type<'a>(items: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    items.iter().filter(|v| v["type"] == kind).collect()
}

/// A workspace with three backups of a small file (job `files`), made with `backup.key`.
pub fn three_backups() -> (Workspace, Vec<String>) {
    three_backups_in(2)
}

/// Three backups of job `files` in backup format `format` (1 or 2).
pub fn three_backups_in(format: u8) -> (Workspace, Vec<String>) {
    let ws = Workspace::new();
    ws.write("input.bin", "ward 7 admissions");
    match format {
        1 => ws.v1_file_job("files", "input.bin", 16),
        _ => ws.file_job("files", "input.bin"),
    }
    let ids = (0..3).map(|_| ws.backup("files")).collect();
    (ws, ids)
}

impl Workspace {
    /// The object holding the key stanzas of backup `id` of job `files`: its manifest in
    /// format 1, its session in format 2.
    pub fn stanza_holder(&self, id: &str) -> PathBuf {
        let manifest = self.backup_dir("files", id).join("manifest.json");
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
        match m["format"].as_str().unwrap() {
            "coffre-manifest/1" => manifest,
            _ => self.path(&format!("store/backups/files/_sessions/{id}.json")),
        }
    }

    /// The key ids of the stanzas that open backup `id` of job `files`.
    pub fn stanza_ids(&self, id: &str) -> Vec<String> {
        let holder: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.stanza_holder(id)).unwrap()).unwrap();
        holder["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["key_id"].as_str().unwrap().to_string())
            .collect()
    }

    /// sha256 of every stored file a key change must leave alone (all but the stanza
    /// holders), by path.
    pub fn key_independent_hashes(&self) -> Vec<(String, String)> {
        use sha2::{Digest, Sha256};
        self.store_files()
            .into_iter()
            .filter_map(|f| {
                let bytes = std::fs::read(self.path("store").join(&f)).unwrap();
                let v1_manifest = f.ends_with("/manifest.json")
                    && bytes.windows(17).any(|w| w == b"coffre-manifest/1");
                let holder = v1_manifest || f.contains("/_sessions/");
                (!holder).then(|| (f, hex::encode(Sha256::digest(&bytes))))
            })
            .collect()
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(root, &path, out);
        } else {
            out.push(path.strip_prefix(root).unwrap().display().to_string());
        }
    }
}

fn toml_string(s: &str) -> String {
    format!("'''{s}'''")
}

/// Run one of the independent Python checkers in tests/interop with the test venv's Python
/// (scripts/test installs cryptography, zstandard and boto3 there).
pub fn interop<I, S>(script: &str, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let python = std::env::var("COFFRE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    Command::new(python)
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/interop")
                .join(script),
        )
        .args(args)
        .output()
        .expect("python runs (scripts/test sets COFFRE_TEST_PYTHON)")
}

/// Deterministic pseudo-random bytes (incompressible, unlike a pattern).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// What to search output for to find a secret value: the value, or for a PEM private key the
/// first line of its base64 body (the armour lines are the same in every key).
pub fn secret_needle(value: &str) -> &str {
    value
        .lines()
        .find(|l| !l.starts_with("-----") && l.len() > 20)
        .unwrap_or(value)
}
