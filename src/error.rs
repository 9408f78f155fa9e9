//! The crate-wide error: every failure belongs to one class, and each class has its own exit code,
//! so a CronJob, a script or an operator can tell "fix the config" from "the store is down", and
//! a scheduler can tell "retry later" (`Class::retryable`) from "page someone".
//!
//! Messages say what is wrong and what would fix it in the library's own terms; a fix that the
//! caller offers in its terms (the command line names a flag) travels as a `Remedy`.

use std::fmt;

/// What kind of failure, from the user's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Class {
    /// Bad or missing configuration, bad command-line input.
    Config,
    /// No key opens the backup, a passphrase is wrong, a server refused credentials.
    Auth,
    /// The dump tool or command failed, or the database is unreachable.
    Source,
    /// The object store failed or does not hold what was asked for, or the Kubernetes API
    /// holding the locks could not be reached.
    Store,
    /// Data or manifest failed authentication: tampered, truncated or mixed up.
    Integrity,
    /// The restore target (file, stdout, database) could not be written.
    Target,
    /// Stopped by SIGINT or SIGTERM.
    Interrupted,
    /// A bug or an unexpected condition.
    Internal,
}

impl Class {
    /// Process exit code for this class. 2 is left to clap for usage errors; an interruption
    /// exits 128 + the signal's number (130 for SIGINT, 143 for SIGTERM), set by the caller.
    pub const fn exit_code(self) -> i32 {
        match self {
            Class::Internal => 1,
            Class::Config => 3,
            Class::Auth => 4,
            Class::Source => 5,
            Class::Store => 6,
            Class::Integrity => 7,
            Class::Target => 8,
            Class::Interrupted => 130,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Class::Config => "config error",
            Class::Auth => "auth error",
            Class::Source => "source error",
            Class::Store => "store error",
            Class::Integrity => "integrity error",
            Class::Target => "target error",
            Class::Interrupted => "interrupted",
            Class::Internal => "internal error",
        }
    }

    /// The name in JSON output.
    pub fn name(self) -> &'static str {
        match self {
            Class::Config => "config",
            Class::Auth => "auth",
            Class::Source => "source",
            Class::Store => "store",
            Class::Integrity => "integrity",
            Class::Target => "target",
            Class::Interrupted => "interrupted",
            Class::Internal => "internal",
        }
    }

    /// Whether running the same thing again later may succeed without anyone changing
    /// anything: the store or the database was unreachable or failed. Config, auth and
    /// integrity failures need a person.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            Class::Source | Class::Store | Class::Target | Class::Interrupted
        )
    }
}

/// A fix the caller can offer in its own terms: the command line names a flag for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Remedy {
    /// Replace an existing restore target file.
    Overwrite,
    /// Create the target database.
    CreateDatabase,
    /// Restore over what a non-empty target database holds.
    ReplaceContents,
    /// Say which database of a job that dumps several.
    NameDatabase,
    /// Say which job, when several are configured.
    NameJob,
    /// Restore to stdout or a file instead of a database.
    RestoreToFile,
    /// Open backups with a key given for this run.
    OtherKey,
    /// Name the server a restore drill runs on.
    NameDrillServer,
    /// Make a new key (for new backups only).
    NewKey,
    /// Name another configuration file.
    ConfigFile,
    /// Name a job (or rotation target) the configuration has: the message lists them.
    KnownName,
}

/// An error with its class and a one-line message a user can act on, and the error it comes
/// from (an I/O error, object_store's, kube's), kept as `source()` for callers that need to
/// tell causes apart and for logs.
#[derive(Debug)]
pub struct Error {
    class: Class,
    message: String,
    /// The store answered that the object does not exist (a backup pruned meanwhile, say).
    not_found: bool,
    remedy: Option<Remedy>,
    cause: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    pub fn new(class: Class, message: impl Into<String>) -> Self {
        Self {
            class,
            message: message.into(),
            not_found: false,
            remedy: None,
            cause: None,
        }
    }
    /// A store error for an object that does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            not_found: true,
            ..Self::store(message)
        }
    }
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(Class::Config, message)
    }
    pub fn auth(message: impl Into<String>) -> Self {
        Self::new(Class::Auth, message)
    }
    /// The dump tool or command failed, or the database could not be reached.
    pub fn source_failed(message: impl Into<String>) -> Self {
        Self::new(Class::Source, message)
    }
    pub fn store(message: impl Into<String>) -> Self {
        Self::new(Class::Store, message)
    }
    pub fn integrity(message: impl Into<String>) -> Self {
        Self::new(Class::Integrity, message)
    }
    pub fn target(message: impl Into<String>) -> Self {
        Self::new(Class::Target, message)
    }
    pub fn interrupted(message: impl Into<String>) -> Self {
        Self::new(Class::Interrupted, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Class::Internal, message)
    }

    pub fn class(&self) -> Class {
        self.class
    }
    pub fn message(&self) -> &str {
        &self.message
    }
    pub fn is_not_found(&self) -> bool {
        self.not_found
    }
    pub fn remedy(&self) -> Option<Remedy> {
        self.remedy
    }

    /// Keep the error this one comes from, as `source()`.
    pub fn caused_by(self, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self {
            cause: Some(Box::new(cause)),
            ..self
        }
    }

    /// Whether it comes from an I/O error of `kind` (a key file that does not exist, say).
    pub fn is_io(&self, kind: std::io::ErrorKind) -> bool {
        self.cause
            .as_deref()
            .and_then(|c| c.downcast_ref::<std::io::Error>())
            .is_some_and(|io| io.kind() == kind)
    }

    /// Attach a fix the caller can offer in its own terms.
    pub fn with_remedy(self, remedy: Remedy) -> Self {
        Self {
            remedy: Some(remedy),
            ..self
        }
    }

    /// Append what the user can do about it, keeping the class.
    pub fn with_hint(self, hint: impl fmt::Display) -> Self {
        Self {
            message: format!("{}; {hint}", self.message),
            ..self
        }
    }

    /// Prefix the message with what was being done, keeping the class.
    pub fn context(self, what: impl fmt::Display) -> Self {
        Self {
            message: format!("{what}: {}", self.message),
            ..self
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.class.label(), self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause
            .as_deref()
            .map(|c| c as &(dyn std::error::Error + 'static))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `text` on one line, for an underlying error's text inside a one-line message: runs of
/// whitespace (newlines included) become single spaces, and the lines of `|` and `^` with which
/// a TOML error points at a column are dropped.
pub fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.chars().all(|c| "|^ ".contains(c)))
        .flat_map(str::split_whitespace)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cause_is_kept_as_source_with_the_class() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = Error::config("cannot read the key /k: no such file")
            .caused_by(io)
            .context("[encryption]");
        assert_eq!(e.class(), Class::Config);
        assert!(e.is_io(std::io::ErrorKind::NotFound));
        assert!(!e.is_io(std::io::ErrorKind::PermissionDenied));
        let source = std::error::Error::source(&e).expect("a source");
        assert_eq!(source.to_string(), "no such file");
        assert!(std::error::Error::source(&Error::store("x")).is_none());
    }

    #[test]
    fn one_line_folds_whitespace_and_drops_toml_markers() {
        let toml = "TOML parse error at line 2, column 5\n  |\n2 | a = \n  |     ^\ninvalid string";
        assert_eq!(
            one_line(toml),
            "TOML parse error at line 2, column 5 2 | a = invalid string"
        );
        assert_eq!(one_line("a\n\n  b   c"), "a b c");
    }
}
