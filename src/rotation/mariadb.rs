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

/// ER_ACCESS_DENIED_ERROR: wrong user or password; ER_ACCESS_DENIED_NO_PASSWORD_ERROR, which
/// the server also answers for an account that does not match (seen while other accounts
/// are created and dropped).
const ACCESS_DENIED: [u16; 2] = [1045, 1698];
/// ER_DBACCESS_DENIED_ERROR: the user may not use the database it asked for.
const DATABASE_DENIED: u16 = 1044;
/// ER_HOST_NOT_PRIVILEGED: no account of that user for the address coffre connects from.
const HOST_DENIED: u16 = 1130;
/// ER_SPECIFIC_ACCESS_DENIED_ERROR and ER_DBACCESS_DENIED_ERROR.
const NOT_ALLOWED: [u16; 2] = [1227, 1044];
/// ER_TABLEACCESS_DENIED_ERROR: SHOW GRANTS of another account without SELECT on `mysql`.
const TABLE_DENIED: u16 = 1142;
/// ER_CANNOT_USER: ALTER USER of a user that does not exist.
const NO_SUCH_USER: u16 = 1396;
/// ER_NONEXISTING_GRANT: SHOW GRANTS of an account that does not exist.
const NONEXISTING_GRANT: u16 = 1141;

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

    fn opts(&self, login: &Login<'_>, tls: bool) -> mysql_async::Opts {
        let mut builder = mysql_async::OptsBuilder::default()
            .ip_or_hostname(self.host.clone())
            .tcp_port(self.port)
            .user(Some(login.user))
            .pass(Some(login.password))
            .db_name(login.database.map(str::to_string))
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

    /// Connect as `login.user`; `Ok(None)` when the server refuses the password.
    async fn connect(&self, login: &Login<'_>) -> Result<Option<mysql_async::Conn>> {
        let tls = self.tls != TlsMode::Disable;
        let mut attempt = mysql_async::Conn::new(self.opts(login, tls)).await;
        // prefer: a server without TLS is reached in the clear.
        if self.tls == TlsMode::Prefer
            && matches!(
                &attempt,
                Err(mysql_async::Error::Driver(
                    mysql_async::DriverError::NoClientSslFlagFromServer
                ))
            )
        {
            attempt = mysql_async::Conn::new(self.opts(login, false)).await;
        }
        let user = login.user;
        match attempt {
            Ok(conn) => Ok(Some(conn)),
            Err(mysql_async::Error::Server(e)) if ACCESS_DENIED.contains(&e.code) => Ok(None),
            // The server answered: no retry helps, a grant or a setting does.
            Err(mysql_async::Error::Server(e)) if e.code == DATABASE_DENIED => {
                Err(Error::auth(format!(
                    "{}: {user} logged in but may not use database '{}' ({}): GRANT it what the application needs ON `{}`.*, or fix the target's database",
                    self.describe(),
                    login.database.unwrap_or_default(),
                    e.message,
                    login.database.unwrap_or_default()
                )))
            }
            Err(mysql_async::Error::Server(e)) if e.code == HOST_DENIED => {
                Err(Error::auth(format!(
                    "{}: {user} has no account for the address coffre connects from ({}): check user_host and the account's host part",
                    self.describe(),
                    e.message
                )))
            }
            Err(mysql_async::Error::Server(e)) => Err(Error::auth(format!(
                "{}: the server refused {user} (error {}: {})",
                self.describe(),
                e.code,
                e.message
            ))),
            Err(e) => Err(Error::source_failed(format!(
                "{}: cannot connect as {user}: {e}: is the server up, and the host, port and sslmode right?",
                self.describe()
            ))),
        }
    }

    /// The admin user's connection. It selects no database: changing a password needs none,
    /// and the README's grant (CREATE USER ON *.*) gives it access to none.
    async fn admin(&self) -> Result<mysql_async::Conn> {
        let admin_password = self.admin_password.as_deref().map_or("", |p| p.as_str());
        let login = Login {
            user: &self.admin_user,
            password: admin_password,
            database: None,
        };
        self.connect(&login)
            .await?
            .ok_or_else(|| admin_refused(&self.describe(), &self.admin_user))
    }

    /// What makes `grants` (SHOW GRANTS lines of one account) more than an application's
    /// login: the power to make users, grant, or do anything.
    fn powers(grants: &[String]) -> Vec<&'static str> {
        let upper: Vec<String> = grants.iter().map(|g| g.to_ascii_uppercase()).collect();
        let global = |g: &&String| g.contains(" ON *.* TO ");
        let mut found = Vec::new();
        if upper.iter().any(|g| g.contains("WITH GRANT OPTION")) {
            found.push("GRANT OPTION");
        }
        for (needle, name) in [
            ("ALL PRIVILEGES", "ALL PRIVILEGES ON *.*"),
            ("SUPER", "SUPER"),
            ("CREATE USER", "CREATE USER"),
        ] {
            if upper.iter().filter(global).any(|g| g.contains(needle)) {
                found.push(name);
            }
        }
        found
    }

    /// Refuse an account with an administrator's powers: its password is handed to an
    /// application.
    fn refuse_powers(&self, account: &str, grants: &[String]) -> Result<()> {
        let powers = Self::powers(grants);
        if powers.is_empty() {
            return Ok(());
        }
        Err(Error::config(format!(
            "{}: {account} has {}: coffre publishes its password to an application, which must not get an administrator's powers; rotate an account without them",
            self.describe(),
            powers.join(", ")
        )))
    }
}

