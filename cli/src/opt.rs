//! The command line: clap types that only parse and validate. Execution lives in one
//! module per noun.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "dirctl",
    version,
    about = "Operate a geodir cluster: a geo-replicated directory data tier"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// The cluster root folder.
    #[arg(long, global = true, env = "DIRCTL_CLUSTER", value_name = "DIR")]
    pub cluster: Option<PathBuf>,
    /// Where the caller is, for nearest-datacenter reads: a datacenter name or LAT,LON.
    #[arg(
        long,
        global = true,
        env = "DIRCTL_REGION",
        value_name = "NAME|LAT,LON",
        allow_hyphen_values = true
    )]
    pub region: Option<String>,
    /// The server mode: run directory commands against these geodird servers
    /// (comma-separated, `http://127.0.0.1:7401,...`) instead of opening --cluster's
    /// folders; the nearest healthy one to --region answers.
    #[arg(
        long,
        global = true,
        env = "DIRCTL_ENDPOINTS",
        value_name = "URL[,URL...]"
    )]
    pub endpoints: Option<String>,
    /// The control plane in etcd (`etcd://HOST:PORT[,HOST:PORT...][/PREFIX]`) instead of
    /// the cluster root's cluster.json; the replicas stay under --cluster.
    #[arg(
        long,
        global = true,
        env = "DIRCTL_CONTROL_PLANE",
        value_name = "etcd://HOST:PORT"
    )]
    pub control_plane: Option<String>,
    /// A logical session file: keeps replica tokens and datacenter affinity (read-your-writes).
    #[arg(long, global = true, env = "DIRCTL_SESSION", value_name = "FILE")]
    pub session: Option<PathBuf>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// How long to wait for a replica another dirctl process holds.
    #[arg(long, global = true, default_value_t = 10_000, value_name = "MS")]
    pub lock_timeout_ms: u64,
    /// Log retention: keep this many entries beyond what every reachable replica holds.
    #[arg(long, global = true, default_value_t = 100_000, value_name = "N")]
    pub retain_log_entries: u64,
    /// Who is acting, for the audit trail (default: the OS user, from USER). On a cluster
    /// with operators the audit trail names the logged-in operator instead.
    #[arg(long, global = true, env = "DIRCTL_ACTOR", value_name = "NAME")]
    pub actor: Option<String>,
    /// Where `dirctl login` keeps the login (default: ~/.dirctl/login-CLUSTER_ID.json).
    #[arg(long, global = true, env = "DIRCTL_LOGIN_FILE", value_name = "FILE")]
    pub login_file: Option<PathBuf>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a cluster root: cluster.json and one replica per partition per datacenter.
    Init(InitArgs),
    /// Tenants: create, list.
    #[command(subcommand)]
    Tenant(TenantCmd),
    /// Users.
    User(ObjectArgs),
    /// Groups and their members.
    Group(GroupArgs),
    /// Applications.
    App(ObjectArgs),
    /// Service principals.
    Sp(ObjectArgs),
    /// Devices.
    Device(ObjectArgs),
    /// Bulk-load objects from a JSON Lines file (group commit).
    Import(ImportArgs),
    /// Bring lagging secondaries level with their primaries.
    Sync(SyncArgs),
    /// Each partition x datacenter: role, term, last lsn, lag, health.
    Status,
    /// Read every replica end to end (RocksDB block checksums, every log entry's crc); mark the damaged ones and exit non-zero if any. Safe to run from cron.
    Scrub(ScrubArgs),
    /// Datacenters: list, drain and undrain (an operator's health override), rebuild a lost one.
    #[command(subcommand)]
    Dc(DcCmd),
    /// Move a partition's primary: planned (--to DC, zero loss) or emergency (--emergency).
    Failover(FailoverArgs),
    /// The control plane: move a cluster.json-based cluster into etcd.
    #[command(subcommand)]
    ControlPlane(ControlPlaneCmd),
    /// Build a demo cluster in a fresh folder and walk through geodir's promises.
    Demo(DemoArgs),
    /// Daily snapshot backups: create, list, verify, prune, restore.
    #[command(subcommand)]
    Backup(BackupCmd),
    /// Exit non-zero with a clear message when a promise is at risk.
    Health(HealthArgs),
    /// Metrics in Prometheus text format.
    Metrics(BackupsDir),
    /// The recycle bin: soft-deleted objects, restorable by ID for 30 days.
    #[command(subcommand)]
    Deleted(DeletedCmd),
    /// Access grants: allow or deny a principal an action on a resource, and checks.
    #[command(subcommand)]
    Access(AccessCmd),
    /// The audit trail: list records, verify the hash chains.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Bearer tokens for the Graph API (`/v1.0` on every geodird's HTTP address).
    #[command(subcommand)]
    Token(TokenCmd),
    /// Operators: the cluster's identities, each with a TOTP authenticator and roles.
    #[command(subcommand)]
    Operator(OperatorCmd),
    /// Prove who you are with a code from your authenticator: later commands act as you.
    Login(LoginArgs),
    /// Forget this machine's login.
    Logout,
    /// Take a privileged role for a while, for a reason (just-in-time elevation).
    Elevate(ElevateArgs),
    /// Elevations: the active ones, and ending one early.
    #[command(subcommand)]
    Elevation(ElevationCmd),
    /// Approve another operator's request under the two-person rule, and carry it out.
    Approve(ApproveArgs),
    /// The requests waiting for a second operator (the two-person rule).
    Requests,
    /// Writes the man pages and shell completions made from these definitions into a
    /// folder (scripts/package puts them in the Debian package).
    #[command(hide = true)]
    GenerateAssets {
        /// The folder: man/ and completions/ are made in it.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum DeletedCmd {
    /// Deleted objects (every tenant unless --tenant).
    List {
        #[arg(long, env = "DIRCTL_TENANT")]
        tenant: Option<String>,
        /// Only this type: user, group, app or sp.
        #[arg(long = "type", value_name = "TYPE")]
        object_type: Option<String>,
    },
    /// One deleted object with the memberships kept with it.
    Get {
        id: String,
        #[arg(long, env = "DIRCTL_TENANT")]
        tenant: String,
    },
    /// Bring a deleted object back: same ID, attributes and group memberships.
    Restore {
        id: String,
        #[arg(long, env = "DIRCTL_TENANT")]
        tenant: String,
        /// Restore a user under this userPrincipalName (its own was taken meanwhile).
        #[arg(long, value_name = "UPN")]
        new_upn: Option<String>,
    },
    /// Remove one deleted object for good (privileged).
    Purge {
        id: String,
        #[arg(long, env = "DIRCTL_TENANT")]
        tenant: String,
        /// Confirm without a prompt.
        #[arg(long)]
        yes: bool,
    },
    /// Remove every deleted object 30 days or more old (privileged; idempotent, for cron).
    PurgeExpired {
        /// Only this tenant (default: every tenant).
        #[arg(long, env = "DIRCTL_TENANT")]
        tenant: Option<String>,
        /// Confirm without a prompt.
        #[arg(long)]
        yes: bool,
    },
}

