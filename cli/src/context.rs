//! What every cluster command shares: the opened cluster, the session, the output format.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use std::io::{BufRead as _, IsTerminal as _};

use engine::audit::{self, Record};
use engine::clock::Clock;
use engine::cluster::{Cluster, ClusterOptions, ServedBy};
use engine::directory::{Store, Txn};
use engine::log::Op;
use engine::replica::Replica;
use engine::session::{Session, Token};

use crate::opt::{Global, Output};

pub struct Ctx {
    pub cluster: Cluster,
    pub output: Output,
    session: Option<(PathBuf, Session)>,
    /// Who acts, for audit records: --actor, DIRCTL_ACTOR, else the OS user.
    pub actor: String,
    /// One per dirctl invocation: ties the audit records of one command together.
    pub correlation_id: String,
}

/// Privileged operations: a prompt on a terminal, `--yes` in scripts (else exit 2).
pub fn confirm(yes: bool, what: &str) -> Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(engine::Error::Invalid(format!(
            "{what} is privileged; pass --yes to confirm (stdin is not a terminal)"
        ))
        .into());
    }
    eprintln!("{what}: type yes to go on:");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    if line.trim() != "yes" {
        return Err(
            engine::Error::Invalid(format!("{what} not confirmed; nothing was changed")).into(),
        );
    }
    Ok(())
}

pub fn clock() -> Result<Clock> {
    match std::env::var("DIRCTL_NOW") {
        Ok(t) => Ok(Clock::fixed(&t).context("DIRCTL_NOW")?),
        Err(_) => Ok(Clock::system()),
    }
}

pub fn cluster_root(g: &Global) -> Result<PathBuf> {
    g.cluster.clone().ok_or_else(|| {
        engine::Error::Invalid("no cluster given: pass --cluster DIR or set DIRCTL_CLUSTER".into())
            .into()
    })
}

impl Ctx {
    pub fn open(g: &Global) -> Result<Ctx> {
        let root = cluster_root(g)?;
        let options = ClusterOptions {
            lock_timeout: Duration::from_millis(g.lock_timeout_ms),
            clock: clock()?,
            region: g.region.clone(),
            #[cfg(feature = "failpoints")]
            failpoint: std::env::var("DIRCTL_FAILPOINT").ok(),
            retain_log_entries: g.retain_log_entries,
        };
        let cluster = Cluster::open(&root, options)
            .with_context(|| format!("open cluster {}", root.display()))?;
        if let Some(r) = &g.region {
            cluster.topology().region(r)?;
        }
        let session = match &g.session {
            Some(p) => Some((p.clone(), Session::load(p)?)),
            None => None,
        };
        Ok(Ctx {
            cluster,
            output: g.output,
            session,
            actor: match &g.actor {
                Some(a) if a.is_empty() || a.chars().count() > 256 || a.chars().any(engine::directory::is_unsafe_char) => {
                    return Err(engine::Error::Invalid(format!(
                        "--actor {a:?} must be 1 to 256 characters, none of them a control character"
                    ))
                    .into())
                }
                Some(a) => a.clone(),
                // Whatever the OS says, with unprintable characters escaped.
                None => crate::output::escape_unsafe(
                    &std::env::var("USER")
                        .ok()
                        .or_else(|| std::env::var("LOGNAME").ok())
                        .or_else(os_user)
                        .unwrap_or_else(|| "unknown".into()),
                ),
            },
            correlation_id: uuid::Uuid::new_v4().to_string(),
        })
    }

    /// The session's datacenter affinity, chosen on first use: the datacenter nearest the region.
    fn session_dc(&mut self) -> Result<Option<String>> {
        let Some((path, s)) = &mut self.session else {
            return Ok(None);
        };
        if s.datacenter.is_none() {
            // First use of this session: keep its affinity at once.
            s.datacenter = Some(self.cluster.nearest_datacenter()?);
            s.save(path)?;
        }
        Ok(s.datacenter.clone())
    }

    pub fn tenant_partition(&self, tenant: &str) -> Result<(String, u32)> {
        let t = self.cluster.topology().tenant(tenant)?;
        Ok((t.id.clone(), t.partition))
    }

    pub fn write<T>(
        &mut self,
        partition: u32,
        build: impl FnOnce(&Replica) -> engine::Result<(Vec<Op>, T)>,
    ) -> Result<(T, Token)> {
        let dc = self.session_dc()?;
        let (out, token) = self.cluster.write(partition, dc.as_deref(), build)?;
        self.keep_token(&token);
        Ok((out, token))
    }

    /// Keeps a committed write's token in the session. The write stands whatever happens
    /// here: a session file that cannot be saved is a warning, not a failed write.
    fn keep_token(&mut self, token: &Token) {
        if let Some((path, s)) = &mut self.session {
            s.observe(token);
            if let Err(e) = s.save(path) {
                eprintln!(
                    "warning: the write is committed (replica token {token}), but session file {} could not be saved: {e}; this session's later reads may not see it",
                    path.display()
                );
            }
        }
    }

    /// `Cluster::write_pipelined_at`, keeping the session's tokens (also those of the entries
    /// committed before an error).
    pub fn write_pipelined<B, T>(
        &mut self,
        partition: u32,
        staged_at: Option<u64>,
        batches: impl IntoIterator<Item = B>,
        build: impl FnMut(&dyn Store, B) -> engine::Result<(Vec<Op>, T)>,
        mut committed: impl FnMut(T, &Token),
    ) -> Result<()> {
        let dc = self.session_dc()?;
        let mut last = None;
        let r = self.cluster.write_pipelined_at(
            partition,
            dc.as_deref(),
            staged_at,
            batches,
            build,
            |out, token| {
                last = Some(token.clone());
                committed(out, token);
            },
        );
        if let Some(token) = &last {
            self.keep_token(token);
        }
        Ok(r?)
    }

