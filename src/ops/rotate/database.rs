//! Database passwords as rotation credentials: dual-user (two users alternate, the one in use
//! keeps its password) or single-user.

use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{DatabaseKind, DatabaseTarget};
use crate::error::{Error, Result};
use crate::rotation::credential::{Begun, Credential, Revoked};
use crate::rotation::database::Database;
use crate::rotation::journal::{Record, State};
use crate::rotation::password::PasswordPolicy;
use crate::rotation::{mariadb, postgres};
use crate::secretstore::{Fields, Resolver};

pub(super) struct DatabasePassword {
    target: DatabaseTarget,
    secrets: Resolver,
    /// Made on first use, so that a plan reads no admin password.
    db: tokio::sync::OnceCell<Arc<dyn Database>>,
}

impl DatabasePassword {
    pub(super) fn new(target: &DatabaseTarget, secrets: &Resolver) -> Self {
        Self {
            target: target.clone(),
            secrets: secrets.clone(),
            db: tokio::sync::OnceCell::new(),
        }
    }

    async fn db(&self) -> Result<&Arc<dyn Database>> {
        self.db
            .get_or_try_init(|| connect(&self.target, &self.secrets))
            .await
    }
}

/// The database client for a target, with its admin password read from where it is kept.
async fn connect(target: &DatabaseTarget, secrets: &Resolver) -> Result<Arc<dyn Database>> {
    let admin_password = match &target.admin_password {
        Some(r) => Some(
            secrets
                .resolve(r, "the admin password")
                .await?
                .text("the admin password")?,
        ),
        None => None,
    };
    let db: Arc<dyn Database> = match target.kind {
        DatabaseKind::Postgres => Arc::new(postgres::Postgres {
            host: target.host.clone(),
            port: target.port,
            database: target.database.clone().unwrap_or_else(|| "postgres".into()),
            admin_user: target.admin_user.clone(),
            admin_password,
            tls: target.tls,
            ca_file: target.ca_file.clone(),
        }),
        DatabaseKind::Mariadb => Arc::new(mariadb::MariaDb {
            host: target.host.clone(),
            port: target.port,
            database: target.database.clone(),
            admin_user: target.admin_user.clone(),
            admin_password,
            user_host: target.user_host.clone(),
            tls: target.tls,
            ca_file: target.ca_file.clone(),
        }),
    };
    Ok(db)
}

impl DatabasePassword {
    /// The user a new rotation changes: the one not in use (dual-user), or the only one.
    fn next_user(&self, published: Option<&Fields>) -> &str {
        let t = &self.target;
        let active = published.and_then(|p| p.get("username"));
        t.users
            .iter()
            .find(|u| !t.dual_user() || Some(u.as_str()) != active)
            .unwrap_or(&t.users[0])
    }
}

