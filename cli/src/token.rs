//! `dirctl token issue`: a bearer token for the Graph API, signed with the cluster's key.
//! The key is a secret of the control plane, made by the first issue; it is never printed.

use anyhow::Result;
use serde_json::json;

use server::graph::token::{self, Keys, Role};

use crate::context::{actor, cluster_root, control_plane, Ctx};
use crate::opt::{Global, TokenCmd, TokenRole};
use crate::output;

pub fn run(g: &Global, c: TokenCmd) -> Result<()> {
    let TokenCmd::Issue {
        tenant,
        role,
        ttl,
        subject,
    } = c;
    let ttl_secs = parse_ttl(&ttl)?;
    let subject = match subject {
        Some(s) => s,
        None => actor(g)?,
    };
    if subject.is_empty()
        || subject.chars().count() > 256
        || subject.chars().any(engine::directory::is_unsafe_char)
    {
        return Err(engine::Error::Invalid(
            "--subject must be 1 to 256 characters, none of them a control character".into(),
        )
        .into());
    }
    let root = cluster_root(g).unwrap_or_default();
    if g.control_plane.is_none() && g.cluster.is_none() {
        return Err(engine::Error::Invalid(
            "token issue needs the control plane, which holds the signing key: pass --cluster DIR or --control-plane etcd://..."
                .into(),
        )
        .into());
    }
    let cp = control_plane(g, &root)?;
    let topology = cp.load()?;
    let partition = topology.tenant(&tenant)?.partition;
    // On a cluster with operators, only the tenant's admin (or an elevated operator) issues.
    if !topology.operators.is_empty() {
        Ctx::open(g)?.require(
            &engine::operators::Need::Write {
                tenant: tenant.clone(),
            },
            &format!("token issue for tenant {tenant}"),
        )?;
    }
    let seed = cp.secret_or_create(token::SECRET, &mut token::generate_seed)?;
    let keys = Keys::from_seed(&seed, &topology.cluster_id)?;
    let role = match role {
        TokenRole::Reader => Role::Reader,
        TokenRole::Writer => Role::Writer,
    };
    // DIRCTL_NOW, like every dirctl clock (a test issues a token that has expired).
    let now = crate::context::clock()?.now().timestamp();
    let jwt = keys.issue(&tenant, role, &subject, ttl_secs, now)?;
    let expires = chrono::DateTime::from_timestamp(now + ttl_secs, 0)
        .map(|t| t.to_rfc3339())
        .unwrap_or_default();
    // Issued tokens are audited (which tenant, role, for whom, until when), never the token.
    // While servers serve the cluster (their addresses recorded), the record goes through
    // them: their replicas are theirs alone.
    let mut through = g.clone();
    if through.endpoints.is_none() {
        let recorded: Vec<String> = topology
            .datacenters
            .iter()
            .filter_map(|d| d.endpoint.clone())
            .collect();
        if !recorded.is_empty() {
            through.endpoints = Some(recorded.join(","));
        }
    }
    let opened = Ctx::open(&through).or_else(|e| match through.endpoints == g.endpoints {
        true => Err(e),
        false => Ctx::open(g),
    });
    let audited = opened.map(|mut ctx| {
        ctx.audit_outcome(
            partition,
            "token.issue",
            vec![tenant.clone(), format!("token:{subject}")],
            &format!("ok: role {role:?}, expires {expires}").to_lowercase(),
        )
    });
    if let Err(e) = audited {
        eprintln!("warning: the issue of this token is not in the audit trail: {e:#}");
    }
    output::emit(
        g.output,
        &json!({"token": jwt, "tenant": tenant, "role": role, "subject": subject, "expiresAt": expires}),
        || format!("{jwt}\n"),
    )
}

/// `90s`, `30m`, `1h`, `7d` (a bare number is seconds) to seconds.
fn parse_ttl(s: &str) -> Result<i64> {
    let secs = parse_duration("--ttl", s)?;
    if !(1..=token::MAX_TTL_SECS).contains(&secs) {
        return Err(engine::Error::Invalid(format!("--ttl {s}: from 1 second to 30 days")).into());
    }
    Ok(secs)
}

/// A duration given as a number with s, m, h or d, in seconds.
pub fn parse_duration(flag: &str, s: &str) -> Result<i64> {
    let bad = || {
        engine::Error::Invalid(format!(
            "{flag} {s:?}: a number with s, m, h or d (90s, 30m, 1h, 7d)"
        ))
    };
    let (n, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 's'),
    };
    let n: i64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        's' => n,
        'm' => n.saturating_mul(60),
        'h' => n.saturating_mul(3600),
        'd' => n.saturating_mul(86400),
        _ => return Err(bad().into()),
    };
    Ok(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_in_each_unit_and_the_bad_ones() {
        for (s, want) in [
            ("90s", 90),
            ("30m", 1800),
            ("1h", 3600),
            ("7d", 604800),
            ("120", 120),
        ] {
            assert_eq!(parse_ttl(s).ok(), Some(want), "{s}");
        }
        for s in [
            "",
            "h",
            "1w",
            "-1h",
            "0s",
            "31d",
            "1.5h",
            "99999999999999999999d",
        ] {
            assert!(parse_ttl(s).is_err(), "{s}");
        }
    }
}
