//! The Graph API's tokens, tenant isolation and limits over plain HTTP, against real
//! servers (the routes and shapes are in graph.rs).
mod util;

use serde_json::json;

use util::graph::{id_of, token, user_body, Api};
use util::{Cluster, Mode};

/// A token whose header says `alg: none`, over a real token's claims, unsigned.
fn alg_none(real: &str) -> String {
    use base64::Engine as _;
    let header =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    format!("{header}.{}.", real.split('.').nth(1).unwrap())
}

#[test]
fn expired_malformed_forged_and_unsigned_tokens_get_401_and_a_reader_cannot_write() {
    let c = Cluster::in_mode(Mode::Server);
    let api = Api::of(&c, "westus");
    // Before any token was issued: the cluster has no key, and says how to make one.
    let g = api.get("users", "abc");
    g.expect_error(401, "InvalidAuthenticationToken");
    let writer = token(&c, "contoso", "writer", &[]);
    let reader = token(&c, "contoso", "reader", &["--ttl", "10m"]);
    api.post("users", &writer, &user_body("w@contoso.com"))
        .expect(201);

    let mut expired_cmd = c
        .command(&[
            "--cluster",
            &c.root.display().to_string(),
            "token",
            "issue",
            "--tenant",
            "contoso",
            "--role",
            "writer",
            "--ttl",
            "1h",
        ])
        .0;
    let out = expired_cmd
        .env("DIRCTL_NOW", "2020-01-01T00:00:00Z")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let expired = String::from_utf8_lossy(&out.stdout).trim().to_string();

    // Another cluster's token, for a tenant of the same name.
    let other = Cluster::new();
    let foreign = token(&other, "contoso", "writer", &[]);

    let mut sig_changed = writer.clone();
    let last = sig_changed.pop().unwrap();
    sig_changed.push(if last == 'A' { 'B' } else { 'A' });
    let mut claims_changed: Vec<String> = writer.split('.').map(str::to_string).collect();
    claims_changed[1] = reader.split('.').nth(1).unwrap().to_string();
    let claims_changed = claims_changed.join(".");
    let hs256 = {
        use base64::Engine as _;
        let h = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        format!(
            "{h}.{}.{}",
            writer.split('.').nth(1).unwrap(),
            writer.split('.').nth(2).unwrap()
        )
    };
    // Issuing is audited: the log is measured once every token is issued.
    let before = c.lsn(0, "westus");
    let bad = [
        ("expired", expired),
        ("malformed", "not.a.jwt".to_string()),
        ("empty", String::new()),
        ("signature changed", sig_changed),
        ("claims swapped", claims_changed),
        ("another cluster's", foreign),
        ("alg none", alg_none(&writer)),
        ("HS256 header", hs256),
    ];
    for (what, tok) in &bad {
        for (method, path, body) in [
            ("GET", "users", None),
            (
                "POST",
                "users",
                Some(user_body("z@contoso.com").to_string()),
            ),
        ] {
            let g = api.call(method, path, Some(tok), body.as_deref(), &[]);
            assert_eq!(g.status, 401, "{what} token\n{}", g.describe());
            g.expect_error(401, "InvalidAuthenticationToken");
        }
    }
    api.call("GET", "users", None, None, &[])
        .expect_error(401, "InvalidAuthenticationToken");
    api.call(
        "GET",
        "users",
        None,
        None,
        &[("Authorization", "Basic dXNlcjpwYXNz")],
    )
    .expect_error(401, "InvalidAuthenticationToken");

    // A reader reads, and may not write anything.
    api.get("users", &reader).expect(200);
    let uid = id_of(&api.get("users/w%40contoso.com", &reader));
    for (method, path, body) in [
        (
            "POST",
            "users".to_string(),
            Some(user_body("r@contoso.com").to_string()),
        ),
        (
            "PATCH",
            format!("users/{uid}"),
            Some(r#"{"jobTitle":"x"}"#.to_string()),
        ),
        ("DELETE", format!("users/{uid}"), None),
        (
            "POST",
            "groups".to_string(),
            Some(r#"{"displayName":"g"}"#.to_string()),
        ),
    ] {
        api.call(method, &path, Some(&reader), body.as_deref(), &[])
            .expect_error(403, "Authorization_RequestDenied");
    }
    assert_eq!(
        c.lsn(0, "westus"),
        before,
        "a refused token's request wrote to the log"
    );
}

#[test]
fn a_token_of_one_tenant_reaches_no_object_of_another_on_any_route() {
    let c = Cluster::in_mode(Mode::Server);
    c.ok(&["tenant", "create", "fabrikam", "--partition", "0"]);
    let a = token(&c, "contoso", "writer", &[]);
    let b = token(&c, "fabrikam", "writer", &[]);
    let api = Api::of(&c, "westus");
    let bu = id_of(&api.post("users", &b, &user_body("victim@fabrikam.com")));
    let bg = id_of(&api.post("groups", &b, &json!({"displayName": "fab-admins"})));
    let bd = id_of(&api.post("users", &b, &user_body("gone@fabrikam.com")));
    api.delete(&format!("users/{bd}"), &b).expect(204);
    let au = id_of(&api.post("users", &a, &user_body("mallory@contoso.com")));
    let member_body =
        json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{au}")})
            .to_string();
    let routes: Vec<(&str, String, Option<String>)> = vec![
        ("GET", format!("users/{bu}"), None),
        ("GET", "users/victim%40fabrikam.com".into(), None),
        (
            "PATCH",
            format!("users/{bu}"),
            Some(r#"{"jobTitle":"pwned"}"#.into()),
        ),
        ("DELETE", format!("users/{bu}"), None),
        ("GET", format!("users/{bu}/memberOf"), None),
        ("GET", format!("users/{bu}/transitiveMemberOf"), None),
        ("GET", format!("groups/{bg}"), None),
        ("GET", format!("groups/{bg}/members"), None),
        (
            "POST",
            format!("groups/{bg}/members/$ref"),
            Some(member_body),
        ),
        ("DELETE", format!("groups/{bg}/members/{bu}/$ref"), None),
        (
            "PATCH",
            format!("groups/{bg}"),
            Some(r#"{"description":"x"}"#.into()),
        ),
        ("DELETE", format!("groups/{bg}"), None),
        ("GET", format!("directory/deletedItems/{bd}"), None),
        (
            "POST",
            format!("directory/deletedItems/{bd}/restore"),
            Some("{}".into()),
        ),
        ("DELETE", format!("directory/deletedItems/{bd}"), None),
    ];
    for (method, path, body) in &routes {
        let g = api.call(method, path, Some(&a), body.as_deref(), &[]);
        assert!(
            matches!(g.status, 403 | 404),
            "tenant A reached B's object\n{}",
            g.describe()
        );
        g.expect(g.status);
    }
    // A's lists hold none of B's objects.
    for path in [
        "users",
        "groups",
        "directory/deletedItems/microsoft.graph.user",
        "directory/deletedItems",
    ] {
        let g = api.get(path, &a);
        g.expect(200);
        assert!(!g.text.contains("fabrikam"), "{}", g.describe());
    }
    // Refused writes leave only their failure's audit record (every operation is
    // audited): B's objects are as they were.
    let v = api.get(&format!("users/{bu}"), &b).json();
    assert!(v.get("jobTitle").is_none(), "{v}");
    assert_eq!(
        api.get(&format!("groups/{bg}/members"), &b).json()["value"],
        json!([])
    );
    // No token is issued for a tenant that does not exist.
    let root = c.root.display().to_string();
    c.fails(
        &[
            "--cluster",
            &root,
            "token",
            "issue",
            "--tenant",
            "nosuch",
            "--role",
            "reader",
        ],
        3,
    );
}

#[test]
fn past_a_tokens_request_rate_requests_get_429_with_retry_after() {
    let mut c = Cluster::new();
    let s = util::servers::Servers::start(
        &c.root,
        &["westus", "eastus", "westeurope"],
        &[
            "--graph-rate-per-token",
            "2",
            "--graph-burst-per-token",
            "3",
            "--graph-max-body-bytes",
            "4096",
        ],
    );
    c.servers = Some(std::sync::Mutex::new(s));
    let t = token(&c, "contoso", "reader", &[]);
    let api = Api::of(&c, "westus");
    let codes: Vec<u16> = (0..10).map(|_| api.get("users", &t).status).collect();
    assert!(codes[..3].iter().all(|s| *s == 200), "{codes:?}");
    let throttled = api.get("users", &t);
    throttled.expect_error(429, "TooManyRequests");
    assert!(
        throttled.header("retry-after").is_some(),
        "{}",
        throttled.describe()
    );
    // Another token has its own budget.
    let other = token(&c, "contoso", "writer", &[]);
    api.get("users", &other).expect(200);
    // The configured body limit.
    let body = format!("{{\"displayName\": \"{}\"}}", "a".repeat(5000));
    api.call("POST", "groups", Some(&other), Some(&body), &[])
        .expect_error(400, "Request_BadRequest");
}