#[async_trait]
impl Credential for DatabasePassword {
    fn key_field(&self) -> &'static str {
        "password"
    }

    fn describe(&self) -> String {
        self.target.describe()
    }

    /// The admin logs in, and each user exists, may log in and is no administrator.
    async fn check(&self) -> Result<()> {
        let db = self.db().await?;
        db.check_admin().await?;
        for user in &self.target.users {
            db.check_user(user).await?;
        }
        Ok(())
    }

    fn plan(&self, published: Option<&Fields>, revoke_after: Option<Duration>) -> String {
        let user = self.next_user(published);
        let active = published.and_then(|p| p.get("username"));
        match (self.target.dual_user(), active) {
            (true, Some(active)) => {
                let then = match revoke_after {
                    None => "keeps its password until the next rotation changes it".to_string(),
                    Some(d) if d.is_zero() => {
                        "gets a password nobody knows as soon as the workloads rolled out with the new one".to_string()
                    }
                    Some(d) => format!(
                        "keeps its password for {} after the rotation finishes, then gets one nobody knows",
                        crate::duration::HumanDuration(d)
                    ),
                };
                format!("rotate {user} (dual-user: {active}, in use now, {then})")
            }
            (true, None) => format!("rotate {user} (dual-user; nothing is published yet)"),
            (false, _) => format!("rotate {user} (single-user)"),
        }
    }

    async fn begin(&self, published: Option<&Fields>) -> Result<Begun> {
        // Nothing is written until the admin login works: a wrong admin password changes nothing.
        self.db().await?.check_admin().await?;
        let user = self.next_user(published).to_string();
        self.db().await?.check_user(&user).await?;
        let mut note = None;
        if let Some(p) = published
            && let (Some(username), Some(password)) = (p.get("username"), p.get("password"))
            && !self
                .db()
                .await?
                .log_in(username, password, "SELECT 1")
                .await?
        {
            note = Some(
                "the published credential did not open the database; this rotation replaces it"
                    .to_string(),
            );
        }
        Ok(Begun {
            subject: user,
            note,
        })
    }

    fn generate(&self, _: &str) -> Result<Fields> {
        Ok(Fields::new().with("password", &self.target.password.generate()))
    }

    async fn apply(&self, rotation: &Record, pending: &mut Fields) -> Result<Option<String>> {
        let user = rotation.user.as_str();
        let password = pending_password(pending)?;
        self.db().await?.check_user(user).await?;
        if self.db().await?.log_in(user, password, "SELECT 1").await? {
            // A server that lets anyone in would say the same: prove it checks passwords.
            self.refuse_unchecked(user).await?;
            return Ok(Some("the database already had the new password".into()));
        }
        self.db().await?.set_password(user, password).await?;
        Ok(None)
    }

    async fn test(&self, rotation: &Record, pending: &Fields) -> Result<()> {
        let user = rotation.user.as_str();
        if !self
            .db()
            .await?
            .log_in(user, pending_password(pending)?, &self.target.test_query)
            .await?
        {
            let host_hint = match self.target.kind {
                // MariaDB answers 1045 both for a wrong password and for an account whose
                // host part does not match the address coffre connects from.
                DatabaseKind::Mariadb => format!(
                    ", or does user_host '{}' not match the address coffre connects from?",
                    self.target.user_host
                ),
                DatabaseKind::Postgres => "?".to_string(),
            };
            return Err(Error::auth(format!(
                "the database refused {user}'s new password just after it was set: is another tool changing it{host_hint}"
            )));
        }
        // DB_SET proved the server checks this user's password: it refused the new one before
        // it was set, or a wrong one (`refuse_unchecked`). No failed login is made here, which
        // a server's log or lockout policy would count every week.
        Ok(())
    }

    fn published(&self, rotation: &Record, pending: &Fields, _: Option<&Fields>) -> Fields {
        let t = &self.target;
        let mut fields = Fields::new()
            .with("username", &rotation.user)
            .with("password", pending.get("password").unwrap_or_default())
            .with("rotation_id", &rotation.rotation_id.to_string())
            .with("host", &t.host)
            .with("port", &t.port.to_string());
        if let Some(database) = &t.database {
            fields.insert("database", database);
        }
        fields
    }

    /// Dual-user: the user the rotation moved away from gets a password nobody knows, so
    /// whoever holds its old one is locked out. Single-user: the old password is gone already.
    async fn revoke(&self, rotation: &Record, _: &Fields) -> Result<Revoked> {
        let previous = rotation
            .previous_user
            .as_deref()
            .filter(|p| self.target.dual_user() && *p != rotation.user);
        let Some(previous) = previous else {
            return Ok(Revoked {
                detail:
                    "nothing to revoke: the old password stopped working when the new one was set"
                        .into(),
                published: None,
            });
        };
        let unknown = PasswordPolicy::default().generate();
        self.db().await?.set_password(previous, &unknown).await?;
        Ok(Revoked {
            detail: format!("{previous}'s password replaced by one nobody knows"),
            published: None,
        })
    }

    // Single-user, between DB_SET and PUBLISHED: the database has the pending password and the
    // published secret the old one. Dropping the pending password would lose the live one.
    fn abandon_loses_live(&self, reached: State) -> bool {
        !self.target.dual_user() && matches!(reached, State::DbSet | State::Tested)
    }
}

impl DatabasePassword {
    /// A config error unless the server refuses `user` a random password: where it lets
    /// anyone in (a trust rule), a rotated password protects nothing and no login proves it.
    async fn refuse_unchecked(&self, user: &str) -> Result<()> {
        let wrong = PasswordPolicy::default().generate();
        if !self.db().await?.log_in(user, &wrong, "SELECT 1").await? {
            return Ok(());
        }
        let why = match self.target.kind {
            DatabaseKind::Postgres => {
                "a pg_hba.conf rule with the trust method (or another that asks for no password) matches it: make its rule scram-sha-256"
            }
            DatabaseKind::Mariadb => {
                "the account has no password check (an authentication plugin that ignores the password, or a server run with --skip-grant-tables): make it IDENTIFIED BY a password"
            }
        };
        Err(Error::config(format!(
            "{}: the server let {user} log in with a wrong password, so rotating its password would protect nothing and no login could prove the new one: {why}",
            self.target.describe()
        )))
    }
}

fn pending_password(pending: &Fields) -> Result<&str> {
    pending.get("password").ok_or_else(|| {
        Error::integrity(
            "the journal holds no pending password: see docs/ROTATION.md, recovering by hand",
        )
    })
}
