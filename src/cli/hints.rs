//! The flags that carry out a library error's remedy, and how a final error is shown.

use crate::error::{Error, Remedy};

/// What to type to apply `remedy`.
pub fn flag_for(remedy: Remedy) -> &'static str {
    match remedy {
        Remedy::Overwrite => "pass --force to replace it",
        Remedy::CreateDatabase => "pass --create",
        Remedy::ReplaceContents => "pass --clean",
        Remedy::NameDatabase => "pass --database NAME",
        Remedy::NameJob => "pass --job NAME",
        Remedy::RestoreToFile => "restore with --to FILE or --to -",
        Remedy::OtherKey => {
            "to open backups with another key pass --key-file FILE, --passphrase-env VAR, --passphrase-file FILE or --identity-file FILE"
        }
        Remedy::NameDrillServer => "pass --restore-server URL",
        Remedy::ConfigFile => "pass --config PATH or set COFFRE_CONFIG",
        Remedy::NewKey => {
            "no backup exists yet: 'coffre key generate' with the path above makes the key"
        }
        Remedy::KnownName => {
            "name one of those listed ('coffre job list' and 'coffre rotate status' show them all)"
        }
    }
}

/// The exit code of a run that failed with `e`: its class's, or 128 + the signal that
/// interrupted it.
pub fn exit_code(e: &Error, signal: Option<i32>) -> i32 {
    match signal {
        Some(signal) => 128 + signal,
        None => e.class().exit_code(),
    }
}

/// The one line a failed run ends with.
pub fn error_line(e: &Error) -> String {
    match e.remedy() {
        Some(remedy) => format!("coffre: {e} ({})", flag_for(remedy)),
        None => format!("coffre: {e}"),
    }
}
