//! The directory's objects and their keys: tenants, users, groups, applications,
//! service principals and devices, with Microsoft Graph's field names.
//!
//! Key layout in the data column family (big-endian, fixed width where it matters):
//!
//! ```text
//! 0x01 | tenant(16) | id(16)              -> object JSON          (live objects)
//! 0x02 | tenant(16) | lowercase UPN bytes -> user id(16)          (UPN uniqueness)
//! 0x03 | tenant(16) | group(16) | member(16) -> member's type     (members)
//! 0x04 | tenant(16) | member(16) | group(16) -> empty             (memberOf)
//! 0x05 | tenant(16)                       -> tenant JSON
//! 0x06 | tenant(16) | id(16)              -> tombstone JSON       (recycle bin)
//! 0x07 | tenant(16) | principal(16) | resource -> {action: grant JSON} (access)
//! 0x08 | seq(8)                           -> audit record JSON    (audit, per partition)
//! 0x09                                    -> seq(8) | sha256(32)  (audit chain head)
//! 0x0a | tenant(16) | lowercase appId    -> application id(16)   (appId uniqueness)
//! ```
//!
//! The modules: `store` (what a partition's data is read through), `txn` (changes staged
//! into one log entry), `keys` (the layout above), `schema` (object types, Graph's field
//! names and their checks), `objects` (create, get, list, update, delete, members, tenants).

mod keys;
mod objects;
mod schema;
mod store;
mod txn;

