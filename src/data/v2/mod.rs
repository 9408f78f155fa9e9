//! Format v2 (docs/FORMAT.md, "Version 2"): the dump cut into content-defined chunks, each
//! stored once per job in packs, listed per backup by a sealed recipe; each backup's key in
//! a session object that outlives it while its chunks are used.

mod chunker;
pub mod gc;
pub mod pack;
mod reader;
pub mod recipe;
pub mod secret;
pub mod session;
mod streamed;
mod writer;

pub use reader::{open, open_session, read_session, rewrite_session, stanzas};
pub use writer::{Writer, chunking};

/// Where packs are, in the job's directory.
pub const PACK_DIR: &str = "_packs";

/// The object name of pack `id`.
pub fn pack_name(id: pack::PackId) -> String {
    format!("{id}.cfp")
}
