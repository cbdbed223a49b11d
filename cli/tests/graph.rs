//! The Graph API (`/v1.0` on each geodird's HTTP address) over plain HTTP, against real
//! servers: status codes, Graph's shapes and errors, paging and queries, sessions. Tokens,
//! tenant isolation and limits are in graph_auth.rs; the official SDK's tests in graph_sdk.rs.
mod util;

use serde_json::{json, Value};

use util::graph::{id_of, token, user_body, Api};
use util::servers::wait_for;
use util::{Cluster, Mode};

/// Every user's UPN in the tenant, following nextLink.
fn all_upns(api: &Api, t: &str, first: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut next = Some(first.to_string());
    while let Some(url) = next {
        let g = api.get(&url, t);
        g.expect(200);
        let v = g.json();
        for u in v["value"].as_array().unwrap() {
            out.push(
                u["userPrincipalName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
        }
        next = v["@odata.nextLink"].as_str().map(str::to_string);
    }
    out
}

#[test]
fn users_are_created_read_updated_deleted_and_restored_with_graphs_status_codes_and_shapes() {
    let c = Cluster::in_mode(Mode::Server);
    let t = token(&c, "contoso", "writer", &[]);
    let api = Api::of(&c, "westus");

    let created = api.post("users", &t, &user_body("ada@contoso.com"));
    created.expect(201);
    let id = id_of(&created);
    let v = created.json();
    assert_eq!(
        v["@odata.context"],
        format!("{}/$metadata#users/$entity", api.base),
        "{v}"
    );
    assert!(
        v.get("passwordProfile").is_none(),
        "a password was kept: {v}"
    );
    assert_eq!(
        created.header("location"),
        Some(format!("{}/users/{id}", api.base).as_str())
    );
    assert!(
        created
            .header("x-geodir-replica-token")
            .is_some_and(|s| s.starts_with("p0:")),
        "{}",
        created.describe()
    );
    assert!(created.header("request-id").is_some());

    // By ID and by UPN (its @ escaped, as SDKs send it).
    for path in [format!("users/{id}"), "users/ada%40contoso.com".to_string()] {
        let g = api.get(&path, &t);
        g.expect(200);
        assert_eq!(g.json()["id"], id.as_str(), "{}", g.describe());
    }
    api.patch(&format!("users/{id}"), &t, &json!({"jobTitle": "Analyst"}))
        .expect(204);
    assert_eq!(
        api.get(&format!("users/{id}"), &t).json()["jobTitle"],
        "Analyst"
    );

    // A UPN taken: 409, nothing written.
    api.post("users", &t, &user_body("ADA@contoso.com"))
        .expect_error(409, "Request_MultipleObjectsWithSameKeyValue");
    let missing = api.get("users/00000000-0000-4000-8000-000000000000", &t);
    missing.expect_error(404, "Request_ResourceNotFound");
    assert_eq!(
        missing.json()["error"]["innerError"]["request-id"].as_str(),
        missing.header("request-id"),
        "{}",
        missing.describe()
    );

    // Delete, then the recycle bin.
    api.delete(&format!("users/{id}"), &t).expect(204);
    api.get(&format!("users/{id}"), &t)
        .expect_error(404, "Request_ResourceNotFound");
    let bin = api.get("directory/deletedItems/microsoft.graph.user", &t);
    bin.expect(200);
    let deleted = bin.json()["value"].as_array().unwrap().clone();
    assert!(
        deleted
            .iter()
            .any(|o| o["id"] == id.as_str() && o["deletedDateTime"].is_string()),
        "{}",
        bin.describe()
    );
    assert_eq!(
        api.get("directory/deletedItems/microsoft.graph.group", &t)
            .json()["value"],
        json!([])
    );
    let one = api.get(&format!("directory/deletedItems/{id}"), &t);
    one.expect(200);
    assert_eq!(one.json()["userPrincipalName"], "ada@contoso.com");

    // The UPN taken meanwhile: restore needs newUserPrincipalName, as Entra's does.
    api.post("users", &t, &user_body("ada@contoso.com"))
        .expect(201);
    api.post(
        &format!("directory/deletedItems/{id}/restore"),
        &t,
        &json!({}),
    )
    .expect_error(409, "Request_MultipleObjectsWithSameKeyValue");
    let restored = api.post(
        &format!("directory/deletedItems/{id}/restore"),
        &t,
        &json!({"newUserPrincipalName": "ada.old@contoso.com"}),
    );
    restored.expect(200);
    assert_eq!(restored.json()["id"], id.as_str());
    assert_eq!(
        api.get(&format!("users/{id}"), &t).json()["userPrincipalName"],
        "ada.old@contoso.com"
    );

    // Purge: gone from the bin for good.
    api.delete(&format!("users/{id}"), &t).expect(204);
    api.delete(&format!("directory/deletedItems/{id}"), &t)
        .expect(204);
    api.get(&format!("directory/deletedItems/{id}"), &t)
        .expect_error(404, "Request_ResourceNotFound");
    api.post(
        &format!("directory/deletedItems/{id}/restore"),
        &t,
        &json!({}),
    )
    .expect(404);

    // Unknown routes and methods.
    api.get("me", &t).expect_error(400, "Request_BadRequest");
    api.call("PUT", "users", Some(&t), Some("{}"), &[])
        .expect(405);

    // Other object types.
    let app_id = "3f2504e0-4f89-41d3-9a0c-0305e82c3301";
    let app = api.post(
        "applications",
        &t,
        &json!({"displayName": "payroll", "appId": app_id}),
    );
    app.expect(201);
    // appId is unique in its tenant (in any case), as Entra's.
    api.post(
        "applications",
        &t,
        &json!({"displayName": "payroll-2", "appId": app_id.to_uppercase()}),
    )
    .expect_error(409, "Request_MultipleObjectsWithSameKeyValue");
    let sp = api.post(
        "servicePrincipals",
        &t,
        &json!({"appId": app_id, "displayName": "payroll"}),
    );
    sp.expect(201);
    let dev = api.post(
        "devices",
        &t,
        &json!({"displayName": "laptop-1", "operatingSystem": "Linux"}),
    );
    dev.expect(201);
    for (coll, n) in [
        ("applications", 1),
        ("servicePrincipals", 1),
        ("devices", 1),
    ] {
        let g = api.get(coll, &t);
        g.expect(200);
        assert_eq!(
            g.json()["value"].as_array().unwrap().len(),
            n,
            "{}",
            g.describe()
        );
    }
}

#[test]
fn lists_page_with_next_links_and_take_filter_select_and_count() {
    let c = Cluster::in_mode(Mode::Server);
    let t = token(&c, "contoso", "writer", &[]);
    let api = Api::of(&c, "eastus");
    let mut upns: Vec<String> = (0..7).map(|i| format!("user{i}@contoso.com")).collect();
    for (i, u) in upns.iter().enumerate() {
        let mut b = user_body(u);
        b["accountEnabled"] = Value::Bool(i % 2 == 0);
        api.post("users", &t, &b).expect(201);
    }
    let mut got = all_upns(&api, &t, "users?$top=3");
    got.sort();
    upns.sort();
    assert_eq!(got, upns, "paging gave every user once");

    let g = api.get("users?$filter=startsWith(userPrincipalName,'USER1')", &t);
    g.expect(200);
    assert_eq!(
        g.json()["value"].as_array().unwrap().len(),
        1,
        "{}",
        g.describe()
    );
    let g = api.get("users?$filter=accountEnabled%20eq%20false%20and%20displayName%20in%20('user1@contoso.com','user2@contoso.com')", &t);
    assert_eq!(
        g.json()["value"].as_array().unwrap().len(),
        1,
        "{}",
        g.describe()
    );
    let g = api.get("users?$select=displayName&$top=2", &t);
    g.expect(200);
    for u in g.json()["value"].as_array().unwrap() {
        let keys: Vec<&String> = u.as_object().unwrap().keys().collect();
        assert_eq!(keys, vec!["@odata.type", "displayName"], "{}", g.describe());
    }
    // The nextLink keeps the query.
    let next = g.json()["@odata.nextLink"].as_str().unwrap().to_string();
    assert!(
        next.contains("%24select=displayName") && next.contains("%24top=2"),
        "{next}"
    );

    api.get("users?$count=true", &t)
        .expect_error(400, "Request_BadRequest");
    let counted = api.call(
        "GET",
        "users?$count=true&$top=2&$filter=accountEnabled eq true"
            .replace(' ', "%20")
            .as_str(),
        Some(&t),
        None,
        &[("ConsistencyLevel", "eventual")],
    );
    counted.expect(200);
    assert_eq!(counted.json()["@odata.count"], 4, "{}", counted.describe());
    assert_eq!(counted.json()["value"].as_array().unwrap().len(), 2);
}

#[test]
fn group_members_are_added_listed_and_removed_and_member_of_is_direct_or_transitive() {
    let c = Cluster::in_mode(Mode::Server);
    let t = token(&c, "contoso", "writer", &[]);
    let api = Api::of(&c, "westus");
    let u = id_of(&api.post("users", &t, &user_body("m@contoso.com")));
    let group = |name: &str| {
        let g = api.post("groups", &t, &json!({"displayName": name, "mailEnabled": false, "mailNickname": name, "securityEnabled": true}));
        g.expect(201);
        id_of(&g)
    };
    let (inner, outer) = (group("inner"), group("outer"));
    let add = |g: &str, m: &str| {
        api.post(
            &format!("groups/{g}/members/$ref"),
            &t,
            &json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{m}")}),
        )
    };
    add(&inner, &u).expect(204);
    add(&outer, &inner).expect(204);
    add(&inner, &u).expect(409);
    api.post(
        &format!("groups/{inner}/members/$ref"),
        &t,
        &json!({"x": 1}),
    )
    .expect_error(400, "Request_BadRequest");
    let members = api.get(&format!("groups/{inner}/members"), &t);
    members.expect(200);
    let v = members.json();
    assert_eq!(v["value"][0]["id"], u.as_str(), "{v}");
    assert_eq!(v["value"][0]["@odata.type"], "#microsoft.graph.user", "{v}");
    let names = |path: &str| -> Vec<String> {
        let g = api.get(path, &t);
        g.expect(200);
        let mut n: Vec<String> = g.json()["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["displayName"].as_str().unwrap().to_string())
            .collect();
        n.sort();
        n
    };
    assert_eq!(names(&format!("users/{u}/memberOf")), vec!["inner"]);
    assert_eq!(
        names(&format!("users/{u}/transitiveMemberOf")),
        vec!["inner", "outer"]
    );
    api.delete(&format!("groups/{inner}/members/{u}/$ref"), &t)
        .expect(204);
    api.delete(&format!("groups/{inner}/members/{u}/$ref"), &t)
        .expect(404);
    assert!(names(&format!("users/{u}/transitiveMemberOf")).is_empty());
}

#[test]
fn bad_input_gets_400_in_graphs_shape_and_writes_nothing() {
    let c = Cluster::in_mode(Mode::Server);
    let t = token(&c, "contoso", "writer", &[]);
    let api = Api::of(&c, "westus");
    let id = id_of(&api.post("users", &t, &user_body("x@contoso.com")));
    wait_for("westus level", std::time::Duration::from_secs(10), || {
        (c.lsn(0, "westus").is_some(), ())
    });
    let before = c.lsn(0, "westus");
    let big = format!("{{\"displayName\": \"{}\"}}", "a".repeat(2 * 1024 * 1024));
    let cases: Vec<(&str, String, Option<String>)> = vec![
        ("POST", "users".into(), Some("{not json".into())),
        ("POST", "users".into(), Some("[1,2]".into())),
        ("POST", "users".into(), Some(r#"{"userPrincipalName":"y@contoso.com","displayName":"y","shoeSize":44}"#.into())),
        ("POST", "users".into(), Some(r#"{"userPrincipalName":"y@contoso.com","displayName":"y","createdDateTime":"2020-01-01T00:00:00Z"}"#.into())),
        ("POST", "users".into(), Some(r#"{"userPrincipalName":"not-an-upn","displayName":"y"}"#.into())),
        ("POST", "users".into(), Some(r#"{"displayName":"no upn"}"#.into())),
        ("PATCH", format!("users/{id}"), Some(r#"{"id":"00000000-0000-4000-8000-000000000000"}"#.into())),
        ("PATCH", format!("users/{id}"), Some(r#"{"accountEnabled":"yes"}"#.into())),
        ("PATCH", format!("users/{id}"), Some("{\"displayName\":\"a\u{202e}b\"}".into())),
        ("POST", "users".into(), Some(big)),
        ("GET", "users?$top=1000".into(), None),
        ("GET", "users?$top=99999999999999999999".into(), None),
        ("GET", "users?$filter=displayName%20eq".into(), None),
        ("GET", "users?$filter=displayName%20eq%20'x'%20or%201%20eq%201".into(), None),
        ("GET", "users?$filter=displayName%20eq%20'x';%20DROP%20TABLE%20users".into(), None),
        ("GET", "users?$filter=shoeSize%20eq%20'x'".into(), None),
        ("GET", "users?$orderby=displayName".into(), None),
        ("GET", "users?$skiptoken=../../etc".into(), None),
        ("GET", "users?$select=password".into(), None),
    ];
    for (method, path, body) in &cases {
        let g = api.call(method, path, Some(&t), body.as_deref(), &[]);
        g.expect(400);
        assert!(
            matches!(
                g.json()["error"]["code"].as_str(),
                Some("Request_BadRequest" | "Request_UnsupportedQuery")
            ),
            "{}",
            g.describe()
        );
    }
    assert_eq!(
        c.lsn(0, "westus"),
        before,
        "a refused request wrote to the log"
    );
    let all = api.get("users", &t);
    assert_eq!(
        all.json()["value"].as_array().unwrap().len(),
        1,
        "{}",
        all.describe()
    );
    assert_eq!(
        api.get(&format!("users/{id}"), &t).json()["displayName"],
        "x@contoso.com"
    );
}
#[test]
fn a_session_header_gives_read_your_writes_at_another_datacenter() {
    let c = Cluster::in_mode(Mode::Server);
    let t = token(&c, "contoso", "writer", &[]);
    let west = Api::of(&c, "westus");
    let europe = Api::of(&c, "westeurope");
    for i in 0..5 {
        let w = west.post("users", &t, &user_body(&format!("s{i}@contoso.com")));
        w.expect(201);
        let session = w.header("x-geodir-replica-token").unwrap().to_string();
        let id = id_of(&w);
        // A 503 says to try again after Retry-After (as Graph clients do): the replica could
        // not pull up to the token at that moment. Never a stale read, never a 404.
        let r = wait_for(
            "the read with the session's token",
            std::time::Duration::from_secs(10),
            || {
                let r = europe.call(
                    "GET",
                    &format!("users/{id}"),
                    Some(&t),
                    None,
                    &[("x-geodir-replica-token", &session)],
                );
                assert!(
                    matches!(r.status, 200 | 503),
                    "{}\n{}",
                    r.describe(),
                    c.server_logs()
                );
                (r.status == 200, r)
            },
        );
        r.expect(200);
        let back = r.header("x-geodir-replica-token").unwrap();
        assert!(
            back.ends_with("@westeurope") || back == session,
            "{}",
            r.describe()
        );
    }
    // A token beyond anything the partition held is refused, not waited on forever.
    let r = europe.call(
        "GET",
        "users",
        Some(&t),
        None,
        &[("x-geodir-replica-token", "p0:t99:l99999@westus")],
    );
    r.expect_error(400, "Request_BadRequest");
    europe
        .call(
            "GET",
            "users",
            Some(&t),
            None,
            &[("x-geodir-replica-token", "garbage")],
        )
        .expect_error(400, "Request_BadRequest");
}

#[test]
fn a_write_that_cannot_be_made_geo_durable_gets_503_with_retry_after_and_nothing_applied() {
    let c = Cluster::in_mode(Mode::Server);
    let t = token(&c, "contoso", "writer", &[]);
    let api = Api::of(&c, "westus");
    api.post("users", &t, &user_body("before@contoso.com"))
        .expect(201);
    c.take_down("eastus");
    c.take_down("westeurope");
    let g = api.post("users", &t, &user_body("lost@contoso.com"));
    g.expect_error(503, "serviceNotAvailable");
    assert!(g.header("retry-after").is_some(), "{}", g.describe());
    // Reads go on at the primary; the refused write is nowhere.
    let all = api.get("users", &t);
    all.expect(200);
    assert!(!all.text.contains("lost@contoso.com"), "{}", all.describe());
    c.bring_back("eastus");
    api.get("users/lost%40contoso.com", &t).expect(404);
}