    pub fn read<T>(
        &mut self,
        partition: u32,
        answer: impl Fn(&Replica) -> engine::Result<T>,
    ) -> Result<(T, ServedBy)> {
        let dc = self.session_dc()?;
        let token = self
            .session
            .as_ref()
            .and_then(|(_, s)| s.tokens.get(&partition).cloned());
        // A token of a history that was undone (a failover that accepted data loss, a restore
        // in place) counts only for what the history still holds (`Cluster::read` waits for no
        // more): say so once, and keep the session's token to that.
        if let (Some(t), Some((path, s))) = (&token, &mut self.session) {
            let kept = self
                .cluster
                .topology()
                .partition(partition)?
                .kept_of_token(t.term, t.lsn);
            if kept < t.lsn {
                eprintln!(
                    "warning: session {}: its writes to partition {partition} after lsn {kept}, up to lsn {} (term {}), were undone by a failover that accepted data loss or by a restore; reading without them",
                    path.display(),
                    t.lsn,
                    t.term
                );
                if kept == 0 {
                    s.tokens.remove(&partition);
                } else {
                    s.tokens.insert(
                        partition,
                        Token {
                            lsn: kept,
                            ..t.clone()
                        },
                    );
                }
                if let Err(e) = s.save(path) {
                    eprintln!(
                        "warning: session file {} could not be saved: {e}",
                        path.display()
                    );
                }
            }
        }
        // Otherwise a read changes nothing in the session (its affinity was saved when first
        // chosen), so there is nothing to write back.
        Ok(self
            .cluster
            .read(partition, dc.as_deref(), token.as_ref(), answer)?)
    }

    pub fn record(&self, op: &str, targets: Vec<String>, outcome: &str) -> Record {
        Record::new(
            &self.cluster.clock().now_graph(),
            &self.actor,
            op,
            targets,
            outcome,
            &self.correlation_id,
        )
    }

    /// A replicated write with its audit record in the same log entry (atomic with the
    /// change). `build` may add target IDs (a created object's). When the write fails, a
    /// separate record with the error is written (best effort, see `audit_outcome`).
    pub fn audited_write<T>(
        &mut self,
        partition: u32,
        op: &str,
        targets: Vec<String>,
        build: impl FnOnce(&mut Txn, &mut Vec<String>) -> engine::Result<T>,
    ) -> Result<(T, Token)> {
        let mut rec = self.record(op, targets.clone(), "ok");
        let result = self.write(partition, move |r| {
            let mut t = Txn::new(r);
            let out = build(&mut t, &mut rec.targets)?;
            audit::append(&mut t, rec)?;
            Ok((t.into_ops(), out))
        });
        if let Err(e) = &result {
            if !refused(e) {
                self.audit_outcome(partition, op, targets, &format!("{e:#}"));
            }
        }
        result
    }

    /// A separate, small replicated write of one audit record: failed operations and
    /// cluster-level ones (failover, sync, drain, backup). If it cannot be written, says so
    /// on stderr and leaves the operation's own result alone.
    pub fn audit_outcome(&mut self, partition: u32, op: &str, targets: Vec<String>, outcome: &str) {
        let rec = self.record(op, targets, outcome);
        #[cfg(feature = "failpoints")]
        self.cluster.set_failpoint(None);
        // The operation's own partition first; when it cannot commit (the very failure being
        // recorded, often), any other partition keeps the record (`audit list` reads them all).
        let others = self
            .cluster
            .topology()
            .partitions
            .iter()
            .map(|p| p.id)
            .filter(|p| *p != partition);
        let order: Vec<u32> = std::iter::once(partition).chain(others).collect();
        let mut failures = Vec::new();
        for p in order {
            self.cluster.release_all();
            let rec = rec.clone();
            let r = self.cluster.write(p, None, move |r| {
                let mut t = Txn::new(r);
                audit::append(&mut t, rec)?;
                Ok((t.into_ops(), ()))
            });
            match r {
                // The record may stand where it went: writing it again elsewhere could make two.
                Err(e) if matches!(e, engine::Error::OutcomeUnknown(_)) => {
                    eprintln!(
                        "warning: the audit record of {op} may or may not have been written to partition {p}: {e}"
                    );
                    return;
                }
                Ok(_) if failures.is_empty() => return,
                Ok(_) => {
                    // Under --output json, stderr holds only the error document.
                    if self.output != Output::Json {
                        eprintln!(
                            "note: the audit record of {op} went to partition {p} ({})",
                            failures.join("; ")
                        );
                    }
                    return;
                }
                Err(e) => failures.push(format!("partition {p}: {e}")),
            }
        }
        eprintln!(
            "warning: the audit record of {op} could not be written to any partition: {}",
            failures.join("; ")
        );
    }

    /// `audit_outcome` from an operation's result.
    pub fn audit_result<T>(
        &mut self,
        partition: u32,
        op: &str,
        targets: Vec<String>,
        result: &Result<T>,
    ) {
        let outcome = match result {
            Ok(_) => "ok".to_string(),
            Err(e) => format!("{e:#}"),
        };
        self.audit_outcome(partition, op, targets, &outcome);
    }
}

/// The OS user running dirctl, from /etc/passwd by uid (cron jobs often have no USER).
fn os_user() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self").ok()?.uid();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        (f.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_string())
    })
}

/// Malformed input is refused before anything is attempted and writes nothing, not even an
/// audit record; every other failure is recorded.
pub fn refused(e: &anyhow::Error) -> bool {
    e.chain()
        .any(|c| matches!(c.downcast_ref(), Some(engine::Error::Invalid(_))))
}
