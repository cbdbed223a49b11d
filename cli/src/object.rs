//! `dirctl user|group|app|sp|device ...` and `dirctl import`.

use std::io::BufRead;

use anyhow::{Context as _, Result};
use engine::audit;
use engine::directory::{self, ObjectType, Txn};
use engine::log::Op;
use engine::Error;
use serde_json::{json, Map, Value};

use crate::context::{self, Ctx};
use crate::opt::{Fields, Global, GroupVerb, ImportArgs, ObjectVerb, Output};
use crate::output;

fn fields_of(ty: ObjectType, f: Fields) -> Result<Map<String, Value>> {
    let mut m = match f.json {
        Some(j) => match serde_json::from_str::<Value>(&j) {
            Ok(Value::Object(m)) => m,
            Ok(_) => return Err(Error::Invalid("--json must be a JSON object".into()).into()),
            Err(e) => return Err(Error::Invalid(format!("--json is not valid JSON: {e}")).into()),
        },
        None => Map::new(),
    };
    let named = [
        ("userPrincipalName", f.upn),
        ("displayName", f.display_name),
        ("mail", f.mail),
        ("appId", f.app_id),
    ];
    for (k, v) in named {
        if let Some(v) = v {
            m.insert(k.to_string(), Value::from(v));
        }
    }
    for s in f.set {
        let (k, v) = s
            .split_once('=')
            .ok_or_else(|| Error::Invalid(format!("--set {s:?} is not FIELD=VALUE")))?;
        let v = serde_json::from_str(v).unwrap_or_else(|_| Value::from(v));
        m.insert(k.to_string(), v);
    }
    if ty != ObjectType::User && m.contains_key("userPrincipalName") {
        return Err(Error::Invalid(format!("a {} has no userPrincipalName", ty.noun())).into());
    }
    Ok(m)
}

fn list_columns(ty: ObjectType) -> &'static [&'static str] {
    match ty {
        ObjectType::User => &["id", "userPrincipalName", "displayName", "accountEnabled"],
        ObjectType::Group => &["id", "displayName", "securityEnabled", "mailEnabled"],
        ObjectType::Application => &["id", "appId", "displayName"],
        ObjectType::ServicePrincipal => &["id", "appId", "displayName", "accountEnabled"],
        ObjectType::Device => &["id", "displayName", "operatingSystem", "accountEnabled"],
    }
}

