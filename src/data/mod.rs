//! What a backup stores besides its manifest, by format version, behind one writer and one
//! reader: backup, restore, verify, prune and key changes call these, never a version's layout
//! directly. Format v1 (`v1`) is one sealed data object per backup.

mod target;
pub mod v1;
pub mod v2;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::crypto::keys::{Secret, Stanza};
use crate::error::Result;
use crate::store::{Backup, Store};

/// What was restored or verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenSummary {
    pub stored_bytes: u64,
    pub payload_bytes: u64,
    pub plaintext_bytes: u64,
    pub chunks: u64,
}

/// A backup being written.
pub type Writer = v1::Writer;

/// Restore `backup` into `out`, every byte authenticated, with a progress bar on stderr when
/// `progress`.
pub async fn open<W: AsyncWrite + Unpin>(
    store: &Store,
    backup: &Backup,
    secrets: &[Secret],
    out: &mut W,
    progress: bool,
) -> Result<OpenSummary> {
    v1::open(store, backup, secrets, out, progress).await
}

/// The key stanzas that open `backup`.
pub fn stanzas(backup: &Backup) -> &[Stanza] {
    backup.manifest.v1_keys()
}

/// Replace the key stanzas of `backup`; the data stays byte-identical.
pub async fn rewrite_keys(store: &Store, backup: &Backup, stanzas: Vec<Stanza>) -> Result<()> {
    v1::rewrite_keys(store, backup, stanzas).await
}

/// `reader`, counted on a progress bar of `total` bytes on stderr.
fn with_progress(
    reader: Box<dyn AsyncRead + Send + Unpin>,
    total: u64,
) -> Box<dyn AsyncRead + Send + Unpin> {
    let bar = indicatif::ProgressBar::new(total).with_style(
        indicatif::ProgressStyle::with_template(
            "{bytes}/{total_bytes} {wide_bar} {bytes_per_sec} eta {eta}",
        )
        .expect("valid template"),
    );
    Box::new(bar.wrap_async_read(reader))
}
