//! Named stopping points for crash tests, in debug builds only (release builds compile them to
//! nothing). With `COFFRE_FAILPOINT=NAME` (or `NAME@N` for its N-th hit) the process prints
//! `failpoint NAME reached` on stderr and waits there until it is killed (or released), so a
//! test can kill it at an exact step of a backup, or run a prune meanwhile.

/// A step that may fail: with `COFFRE_FAILPOINT_MODE=error` an armed point returns an error
/// (as a failed step would) instead of waiting to be killed.
pub async fn step(name: &str) -> crate::error::Result<()> {
    #[cfg(debug_assertions)]
    if std::env::var("COFFRE_FAILPOINT_MODE").as_deref() == Ok("error") {
        if armed(name) {
            eprintln!("failpoint {name} reached");
            return Err(crate::error::Error::internal(format!(
                "failpoint {name}: injected error"
            )));
        }
        return Ok(());
    }
    hit(name).await;
    Ok(())
}

/// Stop here when this point is the one asked for: until killed, or, with
/// `COFFRE_FAILPOINT_RELEASE=PATH`, until that file exists (a test runs something meanwhile).
pub async fn hit(name: &str) {
    #[cfg(debug_assertions)]
    if armed(name) {
        eprintln!("failpoint {name} reached");
        match std::env::var_os("COFFRE_FAILPOINT_RELEASE") {
            Some(path) => {
                while !std::path::Path::new(&path).exists() {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            }
            None => std::future::pending::<()>().await,
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}

#[cfg(debug_assertions)]
fn armed(name: &str) -> bool {
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    static HITS: Mutex<BTreeMap<String, usize>> = Mutex::new(BTreeMap::new());
    let Ok(wanted) = std::env::var("COFFRE_FAILPOINT") else {
        return false;
    };
    let (wanted_name, nth) = match wanted.split_once('@') {
        Some((n, count)) => (n, count.parse().unwrap_or(1)),
        None => (wanted.as_str(), 1),
    };
    if wanted_name != name {
        return false;
    }
    let mut hits = HITS.lock().unwrap_or_else(|e| e.into_inner());
    let count = hits.entry(name.to_string()).or_insert(0);
    *count += 1;
    *count == nth
}
