//! MariaDB's `--no-owner`: a mariadb-dump names the account each view, trigger, routine and
//! event runs as (`DEFINER=`root`@`localhost``), and only an account with SET USER (or SUPER)
//! may create objects for another account. Restoring as a least-privilege user (a restore drill,
//! a server without the original accounts) means dropping those clauses, so that the objects
//! belong to the restoring user, as `pg_restore --no-owner` does for PostgreSQL.
//!
//! The filter works line by line on the dump as it streams. Data lines (`INSERT INTO ...`, the
//! bulk of a dump and possibly megabytes long) pass straight through, so a value that happens to
//! contain `DEFINER=` is never touched; other lines (DDL, a few hundred bytes) are held until
//! their end and edited. Memory stays bounded: a non-data line over `MAX_HELD` passes unedited.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::AsyncWrite;

const DATA_LINE: &[u8] = b"INSERT INTO ";
const MAX_HELD: usize = 1 << 20;

/// What the filter is doing with the current line.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// Holding it: not yet known to be data, or a statement to edit at its end.
    Held,
    /// Passing it through to its end (data, or too long to hold).
    Passing,
}

/// The line filter, without I/O: `push` bytes, get the edited bytes out.
#[derive(Debug)]
pub struct DefinerFilter {
    line: Line,
    held: Vec<u8>,
}

impl Default for DefinerFilter {
    fn default() -> Self {
        Self {
            line: Line::Held,
            held: Vec::new(),
        }
    }
}

impl DefinerFilter {
    /// Take `input`, appending what can be released to `out`.
    pub fn push(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while !input.is_empty() {
            let end = input.iter().position(|&b| b == b'\n');
            let (part, rest) = match end {
                Some(at) => input.split_at(at + 1),
                None => (input, &[][..]),
            };
            input = rest;
            match self.line {
                Line::Passing => out.extend_from_slice(part),
                Line::Held => {
                    self.held.extend_from_slice(part);
                    let is_data =
                        self.held.len() >= DATA_LINE.len() && self.held.starts_with(DATA_LINE);
                    if is_data || self.held.len() > MAX_HELD {
                        out.append(&mut self.held);
                        self.line = Line::Passing;
                    } else if end.is_some() {
                        out.extend_from_slice(&strip_definers(&self.held));
                        self.held.clear();
                    }
                }
            }
            if end.is_some() {
                self.line = Line::Held;
            }
        }
    }

    /// The end of the dump: release a last line without a newline.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.line == Line::Held {
            out.extend_from_slice(&strip_definers(&self.held));
        }
        self.held.clear();
    }
}

