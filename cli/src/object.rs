//! `dirctl user|group|app|sp|device ...` and `dirctl import`.

use std::io::BufRead;

use anyhow::{Context as _, Result};
use engine::directory::ObjectType;
use engine::request::{ImportLine, Progress, Request, Response};
use engine::Error;
use serde_json::{json, Map, Value};

use crate::context::Ctx;
use crate::opt::{Fields, Global, GroupVerb, ImportArgs, ObjectVerb, Output};
use crate::output;
use crate::reply;

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
    ctx.tenant_partition(&tenant)?;
    let out = ctx.output;
    let object_type = ty;
    match verb {
        GroupVerb::Object(ObjectVerb::Create(f)) => {
            let fields = fields_of(ty, f)?;
            let r = ctx
                .execute(Request::CreateObject {
                    tenant: tenant.clone(),
                    object_type,
                    fields,
                })
                .with_context(|| format!("create {} in tenant {tenant}", ty.noun()))?;
            written(out, r)
        }
        GroupVerb::Object(ObjectVerb::Update { id, fields }) => {
            let patch = fields_of(ty, fields)?;
            let r = ctx
                .execute(Request::UpdateObject {
                    tenant,
                    object_type,
                    id: id.clone(),
                    patch,
                })
                .with_context(|| format!("update {} {id}", ty.noun()))?;
            written(out, r)
        }
        GroupVerb::Object(ObjectVerb::Delete { id }) => {
            let r = ctx
                .execute(Request::DeleteObject {
                    tenant,
                    object_type,
                    id: id.clone(),
                })
                .with_context(|| format!("delete {} {id}", ty.noun()))?;
            written(out, r)
        }
        GroupVerb::Object(ObjectVerb::Get { id }) => get(&mut ctx, out, tenant, ty, &id),
        GroupVerb::Object(ObjectVerb::List) => {
            let r = ctx
                .execute(Request::ListObjects {
                    tenant,
                    object_type,
                })
                .with_context(|| format!("list {}s", ty.noun()))?;
            let (objs, served) = (reply::objects(r.reply)?, reply::served_by(r.served_by)?);
            objects(out, ty, &objs, &served)
        }
        GroupVerb::Members { group } => {
            let r = ctx
                .execute(Request::ListMembers {
                    tenant,
                    group: group.clone(),
                })
                .with_context(|| format!("members of group {group}"))?;
            let (objs, served) = (reply::objects(r.reply)?, reply::served_by(r.served_by)?);
            let cols = ["id", "@odata.type", "displayName", "userPrincipalName"];
            let rows: Vec<_> = objs.iter().map(|o| output::cells(o, &cols)).collect();
            output::emit(out, &json!({"objects": objs, "servedBy": served}), || {
                output::table(&cols, &rows)
            })
        }
        GroupVerb::AddMember { group, member } => {
            let r = ctx
                .execute(Request::AddMember {
                    tenant,
                    group: group.clone(),
                    member: member.clone(),
                })
                .with_context(|| format!("add {member} to group {group}"))?;
            membership(out, "added", &group, &member, &reply::token(r.token)?)
        }
        GroupVerb::RemoveMember { group, member } => {
            let r = ctx
                .execute(Request::RemoveMember {
                    tenant,
                    group: group.clone(),
                    member: member.clone(),
                })
                .with_context(|| format!("remove {member} from group {group}"))?;
            membership(out, "removed", &group, &member, &reply::token(r.token)?)
        }
    }
}

/// `get`: the object as Graph returns it, with the replica that served it.
fn get(ctx: &mut Ctx, out: Output, tenant: String, ty: ObjectType, id: &str) -> Result<()> {
    let object_type = ty;
    let r = ctx
        .execute(Request::GetObject {
            tenant,
            object_type,
            id: id.to_string(),
        })
        .with_context(|| format!("get {} {id}", ty.noun()))?;
    let (obj, served) = (reply::object(r.reply)?, reply::served_by(r.served_by)?);
    // Graph's shape: the object's own fields, geodir's metadata as an OData
    // instance annotation.
    let mut doc = obj.clone();
    doc.insert("@geodir.servedBy".into(), json!(served));
    output::emit(out, &Value::Object(doc), || {
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

fn written(out: Output, r: Response) -> Result<()> {
    let (obj, token) = (reply::object(r.reply)?, reply::token(r.token)?);
    output::emit(out, &json!({"object": obj, "replicaToken": token}), || {
        output::object(&obj, &[("replicaToken", token.to_string())])
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

fn parse_import(path: &std::path::Path) -> Result<Vec<ImportLine>> {
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
        lines.push(ImportLine {
            number,
            object_type: ty,
            fields,
            members,
        });
    }
    Ok(lines)
}

pub fn import(g: &Global, a: ImportArgs) -> Result<()> {
    if a.batch_size == 0 {
        return Err(Error::Invalid("--batch-size must be at least 1".into()).into());
    }
    let lines = parse_import(&a.file)?;
    let mut ctx = Ctx::open(g)?;
    ctx.tenant_partition(&a.tenant)?;
    let out = ctx.output;
    let bar = if output::stdout_is_terminal() {
        indicatif::ProgressBar::new(lines.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} objects {per_sec} {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut checked = false;
    let mut done = 0usize;
    let mut last_token = None;
    let mut emitted = Ok(());
    let numbers: Vec<usize> = lines.iter().map(|l| l.number).collect();
    let req = Request::Import {
        tenant: a.tenant.clone(),
        file: a.file.display().to_string(),
        batch_size: a.batch_size,
        lines,
    };
    let written = ctx.execute_with(req, &mut |p| match p {
        Progress::Checked { .. } => checked = true,
        Progress::Committed {
            through_line,
            objects,
            token,
        } => {
            done += objects;
            bar.inc(*objects as u64);
            if out == Output::Json && emitted.is_ok() {
                emitted = output::json_line(
                    &json!({"committedThroughLine": through_line, "objects": done, "replicaToken": token}),
                );
            }
            last_token = Some(token.clone());
        }
    });
    if let Err(e) = written {
        // Checked whole, nothing written: the error as it is. Else the batches before the
        // failed one are committed.
        if !checked {
            return Err(e);
        }
        let from = numbers.get(done).copied().unwrap_or(0);
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
