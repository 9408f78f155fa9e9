//! coffre: encrypted database backups and credential rotation for Kubernetes.
//!
//! Data flows one way: `source` -> `ops::backup` (compress, `crypto::format::seal`) -> `store`,
//! and back: `store` -> `ops::restore` (`crypto::format::open`, decompress) -> target.
//! `ops` holds every use case as a library function; `cli` only parses, calls and renders.
//! Modules depend on each other in one direction (tests/layout.rs checks there is no cycle):
//! utilities (error, duration, process, secretstore) <- crypto <- manifest, retention <-
//! config <- db, source, store <- ops <- cli.

pub mod audit;
mod blocking;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod db;
pub mod duration;
pub mod error;
pub mod failpoint;
pub mod k8s;
pub mod manifest;
mod metered;
pub mod metrics;
pub mod notify;
pub mod ops;
pub mod process;
pub mod retention;
pub mod rotation;
pub mod schedule;
pub mod secretstore;
pub mod source;
pub mod store;
