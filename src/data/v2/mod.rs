//! Format v2 (docs/FORMAT.md, "Version 2"): the dump cut into content-defined chunks, each
//! stored once per job in packs, listed per backup by a sealed recipe; each backup's key in
//! a session object that outlives it while its chunks are used.

pub mod pack;
pub mod recipe;
pub mod secret;
pub mod session;
