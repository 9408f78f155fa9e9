//! A dump produced by a child process on its standard output.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use tokio::io::AsyncRead;

use crate::blocking::spawn_reader;
use crate::error::{Error, Result};
use crate::process::{describe_status, kill_group};

/// How much of the child's stderr is kept to explain a failure.
const STDERR_TAIL_LINES: usize = 5;

/// The child process of a dump; killed if dropped before it was waited for.
pub struct ChildDump {
    program: String,
    child: Option<Child>,
    stderr_tail: Option<JoinHandle<Vec<String>>>,
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
            Error::source(format!(
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
        dump.stderr_tail = Some(
            std::thread::Builder::new()
                .name(format!("stderr {program}"))
                .spawn(move || tail_lines(stderr))
                .map_err(|e| Error::internal(format!("cannot start a thread: {e}")))?,
        );
        let reader = spawn_reader(&program, stdout)
            .map_err(|e| Error::internal(format!("cannot start a thread: {e}")))?;
        Ok((reader, dump))
    }

    /// Wait for exit; a non-zero exit or a signal is a source error quoting the end of stderr.
    pub async fn wait_success(mut self) -> Result<()> {
        let mut child = self.child.take().expect("waited once");
        let tail = self.stderr_tail.take();
        let (status, tail) = tokio::task::spawn_blocking(move || {
            let status = child.wait();
            let tail = tail.and_then(|t| t.join().ok()).unwrap_or_default();
            (status, tail)
        })
        .await
        .map_err(|e| Error::internal(format!("waiting for '{}': {e}", self.program)))?;
        let status =
            status.map_err(|e| Error::source(format!("waiting for '{}': {e}", self.program)))?;
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
