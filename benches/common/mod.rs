//! What the rotation benchmarks share: the environment scripts/bench sets, psql as the
//! test superuser, and files only their owner may read.

use std::path::Path;
use std::process::Command;

/// A variable scripts/bench sets.
pub fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run scripts/bench rotate (or incident)"))
}

/// The release coffre the bench runs, as an absolute path: the runs change their directory.
pub fn coffre_bin() -> std::path::PathBuf {
    let given = env("COFFRE_BENCH_BIN");
    std::fs::canonicalize(&given).unwrap_or_else(|e| {
        panic!("COFFRE_BENCH_BIN={given}: {e} (build it with cargo build --release)")
    })
}

/// Run `sql` as the test server's superuser.
pub fn psql(sql: &str) {
    let url = url::Url::parse(&env("COFFRE_TEST_PG")).unwrap();
    let out = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .env("PGHOST", url.host_str().unwrap())
        .env("PGPORT", url.port().unwrap().to_string())
        .env("PGUSER", "postgres")
        .env("PGDATABASE", "postgres")
        .env("PGPASSWORD", env("COFFRE_TEST_PG_PASSWORD"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Write a file only its owner may read (what coffre asks of secret files).
pub fn private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
}
