//! PostgreSQL roles, through tokio-postgres. `ALTER ROLE ... PASSWORD` is sent with a
//! SCRAM-SHA-256 verifier computed here, so the clear password reaches neither the server nor
//! its statement log.

use async_trait::async_trait;
use std::path::PathBuf;
use std::time::Duration;
use tokio_postgres::error::SqlState;
use zeroize::Zeroizing;

use super::database::{Database, TlsMode, admin_refused, rustls_config};
use crate::error::{Error, Result};

pub struct Postgres {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub admin_user: String,
    pub admin_password: Option<Zeroizing<String>>,
    pub tls: TlsMode,
    pub ca_file: Option<PathBuf>,
}

impl Postgres {
    fn describe(&self) -> String {
        format!("PostgreSQL at {}:{}", self.host, self.port)
    }

    /// Connect as `user`; `Ok(None)` when the server refuses the password.
    async fn connect(&self, user: &str, password: &str) -> Result<Option<tokio_postgres::Client>> {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .dbname(&self.database)
            .user(user)
            .password(password)
            .application_name("coffre")
            .connect_timeout(Duration::from_secs(10))
            .ssl_mode(match self.tls {
                TlsMode::Disable => tokio_postgres::config::SslMode::Disable,
                TlsMode::Prefer => tokio_postgres::config::SslMode::Prefer,
                _ => tokio_postgres::config::SslMode::Require,
            });
        let connected = match self.tls {
            TlsMode::Disable => {
                config
                    .connect(tokio_postgres::NoTls)
                    .await
                    .map(|(client, conn)| {
                        tokio::spawn(conn);
                        client
                    })
            }
            mode => {
                let tls = tokio_postgres_rustls::MakeRustlsConnect::new(rustls_config(
                    mode,
                    self.ca_file.as_deref(),
                )?);
                config.connect(tls).await.map(|(client, conn)| {
                    tokio::spawn(conn);
                    client
                })
            }
        };
        match connected {
            Ok(client) => Ok(Some(client)),
            Err(e) if e.code() == Some(&SqlState::INVALID_PASSWORD) => Ok(None),
            // pg_hba.conf rejects the connection, or the role may not log in: no password
            // would help, and rotating would lock the user out.
            Err(e) if e.code() == Some(&SqlState::INVALID_AUTHORIZATION_SPECIFICATION) => {
                Err(Error::config(format!(
                    "{}: {user} may not log in ({}): check pg_hba.conf and that the role has LOGIN",
                    self.describe(),
                    e.as_db_error().map_or("refused", |d| d.message())
                )))
            }
            Err(e) => Err(Error::source_failed(format!(
                "{}: cannot connect as {user}: {}: is the server up, and the host, port and sslmode right?",
                self.describe(),
                with_causes(&e)
            ))),
        }
    }
}

impl Postgres {
    async fn admin(&self) -> Result<tokio_postgres::Client> {
        let admin_password = self.admin_password.as_deref().map_or("", |p| p.as_str());
        self.connect(&self.admin_user, admin_password)
            .await?
            .ok_or_else(|| admin_refused(&self.describe(), &self.admin_user))
    }
}

/// An error and what caused it ("error performing TLS handshake: invalid peer certificate: ...").
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}

/// The server's own message for a failed statement (its text, never the statement's), or the
/// client's error and its causes when the server said nothing.
fn db_message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map_or_else(|| with_causes(e), |d| d.message().to_string())
}

/// A role name as a quoted SQL identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[async_trait]
impl Database for Postgres {
    async fn log_in(&self, user: &str, password: &str, query: &str) -> Result<bool> {
        let Some(client) = self.connect(user, password).await? else {
            return Ok(false);
        };
        client.batch_execute(query).await.map_err(|e| {
            let message = format!(
                "{}: logged in as {user}, but the test query failed: {}",
                self.describe(),
                db_message(&e)
            );
            // Class 42 is a statement the user may not run or that does not parse: no retry
            // fixes it (grant the user what the other one has, or fix test_query).
            match e.code().is_some_and(|c| c.code().starts_with("42")) {
                true => Error::config(format!(
                    "{message}: grant {user} what the application needs, or fix the target's test_query"
                )),
                false => Error::source_failed(message),
            }
        })?;
        Ok(true)
    }