// Whose grant on what: the arguments `access grant` and `access revoke` share. (No doc
// comment: on a flattened struct it would become the command's about text.)
#[derive(Args, Debug)]
pub struct GrantTarget {
    #[arg(long, env = "DIRCTL_TENANT")]
    pub tenant: String,
    #[arg(long, value_name = "ID")]
    pub principal: String,
    #[arg(long, value_name = "NAME")]
    pub resource: String,
}

#[derive(Subcommand, Debug)]
pub enum AccessCmd {
    /// Allow or deny a principal (user, group, service principal) an action on a resource.
    #[command(group(clap::ArgGroup::new("effect").required(true).args(["allow", "deny"])))]
    Grant {
        #[command(flatten)]
        target: GrantTarget,
        #[arg(long)]
        allow: bool,
        #[arg(long)]
        deny: bool,
        /// The action (default: every action).
        #[arg(long, default_value = "*")]
        action: String,
    },
    /// Remove a grant for good.
    Revoke {
        #[command(flatten)]
        target: GrantTarget,
        #[arg(long, default_value = "*")]
        action: String,
    },
    /// The tenant's grants (or one principal's).
    List {
        #[arg(long, env = "DIRCTL_TENANT")]
        tenant: String,
        #[arg(long, value_name = "ID")]
        principal: Option<String>,
    },
    /// Is a user allowed an action on a resource? Names the grant that decided.
    Check {
        #[arg(long, env = "DIRCTL_TENANT")]
        tenant: String,
        /// The user's ID or userPrincipalName.
        #[arg(long, value_name = "ID")]
        user: String,
        #[arg(long, value_name = "NAME")]
        resource: String,
        #[arg(long, default_value = "*")]
        action: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Audit records of every partition, oldest first.
    List {
        /// Only records at or after this time (RFC 3339).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Only records of this actor. (Not `--actor`: that global option, and DIRCTL_ACTOR,
        /// name who runs this command.)
        #[arg(long, value_name = "NAME")]
        by: Option<String>,
        /// Only records naming this target.
        #[arg(long, value_name = "ID")]
        target: Option<String>,
        /// Only this operation (e.g. user.delete).
        #[arg(long)]
        op: Option<String>,
    },
    /// Check every partition's hash chain; exit 1 naming a changed, removed or reordered record,
    /// or a chain rewritten since its last anchor (the control plane's, and with `--backups`
    /// the newest backup's).
    Verify {
        /// Also check each chain against the anchors in the manifest of the newest good
        /// backup in this folder (taken outside the control plane).
        #[arg(long, value_name = "DIR")]
        backups: Option<PathBuf>,
    },
    /// Anchor every partition's audit chain: its head, signed with the cluster's key, kept in
    /// the control plane, so that `verify` catches a chain rewritten end to end since. Run it
    /// at least hourly (cron) and after every privileged task.
    Anchor,
}

#[derive(Args, Debug, Clone)]
pub struct HealthArgs {
    #[command(flatten)]
    pub backups: BackupsDir,
    /// The server mode: a secondary whose oldest missed entry is older than this is a
    /// problem (the embedded mode's secondaries wait for `sync` by design).
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub max_lag_ms: u64,
}

#[derive(Args, Debug, Clone)]
pub struct BackupsDir {
    /// The backups folder (default: <cluster root>/backups).
    #[arg(long, env = "DIRCTL_BACKUPS", value_name = "DIR")]
    pub dest: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum BackupCmd {
    /// Snapshot every partition into one archive named by today's UTC date.
    Create {
        #[command(flatten)]
        dir: BackupsDir,
        /// Replace today's backup if there is one.
        #[arg(long)]
        force: bool,
    },
    /// The backups, oldest first.
    List {
        #[command(flatten)]
        dir: BackupsDir,
    },
    /// Read a backup entirely and check every checksum.
    Verify {
        /// A backup ID (YYYY-MM-DD) or an archive path.
        id: String,
        #[command(flatten)]
        dir: BackupsDir,
    },
    /// Remove old backups; the newest good one is always kept.
    Prune {
        #[arg(long, default_value_t = 7)]
        keep_daily: usize,
        #[arg(long, default_value_t = 4)]
        keep_weekly: usize,
        #[command(flatten)]
        dir: BackupsDir,
    },
    /// Restore a whole cluster: into a new cluster root (--to) or in place (--in-place --yes).
    #[command(group(clap::ArgGroup::new("where").required(true).args(["to", "in_place"])))]
    Restore {
        /// A backup ID (YYYY-MM-DD) or an archive path.
        id: String,
        /// A new cluster root (must not exist); the restored cluster gets a new identity.
        #[arg(long, value_name = "NEWDIR")]
        to: Option<PathBuf>,
        /// Replace this cluster's replicas with the backup's (privileged).
        #[arg(long)]
        in_place: bool,
        /// Confirm --in-place without a prompt.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        dir: BackupsDir,
    },
    /// Bring one object back from a backup as a new replicated write.
    RestoreObject {
        object_id: String,
        /// The backup ID (YYYY-MM-DD) or an archive path.
        #[arg(long, value_name = "BACKUP_ID")]
        from: String,
        #[arg(long, env = "DIRCTL_TENANT")]
        tenant: String,
        #[command(flatten)]
        dir: BackupsDir,
    },
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["partition", "all_from"])))]
pub struct FailoverArgs {
    /// The partition to fail over.
    #[arg(long)]
    pub partition: Option<u32>,
    /// Every partition whose primary is in this datacenter.
    #[arg(long, value_name = "DC")]
    pub all_from: Option<String>,
    /// Planned: the datacenter that becomes primary (with --all-from: optional, else the sync standby).
    #[arg(long, value_name = "DC", conflicts_with = "emergency")]
    pub to: Option<String>,
    /// The primary's datacenter is unreachable: promote the sync standby.
    #[arg(long)]
    pub emergency: bool,
    /// With --emergency, when primary and sync standby are both unreachable: promote the most
    /// advanced reachable replica although acknowledged writes may be lost.
    #[arg(long, requires = "emergency")]
    pub accept_data_loss: bool,
    /// Confirm without a prompt (privileged).
    #[arg(long)]
    pub yes: bool,
}