/// `line` without its `DEFINER=account` clauses (`` `user`@`host` ``, `` `role` ``,
/// `CURRENT_USER`, with or without backquotes).
fn strip_definers(line: &[u8]) -> Vec<u8> {
    const CLAUSE: &[u8] = b"DEFINER=";
    let mut out = Vec::with_capacity(line.len());
    let mut at = 0;
    while let Some(found) = find(&line[at..], CLAUSE) {
        let start = at + found;
        let account = start + CLAUSE.len();
        match account_end(line, account) {
            Some(end) => {
                out.extend_from_slice(&line[at..start]);
                at = end;
            }
            None => {
                out.extend_from_slice(&line[at..account]);
                at = account;
            }
        }
    }
    out.extend_from_slice(&line[at..]);
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Where the account that starts at `at` ends: a name, optionally `@` and a host.
fn account_end(line: &[u8], at: usize) -> Option<usize> {
    let user = name_end(line, at)?;
    match line.get(user) {
        Some(b'@') => name_end(line, user + 1),
        _ => Some(user),
    }
}

/// The end of one name at `at`: `` `quoted` `` (with ``` `` ``` inside), `'quoted'`, or bare
/// (letters, digits, `_`, `$`, `.`, `%`, `-`, and `()` for `CURRENT_USER()`).
fn name_end(line: &[u8], at: usize) -> Option<usize> {
    match line.get(at)? {
        &quote @ (b'`' | b'\'') => {
            let mut i = at + 1;
            loop {
                match *line.get(i)? {
                    b if b == quote && line.get(i + 1) == Some(&quote) => i += 2,
                    b if b == quote => return Some(i + 1),
                    _ => i += 1,
                }
            }
        }
        _ => {
            let len = line[at..]
                .iter()
                .take_while(|&&b| b.is_ascii_alphanumeric() || b"_$.%-()".contains(&b))
                .count();
            (len > 0).then_some(at + len)
        }
    }
}

/// An `AsyncWrite` that passes what it is given through a `DefinerFilter`.
pub struct StripDefiners<W> {
    inner: W,
    filter: DefinerFilter,
    /// Filtered bytes not yet taken by `inner`, from `done` on.
    pending: Vec<u8>,
    done: usize,
    finished: bool,
}

impl<W: AsyncWrite + Unpin> StripDefiners<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            filter: DefinerFilter::default(),
            pending: Vec::new(),
            done: 0,
            finished: false,
        }
    }

    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.done < self.pending.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.done..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.done += n;
        }
        self.pending.clear();
        self.done = 0;
        Poll::Ready(Ok(()))
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for StripDefiners<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        this.filter.push(buf, &mut this.pending);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.finished {
            this.filter.finish(&mut this.pending);
            this.finished = true;
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter_in_pieces(input: &[u8], piece: usize) -> Vec<u8> {
        let mut filter = DefinerFilter::default();
        let mut out = Vec::new();
        for chunk in input.chunks(piece.max(1)) {
            filter.push(chunk, &mut out);
        }
        filter.finish(&mut out);
        out
    }

    const DUMP: &str = "\
/*!50001 CREATE ALGORITHM=UNDEFINED */
/*!50013 DEFINER=`root`@`localhost` SQL SECURITY DEFINER */
/*!50001 VIEW `drug_names` AS select `drugs`.`name` AS `name` from `drugs` */;
INSERT INTO `notes` VALUES (1,'DEFINER=`root`@`localhost` stays in data');
/*!50003 CREATE*/ /*!50017 DEFINER=`root`@`localhost`*/ /*!50003 TRIGGER drugs_log AFTER INSERT ON drugs FOR EACH ROW INSERT INTO log VALUES (NEW.id, NOW()) */;;
CREATE DEFINER=`app``s`@`%` PROCEDURE `count_drugs`()
/*!50106 CREATE*/ /*!50117 DEFINER=`root`@`localhost`*/ /*!50106 EVENT `purge_log` ON SCHEDULE EVERY 1 DAY DO DELETE FROM log */ ;;
CREATE DEFINER=CURRENT_USER FUNCTION f() RETURNS int RETURN 1
CREATE DEFINER=`auditor` PROCEDURE p() SELECT 1
last line without newline DEFINER='x'@'y'";

    const EXPECTED: &str = "\
/*!50001 CREATE ALGORITHM=UNDEFINED */
/*!50013  SQL SECURITY DEFINER */
/*!50001 VIEW `drug_names` AS select `drugs`.`name` AS `name` from `drugs` */;
INSERT INTO `notes` VALUES (1,'DEFINER=`root`@`localhost` stays in data');
/*!50003 CREATE*/ /*!50017 */ /*!50003 TRIGGER drugs_log AFTER INSERT ON drugs FOR EACH ROW INSERT INTO log VALUES (NEW.id, NOW()) */;;
CREATE  PROCEDURE `count_drugs`()
/*!50106 CREATE*/ /*!50117 */ /*!50106 EVENT `purge_log` ON SCHEDULE EVERY 1 DAY DO DELETE FROM log */ ;;
CREATE  FUNCTION f() RETURNS int RETURN 1
CREATE  PROCEDURE p() SELECT 1
last line without newline ";

    #[test]
    fn definers_go_and_data_stays_whatever_the_pieces() {
        for piece in [1, 2, 7, 11, 12, 64, 4096] {
            let out = filter_in_pieces(DUMP.as_bytes(), piece);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                EXPECTED,
                "pieces of {piece}"
            );
        }
    }

    #[test]
    fn long_lines_pass_unheld() {
        let mut dump = "CREATE DEFINER=`a`@`b` x".to_string();
        dump.push_str(&"y".repeat(MAX_HELD + 10));
        dump.push_str("\nCREATE DEFINER=`a`@`b` PROCEDURE q()\n");
        let out = String::from_utf8(filter_in_pieces(dump.as_bytes(), 1000)).unwrap();
        // The over-long line passed as it was; the next one was edited again.
        assert!(out.starts_with("CREATE DEFINER=`a`@`b` xyyy"));
        assert!(out.ends_with("\nCREATE  PROCEDURE q()\n"));
    }

    #[test]
    fn an_unterminated_account_is_left_alone() {
        let out = filter_in_pieces(b"CREATE DEFINER=`root@x PROCEDURE\n", 5);
        assert_eq!(out, b"CREATE DEFINER=`root@x PROCEDURE\n");
    }

    #[tokio::test]
    async fn the_writer_filters_what_it_is_given() {
        use tokio::io::AsyncWriteExt;
        let mut out = Vec::new();
        let mut writer = StripDefiners::new(&mut out);
        for chunk in DUMP.as_bytes().chunks(5) {
            writer.write_all(chunk).await.unwrap();
        }
        writer.shutdown().await.unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), EXPECTED);
    }
}
