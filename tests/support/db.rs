//! The real database servers scripts/test starts, and helpers to fill and inspect them.

use std::process::Command;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests with scripts/test, which starts the servers")
    })
}

/// Host and port of the test PostgreSQL server (scram-sha-256 auth).
pub fn pg_addr() -> (String, u16) {
    let url = url::Url::parse(&env("COFFRE_TEST_PG")).unwrap();
    (url.host_str().unwrap().to_string(), url.port().unwrap())
}

pub fn pg_password() -> String {
    env("COFFRE_TEST_PG_PASSWORD")
}

/// Run SQL on a database of the test PostgreSQL server as the superuser; its output rows.
pub fn psql(database: &str, sql: &str) -> String {
    let (host, port) = pg_addr();
    let out = Command::new("psql")
        .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .env("PGHOST", host)
        .env("PGPORT", port.to_string())
        .env("PGUSER", "postgres")
        .env("PGDATABASE", database)
        .env("PGPASSWORD", pg_password())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "psql on {database} failed: {}\n{sql}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Host and port of the test MariaDB server (root, no password).
pub fn mariadb_addr() -> (String, u16) {
    let url = url::Url::parse(&env("COFFRE_TEST_MARIADB")).unwrap();
    (
        url.host_str().unwrap().to_string(),
        url.port().unwrap_or(3306),
    )
}

/// Run SQL on the test MariaDB server as root; its output rows.
pub fn mariadb(database: &str, sql: &str) -> String {
    let (host, port) = mariadb_addr();
    let mut cmd = Command::new("mariadb");
    cmd.args(["--protocol=TCP", "--batch", "--skip-column-names", "--raw"])
        .arg(format!("--host={host}"))
        .arg(format!("--port={port}"))
        .arg("--user=root")
        .arg("--default-character-set=utf8mb4")
        .env_remove("MYSQL_PWD");
    if !database.is_empty() {
        cmd.arg(format!("--database={database}"));
    }
    let out = cmd.arg("-e").arg(sql).output().unwrap();
    assert!(
        out.status.success(),
        "mariadb on {database} failed: {}\n{sql}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A name no other test uses.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

/// A rotation job file with one target `name` over PostgreSQL `users` on the test server (one
/// user: single-user; two: dual-user), its admin `postgres` with the password `admin_password`
/// names, published to `publish`; `extra` adds lines to the target.
pub fn pg_rotation_job(
    name: &str,
    users: &[String],
    admin_password: &str,
    publish: &str,
    extra: &str,
) -> String {
    let (host, port) = pg_addr();
    let who = match users {
        [user] => format!("user = \"{user}\""),
        users => format!("users = {users:?}"),
    };
    format!(
        "kind = \"rotation\"\n\n[[target]]\nname = \"{name}\"\nkind = \"postgres\"\nhost = \"{host}\"\nport = {port}\nsslmode = \"disable\"\nadmin_user = \"postgres\"\nadmin_password = \"{admin_password}\"\n{who}\npublish = \"{publish}\"\n{extra}\n"
    )
}