pub use keys::*;
pub use objects::*;
pub use schema::*;
pub use store::*;
pub use txn::*;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::error::Result;
    use serde_json::{Map, Value};

    struct Empty;
    impl Store for Empty {
        fn get(&self, _: &[u8]) -> Result<Option<Vec<u8>>> {
            Ok(None)
        }
        fn scan_prefix(&self, _: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
            Ok(Vec::new())
        }
    }

    const T: &str = "6f1d2a4e-0000-4000-8000-000000000001";

    fn user(upn: &str) -> Map<String, Value> {
        serde_json::json!({"userPrincipalName": upn, "displayName": upn})
            .as_object()
            .cloned()
            .unwrap_or_default()
    }

    #[test]
    fn duplicate_upn_in_one_transaction_conflicts_case_insensitively() {
        let mut t = Txn::new(&Empty);
        create(&mut t, T, ObjectType::User, user("ada@contoso.com"), "now").expect("first");
        assert!(matches!(
            create(&mut t, T, ObjectType::User, user("ADA@contoso.com"), "now"),
            Err(Error::Conflict(_))
        ));
    }

    fn app(app_id: &str) -> Map<String, Value> {
        serde_json::json!({"displayName": "payroll", "appId": app_id})
            .as_object()
            .cloned()
            .unwrap_or_default()
    }

    #[test]
    fn an_app_id_is_unique_in_its_tenant_until_its_application_is_deleted() {
        const OTHER: &str = "6f1d2a4e-0000-4000-8000-000000000002";
        const A: &str = "3f2504e0-4f89-41d3-9a0c-0305e82c3301";
        let mut t = Txn::new(&Empty);
        let first = create(&mut t, T, ObjectType::Application, app(A), "now").expect("first");
        let taken = create(
            &mut t,
            T,
            ObjectType::Application,
            app(&A.to_uppercase()),
            "now",
        );
        assert!(
            matches!(&taken, Err(Error::Conflict(m)) if m.contains("appId") && m.contains(first["id"].as_str().unwrap_or("?"))),
            "{taken:?}"
        );
        create(&mut t, OTHER, ObjectType::Application, app(A), "now")
            .expect("the same appId in another tenant");
        // A service principal names its application's appId: not a claim of its own.
        let sp = serde_json::json!({"appId": A})
            .as_object()
            .cloned()
            .unwrap_or_default();
        create(&mut t, T, ObjectType::ServicePrincipal, sp, "now").expect("service principal");
        // Changing the appId moves the claim; deleting the application frees it.
        let second = create(
            &mut t,
            T,
            ObjectType::Application,
            app("3f2504e0-4f89-41d3-9a0c-0305e82c3302"),
            "now",
        )
        .expect("another appId");
        let id2 = second["id"].as_str().unwrap_or("?").to_string();
        let mut patch = Map::new();
        patch.insert("appId".into(), Value::from(A));
        assert!(matches!(
            update(&mut t, T, ObjectType::Application, &id2, patch),
            Err(Error::Conflict(_))
        ));
        delete(
            &mut t,
            T,
            ObjectType::Application,
            first["id"].as_str().unwrap_or("?"),
            "now",
        )
        .expect("delete");
        let mut patch = Map::new();
        patch.insert("appId".into(), Value::from(A));
        update(&mut t, T, ObjectType::Application, &id2, patch).expect("the freed appId");
        create(
            &mut t,
            T,
            ObjectType::Application,
            app("3f2504e0-4f89-41d3-9a0c-0305e82c3302"),
            "now",
        )
        .expect("the appId given up by the update");
        // An appId removed (it is optional) claims nothing; the application stays usable.
        let mut patch = Map::new();
        patch.insert("appId".into(), Value::Null);
        update(&mut t, T, ObjectType::Application, &id2, patch).expect("appId removed");
        create(&mut t, T, ObjectType::Application, app(A), "now").expect("the appId given up");
        delete(&mut t, T, ObjectType::Application, &id2, "now").expect("delete without appId");
    }

    #[test]
    fn malformed_upns_long_strings_and_control_characters_are_invalid() {
        let mut t = Txn::new(&Empty);
        let long_alias = format!("{}@contoso.com", "a".repeat(65));
        for upn in [
            "a@@b.com",
            "a@b.c@d.com",
            ".dot@c.com",
            "dot.@c.com",
            "a..b@c.com",
            "x@.c.com",
            "x@c..com",
            "x@com",
            "x y@c.com",
            long_alias.as_str(),
        ] {
            assert!(
                matches!(
                    create(&mut t, T, ObjectType::User, user(upn), "now"),
                    Err(Error::Invalid(_))
                ),
                "{upn} was accepted"
            );
        }
        create(
            &mut t,
            T,
            ObjectType::User,
            user("first.last@sub.contoso.com"),
            "now",
        )
        .expect("a plain UPN");
        let mut app = Map::new();
        app.insert("displayName".into(), Value::from("app"));
        app.insert("appId".into(), Value::from("not-a-guid"));
        assert!(
            matches!(create(&mut t, T, ObjectType::Application, app, "now"), Err(Error::Invalid(m)) if m.contains("not a GUID"))
        );
        let mut u = user("long@contoso.com");
        u.insert("displayName".into(), Value::from("W".repeat(1025)));
        assert!(
            matches!(create(&mut t, T, ObjectType::User, u, "now"), Err(Error::Invalid(m)) if m.contains("at most 1024"))
        );
        let mut u = user("rtl@contoso.com");
        u.insert("displayName".into(), Value::from("abc\u{202e}fdp.exe"));
        assert!(
            matches!(create(&mut t, T, ObjectType::User, u, "now"), Err(Error::Invalid(m)) if m.contains("text-direction"))
        );
        let mut u = user("eve@contoso.com");
        u.insert(
            "displayName".into(),
            Value::from("Eve\n0000  ceo@contoso.com"),
        );
        assert!(
            matches!(create(&mut t, T, ObjectType::User, u, "now"), Err(Error::Invalid(m)) if m.contains("control character"))
        );
    }

    #[test]
    fn unknown_fields_and_missing_required_fields_are_invalid() {
        let mut t = Txn::new(&Empty);
        let mut u = user("a@b.com");
        u.insert("shoeSize".into(), Value::from(42));
        assert!(
            matches!(create(&mut t, T, ObjectType::User, u, "now"), Err(Error::Invalid(m)) if m.contains("shoeSize"))
        );
        let mut u = user("a@b.com");
        u.remove("displayName");
        assert!(
            matches!(create(&mut t, T, ObjectType::User, u, "now"), Err(Error::Invalid(m)) if m.contains("displayName"))
        );
        assert_eq!(t.op_count(), 0);
    }

    /// A user in group `inner`, itself in `outer`, which holds `inner` back (a cycle):
    /// memberOf names `inner` only; transitively both, each once, nearest first.
    #[test]
    fn member_of_directly_and_transitively_through_a_cycle() {
        let mut t = Txn::new(&Empty);
        let group = |t: &mut Txn, name: &str| {
            let g = serde_json::json!({ "displayName": name });
            let g = create(
                t,
                T,
                ObjectType::Group,
                g.as_object().cloned().unwrap_or_default(),
                "now",
            );
            g.expect("group")["id"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        };
        let u = create(&mut t, T, ObjectType::User, user("a@b.com"), "now").expect("user");
        let uid = u["id"].as_str().unwrap_or_default().to_string();
        let (inner, outer) = (group(&mut t, "inner"), group(&mut t, "outer"));
        add_member(&mut t, T, &inner, &uid).expect("add");
        add_member(&mut t, T, &outer, &inner).expect("add");
        add_member(&mut t, T, &inner, &outer).expect("add");
        let names = |v: Vec<Map<String, Value>>| -> Vec<String> {
            v.iter()
                .map(|o| o["displayName"].as_str().unwrap_or_default().to_string())
                .collect()
        };
        let direct = member_of(&t, T, "a@b.com", false).expect("direct");
        assert_eq!(names(direct), vec!["inner"]);
        let all = member_of(&t, T, &uid, true).expect("transitive");
        assert_eq!(names(all), vec!["inner", "outer"]);
        assert!(matches!(
            member_of(&t, T, "nobody@b.com", true),
            Err(Error::NotFound(_))
        ));
    }

    #[test]
    fn delete_keeps_memberships_with_the_tombstone() {
        let mut t = Txn::new(&Empty);
        let u = create(&mut t, T, ObjectType::User, user("a@b.com"), "now").expect("user");
        let g = create(
            &mut t,
            T,
            ObjectType::Group,
            serde_json::json!({"displayName": "g"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            "now",
        )
        .expect("group");
        let (uid, gid) = (
            u["id"].as_str().unwrap_or_default().to_string(),
            g["id"].as_str().unwrap_or_default().to_string(),
        );
        add_member(&mut t, T, &gid, &uid).expect("add");
        assert_eq!(members(&t, T, &gid).expect("members").len(), 1);
        delete(&mut t, T, ObjectType::User, &uid, "later").expect("delete");
        assert_eq!(members(&t, T, &gid).expect("members").len(), 0);
        assert!(matches!(get(&t, T, "a@b.com"), Err(Error::NotFound(_))));
        let tomb = t
            .get(&key(K_TOMBSTONE, T, &[parse_id(&uid).expect("id").as_bytes()]).expect("key"))
            .expect("get")
            .expect("tombstone");
        let tomb: Value = serde_json::from_slice(&tomb).expect("json");
        assert_eq!(tomb["memberOf"][0], Value::from(gid));
        assert_eq!(tomb["object"]["deletedDateTime"], Value::from("later"));
    }
}
