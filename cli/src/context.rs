//! What every cluster command shares: the opened cluster, the session, the output format.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use std::io::{BufRead as _, IsTerminal as _};

use engine::client::{Directory, Embedded};
use engine::clock::Clock;
use engine::cluster::{Cluster, ClusterOptions};
use engine::operators::Need;
use engine::request::{Envelope, Note, Progress, Request, Response};
use engine::session::{Session, Token};

use crate::opt::{Global, Output};

/// Where the directory is: opened in this process, or reached through servers.
enum Dir {
    /// This process opens the cluster's replicas itself (the default).
    Embedded(Embedded),
    /// `--endpoints`: the servers of the server mode answer.
    Remote(server::client::Remote),
}

impl Dir {
    fn get(&self) -> &dyn Directory {
        match self {
            Dir::Embedded(d) => d,
            Dir::Remote(d) => d,
        }
    }

    fn get_mut(&mut self) -> &mut dyn Directory {
        match self {
            Dir::Embedded(d) => d,
            Dir::Remote(d) => d,
        }
    }
}

pub struct Ctx {
    dir: Dir,
    pub output: Output,
    session: Option<(PathBuf, Session)>,
    /// Who acts, for audit records: --actor, DIRCTL_ACTOR, else the OS user.
    pub actor: String,
    /// One per dirctl invocation: ties the audit records of one command together.
    pub correlation_id: String,
    /// The operator this machine's login proves, on a cluster with operators.
    pub identity: Option<String>,
    /// Why no operator is proven (no login, an expired one), for the refusal's message.
    login_problem: Option<String>,
    /// Through servers without the control plane: this machine cannot check its login, so
    /// `identity` is what the login names, and the servers decide each call.
    servers_decide: bool,
}

/// This run's command (`user create`, `failover`), for refusals and their audit records.
static COMMAND: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Names this run's command (main, once).
pub fn set_command_name(words: String) {
    let _ = COMMAND.set(words);
}

