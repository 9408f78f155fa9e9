//! Real PostgreSQL and MariaDB backups: dumps restore into new databases with identical
//! content, restore drills count what arrived, and every dump failure is a failed backup.
//! Needs the servers scripts/test starts.

mod support;

use coffre::error::Class;
use std::sync::RwLock;
use support::Workspace;
use support::db::{mariadb, mariadb_addr, pg_addr, pg_password, psql, unique};
use support::exit::SOURCE;

/// Tests that create databases hold this shared; the all-databases test holds it alone,
/// so the set of databases it sees cannot change under it.
static DATABASES: RwLock<()> = RwLock::new(());

const PG_SCHEMA: &str = r#"
CREATE SEQUENCE invoice_no START 1000;
CREATE TABLE patients (id serial PRIMARY KEY, name text NOT NULL, born date, notes text,
                       photo bytea, attrs jsonb);
CREATE INDEX patients_name ON patients (name);
CREATE TABLE visits (id bigserial PRIMARY KEY, patient_id int REFERENCES patients (id),
                     at timestamptz, cost numeric(10, 2), invoice int DEFAULT nextval('invoice_no'));
CREATE INDEX visits_patient_at ON visits (patient_id, at);
CREATE VIEW patient_costs AS
  SELECT p.name, sum(v.cost) AS total FROM patients p JOIN visits v ON v.patient_id = p.id GROUP BY p.name;
CREATE FUNCTION visit_count(pid int) RETURNS bigint LANGUAGE sql STABLE
  AS $$ SELECT count(*) FROM visits WHERE patient_id = pid $$;
INSERT INTO patients (name, born, notes, photo, attrs)
  SELECT 'Zoë Ñúñez ' || g || ' 患者 🏥', date '1950-01-01' + g, repeat('é', g % 50),
         decode(md5(g::text), 'hex'), jsonb_build_object('g', g, 'ß', true)
  FROM generate_series(1, 2000) g;
INSERT INTO visits (patient_id, at, cost)
  SELECT 1 + g % 2000, timestamptz '2026-01-01 00:00+00' + g * interval '1 hour', (g % 1000) / 7.0
  FROM generate_series(1, 5000) g;
"#;

/// Everything that must survive a restore, as one row: data, view, function, sequence, indexes.
const PG_FINGERPRINT: &str = r#"
SELECT (SELECT md5(string_agg(p::text, '|' ORDER BY id)) FROM patients p),
       (SELECT md5(string_agg(v::text, '|' ORDER BY id)) FROM visits v),
       (SELECT md5(string_agg(c::text, '|' ORDER BY name)) FROM patient_costs c),
       visit_count(5),
       (SELECT last_value FROM invoice_no),
       (SELECT string_agg(indexdef, ';' ORDER BY indexname) FROM pg_indexes WHERE schemaname = 'public'),
       pg_get_viewdef('patient_costs'),
       (SELECT count(*) FROM patients WHERE name LIKE '%患者 🏥')
"#;

fn pg_job(ws: &Workspace, job: &str, body: &str) {
    let (host, port) = pg_addr();
    ws.write(
        &format!("jobs/{job}.toml"),
        &format!(
            "[source]\nkind = \"postgres\"\nhost = \"{host}\"\nport = {port}\nuser = \"postgres\"\npassword_env = \"TEST_PG_PASSWORD\"\n{body}\n"
        ),
    );
}

fn pg_env() -> Vec<(&'static str, String)> {
    vec![
        ("TEST_PG_PASSWORD", pg_password()),
        ("PGPASSWORD", pg_password()),
    ]
}

fn run_pg(ws: &Workspace, args: &[&str]) -> support::Run {
    let env = pg_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    ws.run_env(args, &env)
}

fn pg_url(database: &str) -> String {
    let (host, port) = pg_addr();
    format!("postgres://postgres@{host}:{port}/{database}")
}

fn create_pg_database(prefix: &str, schema: &str) -> String {
    let db = unique(prefix);
    psql("postgres", &format!("CREATE DATABASE {db}"));
    psql(&db, schema);
    db
}

fn drop_pg_database(db: &str) {
    psql(
        "postgres",
        &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
    );
}

