//! Directory operations as plain data: what a client asks (`Request`), with who asks
//! (`Envelope`), and what it gets back (`Reply` in a `Response`). Every one is a serde type,
//! so a primary in another process can receive it; `executor` carries them out on the
//! embedded cluster, `client::Directory` is what dirctl talks to.
//!
//! Tenants are named as the client names them; the executor finds their placement.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::access::{Decision, Effect};
use crate::audit::Record;
use crate::cluster::ServedBy;
use crate::directory::ObjectType;
use crate::recycle::{Restored, Tombstone};
use crate::session::Token;

/// Fields of an object, with Graph's names.
pub type Object = Map<String, Value>;

/// Who asks, and the session the request belongs to. The actor and correlation id go into
/// the audit record written with a change.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    pub actor: String,
    /// Ties the audit records of one client command together.
    pub correlation_id: String,
    /// The session's datacenter affinity, if it has one.
    pub datacenter: Option<String>,
    /// The session's token for the partition read: the read sees at least that much.
    pub token: Option<Token>,
}

/// One line of an import file, parsed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportLine {
    /// Its line number in the file (errors name it).
    pub number: usize,
    pub object_type: ObjectType,
    pub fields: Object,
    /// IDs of the members a group line adds.
    pub members: Vec<String>,
}

/// Every operation dirctl performs on the directory's data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "camelCase")]
#[serde(rename_all_fields = "camelCase")]
pub enum Request {
    CreateObject {
        tenant: String,
        object_type: ObjectType,
        fields: Object,
    },
    UpdateObject {
        tenant: String,
        object_type: ObjectType,
        id: String,
        patch: Object,
    },
    DeleteObject {
        tenant: String,
        object_type: ObjectType,
        id: String,
    },
    GetObject {
        tenant: String,
        object_type: ObjectType,
        id: String,
    },
    ListObjects {
        tenant: String,
        object_type: ObjectType,
    },
    ListMembers {
        tenant: String,
        group: String,
    },
    /// The groups `member` (an ID or UPN) belongs to: directly, or also through groups
    /// (`transitive`), each once.
    ListMemberOf {
        tenant: String,
        member: String,
        transitive: bool,
    },
    AddMember {
        tenant: String,
        group: String,
        member: String,
    },
    RemoveMember {
        tenant: String,
        group: String,
        member: String,
    },
    /// Objects from a file, checked whole first, then written in batches of `batch_size`
    /// lines (each batch one log entry, shipped while the one before is made durable).
    Import {
        tenant: String,
        /// The file's name, for messages and the audit record.
        file: String,
        batch_size: usize,
        lines: Vec<ImportLine>,
    },
    ListDeleted {
        tenant: String,
    },
    GetDeleted {
        tenant: String,
        id: String,
    },
    RestoreDeleted {
        tenant: String,
        id: String,
        new_upn: Option<String>,
    },
    PurgeDeleted {
        tenant: String,
        id: String,
    },
    /// Every expired tombstone of these tenants, which share one partition: one log entry.
    PurgeExpired {
        tenants: Vec<String>,
    },
    Grant {
        tenant: String,
        principal: String,
        resource: String,
        action: String,
        effect: Effect,
    },
    Revoke {
        tenant: String,
        principal: String,
        resource: String,
        action: String,
    },
    ListGrants {
        tenant: String,
        principal: Option<String>,
    },
    CheckAccess {
        tenant: String,
        user: String,
        resource: String,
        action: String,
    },
    /// Places a tenant (on `partition`, else by a hash of its name) and writes its record.
    CreateTenant {
        name: String,
        partition: Option<u32>,
    },
    /// A partition's audit records, from its most complete settled copy.
    ListAudit {
        partition: u32,
    },
    /// An audit record of its own: a cluster-level operation's, or a failed one's. Goes to
    /// `partition`, else to any other that can commit it.
    RecordAudit {
        partition: u32,
        op: String,
        targets: Vec<String>,
        outcome: String,
    },
    /// One object of a backup brought back as it was there (`checkpoint`: the backup's
    /// copy of the tenant's partition, unpacked where the executor can open it).
    RestoreFromBackup {
        tenant: String,
        backup: String,
        checkpoint: std::path::PathBuf,
        id: String,
    },
}

/// What a request returns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", content = "value", rename_all = "camelCase")]
pub enum Reply {
    Object(Object),
    Objects(Vec<Object>),
    /// A membership was added or removed.
    Membership,
    /// How many objects an import wrote.
    Imported(usize),
    Tombstones(Vec<Tombstone>),
    Tombstone(Tombstone),
    Restored(Restored),
    /// IDs purged for good.
    Purged(Vec<String>),
    Grant(Object),
    Grants(Vec<Object>),
    Decision(Decision),
    Tenant {
        record: Object,
        partition: u32,
    },
    AuditRecords(Vec<Record>),
    /// An audit record was written (or, best effort, could not be: see the notes).
    AuditRecorded,
    RestoredFromBackup {
        object: Object,
        skipped: Vec<String>,
    },
}

/// Something the client should tell its user beside the reply (stderr, for dirctl).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "level", content = "text", rename_all = "camelCase")]
pub enum Note {
    /// Always worth saying.
    Warning(String),
    /// Informational; a client printing machine-readable output may leave it out.
    Info(String),
}

/// A reply with where it came from: a write's token, a read's replica.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    pub reply: Reply,
    /// The token of the (last) log entry a write committed.
    pub token: Option<Token>,
    /// The replica that served a read.
    pub served_by: Option<ServedBy>,
}

