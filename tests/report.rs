//! `coffre report` over 30 simulated days of backups, drills, prunes and rotations, made with
//! the real PostgreSQL and the store (each run's clock set by COFFRE_TEST_NOW, which debug
//! builds honour): one missed day and one overdue credential, which the report must flag; and
//! the HTML page rendered by headless Chromium, its charts there, a screenshot kept.

mod support;

use chrono::{DateTime, Duration, TimeZone, Utc};

use serde_json::Value;
use support::db::{pg_addr, pg_password, pg_rotation_job, psql, unique};
use support::{Workspace, json_lines};

const MISSED_DAY: i64 = 17;

fn day(n: i64, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 10, 1, hour, 0, 0).unwrap() + Duration::days(n)
}

struct Month {
    ws: Workspace,
    db: String,
    roles: [String; 2],
}

impl Month {
    fn run_at(&self, at: DateTime<Utc>, args: &[&str]) -> support::Run {
        let now = at.to_rfc3339();
        let password = pg_password();
        let env = [
            ("COFFRE_TEST_NOW", now.as_str()),
            ("TEST_PG_PASSWORD", password.as_str()),
            ("USER", "auditor-test"),
        ];
        let run = self.ws.run_env(args, &env);
        run.ok();
        run
    }
}

/// A month of nightly backups of a growing database (one night missed), each drilled and
/// pruned to the job's 7 days, a hand restore, and two passwords: one rotated weekly, one
/// rotated once and then forgotten.
fn simulated_month() -> Month {
    let ws = Workspace::new();
    let db = unique("ehr");
    psql("postgres", &format!("CREATE DATABASE {db}"));
    psql(
        &db,
        "CREATE TABLE visits (id serial primary key, note text)",
    );
    let (host, port) = pg_addr();
    ws.write(
        "jobs/ehr.toml",
        &format!(
            "[schedule]\ncron = \"0 2 * * *\"\n\n[retention]\nkeep_within_days = 7\nmin_keep = 1\n\n[source]\nkind = \"postgres\"\nhost = \"{host}\"\nport = {port}\nuser = \"postgres\"\npassword_env = \"TEST_PG_PASSWORD\"\ndatabase = \"{db}\"\n"
        ),
    );
    let roles = [unique("weekly"), unique("forgotten")];
    for role in &roles {
        psql("postgres", &format!("CREATE ROLE {role} LOGIN"));
    }
    ws.write("pgadmin", &pg_password());
    std::fs::set_permissions(
        ws.path("pgadmin"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    for (name, role) in [("weekly-pw", &roles[0]), ("forgotten-pw", &roles[1])] {
        ws.write(
            &format!("jobs/{name}.toml"),
            &pg_rotation_job(
                name,
                std::slice::from_ref(role),
                "file:../pgadmin",
                &format!("file:../secrets/{name}.json"),
                "every = \"7d\"",
            ),
        );
    }
    let month = Month { ws, db, roles };
    for n in 1..=30 {
        psql(
            &month.db,
            &format!(
                "INSERT INTO visits (note) SELECT md5(g::text) FROM generate_series(1, {}) g",
                200 + n * 10
            ),
        );
        if n != MISSED_DAY {
            month.run_at(day(n, 2), &["backup", "ehr"]);
        }
        month.run_at(
            day(n, 3),
            &["verify", "--latest", "--job", "ehr", "--restore"],
        );
        month.run_at(day(n, 4), &["prune", "ehr"]);
        if n % 7 == 1 {
            month.run_at(day(n, 5), &["rotate", "weekly-pw"]);
        }
        if n == 1 {
            month.run_at(day(n, 5), &["rotate", "forgotten-pw"]);
        }
        if n == 20 {
            month.run_at(
                day(n, 9),
                &["restore", "--latest", "--job", "ehr", "--to", "ehr.dump"],
            );
        }
    }
    month
}

fn artefacts() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("test-artefacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_month_of_evidence_flags_the_missed_day_and_the_overdue_credential() {
    let month = simulated_month();
    let at = day(30, 12);
    let run = month.run_at(at, &["report", "--json"]);
    let lines = json_lines(&run);
    support::json_doc::check(&lines, "report --json");
    let report = &lines[0];

    // Backups: 29 taken of 30 scheduled, the missed day named.
    let dbs = report["databases"].as_array().unwrap();
    assert_eq!(dbs.len(), 1, "{report:#}");
    let ehr = &dbs[0];
    let missed = day(MISSED_DAY, 0).date_naive().to_string();
    assert_eq!(ehr["missed_days"], serde_json::json!([missed]), "{ehr:#}");
    assert_eq!(ehr["scheduled"], 30);
    assert_eq!(ehr["taken"], 29);
    assert_eq!(ehr["failed"], 0);
    assert_eq!(ehr["retention_days"], 7);
    assert_eq!(ehr["retention_met"], true, "{ehr:#}");
    // Pruned to 7 days at 04:00 on day 30: the backups of days 24 to 30 are kept.
    assert_eq!(ehr["kept"], 7, "{ehr:#}");
    assert_eq!(
        ehr["oldest_kept"],
        day(24, 2).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    // Sizes per day: one entry per backup day, the dump growing with the database.
    let sizes = ehr["sizes"].as_array().unwrap();
    assert_eq!(sizes.len(), 29);
    let first = sizes[0]["plaintext_bytes"].as_u64().unwrap();
    let last = sizes[28]["plaintext_bytes"].as_u64().unwrap();
    assert!(last > first, "{first} -> {last}");
    let keys = ehr["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["backups"], 7);
    // Drills: every day, each with its recovery time and the rows it counted.
    let drills = report["drills"].as_array().unwrap();
    assert_eq!(drills.len(), 30);
    assert!(drills.iter().all(|d| d["outcome"] == "ok"));
    assert!(drills[29]["rows"].as_u64().unwrap() > drills[0]["rows"].as_u64().unwrap());
    // On the missed day the drill restored the day before's backup: a day older.
    let age = |i: usize| drills[i]["backup_age_seconds"].as_i64().unwrap();
    assert_eq!(age(MISSED_DAY as usize - 1) - age(0), 86_400);
    // Credentials: the weekly one within policy, the forgotten one overdue.
    let creds = report["credentials"].as_array().unwrap();
    let cred = |name: &str| creds.iter().find(|c| c["target"] == name).unwrap();
    assert_eq!(cred("weekly-pw")["overdue"], false, "{creds:#?}");
    assert_eq!(cred("weekly-pw")["rotations"], 5);
    assert_eq!(cred("forgotten-pw")["overdue"], true);
    assert_eq!(cred("forgotten-pw")["age_days"], 29.3);
    // Every restore and every deletion, with who did it.
    let restores = report["restores"].as_array().unwrap();
    assert_eq!(restores.len(), 1);
    assert!(
        restores[0]["actor"]
            .as_str()
            .unwrap()
            .starts_with("auditor-test@")
    );
    assert!(restores[0]["to"].as_str().unwrap().ends_with("ehr.dump"));
    let deletions = report["deletions"].as_array().unwrap();
    assert!(!deletions.is_empty());
    assert!(
        deletions
            .iter()
            .all(|d| d["what"] == "backup" && d["reason"] == "kept by no retention rule")
    );
    // The chain holds; the findings name exactly the two problems.
    assert_eq!(report["audit"]["intact"], true);
    let findings: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert_eq!(findings.len(), 2, "{findings:#?}");
    assert!(
        findings[0].contains(&format!("no backup on {missed}")),
        "{findings:#?}"
    );
    assert!(
        findings[1].starts_with("credential forgotten-pw: OVERDUE"),
        "{findings:#?}"
    );

    // Markdown says the same.
    let md = month.run_at(at, &["report"]).stdout_text();
    assert!(
        md.contains(&format!("| ehr | {} | 29 / 30 |", month.db)),
        "{md}"
    );
    assert!(md.contains("OVERDUE"), "{md}");

    // HTML, opened by a real browser.
    let page = month.ws.path("report.html");
    month.run_at(
        at,
        &[
            "report",
            "--format",
            "html",
            "--output",
            page.to_str().unwrap(),
        ],
    );
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        !html.contains("<script") && !html.contains("http://") && !html.contains("https://"),
        "the page fetches nothing"
    );
    let screenshot = artefacts().join("report.png");
    let dom = chromium(&page, &screenshot);
    // Chromium parsed the charts: 29 days of two bars, 30 drills of two, 2 credentials.
    assert_eq!(count(&dom, "data-chart=\"backup-size\""), 1);
    assert_eq!(count(&dom, "class=\"bar dump\""), 29);
    assert_eq!(count(&dom, "class=\"bar passed\""), 30);
    assert_eq!(count(&dom, "class=\"bar overdue\""), 1);
    assert_eq!(count(&dom, "class=\"bar within\""), 1);
    // And drew them: the screenshot holds the charts' colours.
    let colours = colours(&screenshot);
    for (name, rgb) in [
        ("dump bars", [0x9e, 0xca, 0xe1]),
        ("drill bars", [0x31, 0xa3, 0x54]),
        ("overdue bar", [0xde, 0x2d, 0x26]),
    ] {
        assert!(
            colours.contains(&rgb),
            "no {name} in the screenshot {}",
            screenshot.display()
        );
    }
    for role in &month.roles {
        psql("postgres", &format!("DROP ROLE IF EXISTS {role}"));
    }
    psql("postgres", &format!("DROP DATABASE {}", month.db));
}

fn count(text: &str, needle: &str) -> usize {
    text.matches(needle).count()
}

/// Render `page` in headless Chromium (Debian's package): its DOM, and a screenshot.
fn chromium(page: &std::path::Path, screenshot: &std::path::Path) -> String {
    let url = format!("file://{}", page.display());
    let common = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
    ];
    let dom = std::process::Command::new("chromium")
        .args(common)
        .args(["--dump-dom", &url])
        .output()
        .expect("chromium is installed (scripts/test installs Debian's package)");
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let shot = std::process::Command::new("chromium")
        .args(common)
        .args([
            "--window-size=1280,2600",
            &format!("--screenshot={}", screenshot.display()),
            &url,
        ])
        .output()
        .unwrap();
    assert!(
        shot.status.success(),
        "{}",
        String::from_utf8_lossy(&shot.stderr)
    );
    String::from_utf8(dom.stdout).unwrap()
}

/// Every colour in a PNG.
fn colours(path: &std::path::Path) -> std::collections::BTreeSet<[u8; 3]> {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let step = info.color_type.samples();
    buf[..info.buffer_size()]
        .chunks(step)
        .map(|p| [p[0], p[1], p[2]])
        .collect()
}

#[test]
fn a_report_job_stores_the_report_in_every_format_and_posts_it_to_its_webhook() {
    let receiver = support::http::Receiver::start();
    let ws = Workspace::new();
    ws.write("data.bin", "ward 7");
    ws.write(
        "jobs/files.toml",
        "[schedule]\ncron = \"0 2 * * *\"\n\n[source]\nkind = \"file\"\npath = \"../data.bin\"\n",
    );
    ws.write(
        "jobs/monthly-report.toml",
        "kind = \"report\"\njobs = [\"files\"]\nperiod = \"3d\"\nwebhook = \"env:REPORT_HOOK\"\n\n[schedule]\ncron = \"0 6 1 * *\"\n",
    );
    let hook = format!("{}/hooks/report-token-789", receiver.url);
    let run_at = |at: DateTime<Utc>, args: &[&str]| {
        let now = at.to_rfc3339();
        let r = ws.run_env(
            args,
            &[
                ("COFFRE_TEST_NOW", now.as_str()),
                ("REPORT_HOOK", hook.as_str()),
            ],
        );
        r.ok();
        r
    };
    // Backups on days 1 and 3: day 2 is missed.
    run_at(day(1, 2), &["backup", "files"]);
    run_at(day(3, 2), &["backup", "files"]);
    let run = run_at(day(3, 12), &["job", "run", "monthly-report", "--json"]);
    let stored: Vec<String> = json_lines(&run)
        .iter()
        .filter(|l| l["type"] == "report_stored")
        .map(|l| l["path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(stored.len(), 3, "{}", run.stdout_text());
    let stamp = day(3, 12).format("%Y%m%dT%H%M%SZ");
    for (path, ext) in stored.iter().zip(["json", "md", "html"]) {
        assert_eq!(
            *path,
            format!("backups/_reports/monthly-report/{stamp}.{ext}")
        );
        assert!(ws.path("store").join(path).is_file(), "{path}");
    }
    let kept: Value =
        serde_json::from_slice(&std::fs::read(ws.path("store").join(&stored[0])).unwrap()).unwrap();
    let missed = day(2, 0).date_naive().to_string();
    assert_eq!(
        kept["databases"][0]["missed_days"],
        serde_json::json!([missed])
    );
    // The webhook got the report, and its summary names the finding.
    let posted = receiver.received();
    assert_eq!(posted.len(), 1);
    assert_eq!(posted[0].path, "/hooks/report-token-789");
    let body: Value = serde_json::from_str(&posted[0].body).unwrap();
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .contains(&format!("no backup on {missed}")),
        "{body}"
    );
    assert_eq!(body["coffre"]["report"]["databases"], kept["databases"]);
    // The same run again (same second): the stored report is never replaced.
    let again = ws.run_env(
        &["job", "run", "monthly-report"],
        &[
            ("COFFRE_TEST_NOW", &day(3, 12).to_rfc3339()),
            ("REPORT_HOOK", hook.as_str()),
        ],
    );
    assert_ne!(
        again.code, 0,
        "a second report at the same time replaced the first"
    );
    // The webhook's URL (a credential) is in no output or log.
    assert!(!format!("{}{}", run.stdout_text(), run.stderr).contains("report-token-789"));
}
