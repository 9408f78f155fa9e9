//! Prometheus metrics of job runs, per job: when it last ran and last succeeded, how long it
//! took, what it read and stored, and failures by class. `job run` pushes them to a
//! Pushgateway; the daemon serves them on `/metrics`.
//!
//! They are built from run records, so the daemon starts with what the store remembers and a
//! failed run never hides when the job last succeeded.

use http_body_util::Full;
use hyper::body::Bytes;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::store::RunRecord;

/// `job` is Prometheus' own label (the scrape job, the Pushgateway group): a coffre job is
/// `coffre_job`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    coffre_job: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    coffre_job: String,
    kind: String,
    class: String,
}

/// One database a drill job restores: `backup_job` is the job whose backups it restores.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DrillLabels {
    coffre_job: String,
    backup_job: String,
    database: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// The metrics of every job this process knows about.
pub struct Metrics {
    registry: Registry,
    last_run: Family<JobLabels, FloatGauge>,
    last_success: Family<JobLabels, FloatGauge>,
    last_duration: Family<JobLabels, FloatGauge>,
    last_status: Family<JobLabels, Gauge>,
    plaintext_bytes: Family<JobLabels, Gauge>,
    stored_bytes: Family<JobLabels, Gauge>,
    failures: Family<FailureLabels, Counter>,
    drill_status: Family<DrillLabels, Gauge>,
    drill_success: Family<DrillLabels, FloatGauge>,
    drill_duration: Family<DrillLabels, FloatGauge>,
    drill_rows: Family<DrillLabels, Gauge>,
    drill_backup_age: Family<DrillLabels, FloatGauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("coffre");
        let metrics = Self {
            last_run: Family::default(),
            last_success: Family::default(),
            last_duration: Family::default(),
            last_status: Family::default(),
            plaintext_bytes: Family::default(),
            stored_bytes: Family::default(),
            failures: Family::default(),
            drill_status: Family::default(),
            drill_success: Family::default(),
            drill_duration: Family::default(),
            drill_rows: Family::default(),
            drill_backup_age: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "job_last_run_timestamp_seconds",
            "When the job's last run finished (Unix time)",
            metrics.last_run.clone(),
        );
        registry.register(
            "job_last_success_timestamp_seconds",
            "When the job last succeeded (Unix time): alert when it is too old",
            metrics.last_success.clone(),
        );
        registry.register(
            "job_last_duration_seconds",
            "How long the job's last run took",
            metrics.last_duration.clone(),
        );
        registry.register(
            "job_last_status",
            "1 if the job's last run succeeded, 0 if it failed",
            metrics.last_status.clone(),
        );
        registry.register(
            "backup_last_plaintext_bytes",
            "Bytes of dump the job's last run read",
            metrics.plaintext_bytes.clone(),
        );
        registry.register(
            "backup_last_stored_bytes",
            "Bytes the job's last run stored (compressed and encrypted)",
            metrics.stored_bytes.clone(),
        );
        registry.register(
            "job_failures",
            "Failed runs, by the class of their first failure",
            metrics.failures.clone(),
        );
        registry.register(
            "drill_last_status",
            "1 if the database's last restore drill passed, 0 if it failed",
            metrics.drill_status.clone(),
        );
        registry.register(
            "drill_last_success_timestamp_seconds",
            "When the database's restore drill last passed (Unix time): alert past 48 hours",
            metrics.drill_success.clone(),
        );
        registry.register(
            "drill_last_duration_seconds",
            "The last passing drill's recovery time: restore and count",
            metrics.drill_duration.clone(),
        );
        registry.register(
            "drill_last_rows",
            "Rows the last passing drill counted",
            metrics.drill_rows.clone(),
        );
        registry.register(
            "drill_last_backup_age_seconds",
            "The drilled backup's age: the recovery point",
            metrics.drill_backup_age.clone(),
        );
        Self {
            registry,
            ..metrics
        }
    }

    /// Take in one run. `counted`: whether it is a new run (counters go up) or one read back
    /// from the store at start.
    pub fn record(&self, run: &RunRecord, counted: bool) {
        let labels = JobLabels {
            coffre_job: run.task.clone(),
            kind: run.kind.clone(),
        };
        let seconds = |t: chrono::DateTime<chrono::Utc>| t.timestamp_millis() as f64 / 1000.0;
        self.last_run
            .get_or_create(&labels)
            .set(seconds(run.finished_at));
        if let Some(success) = run.last_success_at {
            self.last_success
                .get_or_create(&labels)
                .set(seconds(success));
        }
        let duration = (run.finished_at - run.started_at).num_milliseconds() as f64 / 1000.0;
        self.last_duration.get_or_create(&labels).set(duration);
        self.last_status
            .get_or_create(&labels)
            .set(i64::from(run.succeeded()));
        if run.kind == "backup" {
            let to_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
            self.plaintext_bytes
                .get_or_create(&labels)
                .set(to_i64(run.plaintext_bytes));
            self.stored_bytes
                .get_or_create(&labels)
                .set(to_i64(run.stored_bytes));
        }
        for drill in &run.drills {
            let labels = DrillLabels {
                coffre_job: run.task.clone(),
                backup_job: drill.job.clone(),
                database: drill.database.clone().unwrap_or_default(),
            };
            self.drill_status
                .get_or_create(&labels)
                .set(i64::from(drill.passed));
            if let Some(passed) = drill.last_passed_at {
                self.drill_success
                    .get_or_create(&labels)
                    .set(seconds(passed));
            }
            if let (Some(duration), Some(rows)) = (drill.duration_seconds, drill.rows) {
                self.drill_duration.get_or_create(&labels).set(duration);
                self.drill_rows
                    .get_or_create(&labels)
                    .set(i64::try_from(rows).unwrap_or(i64::MAX));
            }
            self.drill_backup_age
                .get_or_create(&labels)
                .set(drill.backup_age_seconds as f64);
        }
        if let (true, Some(class)) = (counted, &run.class) {
            let labels = FailureLabels {
                coffre_job: run.task.clone(),
                kind: run.kind.clone(),
                class: class.clone(),
            };
            self.failures.get_or_create(&labels).inc();
        }
    }

    /// The Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// Push `metrics` to a Pushgateway, grouped by the job's name (POST: metrics another push of
