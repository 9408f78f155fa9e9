//! coffre: encrypted database backups and credential rotation for Kubernetes.
//!
//! Data flows one way: `source` -> `backup` (compress, `crypto::format::seal`) -> `store`,
//! and back: `store` -> `restore` (`crypto::format::open`, decompress) -> target.

pub mod backup;
mod blocking;
pub mod config;
pub mod crypto;
pub mod db;
pub mod duration;
pub mod error;
pub mod failpoint;
pub mod keyring;
pub mod manifest;
pub mod metered;
pub mod ops;
mod partial_file;
pub mod process;
pub mod prune;
pub mod report;
pub mod restore;
pub mod retention;
pub mod secret_file;
pub mod source;
pub mod store;
