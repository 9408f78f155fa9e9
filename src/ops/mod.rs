//! The use cases, as library functions that take what they act on and return what happened.
//! Nothing here prints: the command line, the daemon and the incident command render the
//! returned values themselves.

pub mod verify;