/// the same group set and this one does not are kept).
pub async fn push(pushgateway: &str, job: &str, metrics: &Metrics) -> Result<()> {
    let url = format!(
        "{}/metrics/job/coffre/coffre_job/{job}",
        pushgateway.trim_end_matches('/')
    );
    let fail = |why: String| Error::store(format!("pushing metrics to {pushgateway}: {why}"));
    let response = reqwest::Client::new()
        .post(&url)
        .header("content-type", "text/plain; version=0.0.4")
        .body(metrics.encode())
        .timeout(std::time::Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| fail(e.to_string()))?;
    match response.status().is_success() {
        true => Ok(()),
        false => Err(fail(format!("HTTP {}", response.status()))),
    }
}

/// Listen on `addr` for `serve` (first, so that a port in use fails before anything runs).
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::config(format!("metrics.listen {addr}: {e}")))
}

/// Serve `/metrics` (and `/healthz`) until `stop` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving /metrics");
    }
    loop {
        let (stream, _) = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!("metrics listener: {e}");
                    continue;
                }
            },
        };
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let metrics = Arc::clone(&metrics);
                async move { Ok::<_, std::convert::Infallible>(respond(&request, &metrics)) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await
            {
                tracing::debug!("metrics connection: {e}");
            }
        });
    }
}

fn respond<B>(request: &hyper::Request<B>, metrics: &Metrics) -> hyper::Response<Full<Bytes>> {
    let (status, content_type, body) = match request.uri().path() {
        "/metrics" => (
            hyper::StatusCode::OK,
            "text/plain; version=0.0.4",
            metrics.encode(),
        ),
        "/healthz" => (hyper::StatusCode::OK, "text/plain", "ok\n".into()),
        _ => (
            hyper::StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".into(),
        ),
    };
    hyper::Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(status: &str, class: Option<&str>) -> RunRecord {
        let t = |s: &str| s.parse().unwrap();
        RunRecord {
            task: "app-db".into(),
            kind: "backup".into(),
            holder: "pod/1/x".into(),
            started_at: t("2026-11-24T02:00:00Z"),
            finished_at: t("2026-11-24T02:00:42Z"),
            status: status.into(),
            class: class.map(Into::into),
            error: None,
            backups: 1,
            plaintext_bytes: 1000,
            stored_bytes: 400,
            last_success_at: Some(t("2026-11-23T02:00:40Z")),
            drills: Vec::new(),
        }
    }

    #[test]
    fn a_failed_drill_keeps_when_the_database_last_passed() {
        let t = |s: &str| s.parse().unwrap();
        let mut run = record("failed", Some("integrity"));
        run.kind = "drill".into();
        run.drills = vec![crate::store::DrillResult {
            job: "ehr".into(),
            database: Some("ehr".into()),
            passed: false,
            duration_seconds: None,
            rows: None,
            backup_age_seconds: 3600,
            last_passed_at: Some(t("2026-11-22T05:00:00Z")),
        }];
        let metrics = Metrics::new();
        metrics.record(&run, true);
        let text = metrics.encode();
        let labels = "{coffre_job=\"app-db\",backup_job=\"ehr\",database=\"ehr\"}";
        assert!(
            text.contains(&format!("coffre_drill_last_status{labels} 0")),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "coffre_drill_last_success_timestamp_seconds{labels} 1795323600.0"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "coffre_drill_last_backup_age_seconds{labels} 3600.0"
            )),
            "{text}"
        );
        assert!(
            !text.contains("coffre_drill_last_duration_seconds{"),
            "{text}"
        );
    }

    #[test]
    fn a_failed_run_keeps_the_last_success_and_counts_its_class() {
        let metrics = Metrics::new();
        metrics.record(&record("failed", Some("source")), true);
        let text = metrics.encode();
        assert!(text.contains("coffre_job_last_success_timestamp_seconds{coffre_job=\"app-db\",kind=\"backup\"} 1795399240.0"), "{text}");
        assert!(
            text.contains("coffre_job_last_status{coffre_job=\"app-db\",kind=\"backup\"} 0"),
            "{text}"
        );
        assert!(
            text.contains(
                "coffre_job_last_duration_seconds{coffre_job=\"app-db\",kind=\"backup\"} 42.0"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "coffre_job_failures_total{coffre_job=\"app-db\",kind=\"backup\",class=\"source\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "coffre_backup_last_stored_bytes{coffre_job=\"app-db\",kind=\"backup\"} 400"
            ),
            "{text}"
        );
    }
}