fn command_name() -> String {
    COMMAND
        .get()
        .map(|c| format!("dirctl {c}"))
        .unwrap_or_else(|| "this command".into())
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
    /// The cluster opened for a command. On a cluster with operators the caller must be a
    /// logged-in operator (else "not permitted", exit 6), and the audit trail names them.
    pub fn open(g: &Global) -> Result<Ctx> {
        let mut ctx = Ctx::open_unchecked(g)?;
        ctx.require(&Need::Read, &command_name())?;
        Ok(ctx)
    }

    /// `open` without the login check: login, enrolment and elevation check for themselves.
    pub fn open_unchecked(g: &Global) -> Result<Ctx> {
        let (dir, dc_names) = match &g.endpoints {
            Some(list) => {
                let remote = remote(g, list)?;
                let names = remote.topology().dc_names();
                (Dir::Remote(remote), names)
            }
            None => {
                let d = Self::open_embedded(g)?;
                let names = d.cluster().topology().dc_names();
                (Dir::Embedded(d), names)
            }
        };
        let session = match &g.session {
            Some(p) => Some((p.clone(), Session::load(p)?)),
            None => None,
        };
        // A session's affinity is one of the cluster's datacenters (its reads start there).
        if let Some((path, Some(dc))) = session.as_ref().map(|(p, s)| (p, &s.datacenter)) {
            if !dc_names.iter().any(|d| d.eq_ignore_ascii_case(dc)) {
                return Err(engine::Error::Invalid(format!(
                    "session file {}: its datacenter {dc:?} is not one of the cluster's ({}); delete the file, or pass --session another file, to start a new session",
                    path.display(),
                    dc_names.join(", ")
                ))
                .into());
            }
        }
        let mut ctx = Ctx {
            dir,
            output: g.output,
            session,
            actor: actor(g)?,
            correlation_id: uuid::Uuid::new_v4().to_string(),
            identity: None,
            login_problem: None,
            servers_decide: false,
        };
        if !ctx.topology_ref().operators.is_empty() {
            // Through servers, every call presents this machine's login; they check it.
            if let Dir::Remote(r) = &mut ctx.dir {
                let presented = crate::operator::presented(g, r.topology());
                if let Ok(login) = &presented {
                    r.set_credential(server::guard::Credential::fixed(login)?);
                }
                if g.cluster.is_none() && g.control_plane.is_none() {
                    ctx.servers_decide = true;
                    match presented {
                        Ok(login) => {
                            ctx.actor = login.claims.operator.clone();
                            ctx.identity = Some(login.claims.operator);
                        }
                        Err(why) => {
                            ctx.actor = format!("unproven:{}", ctx.actor);
                            ctx.login_problem = Some(why);
                        }
                    }
                    return Ok(ctx);
                }
            }
            match crate::operator::proven(g, ctx.topology_ref()) {
                Ok(name) => {
                    ctx.actor = name.clone();
                    ctx.identity = Some(name);
                }
                Err(why) => {
                    // Nothing proven: the audit trail says the name was only declared.
                    ctx.actor = format!("unproven:{}", ctx.actor);
                    ctx.login_problem = Some(why);
                }
            }
        }
        Ok(ctx)
    }

    /// The servers this command runs through, with `--endpoints`.
    pub fn remote(&self) -> Option<&server::client::Remote> {
        match &self.dir {
            Dir::Remote(r) => Some(r),
            Dir::Embedded(_) => None,
        }
    }

    /// `remote`, to change (the approval a run carries out).
    pub fn remote_mut(&mut self) -> Option<&mut server::client::Remote> {
        match &mut self.dir {
            Dir::Remote(r) => Some(r),
            Dir::Embedded(_) => None,
        }
    }

    /// Whether the servers decide what this caller may do (`--endpoints` alone).
    pub fn servers_decide(&self) -> bool {
        self.servers_decide
    }

    fn topology_ref(&self) -> &engine::topology::Topology {
        match &self.dir {
            Dir::Embedded(d) => d.cluster().topology(),
            Dir::Remote(d) => d.topology(),
        }
    }

    /// Whether the caller may do `what`, which needs `need` (engine::operators::decide);
    /// a refusal is audited and is "not permitted" (exit 6), saying what would grant it.
    pub fn require(&mut self, need: &Need, what: &str) -> Result<()> {
        // An open cluster (no operators) permits everything: nothing to read or ask. Through
        // servers only, the servers decide each call (and audit their refusals).
        if self.topology_ref().operators.is_empty() || self.servers_decide {
            return Ok(());
        }
        let now = clock()?.now().timestamp();
        let t = self.topology_ref();
        let decided = engine::operators::decide(
            &t.operators,
            &t.elevations,
            self.identity.as_deref(),
            need,
            what,
            now,
        );
        let Err(why) = decided else {
            return Ok(());
        };
        let why = match (&self.identity, &self.login_problem) {
            (None, Some(p)) => format!("{why} ({p})"),
            _ => why,
        };
        self.audit_outcome(0, "operator.refused", vec![what.to_string()], &why);
        Err(engine::Error::NotPermitted(why).into())
    }

    /// The embedded directory: the cluster under --cluster, opened in this process.
    fn open_embedded(g: &Global) -> Result<Embedded> {
        let root = cluster_root(g)?;
        let options = ClusterOptions {
            lock_timeout: Duration::from_millis(g.lock_timeout_ms),
            clock: clock()?,
            region: g.region.clone(),
            #[cfg(feature = "failpoints")]
            failpoint: std::env::var("DIRCTL_FAILPOINT").ok(),
            retain_log_entries: g.retain_log_entries,
        };
        let control = control_plane(g, &root)?;
        let cluster = Cluster::open_with(&root, control, options)
            .with_context(|| format!("open cluster {}", root.display()))?;
        if let Some(r) = &g.region {
            cluster.topology().region(r)?;
        }
        Ok(Embedded::new(cluster))
    }

    /// The session's datacenter affinity, chosen on first use: the datacenter nearest the region.
    fn session_dc(&mut self) -> Result<Option<String>> {
        let Some((path, s)) = &mut self.session else {
            return Ok(None);
        };
        if s.datacenter.is_none() {
            // First use of this session: keep its affinity at once.
            s.datacenter = Some(self.dir.get().nearest_datacenter()?);
            s.save(path)?;
        }
        Ok(s.datacenter.clone())
    }

    /// The cluster itself, for cluster administration (status, sync, failover, dc, backup,
    /// audit verify): directory operations go through `execute`.
    pub fn cluster_mut(&mut self) -> Result<&mut Cluster> {
        match &mut self.dir {
            Dir::Embedded(d) => Ok(d.cluster_mut()),
            Dir::Remote(_) => Err(engine::Error::Invalid(
                "this command administers the cluster's replicas directly and does not run with --endpoints yet: run it with --cluster DIR where the servers are stopped, or use a directory command".into(),
            )
            .into()),
        }
    }

    /// Where a backup's checkpoints come from: the cluster's folders, or its servers.
    pub fn checkpoints(&mut self) -> &mut dyn engine::cluster::Checkpoints {
        match &mut self.dir {
            Dir::Embedded(d) => d.cluster_mut(),
            Dir::Remote(d) => d,
        }
    }

    /// `dc rebuild NAME`: here, or by NAME's server (`progress` hears of each replica
    /// rebuilt here).
    pub fn rebuild(
        &mut self,
        dc: &str,
        progress: &mut dyn FnMut(u64),
    ) -> engine::Result<Vec<engine::rebuild::RebuildReport>> {
        match &mut self.dir {
            Dir::Embedded(d) => d.cluster_mut().rebuild_datacenter(dc, progress),
            Dir::Remote(d) => d.rebuild(dc),
        }
    }

    /// Every replica's status: probed here, or asked of each datacenter's server.
    pub fn status(&mut self) -> engine::Result<Vec<engine::cluster::ReplicaStatus>> {
        match &mut self.dir {
            Dir::Embedded(d) => d.cluster_mut().status(),
            Dir::Remote(d) => d.status(),
        }
    }

    /// Drains or undrains a datacenter in the control plane: here, or through a server.
    pub fn set_drained(&mut self, dc: &str, drained: bool) -> engine::Result<()> {
        match &mut self.dir {
            Dir::Embedded(d) => {
                d.cluster_mut()
                    .update_topology(|t| t.set_drained(dc, drained))?;
                Ok(())
            }
            Dir::Remote(d) => d.set_drained(dc, drained),
        }
    }

    /// The control plane as this command sees it.
    pub fn topology(&self) -> engine::topology::Topology {
        match &self.dir {
            Dir::Embedded(d) => d.cluster().topology().clone(),
            Dir::Remote(d) => d.topology().clone(),
        }
    }

    /// A failover of one partition: here, or by the server that must carry it out.
    pub fn failover(
        &mut self,
        partition: u32,
        to: Option<&str>,
        emergency: bool,
        accept_data_loss: bool,
    ) -> engine::Result<engine::failover::FailoverReport> {
        match (&mut self.dir, emergency) {
            (Dir::Embedded(d), true) => d
                .cluster_mut()
                .failover_emergency(partition, accept_data_loss),
            (Dir::Embedded(d), false) => d
                .cluster_mut()
                .failover_planned(partition, to.unwrap_or_default()),
            (Dir::Remote(d), _) => d.failover(partition, to, emergency, accept_data_loss),
        }
    }

    pub fn tenant_names(&self) -> Vec<String> {
        self.dir.get().tenant_names()
    }

    pub fn partition_ids(&self) -> Vec<u32> {
        self.dir.get().partition_ids()
    }

    pub fn tenant_partition(&self, tenant: &str) -> Result<(String, u32)> {
        let t = self.dir.get().placement(tenant)?;
        Ok((t.id, t.partition))
    }

    /// A directory command's request: its tenant resolved first (an unknown tenant is an
    /// error of its own), then `execute`d, a failure saying `what` was being done.
    pub fn request(&mut self, what: impl std::fmt::Display, req: Request) -> Result<Response> {
        if let Some(tenant) = req.tenant() {
            self.tenant_partition(tenant)?;
        }
        self.execute(req).with_context(|| what.to_string())
    }

    /// Sends one request with this command's actor, correlation id and session, keeps a
    /// write's token in the session, and prints the directory's notes on stderr.
    pub fn execute(&mut self, req: Request) -> Result<Response> {
        self.execute_with(req, &mut |_| {})
    }

    /// `execute`, hearing of each committed batch of a request written in several.
    pub fn execute_with(
        &mut self,
        req: Request,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<Response> {
        if let Some(need) = engine::operators::need_of(&req) {
            if need != Need::Read {
                let what = req.audit_op().unwrap_or_else(|| req.name().to_string());
                self.require(&need, &what)?;
            }
        }
        let partition = match req.tenant() {
            Some(t) => Some(self.dir.get().placement(t)?.partition),
            None => None,
        };
        // Audit records of their own and audit queries are not the session's: they choose
        // no affinity for it.
        let datacenter = match req {
            Request::RecordAudit { .. } | Request::ListAudit { .. } => None,
            _ => self.session_dc()?,
        };
        let envelope = Envelope {
            actor: self.actor.clone(),
            correlation_id: self.correlation_id.clone(),
            datacenter,
            token: match partition {
                Some(p) if req.is_read() => self.read_token(p)?,
                _ => None,
            },
        };
        let mut tokens = Vec::new();
        let result = self.dir.get_mut().execute_with(&envelope, req, &mut |p| {
            let (Progress::Checked { token } | Progress::Committed { token, .. }) = p;
            tokens.push(token.clone());
            progress(p)
        });
        for note in self.dir.get_mut().take_notes() {
            match note {
                Note::Warning(w) => eprintln!("warning: {w}"),
                // Under --output json, stderr holds only the error document.
                Note::Info(n) if self.output != Output::Json => eprintln!("note: {n}"),
                Note::Info(_) => {}
            }
        }
        // The session keeps the newest token: of the write, or of the last batch committed
        // before an error.
        let newest = match &result {
            Ok(r) => r.token.clone().or_else(|| tokens.pop()),
            Err(_) => tokens.pop(),
        };
        if let Some(token) = newest {
            self.keep_token(&token);
        }
        result.map_err(|e| self.damaged_session(e))
    }

    /// A session token no partition could have given (`ImpossibleToken`) means a damaged
    /// session file, or one of another cluster: say which file, and how to start afresh. The
    /// file is left as it is.
    fn damaged_session(&self, e: engine::Error) -> anyhow::Error {
        match (&e, &self.session) {
            (engine::Error::ImpossibleToken(_), Some((path, _))) => anyhow::Error::new(e).context(format!(
                "session file {} is damaged or of another cluster (delete it, or pass --session another file, to start a new session)",
                path.display()
            )),
            _ => e.into(),
        }
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

    /// The session's token for a read of `partition`. A token of a history that was undone
    /// (a failover that accepted data loss, a restore in place) counts only for what the
    /// history still holds (the read waits for no more): say so once, and keep the
    /// session's token to that.
    fn read_token(&mut self, partition: u32) -> Result<Option<Token>> {
        let token = self
            .session
            .as_ref()
            .and_then(|(_, s)| s.tokens.get(&partition).cloned());
        let kept = match &token {
            Some(t) => Some(
                self.dir
                    .get()
                    .kept_of_token(t)
                    .map_err(|e| self.damaged_session(e))?,
            ),
            None => None,
        };
        if let (Some(t), Some(kept), Some((path, s))) = (&token, kept, &mut self.session) {
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
        Ok(token)
    }

    /// A separate audit record of a cluster-level operation (failover, sync, drain,
    /// backup), or of one that failed before it reached the directory. Best effort: when it
    /// cannot be written, a warning says so and the operation's own result stands.
    pub fn audit_outcome(&mut self, partition: u32, op: &str, targets: Vec<String>, outcome: &str) {
        let req = Request::RecordAudit {
            partition,
            op: op.to_string(),
            targets,
            outcome: outcome.to_string(),
        };
        if let Err(e) = self.execute(req) {
            eprintln!("warning: the audit record of {op} could not be written: {e:#}");
        }
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

/// Who acts: --actor, DIRCTL_ACTOR, else the OS user.
pub fn actor(g: &Global) -> Result<String> {
    Ok(match &g.actor {
        Some(a)
            if a.is_empty()
                || a.chars().count() > 256
                || a.chars().any(engine::directory::is_unsafe_char) =>
        {
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
    })
}

/// A runtime for the network calls of this dirctl process (servers, etcd). dirctl runs one
/// command: the runtime stays until the process exits.
pub fn runtime() -> Result<tokio::runtime::Handle> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let handle = runtime.handle().clone();
    std::mem::forget(runtime);
    Ok(handle)
}

/// The directory through the servers at `list` (comma-separated URLs), the nearest
/// healthy one to --region answering. The runtime lives as long as the process.
fn remote(g: &Global, list: &str) -> Result<server::client::Remote> {
    let endpoints = list
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(endpoint)
        .collect::<Result<Vec<String>>>()?;
    let handle = runtime()?;
    Ok(server::client::Remote::connect(
        handle,
        &endpoints,
        g.region.as_deref(),
        Duration::from_millis(g.lock_timeout_ms.clamp(500, 10_000)),
    )?)
}

/// The control plane: etcd with --control-plane, else cluster.json in the cluster root.
pub fn control_plane(
    g: &Global,
    root: &std::path::Path,
) -> Result<Box<dyn engine::topology::ControlPlane + Sync>> {
    let lock_timeout = Duration::from_millis(g.lock_timeout_ms);
    let Some(spec) = &g.control_plane else {
        return Ok(Box::new(
            engine::topology::FileControlPlane::open(root)?.with_lock_timeout(lock_timeout),
        ));
    };
    let handle = runtime()?;
    Ok(server::etcd::open(Some(spec), root, lock_timeout, &handle)?)
}

/// One of --endpoints as a gRPC URL: `http://HOST:PORT`, or `HOST:PORT` for it. Anything
/// else is a usage error (exit 2), TLS included: the servers do not speak it yet.
fn endpoint(e: &str) -> Result<String> {
    let bad = |why: &str| -> anyhow::Error {
        engine::Error::Invalid(format!("--endpoints: {e:?} {why}")).into()
    };
    let rest = match e.split_once("://") {
        Some(("http", rest)) => rest,
        Some(("https", _)) => {
            return Err(bad(
                "is https: the servers do not speak TLS yet; use http://HOST:PORT",
            ))
        }
        Some(_) => return Err(bad("is not http://HOST:PORT")),
        None => e,
    };
    let port = rest.rsplit_once(':').map(|(_, p)| p.trim_end_matches('/'));
    match port.map(str::parse::<u16>) {
        Some(Ok(p)) if p > 0 => Ok(format!("http://{}", rest.trim_end_matches('/'))),
        _ => Err(bad(
            "is not HOST:PORT (a geodird's gRPC address, as it prints at start)",
        )),
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