#[test]
fn postgres_backup_restores_into_a_new_database_with_identical_content() {
    let _shared = DATABASES.read().unwrap();
    let db = create_pg_database("coffre_src", PG_SCHEMA);
    let ws = Workspace::new();
    pg_job(&ws, "app", &format!("database = \"{db}\"\nglobals = true"));

    let run = run_pg(&ws, &["backup", "app", "--json"]);
    run.ok();
    let backups: Vec<serde_json::Value> = run
        .stdout_text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(backups.len(), 2, "a database backup and a globals backup");
    let dump = backups
        .iter()
        .find(|b| b["source"]["kind"] == "postgres")
        .unwrap();
    assert_eq!(dump["source"]["database"], db.as_str());
    assert!(
        dump["source"]["server_version"]
            .as_str()
            .unwrap()
            .starts_with(char::is_numeric)
    );
    assert!(
        dump["source"]["dump_tool"]
            .as_str()
            .unwrap()
            .contains("pg_dump")
    );
    let globals = backups
        .iter()
        .find(|b| b["source"]["kind"] == "postgres-globals")
        .unwrap();
    let sql = ws.run(&["restore", globals["id"].as_str().unwrap(), "--to", "-"]);
    sql.ok();
    assert!(
        sql.stdout_text().contains("CREATE ROLE postgres"),
        "{}",
        sql.stdout_text()
    );

    let copy = unique("coffre_copy");
    let id = dump["id"].as_str().unwrap();
    run_pg(&ws, &["restore", id, "--to", &pg_url(&copy)]).expect_class(Class::Target);
    run_pg(&ws, &["restore", id, "--to", &pg_url(&copy), "--create"]).ok();
    let original = psql(&db, PG_FINGERPRINT);
    assert_eq!(psql(&copy, PG_FINGERPRINT), original);
    assert!(original.contains("|2000"), "{original}");

    // A non-empty target is refused; --clean replaces its content.
    let refused = run_pg(&ws, &["restore", id, "--to", &pg_url(&copy)]);
    refused.expect_failure(Class::Target, "not empty");
    psql(&copy, "DELETE FROM visits WHERE id > 10");
    run_pg(&ws, &["restore", id, "--to", &pg_url(&copy), "--clean"]).ok();
    assert_eq!(psql(&copy, PG_FINGERPRINT), original);

    // The restore drill creates, counts and drops a scratch database.
    let drill = run_pg(&ws, &["verify", id, "--restore", "--json"]);
    drill.ok();
    // Every backup of the job: the dump is drilled, the globals (roles) are verified.
    let all = run_pg(&ws, &["verify", "--all", "--job", "app", "--restore"]);
    all.ok();
    assert!(
        all.stdout_text().contains("by restoring it"),
        "{}",
        all.stdout_text()
    );
    let report: serde_json::Value = serde_json::from_slice(&drill.stdout).unwrap();
    assert_eq!(report["restore_drill"]["tables"], 2);
    assert_eq!(report["restore_drill"]["rows"], 7000);
    let scratch = report["restore_drill"]["scratch_database"]
        .as_str()
        .unwrap();
    assert_eq!(
        psql(
            "postgres",
            &format!("SELECT count(*) FROM pg_database WHERE datname = '{scratch}'")
        ),
        "0"
    );

    drop_pg_database(&db);
    drop_pg_database(&copy);
}

