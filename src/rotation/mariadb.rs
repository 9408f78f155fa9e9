//! MariaDB (and MySQL) users, through mysql_async. `ALTER USER ... IDENTIFIED BY PASSWORD` is
//! sent with the mysql_native_password hash computed here, so the clear password reaches
//! neither the server nor its logs.

use async_trait::async_trait;
use mysql_async::prelude::Queryable;
use sha1::{Digest, Sha1};
use std::path::PathBuf;
use zeroize::Zeroizing;

use super::database::{Database, TlsMode, admin_refused};
use crate::error::{Error, Result};

/// ER_ACCESS_DENIED_ERROR: wrong user or password.
const ACCESS_DENIED: u16 = 1045;
/// ER_SPECIFIC_ACCESS_DENIED_ERROR and ER_DBACCESS_DENIED_ERROR.
const NOT_ALLOWED: [u16; 2] = [1227, 1044];
/// ER_CANNOT_USER: ALTER USER of a user that does not exist.
const NO_SUCH_USER: u16 = 1396;

pub struct MariaDb {
    pub host: String,
    pub port: u16,
    pub database: Option<String>,
    pub admin_user: String,
    pub admin_password: Option<Zeroizing<String>>,
    /// The host part of the rotated accounts ('app'@'%').
    pub user_host: String,
    pub tls: TlsMode,
    pub ca_file: Option<PathBuf>,
}

impl MariaDb {
    fn describe(&self) -> String {
        format!("MariaDB at {}:{}", self.host, self.port)
    }

    fn opts(&self, user: &str, password: &str, tls: bool) -> mysql_async::Opts {
        let mut builder = mysql_async::OptsBuilder::default()
            .ip_or_hostname(self.host.clone())
            .tcp_port(self.port)
            .user(Some(user))
            .pass(Some(password))
            .db_name(self.database.clone())
            .prefer_socket(false);
        if tls {
            let mut ssl = mysql_async::SslOpts::default()
                .with_danger_accept_invalid_certs(self.tls != TlsMode::VerifyFull);
            if let Some(ca) = &self.ca_file {
                ssl = ssl.with_root_certs(vec![ca.clone().into()]);
            }
            builder = builder.ssl_opts(Some(ssl));
        }
        builder.into()
    }

    /// Connect as `user`; `Ok(None)` when the server refuses the password.
    async fn connect(&self, user: &str, password: &str) -> Result<Option<mysql_async::Conn>> {
        let tls = self.tls != TlsMode::Disable;
        let mut attempt = mysql_async::Conn::new(self.opts(user, password, tls)).await;
        // prefer: a server without TLS is reached in the clear.
        if self.tls == TlsMode::Prefer
            && matches!(
                &attempt,
                Err(mysql_async::Error::Driver(
                    mysql_async::DriverError::NoClientSslFlagFromServer
                ))
            )
        {
            attempt = mysql_async::Conn::new(self.opts(user, password, false)).await;
        }
        match attempt {
            Ok(conn) => Ok(Some(conn)),
            Err(mysql_async::Error::Server(e)) if e.code == ACCESS_DENIED => Ok(None),
            Err(e) => Err(Error::source(format!(
                "{}: cannot connect as {user}: {e}: is the server up, and the host, port and sslmode right?",
                self.describe()
            ))),
        }
    }
}

impl MariaDb {
    async fn admin(&self) -> Result<mysql_async::Conn> {
        let admin_password = self.admin_password.as_deref().map_or("", |p| p.as_str());
        self.connect(&self.admin_user, admin_password)
            .await?
            .ok_or_else(|| admin_refused(&self.describe(), &self.admin_user))
    }
}

/// mysql_native_password's stored form: '*' and the upper-case hex of SHA1(SHA1(password)).
fn native_hash(password: &str) -> String {
    let inner = Sha1::digest(password.as_bytes());
    format!("*{}", hex::encode_upper(Sha1::digest(inner)))
}

/// A string as a quoted SQL literal.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

#[async_trait]
impl Database for MariaDb {
    async fn log_in(&self, user: &str, password: &str, query: &str) -> Result<bool> {
        let Some(mut conn) = self.connect(user, password).await? else {
            return Ok(false);
        };
        let ran = conn.query_drop(query).await;
        let _ = conn.disconnect().await;
        ran.map_err(|e| {
            Error::source(format!(
                "{}: logged in as {user}, but the test query failed: {e}",
                self.describe()
            ))
        })?;
        Ok(true)
    }

    async fn check_user(&self, _user: &str) -> Result<()> {
        // The admin may not read mysql.user; ALTER USER reports a missing account itself.
        Ok(())
    }

    async fn check_admin(&self) -> Result<()> {
        let conn = self.admin().await?;
        let _ = conn.disconnect().await;
        Ok(())
    }

    async fn set_password(&self, user: &str, password: &str) -> Result<()> {
        let mut conn = self.admin().await?;
        let statement = format!(
            "ALTER USER {}@{} IDENTIFIED BY PASSWORD {}",
            quote(user),
            quote(&self.user_host),
            quote(&native_hash(password))
        );
        let done = conn.query_drop(statement).await;
        let _ = conn.disconnect().await;
        done.map_err(|e| match &e {
            mysql_async::Error::Server(s) if NOT_ALLOWED.contains(&s.code) => Error::auth(format!(
                "{}: {} may not change {user}'s password ({}): grant it CREATE USER",
                self.describe(),
                self.admin_user,
                s.message
            )),
            mysql_async::Error::Server(s) if s.code == NO_SUCH_USER => Error::config(format!(
                "{}: user '{user}'@'{}' does not exist: create it, or fix the target's users and user_host",
                self.describe(),
                self.user_host
            )),
            // The server's text may quote the statement, and so the hash: give its code only.
            mysql_async::Error::Server(s) => Error::source(format!(
                "{}: changing {user}'s password failed (server error {}): is it MariaDB (MySQL 8 has no IDENTIFIED BY PASSWORD)?",
                self.describe(),
                s.code
            )),
            _ => Error::source(format!(
                "{}: changing {user}'s password: the connection failed",
                self.describe()
            )),
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn native_hash_matches_the_servers() {
        // SELECT PASSWORD('password') on MariaDB.
        assert_eq!(
            super::native_hash("password"),
            "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"
        );
    }
}