    async fn check_admin(&self) -> Result<()> {
        self.admin().await.map(drop)
    }

    async fn check_user(&self, user: &str) -> Result<()> {
        let client = self.admin().await?;
        // Role attributes are not inherited, but a member may SET ROLE to the role that has
        // them: every role `user` is a member of counts, itself included.
        let row = client
            .query_opt(
                "SELECT r.rolcanlogin, \
                        pg_has_role(r.oid, (SELECT oid FROM pg_roles WHERE rolname = session_user), 'MEMBER'), \
                        ARRAY(SELECT p.attr || CASE WHEN g.oid = r.oid THEN '' ELSE ' (through ' || g.rolname || ')' END \
                              FROM pg_roles g, LATERAL (VALUES ('SUPERUSER', g.rolsuper), ('CREATEROLE', g.rolcreaterole), \
                                   ('REPLICATION', g.rolreplication), ('BYPASSRLS', g.rolbypassrls)) AS p(attr, has) \
                              WHERE p.has AND pg_has_role(r.oid, g.oid, 'MEMBER') ORDER BY 1) \
                 FROM pg_roles r WHERE r.rolname = $1",
                &[&user],
            )
            .await
            .map_err(|e| {
                Error::source_failed(format!(
                    "{}: looking up role {user}: {}",
                    self.describe(),
                    db_message(&e)
                ))
            })?;
        let Some(row) = row else {
            return Err(Error::config(format!(
                "{}: role {user} does not exist: create it, or fix the target's users",
                self.describe()
            )));
        };
        let (can_login, is_admin, powers): (bool, bool, Vec<String>) =
            (row.get(0), row.get(1), row.get(2));
        if is_admin {
            return Err(Error::config(format!(
                "{}: {user} is the admin user {} (or a member of it): coffre would change its own login's password and publish it to the application; rotate the application's users only",
                self.describe(),
                self.admin_user
            )));
        }
        if !powers.is_empty() {
            return Err(Error::config(format!(
                "{}: {user} has {}: coffre publishes its password to an application, which must not get an administrator's powers; rotate a role without them (ALTER ROLE {user} NOSUPERUSER NOCREATEROLE ..., or REVOKE the role that has them)",
                self.describe(),
                powers.join(", ")
            )));
        }
        if !can_login {
            return Err(Error::config(format!(
                "{}: {user} may not log in (NOLOGIN): ALTER ROLE {user} LOGIN, or fix the target's users",
                self.describe()
            )));
        }
        Ok(())
    }

    async fn set_password(&self, user: &str, password: &str) -> Result<()> {
        let client = self.admin().await?;
        let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
        // A verifier is base64 and punctuation without quotes; it is a literal because utility
        // statements take no parameters.
        let statement = Zeroizing::new(format!(
            "ALTER ROLE {} WITH PASSWORD '{}'",
            quote_ident(user),
            verifier.replace('\'', "''")
        ));
        client.batch_execute(&statement).await.map_err(|e| {
            let why = e.as_db_error().map_or_else(|| e.to_string(), |d| d.message().to_string());
            match e.code() {
                Some(&SqlState::INSUFFICIENT_PRIVILEGE) => Error::auth(format!(
                    "{}: {} may not change {user}'s password ({why}): grant it CREATEROLE, or use a superuser",
                    self.describe(),
                    self.admin_user
                )),
                Some(&SqlState::UNDEFINED_OBJECT) => Error::config(format!(
                    "{}: role {user} does not exist: create it, or fix the target's users",
                    self.describe()
                )),
                // The server's text may quote the statement, and so the verifier: give its code only.
                code => Error::source_failed(format!(
                    "{}: changing {user}'s password failed (SQLSTATE {})",
                    self.describe(),
                    code.map_or("unknown", |c| c.code())
                )),
            }
        })
    }
}
