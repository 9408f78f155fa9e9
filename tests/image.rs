//! The container image, built and run for real with podman (scripts/image: a Debian base made with
//! mmdebstrap, deploy/Dockerfile): coffre runs in it as uid 1000 on a read-only root filesystem,
//! and backs up and restores the test PostgreSQL server from inside it.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use support::db::{pg_addr, pg_password, psql, unique};

/// Build the image once for this test binary, from the coffre binary under test.
fn image() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let out = Command::new(root.join("scripts/image"))
            .args([support::coffre_bin(), "localhost/coffre:test"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "scripts/image failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    })
}

/// `podman run` as production runs it: uid 1000, read-only root, only /tmp writable, with
/// `work` mounted at /work.
fn run_in_image(work: &Path, env: &[(&str, String)], args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new("podman");
    cmd.args(["--runtime", "runc", "run", "--rm"])
        .args([
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=4096:4096",
        ])
        .args([
            "--read-only",
            "--user",
            "1000:1000",
            "--tmpfs",
            "/tmp",
            "--network",
            "host",
        ])
        .arg("-v")
        .arg(format!("{}:/work", work.display()));
    for (name, value) in env {
        cmd.arg("-e").arg(format!("{name}={value}"));
    }
    cmd.arg(image()).args(args).output().unwrap()
}

fn chown_to_1000(path: &Path) {
    let status = Command::new("chown")
        .args(["-R", "1000:1000"])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn the_image_runs_as_uid_1000_on_a_read_only_root() {
    let work = tempfile::tempdir().unwrap();
    let out = run_in_image(work.path(), &[], &["--version"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("coffre "));
    // Nothing outside the mounts can be written, and the process is not root.
    let mut cmd = Command::new("podman");
    cmd.args([
        "--runtime",
        "runc",
        "run",
        "--rm",
        "--read-only",
        "--user",
        "1000:1000",
    ])
    .args([
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=4096:4096",
    ])
    .args(["--entrypoint", "/usr/local/bin/coffre", image()])
    .args(["key", "generate", "/usr/local/bin/new.key"]);
    let out = cmd.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("Read-only file system"));
}

#[test]
fn a_backup_and_restore_round_trip_runs_inside_the_image() {
    let db = unique("image");
    psql("postgres", &format!("CREATE DATABASE {db}"));
    psql(
        &db,
        "CREATE TABLE admissions (id int PRIMARY KEY, ward text);\
         INSERT INTO admissions SELECT g, 'ward ' || (g % 9) FROM generate_series(1, 1234) g;",
    );
    let work = tempfile::tempdir().unwrap();
    let (host, port) = pg_addr();
    let write = |name: &str, text: &str| {
        let path = work.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
    };
    write(
        "coffre.toml",
        "jobs = [\"jobs/*.toml\"]\n\n[store]\nkind = \"local\"\npath = \"store\"\n\n[encryption]\nkeys = [{ key = \"file:backup.key\" }]\n",
    );
    write(
        "jobs/app.toml",
        &format!(
            "[source]\nkind = \"postgres\"\nhost = \"{host}\"\nport = {port}\nuser = \"postgres\"\npassword = \"env:APP_DB_PASSWORD\"\ndatabase = \"{db}\"\n"
        ),
    );
    chown_to_1000(work.path());
    let env = [
        ("APP_DB_PASSWORD", pg_password()),
        ("PGPASSWORD", pg_password()),
    ];
    let config = ["--config", "/work/coffre.toml"];
    let key = run_in_image(work.path(), &[], &["key", "generate", "/work/backup.key"]);
    assert!(
        key.status.success(),
        "{}",
        String::from_utf8_lossy(&key.stderr)
    );
    let mode = std::fs::metadata(work.path().join("backup.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let backup = run_in_image(
        work.path(),
        &env,
        &[&config[..], &["job", "run", "app"]].concat(),
    );
    assert!(
        backup.status.success(),
        "{}",
        String::from_utf8_lossy(&backup.stderr)
    );
    let copy = format!("{db}_copy");
    let target = format!("postgres://postgres@{host}:{port}/{copy}");
    let restore = run_in_image(
        work.path(),
        &env,
        &[
            &config[..],
            &[
                "restore", "--latest", "--job", "app", "--to", &target, "--create",
            ],
        ]
        .concat(),
    );
    assert!(
        restore.status.success(),
        "{}",
        String::from_utf8_lossy(&restore.stderr)
    );
    assert_eq!(
        psql(&copy, "SELECT count(*), sum(id) FROM admissions"),
        "1234|761995"
    );
    psql("postgres", &format!("DROP DATABASE {db} WITH (FORCE)"));
    psql("postgres", &format!("DROP DATABASE {copy} WITH (FORCE)"));
}