/// Who logs in, with what, into which database.
struct Login<'a> {
    user: &'a str,
    password: &'a str,
    database: Option<&'a str>,
}

async fn show_grants(conn: &mut mysql_async::Conn, of: &str) -> mysql_async::Result<Vec<String>> {
    conn.query(format!("SHOW GRANTS FOR {of}")).await
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
        let login = Login {
            user,
            password,
            database: self.database.as_deref(),
        };
        let Some(mut conn) = self.connect(&login).await? else {
            return Ok(false);
        };
        let ran = conn.query_drop(query).await;
        // Whether the admin could read this account's grants or not, the account can: an
        // application login must not be able to make users or grant.
        let grants = show_grants(&mut conn, "CURRENT_USER()").await;
        let _ = conn.disconnect().await;
        ran.map_err(|e| match &e {
            mysql_async::Error::Server(s) => Error::config(format!(
                "{}: logged in as {user}, but the test query failed: {} (error {}): grant {user} what the application needs, or fix the target's test_query",
                self.describe(),
                s.message,
                s.code
            )),
            other => Error::source_failed(format!(
                "{}: logged in as {user}, but the test query failed: {other}",
                self.describe()
            )),
        })?;
        let grants = grants.map_err(|e| {
            Error::source_failed(format!(
                "{}: {user}'s own grants could not be read: {e}",
                self.describe()
            ))
        })?;
        self.refuse_powers(&format!("'{user}'@'{}'", self.user_host), &grants)?;
        Ok(true)
    }

    async fn check_user(&self, user: &str) -> Result<()> {
        let mut conn = self.admin().await?;
        let account = format!("{}@{}", quote(user), quote(&self.user_host));
        let me: Option<String> = conn
            .query_first("SELECT CURRENT_USER()")
            .await
            .ok()
            .flatten();
        let grants = show_grants(&mut conn, &account).await;
        let _ = conn.disconnect().await;
        // CURRENT_USER() is the account the server matched the admin's login to: user@host.
        if me.as_deref() == Some(format!("{user}@{}", self.user_host).as_str()) {
            return Err(Error::config(format!(
                "{}: '{user}'@'{}' is the admin user's own account: coffre would change its own login's password and publish it to the application; rotate the application's users only",
                self.describe(),
                self.user_host
            )));
        }
        match grants {
            Ok(grants) => self.refuse_powers(&format!("'{user}'@'{}'", self.user_host), &grants),
            // Without SELECT on `mysql` the admin may not read other accounts' grants: the
            // test step reads the account's own (log_in) before anything is published.
            Err(mysql_async::Error::Server(s))
                if [DATABASE_DENIED, TABLE_DENIED].contains(&s.code) =>
            {
                Ok(())
            }
            Err(mysql_async::Error::Server(s)) if s.code == NONEXISTING_GRANT => {
                Err(Error::config(format!(
                    "{}: user '{user}'@'{}' does not exist: create it, or fix the target's users and user_host",
                    self.describe(),
                    self.user_host
                )))
            }
            Err(e) => Err(Error::source_failed(format!(
                "{}: reading {user}'s grants: {e}",
                self.describe()
            ))),
        }
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
            mysql_async::Error::Server(s) => Error::source_failed(format!(
                "{}: changing {user}'s password failed (server error {}): is it MariaDB (MySQL 8 has no IDENTIFIED BY PASSWORD)?",
                self.describe(),
                s.code
            )),
            _ => Error::source_failed(format!(
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