/// How a request written in several log entries (an import) goes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "progress", rename_all = "camelCase")]
#[serde(rename_all_fields = "camelCase")]
pub enum Progress {
    /// Every line was checked against the primary's state at `token`; nothing is written
    /// yet. Errors after this one leave the batches already committed in place.
    Checked { token: Token },
    /// One batch is committed.
    Committed {
        /// The file line of the batch's last object.
        through_line: usize,
        /// Objects in the batch.
        objects: usize,
        token: Token,
    },
}

impl Request {
    /// Whether the request only reads: served by the chosen replica, it changes nothing and
    /// writes no audit record (`audit_op` is None exactly for these; a unit test checks both).
    pub fn is_read(&self) -> bool {
        matches!(
            self,
            Request::GetObject { .. }
                | Request::ListObjects { .. }
                | Request::ListMembers { .. }
                | Request::ListMemberOf { .. }
                | Request::ListDeleted { .. }
                | Request::GetDeleted { .. }
                | Request::ListGrants { .. }
                | Request::CheckAccess { .. }
                | Request::ListAudit { .. }
        )
    }

    /// The operation's name in audit records (`user.create`, `deleted.purge`, ...); None for
    /// a read, which writes no record.
    pub fn audit_op(&self) -> Option<String> {
        let noun = |ty: &ObjectType| ty.noun();
        Some(match self {
            Request::CreateObject { object_type, .. } => format!("{}.create", noun(object_type)),
            Request::UpdateObject { object_type, .. } => format!("{}.update", noun(object_type)),
            Request::DeleteObject { object_type, .. } => format!("{}.delete", noun(object_type)),
            Request::AddMember { .. } => "group.add-member".into(),
            Request::RemoveMember { .. } => "group.remove-member".into(),
            Request::Import { .. } => "import".into(),
            Request::RestoreDeleted { .. } => "deleted.restore".into(),
            Request::PurgeDeleted { .. } => "deleted.purge".into(),
            Request::PurgeExpired { .. } => "deleted.purge-expired".into(),
            Request::Grant { .. } => "access.grant".into(),
            Request::Revoke { .. } => "access.revoke".into(),
            Request::CreateTenant { .. } => "tenant.create".into(),
            Request::RecordAudit { op, .. } => op.clone(),
            Request::RestoreFromBackup { .. } => "backup.restore-object".into(),
            Request::GetObject { .. }
            | Request::ListObjects { .. }
            | Request::ListMembers { .. }
            | Request::ListMemberOf { .. }
            | Request::ListDeleted { .. }
            | Request::GetDeleted { .. }
            | Request::ListGrants { .. }
            | Request::CheckAccess { .. }
            | Request::ListAudit { .. } => return None,
        })
    }

    /// The request's name as its JSON tag says it (`createObject`, `getObject`...), without
    /// encoding the request (metrics label requests by it).
    pub fn name(&self) -> &'static str {
        match self {
            Request::CreateObject { .. } => "createObject",
            Request::UpdateObject { .. } => "updateObject",
            Request::DeleteObject { .. } => "deleteObject",
            Request::GetObject { .. } => "getObject",
            Request::ListObjects { .. } => "listObjects",
            Request::ListMembers { .. } => "listMembers",
            Request::ListMemberOf { .. } => "listMemberOf",
            Request::AddMember { .. } => "addMember",
            Request::RemoveMember { .. } => "removeMember",
            Request::Import { .. } => "import",
            Request::ListDeleted { .. } => "listDeleted",
            Request::GetDeleted { .. } => "getDeleted",
            Request::RestoreDeleted { .. } => "restoreDeleted",
            Request::PurgeDeleted { .. } => "purgeDeleted",
            Request::PurgeExpired { .. } => "purgeExpired",
            Request::Grant { .. } => "grant",
            Request::Revoke { .. } => "revoke",
            Request::ListGrants { .. } => "listGrants",
            Request::CheckAccess { .. } => "checkAccess",
            Request::CreateTenant { .. } => "createTenant",
            Request::ListAudit { .. } => "listAudit",
            Request::RecordAudit { .. } => "recordAudit",
            Request::RestoreFromBackup { .. } => "restoreFromBackup",
        }
    }

    /// The tenant the request addresses, if one.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Request::CreateObject { tenant, .. }
            | Request::UpdateObject { tenant, .. }
            | Request::DeleteObject { tenant, .. }
            | Request::GetObject { tenant, .. }
            | Request::ListObjects { tenant, .. }
            | Request::ListMembers { tenant, .. }
            | Request::ListMemberOf { tenant, .. }
            | Request::AddMember { tenant, .. }
            | Request::RemoveMember { tenant, .. }
            | Request::Import { tenant, .. }
            | Request::ListDeleted { tenant }
            | Request::GetDeleted { tenant, .. }
            | Request::RestoreDeleted { tenant, .. }
            | Request::PurgeDeleted { tenant, .. }
            | Request::Grant { tenant, .. }
            | Request::Revoke { tenant, .. }
            | Request::ListGrants { tenant, .. }
            | Request::CheckAccess { tenant, .. }
            | Request::RestoreFromBackup { tenant, .. } => Some(tenant),
            Request::PurgeExpired { tenants } => tenants.first().map(String::as_str),
            Request::CreateTenant { .. }
            | Request::ListAudit { .. }
            | Request::RecordAudit { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests;