#[test]
fn postgres_wrong_password_fails_as_an_auth_error_and_leaves_nothing() {
    let _shared = DATABASES.read().unwrap();
    let ws = Workspace::new();
    pg_job(&ws, "app", "database = \"postgres\"");
    let wrong = "not-the-password-3141";
    let run = ws.run_env(&["backup", "app"], &[("TEST_PG_PASSWORD", wrong)]);
    // Refused, not unreachable: no retry helps, the password setting does.
    run.expect_class(Class::Auth);
    assert!(
        run.stderr.contains("password authentication failed")
            && run.stderr.contains("user and password settings"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains(wrong) && !run.stdout_text().contains(wrong));
    assert!(ws.store_files().is_empty(), "{:?}", ws.store_files());
}

#[test]
fn postgres_missing_database_fails_as_a_source_error_and_leaves_nothing() {
    let _shared = DATABASES.read().unwrap();
    let ws = Workspace::new();
    pg_job(&ws, "app", "database = \"coffre_no_such_db\"");
    let run = run_pg(&ws, &["backup", "app"]);
    run.expect_failure(Class::Source, "coffre_no_such_db");
    assert!(run.stderr.contains("does not exist"), "{}", run.stderr);
    assert!(ws.store_files().is_empty(), "{:?}", ws.store_files());
}

#[test]
fn pg_dump_killed_midway_aborts_the_upload_and_writes_no_manifest() {
    let _shared = DATABASES.read().unwrap();
    let db = create_pg_database(
        "coffre_big",
        "CREATE TABLE big (id int, payload text);
         INSERT INTO big SELECT g, repeat(md5(g::text), 20) FROM generate_series(1, 250000) g;",
    );
    let ws = Workspace::new();
    pg_job(&ws, "big", &format!("database = \"{db}\""));
    let child = std::process::Command::new(support::coffre_bin())
        .args(["--config", "coffre.toml", "backup", "big"])
        .current_dir(ws.dir.path())
        .env("TEST_PG_PASSWORD", pg_password())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Catch pg_dump (a child of coffre) running, let it stream for a moment, freeze it with
    // SIGSTOP so it cannot finish, then kill it with SIGKILL.
    let signal = |sig: &str| {
        std::process::Command::new("pkill")
            .args([sig, "-P", &child.id().to_string(), "-x", "pg_dump"])
            .status()
            .unwrap()
            .success()
    };
    let started = std::time::Instant::now();
    let mut frozen = false;
    while !frozen && started.elapsed() < std::time::Duration::from_secs(60) {
        let running = std::process::Command::new("pgrep")
            .args(["-P", &child.id().to_string(), "-x", "pg_dump"])
            .output()
            .unwrap()
            .status
            .success();
        if running {
            std::thread::sleep(std::time::Duration::from_millis(50));
            frozen = signal("-STOP");
        }
    }
    assert!(frozen, "pg_dump was never seen running");
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(signal("-KILL"));
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(SOURCE), "{stderr}");
    assert!(stderr.contains("signal 9"), "{stderr}");
    assert!(
        ws.store_files().is_empty(),
        "left behind: {:?}",
        ws.store_files()
    );
    drop_pg_database(&db);
}

#[test]
fn all_databases_job_makes_one_backup_per_database() {
    let _alone = DATABASES.write().unwrap();
    let a = create_pg_database(
        "coffre_all_a",
        "CREATE TABLE t (x int); INSERT INTO t VALUES (1);",
    );
    let b = create_pg_database(
        "coffre_all_b",
        "CREATE TABLE t (x int); INSERT INTO t VALUES (2), (3);",
    );
    let ws = Workspace::new();
    pg_job(
        &ws,
        "server",
        "all_databases = true\nexclude = [\"postgres\"]",
    );
    let run = run_pg(&ws, &["backup", "server", "--json"]);
    run.ok();
    let mut backed_up: Vec<String> = run
        .stdout_text()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["source"]["database"].as_str().unwrap().to_string()
        })
        .collect();
    backed_up.sort();
    let expected: Vec<String> = psql(
        "postgres",
        "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate AND datname <> 'postgres' ORDER BY 1",
    )
    .lines()
    .map(str::to_string)
    .collect();
    assert_eq!(backed_up, expected);
    assert!(backed_up.contains(&a) && backed_up.contains(&b));

    // --latest needs to know which database; each restores its own content.
    let ambiguous = ws.run(&["restore", "--latest", "--to", "-"]);
    assert_eq!(ambiguous.code, 3, "{}", ambiguous.stderr);
    let copy = unique("coffre_all_copy");
    run_pg(
        &ws,
        &[
            "restore",
            "--latest",
            "--database",
            &b,
            "--to",
            &pg_url(&copy),
            "--create",
        ],
    )
    .ok();
    assert_eq!(
        psql(&copy, "SELECT string_agg(x::text, ',' ORDER BY x) FROM t"),
        "2,3"
    );
    for db in [a, b, copy] {
        drop_pg_database(&db);
    }
}

const MARIADB_SCHEMA: &str = r#"
CREATE TABLE patients (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(200) NOT NULL, born DATE,
                       notes TEXT, photo BLOB, INDEX patients_name (name)) CHARSET utf8mb4;
CREATE TABLE visits (id BIGINT AUTO_INCREMENT PRIMARY KEY, patient_id INT, at DATETIME,
                     cost DECIMAL(10, 2), FOREIGN KEY (patient_id) REFERENCES patients (id),
                     INDEX visits_patient_at (patient_id, at));
