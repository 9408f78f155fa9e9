//! A dump produced by a child process on its standard output.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::io::AsyncRead;
use tokio::sync::oneshot;

use crate::blocking::spawn_reader;
use crate::error::{Error, Result};
use crate::process::{describe_status, kill_group};

/// How much of the child's stderr is kept to explain a failure.
const STDERR_TAIL_LINES: usize = 5;
/// How often an exit is looked for, and how long its stderr may still take to close (a process
/// it left running may hold it open).
const POLL: Duration = Duration::from_millis(20);
const STDERR_GRACE: Duration = Duration::from_secs(1);

/// The child process of a dump; it and its process group are killed if dropped before the
/// child exited, whenever that is (waiting included).
pub struct ChildDump {
    program: String,
    child: Option<Child>,
    stderr_tail: Option<oneshot::Receiver<Vec<String>>>,
}

impl ChildDump {
    /// Start `cmd` (secrets belong in its environment, never its arguments).
    /// Returns the child's standard output as a stream, and the child.
    pub fn spawn(mut cmd: Command) -> Result<(impl AsyncRead + Send + Unpin + use<>, Self)> {
        let program = cmd.get_program().to_string_lossy().into_owned();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| {
            Error::source_failed(format!(
                "cannot start '{program}': {e} (is it installed and on PATH?)"
            ))
        })?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let mut dump = Self {
            program: program.clone(),
            child: Some(child),
            stderr_tail: None,
        };
        let (tail_tx, tail_rx) = oneshot::channel();
        std::thread::Builder::new()
            .name(format!("stderr {program}"))
            .spawn(move || {
                let _ = tail_tx.send(tail_lines(stderr));
            })
            .map_err(|e| Error::internal(format!("cannot start a thread: {e}")))?;
        dump.stderr_tail = Some(tail_rx);
        let reader = spawn_reader(&program, stdout)
            .map_err(|e| Error::internal(format!("cannot start a thread: {e}")))?;
        Ok((reader, dump))
    }

    /// Wait for exit; a non-zero exit or a signal is a source error quoting the end of stderr.
    /// The child stays owned here while waiting, so dropping this future kills it.
    pub async fn wait_success(mut self) -> Result<()> {
        let child = self.child.as_mut().expect("waited once");
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) => tokio::time::sleep(POLL).await,
                Err(e) => {
                    return Err(Error::source_failed(format!(
                        "waiting for '{}': {e}",
                        self.program
                    )));
                }
            }
        };
        // Exited and reaped: nothing left to kill.
        self.child = None;
        if status.success() {
            return Ok(());
        }
        let tail = match self.stderr_tail.take() {
            Some(rx) => tokio::time::timeout(STDERR_GRACE, rx)
                .await
                .ok()
                .and_then(|r| r.ok())
                .unwrap_or_default(),
            None => Vec::new(),
        };
        let why = if tail.is_empty() {
            String::new()
        } else {
            format!(": {}", tail.join(" / "))
        };
        Err(Error::source_failed(format!(
            "'{}' failed with {}{why}",
            self.program,
            describe_status(status)
        )))
    }
}

impl Drop for ChildDump {
    fn drop(&mut self) {
        // A dump abandoned midway (the upload failed, the job was cancelled) must not run on,
        // nor anything it started: the whole group goes, while the leader is not yet reaped.
        if let Some(mut child) = self.child.take() {
            kill_group(child.id());
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Read stderr to its end, logging each line and keeping the last few.
fn tail_lines(stderr: impl std::io::Read) -> Vec<String> {
    let mut tail = Vec::new();
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        tracing::debug!(target: "coffre::source", "{line}");
        if tail.len() == STDERR_TAIL_LINES {
            tail.remove(0);
        }
        tail.push(line);
    }
    tail
}
