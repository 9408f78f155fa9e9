//! The parts of a password rotation: the journal that makes it crash-safe, the generated
//! passwords, and the database clients that set and test them. `ops::rotate` runs the state
//! machine over them.

pub mod database;
pub mod journal;
pub mod mariadb;
pub mod password;
pub mod postgres;
