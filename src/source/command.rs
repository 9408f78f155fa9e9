//! A dump produced by a child process on its standard output.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tokio::task::JoinHandle;

use super::describe_status;
use crate::error::{Error, Result};

/// How much of the child's stderr is kept to explain a failure.
const STDERR_TAIL_LINES: usize = 5;

/// The child process of a dump; killed if dropped before `wait_success`.
pub struct ChildDump {
    program: String,
    child: Child,
    stdout: Option<ChildStdout>,
    stderr_tail: JoinHandle<Vec<String>>,
}

impl ChildDump {
    /// Start `command` with `env` added to the environment. Secrets go through `env`, never argv.
    pub fn spawn(
        command: &[String],
        env: &BTreeMap<String, String>,
        workdir: Option<&Path>,
    ) -> Result<Self> {
        let program = command[0].clone();
        let mut cmd = Command::new(&program);
        cmd.args(&command[1..])
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(dir) = workdir {
            cmd.current_dir(dir);
        }
        let mut child = cmd.spawn().map_err(|e| {
            Error::source(format!(
                "cannot start '{program}': {e} (is it installed and on PATH?)"
            ))
        })?;
        let stdout = child.stdout.take();
        let stderr = child.stderr.take().expect("stderr is piped");
        let stderr_tail = tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            let mut tail = Vec::new();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::debug!(target: "coffre::source", "{line}");
                if tail.len() == STDERR_TAIL_LINES {
                    tail.remove(0);
                }
                tail.push(line);
            }
            tail
        });
        Ok(Self {
            program,
            child,
            stdout,
            stderr_tail,
        })
    }

    /// Split off the stdout stream; the rest waits for the exit status.
    pub fn into_parts(mut self) -> (ChildStdout, Self) {
        let stdout = self.stdout.take().expect("stdout taken once");
        (stdout, self)
    }

    /// Wait for exit; a non-zero exit or a signal is a source error quoting the end of stderr.
    pub async fn wait_success(mut self) -> Result<()> {
        let status = self
            .child
            .wait()
            .await
            .map_err(|e| Error::source(format!("waiting for '{}': {e}", self.program)))?;
        let tail = (&mut self.stderr_tail).await.unwrap_or_default();
        if status.success() {
            return Ok(());
        }
        let why = if tail.is_empty() {
            String::new()
        } else {
            format!(": {}", tail.join(" / "))
        };
        Err(Error::source(format!(
            "'{}' failed with {}{why}",
            self.program,
            describe_status(status)
        )))
    }
}
