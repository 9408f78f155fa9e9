//! Sources: each starts a dump and yields it as an `AsyncRead`, owning any child process.
//!
//! A source only succeeds when its stream ended *and* `finish` says the producer exited cleanly:
//! a dump tool that dies midway closes its stdout just like one that finished.

mod blocking;
mod command;

use std::process::ExitStatus;
use tokio::io::AsyncRead;

use crate::config::SourceConfig;
use crate::error::{Error, Result};
use crate::manifest::SourceInfo;

pub use command::ChildDump;

/// A running dump: its stream, what it is, and how it ended.
pub struct Dump {
    pub reader: Box<dyn AsyncRead + Send + Unpin>,
    pub info: SourceInfo,
    pub exit: DumpExit,
}

/// The producer of a dump; dropping it kills a child process that is still running.
pub struct DumpExit(Option<ChildDump>);

impl DumpExit {
    /// Wait for the producer and fail unless it exited with success.
    /// Call after the stream reached its end.
    pub async fn wait_success(self) -> Result<()> {
        match self.0 {
            Some(child) => child.wait_success().await,
            None => Ok(()),
        }
    }
}

/// Start the dump a job describes.
pub async fn start(config: &SourceConfig) -> Result<Dump> {
    match config {
        SourceConfig::Command {
            command,
            env,
            workdir,
        } => {
            let (reader, child) = ChildDump::spawn(command, env, workdir.as_deref())?;
            Ok(Dump {
                reader: Box::new(reader),
                info: SourceInfo {
                    kind: "command".into(),
                    dump_tool: Some(command[0].clone()),
                    ..SourceInfo::default()
                },
                exit: DumpExit(Some(child)),
            })
        }
        SourceConfig::File { path } => {
            let file = tokio::fs::File::open(path)
                .await
                .map_err(|e| Error::source(format!("cannot open {}: {e}", path.display())))?;
            Ok(Dump {
                reader: Box::new(file),
                info: SourceInfo {
                    kind: "file".into(),
                    ..SourceInfo::default()
                },
                exit: DumpExit(None),
            })
        }
    }
}

/// "exit code 3" or "killed by signal 9".
pub fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => "unknown exit status".into(),
    }
}