CREATE VIEW patient_costs AS
  SELECT p.name, SUM(v.cost) AS total FROM patients p JOIN visits v ON v.patient_id = p.id GROUP BY p.name;
CREATE FUNCTION visit_count(pid INT) RETURNS INT READS SQL DATA
  RETURN (SELECT COUNT(*) FROM visits WHERE patient_id = pid);
CREATE TRIGGER visits_cost BEFORE INSERT ON visits FOR EACH ROW SET NEW.cost = IFNULL(NEW.cost, 0);
INSERT INTO patients (name, born, notes, photo)
  SELECT CONCAT('Zoë Ñúñez ', seq, ' 患者 🏥'), DATE_ADD('1950-01-01', INTERVAL seq DAY),
         REPEAT('é', seq % 50), UNHEX(MD5(seq)) FROM seq_1_to_2000;
INSERT INTO visits (patient_id, at, cost)
  SELECT 1 + seq % 2000, DATE_ADD('2026-01-01', INTERVAL seq HOUR), IF(seq % 10 = 0, NULL, (seq % 1000) / 7)
  FROM seq_1_to_5000;
"#;

const MARIADB_FINGERPRINT: &str = r#"
SET SESSION group_concat_max_len = 100000000;
SELECT (SELECT MD5(GROUP_CONCAT(CONCAT_WS(',', id, name, born, notes, HEX(photo)) ORDER BY id SEPARATOR '|')) FROM patients),
       (SELECT MD5(GROUP_CONCAT(CONCAT_WS(',', id, patient_id, at, cost) ORDER BY id SEPARATOR '|')) FROM visits),
       (SELECT MD5(GROUP_CONCAT(CONCAT_WS(',', name, total) ORDER BY name SEPARATOR '|')) FROM patient_costs),
       visit_count(5),
       (SELECT COUNT(*) FROM information_schema.triggers WHERE trigger_schema = DATABASE()),
       (SELECT GROUP_CONCAT(CONCAT(table_name, '.', index_name, '.', column_name) ORDER BY 1)
          FROM information_schema.statistics WHERE table_schema = DATABASE()),
       (SELECT COUNT(*) FROM patients WHERE name LIKE '%患者 🏥');
"#;

#[test]
fn mariadb_backup_restores_into_a_new_database_with_identical_content() {
    let db = unique("coffre_src");
    mariadb("", &format!("CREATE DATABASE {db} CHARACTER SET utf8mb4"));
    mariadb(&db, MARIADB_SCHEMA);
    let (host, port) = mariadb_addr();
    let ws = Workspace::new();
    ws.write(
        "jobs/shop.toml",
        &format!("[source]\nkind = \"mariadb\"\nhost = \"{host}\"\nport = {port}\nuser = \"root\"\ndatabase = \"{db}\"\n"),
    );
    let run = ws.run(&["backup", "shop", "--json"]);
    run.ok();
    let summary: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(summary["source"]["kind"], "mariadb");
    assert!(
        summary["source"]["server_version"]
            .as_str()
            .unwrap()
            .contains("MariaDB")
    );

    let copy = unique("coffre_copy");
    let url = format!("mariadb://root@{host}:{port}/{copy}");
    ws.run(&["restore", "--latest", "--to", &url, "--create"])
        .ok();
    let original = mariadb(&db, MARIADB_FINGERPRINT);
    assert_eq!(mariadb(&copy, MARIADB_FINGERPRINT), original);
    assert!(original.ends_with("\t2000"), "{original}");
    let refused = ws.run(&["restore", "--latest", "--to", &url]);
    refused.expect_class(Class::Target);

    let drill = ws.run(&["verify", "--latest", "--restore", "--json"]);
    drill.ok();
    let report: serde_json::Value = serde_json::from_slice(&drill.stdout).unwrap();
    assert_eq!(report["restore_drill"]["tables"], 2);
    assert_eq!(report["restore_drill"]["rows"], 7000);

    mariadb("", &format!("DROP DATABASE {db}; DROP DATABASE {copy}"));
}

