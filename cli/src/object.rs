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
    let mut given: Vec<(String, String)> = m.keys().map(|k| (k.clone(), "--json".into())).collect();
    let named = [
        ("userPrincipalName", "--upn", f.upn),
        ("displayName", "--display-name", f.display_name),
        ("mail", "--mail", f.mail),
        ("appId", "--app-id", f.app_id),
    ];
    for (k, flag, v) in named {
        if let Some(v) = v {
            merge(&mut m, &mut given, k, Value::from(v), flag)?;
        }
    }
    for s in f.set {
        let (k, v) = s
            .split_once('=')
            .ok_or_else(|| Error::Invalid(format!("--set {s:?} is not FIELD=VALUE")))?;
        let v = serde_json::from_str(v).unwrap_or_else(|_| Value::from(v));
        merge(&mut m, &mut given, k, v, "--set")?;
    }
    if ty != ObjectType::User && m.contains_key("userPrincipalName") {
        return Err(Error::Invalid(format!("a {} has no userPrincipalName", ty.noun())).into());
    }
    Ok(m)
}

/// Adds field `key` given by `from` (a flag) to the fields `m` (`given` says where each came
/// from): one field given twice with different values (`--json` and `--upn`, say) is
/// refused, never silently overridden.
fn merge(
    m: &mut Map<String, Value>,
    given: &mut Vec<(String, String)>,
    key: &str,
    value: Value,
    from: &str,
) -> Result<(), Error> {
    if let Some(old) = m.get(key).filter(|old| **old != value) {
        let by = given
            .iter()
            .find(|(k, _)| k == key)
            .map_or("", |(_, f)| f.as_str());
        return Err(Error::Invalid(format!(
            "{key} is given twice with different values: {old} by {by}, {value} by {from}"
        )));
    }
    m.insert(key.to_string(), value);
    given.push((key.to_string(), from.to_string()));
    Ok(())
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
            let what = format!("create {} in tenant {tenant}", ty.noun());
            let r = ctx.request(
                what,
                Request::CreateObject {
                    tenant,
                    object_type,
                    fields,
                },
            )?;
            written(out, r)
        }
        GroupVerb::Object(ObjectVerb::Update { id, fields }) => {
            let patch = fields_of(ty, fields)?;
            let r = ctx.request(
                format!("update {} {id}", ty.noun()),
                Request::UpdateObject {
                    tenant,
                    object_type,
                    id,
                    patch,
                },
            )?;
            written(out, r)
        }
        GroupVerb::Object(ObjectVerb::Delete { id }) => {
            let what = format!("delete {} {id}", ty.noun());
            let req = Request::DeleteObject {
                tenant,
                object_type,
                id,
            };
            written(out, ctx.request(what, req)?)
        }
        GroupVerb::Object(ObjectVerb::Get { id }) => get(&mut ctx, out, tenant, ty, id),
        GroupVerb::Object(ObjectVerb::List) => {
            let what = format!("list {}s", ty.noun());
            let req = Request::ListObjects {
                tenant,
                object_type,
            };
            objects(out, list_columns(ty), ctx.request(what, req)?)
        }
        GroupVerb::Members { group } => {
            let what = format!("members of group {group}");
            let r = ctx.request(what, Request::ListMembers { tenant, group })?;
            objects(
                out,
                &["id", "@odata.type", "displayName", "userPrincipalName"],
                r,
            )
        }
        GroupVerb::AddMember { group, member } => {
            membership(&mut ctx, out, true, tenant, group, member)
        }
        GroupVerb::RemoveMember { group, member } => {
            membership(&mut ctx, out, false, tenant, group, member)
        }
    }
}

/// `get`: the object as Graph returns it, with the replica that served it.
fn get(ctx: &mut Ctx, out: Output, tenant: String, ty: ObjectType, id: String) -> Result<()> {
    let what = format!("get {} {id}", ty.noun());
    let req = Request::GetObject {
        tenant,
        object_type: ty,
        id,
    };
    let r = ctx.request(what, req)?;
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

/// `add-member` (`add`) or `remove-member`: one membership change, written.
fn membership(
    ctx: &mut Ctx,
    out: Output,
    add: bool,
    tenant: String,
    group: String,
    member: String,
) -> Result<()> {
    let (verb, what, preposition) = if add {
        ("add", "added", "to")
    } else {
        ("remove", "removed", "from")
    };
    let context = format!("{verb} {member} {preposition} group {group}");
    let (g, m) = (group.clone(), member.clone());
    let req = if add {
        Request::AddMember {
            tenant,
            group,
            member,
        }
    } else {
        Request::RemoveMember {
            tenant,
            group,
            member,
        }
    };
    let token = reply::token(ctx.request(context, req)?.token)?;
    output::emit(
        out,
        &json!({"group": g, "member": m, "change": what, "replicaToken": token}),
        || format!("{what} {m} {preposition} group {g}\nreplicaToken  {token}\n"),
    )
}

/// A list of objects, with the replica that served it.
fn objects(out: Output, cols: &[&str], r: Response) -> Result<()> {
    let (objs, served) = (reply::objects(r.reply)?, reply::served_by(r.served_by)?);
    output::emit(out, &json!({"objects": objs, "servedBy": served}), || {
        output::objects_table(cols, &objs)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_given_twice_merges_only_when_both_values_agree() {
        let mut m = Map::new();
        let mut given = Vec::new();
        merge(&mut m, &mut given, "userPrincipalName", json!(5), "--json").expect("first");
        let e = merge(
            &mut m,
            &mut given,
            "userPrincipalName",
            json!("a@b.com"),
            "--upn",
        );
        assert!(
            matches!(&e, Err(Error::Invalid(msg)) if msg.contains("userPrincipalName") && msg.contains("--json") && msg.contains("--upn")),
            "{e:?}"
        );
        merge(&mut m, &mut given, "displayName", json!("x"), "--set").expect("new field");
        merge(
            &mut m,
            &mut given,
            "displayName",
            json!("x"),
            "--display-name",
        )
        .expect("same value");
        assert_eq!(m["userPrincipalName"], json!(5));
        assert_eq!(m["displayName"], json!("x"));
    }
}