#[derive(Args, Debug)]
pub struct InitArgs {
    /// Datacenters as NAME@LAT,LON, comma separated.
    #[arg(long, value_name = "NAME@LAT,LON,...")]
    pub datacenters: String,
    /// How many partitions (1 to 1024); each is a replica in every datacenter.
    #[arg(long, default_value_t = 4)]
    pub partitions: u32,
    /// Enrol the cluster's first operator, a security-admin, and show their TOTP secret
    /// once; from then on every command needs a login (docs/security.md).
    #[arg(long, value_name = "NAME")]
    pub admin: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum TenantCmd {
    /// Create a tenant, placed on a partition (by hash unless --partition).
    Create {
        /// The tenant's name (unique, whatever its letter case): what `--tenant` takes.
        name: String,
        /// Place it on this partition instead of by hash.
        #[arg(long)]
        partition: Option<u32>,
    },
    /// List tenants and their partitions.
    List,
}

#[derive(Args, Debug)]
pub struct ObjectArgs {
    /// The tenant the object lives in.
    #[arg(long, global = true, env = "DIRCTL_TENANT")]
    pub tenant: Option<String>,
    #[command(subcommand)]
    pub verb: ObjectVerb,
}

/// `dirctl group`: the object verbs and the membership ones. (`object::run` takes this for
/// every type; the others wrap their verb in `GroupVerb::Object`.)
#[derive(Args, Debug)]
pub struct GroupArgs {
    /// The tenant the group lives in.
    #[arg(long, global = true, env = "DIRCTL_TENANT")]
    pub tenant: Option<String>,
    #[command(subcommand)]
    pub verb: GroupVerb,
}

/// The verbs of every object type.
#[derive(Subcommand, Debug)]
pub enum ObjectVerb {
    /// Create an object.
    Create(Fields),
    /// Show one object, by ID (or userPrincipalName for users).
    Get { id: String },
    /// List the tenant's objects of this type.
    List,
    /// Change fields of an object.
    Update {
        id: String,
        #[command(flatten)]
        fields: Fields,
    },
    /// Delete an object (users, groups, apps and service principals go to the recycle bin).
    Delete { id: String },
}

#[derive(Subcommand, Debug)]
pub enum GroupVerb {
    #[command(flatten)]
    Object(ObjectVerb),
    /// Add a member (user, group or service principal) to a group.
    AddMember { group: String, member: String },
    /// Remove a member from a group.
    RemoveMember { group: String, member: String },
    /// List a group's direct members.
    Members { group: String },
}

#[derive(Args, Debug, Default)]
pub struct Fields {
    /// userPrincipalName (users).
    #[arg(long)]
    pub upn: Option<String>,
    /// displayName.
    #[arg(long)]
    pub display_name: Option<String>,
    /// mail.
    #[arg(long)]
    pub mail: Option<String>,
    /// appId (service principals).
    #[arg(long)]
    pub app_id: Option<String>,
    /// Any Graph field: FIELD=VALUE (VALUE is JSON if it parses, else a string). Repeatable.
    #[arg(long = "set", value_name = "FIELD=VALUE")]
    pub set: Vec<String>,
    /// Fields as a JSON object.
    #[arg(long)]
    pub json: Option<String>,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    #[arg(long, env = "DIRCTL_TENANT")]
    pub tenant: String,
    /// A JSON Lines file: one Graph object per line with its @odata.type; groups may list "members" by ID.
    pub file: PathBuf,
    /// Objects per log entry (one fsync on each side per batch).
    #[arg(long, default_value_t = 1000)]
    pub batch_size: usize,
}

#[derive(Args, Debug)]
pub struct SyncArgs {
    /// Only this partition.
    #[arg(long)]
    pub partition: Option<u32>,
}

#[derive(Args, Debug)]
pub struct ScrubArgs {
    /// Only this datacenter's replicas.
    #[arg(long)]
    pub datacenter: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// Issue a token for one tenant, signed with the cluster's key (made on first use and
    /// kept in the control plane; never printed). Prints the token alone on stdout.
    Issue {
        /// The one tenant the token can see or touch.
        #[arg(long)]
        tenant: String,
        /// reader: reads only; writer: reads and writes.
        #[arg(long, value_enum)]
        role: TokenRole,
        /// How long it is valid: 90s, 30m, 1h, 7d (at most 30d).
        #[arg(long, default_value = "1h")]
        ttl: String,
        /// Who it is for, as the audit trail names the actor (`token:<subject>`) [default:
        /// --actor, else the OS user].
        #[arg(long)]
        subject: Option<String>,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenRole {
    Reader,
    Writer,
}

#[derive(Subcommand, Debug)]
pub enum ControlPlaneCmd {
    /// Move the topology from the cluster root's cluster.json into etcd (privileged; with
    /// every geodird and dirctl of the cluster stopped). cluster.json is renamed
    /// cluster.json.moved-to-etcd; the replicas stay where they are.
    Migrate {
        /// Where: etcd://HOST:PORT[,HOST:PORT...][/PREFIX].
        #[arg(long, value_name = "etcd://HOST:PORT")]
        to: String,
        /// Confirm without a prompt.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum DcCmd {
    /// Route reads around a datacenter (privileged).
    Drain {
        name: String,
        /// Confirm without a prompt.
        #[arg(long)]
        yes: bool,
    },
    /// Let reads reach a drained datacenter again (privileged).
    Undrain {
        name: String,
        #[arg(long)]
        yes: bool,
    },
    /// Give every lost replica of a datacenter a fresh copy: a checkpoint of a healthy replica plus the log after it (privileged).
    Rebuild {
        name: String,
        #[arg(long)]
        yes: bool,
    },
    /// List datacenters with location and health override.
    List,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Where to build the demo cluster (default: a new folder under the system temp dir).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// The fixtures folder holding contoso.jsonl and fabrikam.jsonl.
    #[arg(long, env = "DIRCTL_FIXTURES")]
    pub fixtures: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum OperatorCmd {
    /// Enrol an operator: makes their TOTP secret and shows it once (otpauth URI and QR
    /// code). Needs an elevated security-admin, except for a cluster's first operator, who
    /// must be a security-admin.
    Enroll {
        name: String,
        /// reader, tenant-admin:TENANT, operator or security-admin (repeatable).
        #[arg(long = "role", required = true, value_name = "ROLE")]
        roles: Vec<String>,
    },
    /// Enrol a service identity for scheduled jobs (cron): no codes, no elevation, only its
    /// jobs and the reads they need. Writes its credential, signed by the cluster, to a file
    /// (mode 0600) that the job's DIRCTL_LOGIN_FILE names. An elevated security-admin.
    EnrollService {
        name: String,
        /// backup or purge-expired (repeatable).
        #[arg(long = "job", required = true, value_name = "JOB")]
        jobs: Vec<String>,
        /// Where to write the credential.
        #[arg(long, value_name = "FILE")]
        credential_file: PathBuf,
        /// How long the credential lasts (at most 366d); remove and enrol again to renew.
        #[arg(long = "for", default_value = "90d", value_name = "DURATION")]
        duration: String,
    },
    /// The enrolled operators, their roles and lock-outs (never their secrets).
    List,
    /// Remove an operator (an elevated security-admin; never the last security-admin).
    Remove { name: String },
    /// Replace an operator's roles (an elevated security-admin).
    Roles {
        name: String,
        /// Every role the operator is to have (replaces the ones they have): reader,
        /// tenant-admin:TENANT, operator, security-admin; job:backup, job:purge-expired for a
        /// service identity (repeatable).
        #[arg(long = "role", required = true, value_name = "ROLE")]
        roles: Vec<String>,
    },
}

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// The operator.
    pub name: String,
    /// The 6-digit code the operator's authenticator shows now.
    #[arg(long, value_name = "CODE")]
    pub otp: String,
    /// How long the login lasts (at most 12h).
    #[arg(long = "for", default_value = "8h", value_name = "DURATION")]
    pub duration: String,
}

#[derive(Args, Debug)]
pub struct ElevateArgs {
    /// The role to take: operator or security-admin (one the operator has).
    #[arg(long, value_name = "ROLE")]
    pub role: String,
    /// How long (1m to 8h), e.g. 30m.
    #[arg(long = "for", value_name = "DURATION")]
    pub duration: String,
    /// Why: a ticket or incident, for the audit trail.
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
    /// A fresh code from the operator's authenticator (not the one the login used).
    #[arg(long, value_name = "CODE")]
    pub otp: String,
}

#[derive(Subcommand, Debug)]
pub enum ElevationCmd {
    /// The active elevations.
    List,
    /// End an elevation now (its operator, or an elevated security-admin).
    Revoke { id: String },
}

#[derive(Args, Debug)]
pub struct ApproveArgs {
    /// The request's id, as its command printed it.
    pub id: String,
    /// A fresh code from the approver's authenticator.
    #[arg(long, value_name = "CODE")]
    pub otp: String,
}
