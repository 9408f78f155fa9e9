//! Every job file is a task, what `coffre job run` and the daemon run: a backup job (with a
//! `[source]`), an operation over backup jobs (`kind = "prune"` or `kind = "drill"`), or a
//! password rotation (`kind = "rotation"`, with `[[target]]`s). Each may have a `[schedule]`.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::job::{Job, load_job};
use super::rotation::RotationTarget;
use super::{deserialize_toml, read_toml};
use crate::error::{Error, Result};
use crate::schedule::Schedule;
use crate::secretstore::SecretRef;

/// One job file, of any kind.
#[derive(Clone, Debug)]
pub struct Task {
    pub name: String,
    pub file: PathBuf,
    pub schedule: Option<Schedule>,
    /// A heartbeat URL pinged at the start and end of each run.
    pub heartbeat: Option<SecretRef>,
    pub kind: TaskKind,
}

/// What a task does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskKind {
    /// Back up the backup job of the same name.
    Backup,
    /// Prune these backup jobs (all of them when the file lists none).
    Prune { jobs: Vec<String> },
    /// Restore the newest backup of each database of these backup jobs into a scratch
    /// database, and count what arrived (all of them when the file lists none).
    Drill { jobs: Vec<String> },
    /// Rotate these targets' passwords (the `[[target]]`s of the file).
    Rotation { targets: Vec<String> },
    /// The compliance report over the last `period`, of `jobs` (none: all), stored under
    /// `_reports/` and posted to `webhook` when one is set.
    Report {
        jobs: Vec<String>,
        period: std::time::Duration,
        webhook: Option<SecretRef>,
    },
}

impl TaskKind {
    pub fn name(&self) -> &'static str {
        match self {
            TaskKind::Backup => "backup",
            TaskKind::Prune { .. } => "prune",
            TaskKind::Drill { .. } => "drill",
            TaskKind::Rotation { .. } => "rotation",
            TaskKind::Report { .. } => "report",
        }
    }

    /// The backup jobs an operation names (none: all).
    pub fn jobs(&self) -> &[String] {
        match self {
            TaskKind::Backup | TaskKind::Rotation { .. } => &[],
            TaskKind::Prune { jobs } | TaskKind::Drill { jobs } | TaskKind::Report { jobs, .. } => {
                jobs
            }
        }
    }
}

/// A prune or drill job file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OperationFile {
    #[serde(default)]
    name: String,
    kind: OperationKind,
    /// The backup jobs it acts on; none: every backup job.
    #[serde(default)]
    jobs: Vec<String>,
    schedule: Option<Schedule>,
    heartbeat: Option<SecretRef>,
    /// Rotation jobs only.
    target: Option<toml::Value>,
    /// Report jobs only: the period (default 30d) and where to post the report.
    period: Option<crate::duration::HumanDuration>,
    webhook: Option<SecretRef>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum OperationKind {
    Prune,
    Drill,
    Rotation,
    Report,
}

/// What a job file defines besides its task.
pub(super) enum Defined {
    Nothing,
    Backup(Box<Job>),
    Targets(Vec<RotationTarget>),
}

/// Read a job file: its task, and what else it defines.
pub(super) fn load(path: &Path) -> Result<(Task, Defined)> {
    let value = read_toml(path)?;
    let kind = value
        .get("kind")
        .and_then(|k| k.as_str())
        .unwrap_or("backup");
    if kind == "backup" {
        let job = load_job(path, value)?;
        let task = Task {
            name: job.name.clone(),
            file: job.file.clone(),
            schedule: job.schedule.clone(),
            heartbeat: job.heartbeat.clone(),
            kind: TaskKind::Backup,
        };
        return Ok((task, Defined::Backup(Box::new(job))));
    }
    if !matches!(kind, "prune" | "drill" | "rotation" | "report") {
        return Err(Error::config(format!(
            "{}: kind = \"{kind}\": a job is a backup (the default, with a [source]), a prune, a drill, a rotation or a report",
            path.display()
        )));
    }
    let file: OperationFile = deserialize_toml(value, path)?;
    let name = match file.name.is_empty() {
        true => super::job::name_from_file(path),
        false => file.name,
    };
    super::job::check_name(&path.display().to_string(), &name)?;
    let mut defined = Defined::Nothing;
    if !matches!(file.kind, OperationKind::Report)
        && (file.period.is_some() || file.webhook.is_some())
    {
        return Err(Error::config(format!(
            "{}: period and webhook belong in a report job (kind = \"report\")",
            path.display()
        )));
    }
    let dir = super::parent_dir(path);
    let kind = match file.kind {
        OperationKind::Prune | OperationKind::Drill | OperationKind::Report
            if file.target.is_some() =>
        {
            return Err(Error::config(format!(
                "{}: [[target]] belongs in a rotation job (kind = \"rotation\")",
                path.display()
            )));
        }
        OperationKind::Prune => TaskKind::Prune { jobs: file.jobs },
        OperationKind::Drill => TaskKind::Drill { jobs: file.jobs },
        OperationKind::Report => TaskKind::Report {
            jobs: file.jobs,
            period: file
                .period
                .map_or(std::time::Duration::from_secs(30 * 86_400), |p| p.0),
            webhook: file.webhook.map(|r| r.relative_to(&dir, super::resolve)),
        },
        OperationKind::Rotation => {
            let targets = super::rotation::targets(file.target, path)?;
            let names = targets.iter().map(|t| t.name.clone()).collect();
            defined = Defined::Targets(targets);
            TaskKind::Rotation { targets: names }
        }
    };
    let task = Task {
        name,
        file: path.to_path_buf(),
        schedule: file.schedule,
        heartbeat: file.heartbeat.map(|r| r.relative_to(&dir, super::resolve)),
        kind,
    };
    Ok((task, defined))
}

/// Every job an operation names must be a backup job.
pub(super) fn check_operations(
    tasks: &BTreeMap<String, Task>,
    jobs: &BTreeMap<String, Job>,
) -> Result<()> {
    for task in tasks.values() {
        if let Some(missing) = task.kind.jobs().iter().find(|j| !jobs.contains_key(*j)) {
            return Err(Error::config(format!(
                "{}: jobs: '{missing}' is not a backup job (backup jobs: {})",
                task.file.display(),
                jobs.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
    }
    Ok(())
}