#[test]
fn mariadb_wrong_password_fails_as_an_auth_error_and_leaves_nothing() {
    let user = unique("coffre_u");
    for host in ["%", "localhost", "127.0.0.1"] {
        mariadb(
            "",
            &format!("CREATE USER '{user}'@'{host}' IDENTIFIED BY 'right-pw-2718'"),
        );
    }
    let (host, port) = mariadb_addr();
    let ws = Workspace::new();
    ws.write(
        "jobs/shop.toml",
        &format!("[source]\nkind = \"mariadb\"\nhost = \"{host}\"\nport = {port}\nuser = \"{user}\"\npassword_env = \"SHOP_PW\"\ndatabase = \"mysql\"\n"),
    );
    let wrong = "wrong-pw-1618";
    let run = ws.run_env(&["backup", "shop"], &[("SHOP_PW", wrong)]);
    run.expect_class(Class::Auth);
    assert!(
        run.stderr.contains("Access denied") && run.stderr.contains("user and password settings"),
        "{}",
        run.stderr
    );
    // Said once (the audit event that records the failed backup aside).
    let said: String = run
        .stderr
        .lines()
        .filter(|l| !l.contains("coffre::audit"))
        .collect();
    assert_eq!(said.matches("Access denied").count(), 1, "{}", run.stderr);
    assert!(!run.stderr.contains(wrong));
    assert!(ws.store_files().is_empty(), "{:?}", ws.store_files());
    for host in ["%", "localhost", "127.0.0.1"] {
        mariadb("", &format!("DROP USER '{user}'@'{host}'"));
    }
}

#[test]
fn command_backups_cannot_be_restored_into_a_database() {
    let ws = Workspace::new();
    ws.shell_job("dump", "echo 'SELECT 1;'");
    ws.backup("dump");
    let run = ws.run(&["restore", "--latest", "--to", &pg_url("whatever")]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr.contains("cannot be restored into PostgreSQL"),
        "{}",
        run.stderr
    );
}

