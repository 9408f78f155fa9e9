//! The parts of a rotation: the journal that makes it crash-safe, what each kind of credential
//! does at each step (`credential`), generated passwords and keys, the database clients,
//! certificates (internal CA and ACME) and the issuer hooks. `ops::rotate` runs the state
//! machine over them.

pub mod acme;
pub mod certificate;
pub mod credential;
pub mod database;
pub mod hook;
pub mod journal;
pub mod mariadb;
pub mod password;
pub mod postgres;
