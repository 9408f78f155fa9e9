//! The use cases, as library functions that take what they act on and return what happened.
//! Nothing here prints: the command line, the daemon and the incident command render the
//! returned values themselves.

pub mod backup;
pub mod config_check;
pub mod daemon;
pub mod drill;
pub mod evidence;
pub mod incident;
pub mod job;
pub mod keys;
pub mod lock;
mod partial_file;
pub mod pick;
pub mod prune;
pub mod report;
pub mod restore;
pub mod rotate;
pub mod verify;

use tokio_util::sync::CancellationToken;

use crate::audit::Audit;
use crate::config::Config;
use crate::error::Result;
use crate::store::Store;

/// How long work told to stop (SIGTERM, a backup past its timeout) may take to abort its
/// uploads and kill its dumps before it is dropped.
pub const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// What every operation acts on: the configuration, its store, and the signal to stop.
pub struct Context {
    pub config: Config,
    pub store: Store,
    /// Cancelled on SIGTERM or SIGINT: uploads in progress stop and are aborted.
    pub stop: CancellationToken,
    /// What started this process's work, as its audit events say: `manual` (a command run by
    /// hand), `schedule` (`job run`, the daemon); `COFFRE_TRIGGER` overrides it.
    pub trigger: &'static str,
}

impl Context {
    /// Open the configured store.
    pub async fn open(config: Config, stop: CancellationToken) -> Result<Self> {
        let store = Store::open(&config.store, &config.upload, &config.secrets)
            .await?
            .stop_uploads_on(stop.clone());
        Ok(Self {
            config,
            store,
            stop,
            trigger: "manual",
        })
    }

    /// Where this process's audit events go: the store's trail, and the log.
    pub fn audit(&self) -> Audit<'_> {
        Audit::logged(&self.store, self.config.audit.object_lock).triggered_by(self.trigger)
    }
}