pub fn run(g: &Global, ty: ObjectType, tenant: Option<String>, verb: GroupVerb) -> Result<()> {
    let tenant = tenant.ok_or_else(|| {
        Error::Invalid("no tenant given: pass --tenant NAME or set DIRCTL_TENANT".into())
    })?;
    let mut ctx = Ctx::open(g)?;
    let (tid, partition) = ctx.tenant_partition(&tenant)?;
    let now = ctx.cluster.clock().now_graph();
    let out = ctx.output;
    match verb {
        GroupVerb::Object(ObjectVerb::Create(f)) => {
            let fields = fields_of(ty, f)?;
            let op = format!("{}.create", ty.noun());
            // A failure is recorded under the name the object was to have; a success under
            // its new ID.
            let named: Vec<String> = ["userPrincipalName", "displayName"]
                .iter()
                .find_map(|f| fields.get(*f).and_then(Value::as_str))
                .map(str::to_string)
                .into_iter()
                .collect();
            let (obj, token) = ctx
                .audited_write(partition, &op, named, |t, targets| {
                    let obj = directory::create(t, &tid, ty, fields, &now)?;
                    by_object_id(targets, &obj);
                    Ok(obj)
                })
                .with_context(|| format!("create {} in tenant {tenant}", ty.noun()))?;
            written(out, &obj, &token)
        }
        GroupVerb::Object(ObjectVerb::Update { id, fields }) => {
            let fields = fields_of(ty, fields)?;
            let op = format!("{}.update", ty.noun());
            let (obj, token) = ctx
                .audited_write(partition, &op, vec![id.clone()], |t, targets| {
                    let obj = directory::update(t, &tid, ty, &id, fields)?;
                    by_object_id(targets, &obj);
                    Ok(obj)
                })
                .with_context(|| format!("update {} {id}", ty.noun()))?;
            written(out, &obj, &token)
        }
        GroupVerb::Object(ObjectVerb::Delete { id }) => {
            let op = format!("{}.delete", ty.noun());
            let (obj, token) = ctx
                .audited_write(partition, &op, vec![id.clone()], |t, targets| {
                    let obj = directory::delete(t, &tid, ty, &id, &now)?;
                    by_object_id(targets, &obj);
                    Ok(obj)
                })
                .with_context(|| format!("delete {} {id}", ty.noun()))?;
            written(out, &obj, &token)
        }
        GroupVerb::Object(ObjectVerb::Get { id }) => {
            let (obj, served) = ctx
                .read(partition, |r| directory::get_typed(r, &tid, ty, &id))
                .with_context(|| format!("get {} {id}", ty.noun()))?;
            output::emit(out, &json!({"object": obj, "servedBy": served}), || {
                output::object(
                    &obj,
                    &[(
                        "servedBy",
                        format!(
                            "{} (term {}, lsn {})",
                            served.datacenter, served.term, served.lsn
                        ),
                    )],
                )
            })
        }
        GroupVerb::Object(ObjectVerb::List) => {
            let (objs, served) = ctx
                .read(partition, |r| directory::list(r, &tid, ty))
                .with_context(|| format!("list {}s", ty.noun()))?;
            objects(out, ty, &objs, &served)
        }
        GroupVerb::Members { group } => {
            let (objs, served) = ctx
                .read(partition, |r| directory::members(r, &tid, &group))
                .with_context(|| format!("members of group {group}"))?;
            let cols = ["id", "@odata.type", "displayName", "userPrincipalName"];
            let rows: Vec<_> = objs.iter().map(|o| output::cells(o, &cols)).collect();
            output::emit(out, &json!({"objects": objs, "servedBy": served}), || {
                output::table(&cols, &rows)
            })
        }
        GroupVerb::AddMember { group, member } => {
            let targets = vec![group.clone(), member.clone()];
            let ((), token) = ctx
                .audited_write(partition, "group.add-member", targets, |t, targets| {
                    directory::add_member(t, &tid, &group, &member)?;
                    by_object_ids(t, &tid, targets)
                })
                .with_context(|| format!("add {member} to group {group}"))?;
            membership(out, "added", &group, &member, &token)
        }
        GroupVerb::RemoveMember { group, member } => {
            let targets = vec![group.clone(), member.clone()];
            let ((), token) = ctx
                .audited_write(partition, "group.remove-member", targets, |t, targets| {
                    directory::remove_member(t, &tid, &group, &member)?;
                    by_object_ids(t, &tid, targets)
                })
                .with_context(|| format!("remove {member} from group {group}"))?;
            membership(out, "removed", &group, &member, &token)
        }
    }
}

fn written(out: Output, obj: &Map<String, Value>, token: &engine::session::Token) -> Result<()> {
    output::emit(out, &json!({"object": obj, "replicaToken": token}), || {
        output::object(obj, &[("replicaToken", token.to_string())])
    })
}

fn membership(
    out: Output,
    what: &str,
    group: &str,
    member: &str,
    token: &engine::session::Token,
) -> Result<()> {
    output::emit(
        out,
        &json!({"group": group, "member": member, "change": what, "replicaToken": token}),
        || {
            format!(
                "{what} {member} {} group {group}\nreplicaToken  {token}\n",
                if what == "added" { "to" } else { "from" }
            )
        },
    )
}

fn objects(
    out: Output,
    ty: ObjectType,
    objs: &[Map<String, Value>],
    served: &engine::cluster::ServedBy,
) -> Result<()> {
    let cols = list_columns(ty);
    let rows: Vec<_> = objs.iter().map(|o| output::cells(o, cols)).collect();
    output::emit(out, &json!({"objects": objs, "servedBy": served}), || {
        output::table(cols, &rows)
    })
}