#[test]
fn dump_tools_never_see_coffres_other_secrets() {
    let _shared = DATABASES.read().unwrap();
    let ws = Workspace::new();
    let passphrase = "passphrase-that-must-stay-in-coffre";
    ws.write_config(
        "keys = [{ file = \"backup.key\" }, { passphrase_env = \"BACKUP_PASSPHRASE\" }]\nargon2 = { m_kib = 1024, t = 1, p = 1 }",
    );
    pg_job(&ws, "app", "database = \"postgres\"");
    // A pg_dump first on PATH that records its environment, then runs the real one.
    let real = String::from_utf8(
        std::process::Command::new("sh")
            .args(["-c", "command -v pg_dump"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    ws.write(
        "bin/pg_dump",
        &format!(
            "#!/bin/sh\nenv > \"$(dirname \"$0\")/../pg_dump.env\"\nexec {} \"$@\"\n",
            real.trim()
        ),
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        ws.path("bin/pg_dump"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        ws.path("bin").display(),
        std::env::var("PATH").unwrap()
    );
    let pg_password = pg_password();
    let run = ws.run_env(
        &["backup", "app"],
        &[
            ("PATH", path.as_str()),
            ("BACKUP_PASSPHRASE", passphrase),
            ("AWS_SECRET_ACCESS_KEY", "aws-secret-that-must-stay"),
            ("TEST_PG_PASSWORD", pg_password.as_str()),
            // Variables that look like the tools' own but are not this job's.
            ("PGOTHER_APP_SECRET", "pg-prefixed-secret-that-must-stay"),
            ("MYSQL_PWD", "mariadb-password-that-must-stay"),
            (
                "MARIADB_ROOT_PASSWORD",
                "mariadb-root-password-that-must-stay",
            ),
        ],
    );
    run.ok();
    let env = std::fs::read_to_string(ws.path("pg_dump.env")).unwrap();
    assert!(env.contains("PGHOST="), "the wrapper did not run: {env}");
    assert!(!env.contains(passphrase), "{env}");
    assert!(!env.contains("aws-secret-that-must-stay"), "{env}");
    assert!(!env.contains("that-must-stay"), "{env}");
    // Its own password is the one secret it gets, through its environment.
    assert!(env.contains(&format!("PGPASSWORD={pg_password}")));
}

#[test]
fn tls_is_verified_and_fails_closed() {
    let _shared = DATABASES.read().unwrap();
    // The PostgreSQL test server's certificate comes from a CA of its own: trusting another
    // CA fails the backup, never falls back to an unverified or plain connection...
    let ws = Workspace::new();
    pg_job(
        &ws,
        "pg",
        "database = \"postgres\"\nsslmode = \"verify-full\"\nsslrootcert = \"/etc/ssl/certs/ca-certificates.crt\"",
    );
    let run = run_pg(&ws, &["backup", "pg"]);
    run.expect_class(Class::Source);
    assert!(
        run.stderr.to_lowercase().contains("certificate"),
        "{}",
        run.stderr
    );
    assert!(ws.store_files().is_empty(), "{:?}", ws.store_files());
    // ... and trusting its CA, under the name on its certificate, backs up over verified TLS.
    let ca = std::env::var("COFFRE_TEST_PG_CA").expect("COFFRE_TEST_PG_CA: run with scripts/test");
    let (host, _) = pg_addr();
    let job = std::fs::read_to_string(ws.path("jobs/pg.toml")).unwrap();
    ws.write(
        "jobs/pg.toml",
        &job.replace("/etc/ssl/certs/ca-certificates.crt", &ca)
            .replace(&format!("host = \"{host}\""), "host = \"localhost\""),
    );
    run_pg(&ws, &["backup", "pg"]).ok();
    std::fs::remove_file(ws.path("jobs/pg.toml")).unwrap();

    // The MariaDB test server offers no TLS: a job that demands it fails.

    let (host, port) = mariadb_addr();
    ws.write(
        "jobs/shop.toml",
        &format!("[source]\nkind = \"mariadb\"\nhost = \"{host}\"\nport = {port}\nuser = \"root\"\ndatabase = \"mysql\"\nsslmode = \"verify-full\"\n"),
    );
    let run = ws.run(&["backup", "shop"]);
    run.expect_failure(Class::Source, "SSL");
    let stored = ws.store_files();
    assert!(stored.iter().all(|f| f.contains("/pg/")), "{stored:?}");

    // A MariaDB sslmode the client cannot enforce is a config error, not a silent downgrade.
    ws.write(
        "jobs/shop.toml",
        &format!("[source]\nkind = \"mariadb\"\nhost = \"{host}\"\nport = {port}\ndatabase = \"mysql\"\nsslmode = \"require\"\n"),
    );
    let run = ws.run(&["config", "check"]);
    run.expect_failure(Class::Config, "verify-full");
}

// The guard is held across awaits on purpose: the all-databases test must not see this
// database come and go. A current-thread runtime polls nothing else meanwhile.
#[allow(clippy::await_holding_lock)]
#[tokio::test]
async fn a_restore_drill_called_as_a_library_function_returns_its_counts() {
    use coffre::ops::drill::{DrillServer, drill};
    let _shared = DATABASES.read().unwrap();
    let db = create_pg_database("libdrill", PG_SCHEMA);
    let ws = Workspace::new();
    let (host, port) = pg_addr();
    // The password from the test's own environment (scripts/test exports it).
    ws.write(
        "jobs/app.toml",
        &format!(
            "[source]\nkind = \"postgres\"\nhost = \"{host}\"\nport = {port}\nuser = \"postgres\"\npassword = \"env:COFFRE_TEST_PG_PASSWORD\"\ndatabase = \"{db}\"\n"
        ),
    );
    let config = coffre::config::Config::load(&ws.path("coffre.toml")).unwrap();
    let ctx = coffre::ops::Context::open(config, tokio_util::sync::CancellationToken::new())
        .await
        .unwrap();
    let keys = support::configured_keys(&ctx.config).await;
    let job = ctx.config.job("app").unwrap();
    let outcomes = coffre::ops::backup::backup_jobs(&ctx, &[job], &keys).await;
    assert!(
        outcomes[0].failures.is_empty(),
        "{:?}",
        outcomes[0].failures
    );
    let made = &outcomes[0].backups[0];
    assert_eq!(made.manifest.source.database.as_deref(), Some(db.as_str()));
    let backup = ctx
        .store
        .find(&made.location.id.to_string(), None)
        .await
        .unwrap();
    let server = DrillServer::for_backup(&ctx.config, &backup, None)
        .await
        .unwrap();
    let (summary, report) = drill(&ctx.store, &backup, &keys, &server, false)
        .await
        .unwrap();
    assert_eq!(summary.plaintext_bytes, made.manifest.plaintext_bytes);
    assert_eq!((report.counts.tables, report.counts.rows), (2, 7000));
    let scratch = psql(
        "postgres",
        &format!(
            "SELECT count(*) FROM pg_database WHERE datname = '{}'",
            report.scratch_database
        ),
    );
    assert_eq!(scratch, "0", "the scratch database was dropped");
    drop_pg_database(&db);
}

/// A PostgreSQL backup user as the README creates it: reads everything (pg_read_all_data), may
/// create the drill's scratch database, is no superuser.
fn pg_backup_user() -> (String, String) {
    let user = unique("coffre_backup");
    let password = "backup-pw-31415".to_string();
    psql(
        "postgres",
        &format!(
            "CREATE ROLE {user} LOGIN PASSWORD '{password}' IN ROLE pg_read_all_data CREATEDB"
        ),
    );
    (user, password)
}

/// A MariaDB backup user with the README's grants: it reads everything, and may only create and
/// fill the drill's scratch databases.
fn mariadb_backup_user() -> (String, String) {
    let user = unique("coffre_backup");
    let password = "backup-pw-27182".to_string();
    for host in ["%", "localhost", "127.0.0.1"] {
        let account = format!("'{user}'@'{host}'");
        mariadb(
            "",
            &format!(
                "CREATE USER {account} IDENTIFIED BY '{password}';
                 GRANT SELECT, SHOW VIEW, TRIGGER, EVENT, LOCK TABLES, PROCESS ON *.* TO {account};
                 GRANT CREATE, DROP, INSERT, ALTER, INDEX, REFERENCES, CREATE VIEW, CREATE ROUTINE,
                   ALTER ROUTINE ON `coffre\\_verify\\_%`.* TO {account}"
            ),
        );
    }
    (user, password)
}

#[test]
fn least_privileged_backup_users_back_up_and_drill_with_the_readmes_grants() {
    let pg_db = create_pg_database("coffre_src", PG_SCHEMA);
    let my_db = unique("coffre_src");
    mariadb(
        "",
        &format!("CREATE DATABASE {my_db} CHARACTER SET utf8mb4"),
    );
    // Views, a function and a trigger, all owned by root: restoring them as anyone else needs
    // their DEFINER clauses dropped.
    mariadb(&my_db, MARIADB_SCHEMA);
    let (pg_user, pg_pw) = pg_backup_user();
    let (my_user, my_pw) = mariadb_backup_user();
    let ws = Workspace::new();
    let (host, port) = pg_addr();
    ws.write(
        "jobs/ehr.toml",
        &format!("[source]\nkind = \"postgres\"\nhost = \"{host}\"\nport = {port}\nuser = \"{pg_user}\"\npassword = \"env:EHR_PW\"\ndatabase = \"{pg_db}\"\nglobals = true\n"),
    );
    let (host, port) = mariadb_addr();
    ws.write(
        "jobs/shop.toml",
        &format!("[source]\nkind = \"mariadb\"\nhost = \"{host}\"\nport = {port}\nuser = \"{my_user}\"\npassword = \"env:SHOP_PW\"\ndatabase = \"{my_db}\"\n"),
    );
    ws.write("jobs/drill.toml", "kind = \"drill\"\n");
    let env = [("EHR_PW", pg_pw.as_str()), ("SHOP_PW", my_pw.as_str())];
    for job in ["ehr", "shop", "drill"] {
        let run = ws.run_env(&["job", "run", job], &env);
        assert_eq!(
            run.code,
            0,
            "job {job}: {}\n{}",
            run.stdout_text(),
            run.stderr
        );
        if job == "drill" {
            let drilled = run.stdout_text();
            assert!(
                drilled.contains(&format!(
                    "database '{my_db}' by restoring it: 2 tables, 7000 rows"
                )),
                "{drilled}"
            );
        }
    }

    // The same filter on a restore as root with --no-owner keeps every object and row.
    let copy = unique("coffre_copy");
    let url = format!("mariadb://root@{host}:{port}/{copy}");
    ws.run(&[
        "restore",
        "--latest",
        "--job",
        "shop",
        "--to",
        &url,
        "--create",
        "--no-owner",
    ])
    .ok();
    assert_eq!(
        mariadb(&copy, MARIADB_FINGERPRINT),
        mariadb(&my_db, MARIADB_FINGERPRINT)
    );

    drop_pg_database(&pg_db);
    psql("postgres", &format!("DROP ROLE {pg_user}"));
    mariadb("", &format!("DROP DATABASE {my_db}; DROP DATABASE {copy}"));
    for host in ["%", "localhost", "127.0.0.1"] {
        mariadb("", &format!("DROP USER '{my_user}'@'{host}'"));
    }
}
