//! Child processes (dump commands, database client tools): what they may see of coffre's
//! environment, and how they are stopped; and the host this process runs on.
//!
//! A child starts with a clean environment: PATH, HOME (for `~/.pgpass`, `~/.my.cnf`),
//! LANG, LC_* and TZ, then only the variables its job names (`inherit_env`) and the values
//! coffre sets for it. Key passphrases, store credentials and other jobs' passwords are never
//! passed on. Every child leads its own process group, so stopping it stops what it started
//! too (`sh -c "pg_dump ...; sleep 1000"` leaves no `sleep` behind).

/// This machine's (or pod's) host name; empty when it cannot be read.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// This process's PID namespace (the inode of /proc/self/ns/pid): two pods on one node with
/// host networking share a host name but not their process ids.
pub fn pid_namespace() -> String {
    std::fs::read_link("/proc/self/ns/pid")
        .ok()
        .and_then(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("pid:[")?.strip_suffix(']')?.to_string())
        })
        .unwrap_or_default()
}

use std::ffi::OsStr;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus};

/// Variables every child inherits: where programs are, the home directory, locale, time zone.
fn is_base_variable(name: &str) -> bool {
    matches!(name, "PATH" | "HOME" | "LANG" | "TZ") || name.starts_with("LC_")
}

/// A command with a clean environment (the base variables plus `inherit`), in a process group
/// of its own.
pub fn clean_command(program: impl AsRef<OsStr>, inherit: &[String]) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear();
    for (name, value) in std::env::vars_os() {
        let keep = name
            .to_str()
            .is_some_and(|n| is_base_variable(n) || inherit.iter().any(|i| i == n));
        if keep {
            cmd.env(name, value);
        }
    }
    cmd.process_group(0);
    cmd
}

/// SIGKILL every process of the group `leader` leads. Call it only before the leader is
/// reaped: until then its pid (the group id) cannot be reused by an unrelated process.
pub fn kill_group(leader: u32) {
    let Ok(pgid) = libc::pid_t::try_from(leader) else {
        return;
    };
    // SAFETY: killpg has no memory-safety preconditions; a group that is gone is ESRCH.
    unsafe {
        libc::killpg(pgid, libc::SIGKILL);
    }
}

/// "exit code 3" or "killed by signal 9".
pub fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => "unknown exit status".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_base_variables_and_named_ones_are_inherited() {
        assert!(is_base_variable("PATH") && is_base_variable("LC_ALL"));
        assert!(!is_base_variable("PGPASSWORD") && !is_base_variable("AWS_SECRET_ACCESS_KEY"));
        let cmd = clean_command("true", &["COFFRE_TEST_NAMED".into()]);
        // Cleared, then only set variables are listed.
        assert!(cmd.get_envs().all(|(name, _)| {
            let n = name.to_str().unwrap();
            is_base_variable(n) || n == "COFFRE_TEST_NAMED"
        }));
    }
}