/// One parsed line of an import file.
struct Line {
    number: usize,
    ty: ObjectType,
    fields: Map<String, Value>,
    members: Vec<String>,
}

fn parse_import(path: &std::path::Path) -> Result<Vec<Line>> {
    let file = std::fs::File::open(path)
        .map_err(|e| Error::NotFound(format!("cannot open import file {}: {e}", path.display())))?;
    let mut lines = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let number = i + 1;
        let bad = |why: String| {
            Error::Invalid(format!(
                "{} line {number}: {why}; nothing was imported",
                path.display()
            ))
        };
        let line = match line {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(bad("not UTF-8 text".into()).into())
            }
            Err(e) => {
                return Err(e).with_context(|| format!("read {} line {number}", path.display()))
            }
        };
        // A byte-order mark (some editors write one) is not part of the first line's JSON.
        let line = if number == 1 {
            line.strip_prefix('\u{feff}').unwrap_or(&line).to_string()
        } else {
            line
        };
        if line.trim().is_empty() {
            continue;
        }
        let mut fields = match serde_json::from_str::<Value>(&line) {
            Ok(Value::Object(m)) => m,
            Ok(_) => return Err(bad("not a JSON object".into()).into()),
            Err(e) => return Err(bad(format!("malformed JSON: {e}")).into()),
        };
        let ty_name = fields
            .remove("@odata.type")
            .and_then(|v| v.as_str().map(str::to_string))
            .ok_or_else(|| bad("no @odata.type".into()))?;
        let ty = ObjectType::parse(&ty_name).map_err(|e| bad(e.to_string()))?;
        let members = match fields.remove("members") {
            None => Vec::new(),
            Some(Value::Array(a)) if ty == ObjectType::Group => a
                .into_iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| bad("members must be a list of object IDs".into()))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(bad("members must be a list of object IDs on a group".into()).into())
            }
        };
        lines.push(Line {
            number,
            ty,
            fields,
            members,
        });
    }
    Ok(lines)
}

/// An object addressed by UPN is recorded in the audit trail by its object ID, as every
/// other record names it (`audit list --target ID` finds it).
fn by_object_id(targets: &mut Vec<String>, obj: &Map<String, Value>) {
    if let Some(id) = obj.get("id").and_then(Value::as_str) {
        *targets = vec![id.to_string()];
    }
}

/// Targets named by UPN, recorded by object ID (each resolved in the transaction).
fn by_object_ids(t: &Txn, tid: &str, targets: &mut [String]) -> engine::Result<()> {
    for target in targets.iter_mut() {
        *target = directory::resolve_id(t, tid, target)?.to_string();
    }
    Ok(())
}

/// Applies import lines to a transaction; `made` gathers (object ID, line number) of the
/// objects the file makes, across calls.
fn stage(
    t: &mut Txn,
    tid: &str,
    lines: &[Line],
    now: &str,
    path: &std::path::Path,
    made: &mut Vec<(String, usize)>,
) -> engine::Result<()> {
    for l in lines {
        // A conflict with an object this file makes (not yet written) names its line.
        let made_here = |m: String| match made.iter().find(|(id, _)| m.contains(id.as_str())) {
            Some((id, line)) => {
                m.replace(&format!("user {id}"), &format!("line {line} of this file"))
            }
            None => m,
        };
        let at = |e: Error| {
            match e {
            Error::Invalid(m) => Error::Invalid(format!(
                "{} line {}: {m}; nothing was imported",
                path.display(),
                l.number
            )),
            Error::Conflict(m) => Error::Conflict(format!(
                "{} line {}: {}; nothing was imported",
                path.display(),
                l.number,
                made_here(m)
            )),
            Error::NotFound(m) => Error::NotFound(format!(
                "{} line {}: {m} (a member must be stored already or made by an earlier line); nothing was imported",
                path.display(),
                l.number
            )),
            other => other,
        }
        };
        let obj = directory::create(t, tid, l.ty, l.fields.clone(), now).map_err(at)?;
        let id = obj
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        for m in &l.members {
            directory::add_member(t, tid, &id, m).map_err(at)?;
        }
        made.push((id, l.number));
    }
    Ok(())
}

