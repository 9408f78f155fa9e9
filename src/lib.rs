//! coffre: encrypted database backups and credential rotation for Kubernetes.
//!
//! Data flows one way: `source` -> `ops::backup` (compress, `crypto::format::seal`) -> `store`,
//! and back: `store` -> `ops::restore` (`crypto::format::open`, decompress) -> target; a
//! rotation goes `ops::rotate` -> `rotation` (generate, set, test) -> `secretstore` (publish)
//! -> `k8s` (restart consumers), every step journaled and audited.
//! `ops` holds every use case as a library function; `cli` only parses, calls and renders.
//!
//! Modules depend on each other in one direction (tests/layout.rs fails on an import cycle,
//! between any two modules at any depth); each line uses only the lines above it:
//!
//! ```text
//! error, duration, schedule, process, failpoint, blocking, metered, sigv4, clock   utilities
//! k8s                      the Kubernetes API (Leases, Secrets, workloads)
//! secretstore              where secrets are read from and published to
//! crypto                   keys, stanzas and the data-object format
//! manifest, retention      the backup record, the retention policy
//! rotation                 credentials: generated, set on their issuer, tested
//! config                   config and job files, validated
//! db, source, store        database servers, dumps, the object store
//! data                     what a backup stores, by format version: one writer, one reader
//! audit, metrics, notify   what is reported, and where (audit: the hash-linked trail)
//! report                   the compliance report's shape and renderings
//! ops                      the use cases
//! cli                      the command line (and main.rs, the binary, on top)
//! ```

pub mod audit;
mod blocking;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod data;
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
pub mod report;
pub mod retention;
pub mod rotation;
pub mod schedule;
pub mod secretstore;
mod sigv4;
pub mod source;
pub mod store;