pub fn import(g: &Global, a: ImportArgs) -> Result<()> {
    if a.batch_size == 0 {
        return Err(Error::Invalid("--batch-size must be at least 1".into()).into());
    }
    let lines = parse_import(&a.file)?;
    let mut ctx = Ctx::open(g)?;
    let (tid, partition) = ctx.tenant_partition(&a.tenant)?;
    let now = ctx.cluster.clock().now_graph();
    let out = ctx.output;
    // One pass over the primary's state stages every line: it finds every conflict before
    // anything is written, and its ops, cut at batch boundaries, are what the batches write
    // (refused, nothing written, if another writer got to the partition in between).
    let targets = vec![a.tenant.clone(), a.file.display().to_string()];
    let staged = ctx.write(partition, |r| {
        let mut t = Txn::new(r);
        let mut ends = Vec::new();
        let mut made = Vec::with_capacity(lines.len());
        for chunk in lines.chunks(a.batch_size) {
            stage(&mut t, &tid, chunk, &now, &a.file, &mut made)?;
            ends.push(t.op_count());
        }
        Ok((Vec::new(), (t.into_ops(), ends)))
    });
    let (staged, at) = match staged {
        Ok(s) => s,
        Err(e) => {
            if !context::refused(&e) {
                ctx.audit_outcome(partition, "import", targets, &format!("{e:#}"));
            }
            return Err(e);
        }
    };
    if lines.is_empty() {
        ctx.audit_outcome(
            partition,
            "import",
            targets.clone(),
            "ok: the file holds no objects",
        );
    }
    let (ops, ends) = staged;
    let mut ops = ops.into_iter();
    let mut start = 0;
    let batches: Vec<Vec<Op>> = ends
        .into_iter()
        .map(|end| {
            let batch = ops.by_ref().take(end - start).collect();
            start = end;
            batch
        })
        .collect();
    let bar = if output::stdout_is_terminal() {
        indicatif::ProgressBar::new(lines.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} objects {per_sec} {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut done = 0usize;
    let mut last_token = None;
    let mut emitted = Ok(());
    let chunks = lines.chunks(a.batch_size).count();
    // The import's one audit record rides in its last entry; a failure gets its own.
    let mut record = Some(ctx.record("import", targets.clone(), "ok"));
    // Each batch is shipped while the one before is being made durable.
    let written = ctx.write_pipelined(
        partition,
        Some(at.lsn),
        batches.into_iter().zip(lines.chunks(a.batch_size)).enumerate(),
        |r, (i, (mut ops, chunk))| {
            if i + 1 == chunks {
                if let Some(rec) = record.take() {
                    let mut t = Txn::new(r);
                    audit::append(&mut t, rec)?;
                    ops.extend(t.into_ops());
                }
            }
            Ok((ops, chunk))
        },
        |chunk, token| {
            done += chunk.len();
            bar.inc(chunk.len() as u64);
            if out == Output::Json && emitted.is_ok() {
                emitted = output::json_line(
                    &json!({"committedThroughLine": chunk[chunk.len() - 1].number, "objects": done, "replicaToken": token}),
                );
            }
            last_token = Some(token.clone());
        },
    );
    if let Err(e) = written {
        if !context::refused(&e) {
            ctx.audit_outcome(partition, "import", targets, &format!("{e:#}"));
        }
        let from = lines.get(done).map_or(0, |l| l.number);
        return Err(e.context(format!(
            "import {} from line {from}; lines before it are committed",
            a.file.display()
        )));
    }
    emitted?;
    bar.finish_and_clear();
    match out {
        Output::Json => output::json_line(
            &json!({"imported": done, "tenant": a.tenant, "replicaToken": last_token}),
        ),
        Output::Table => {
            let token = last_token
                .map(|t| t.to_string())
                .unwrap_or_else(|| "none".into());
            output::print(&format!(
                "imported {done} objects into tenant {} (replica token {token})\n",
                a.tenant
            ))
        }
    }
}
