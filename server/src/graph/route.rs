//! A Graph request's method and path (the segments after `/v1.0`, decoded) to what it
//! asks for. Pure. Collection names are matched case-insensitively, as Graph does.

use axum::http::{Method, StatusCode};
use engine::directory::ObjectType;

use super::error::GraphError;

/// A collection a `GET` lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Objects(ObjectType),
    /// A group's direct members.
    Members(String),
    /// The groups an object is in: directly, or (true) also through groups.
    MemberOf(String, bool),
    /// The recycle bin, of one type or all.
    Deleted(Option<ObjectType>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    List(Target),
    Get(ObjectType, String),
    Create(ObjectType),
    Update(ObjectType, String),
    Delete(ObjectType, String),
    AddMember(String),
    RemoveMember(String, String),
    GetDeleted(String),
    PurgeDeleted(String),
    RestoreDeleted(String),
}

impl Route {
    /// Whether the route changes the directory (a reader token may not).
    pub fn writes(&self) -> bool {
        !matches!(self, Route::List(_) | Route::Get(..) | Route::GetDeleted(_))
    }
}

/// The collection's name in paths (`users`, `servicePrincipals`...).
pub fn collection_name(ty: ObjectType) -> String {
    format!("{}s", super::query::type_name(ty))
}

fn collection(segment: &str) -> Option<ObjectType> {
    ObjectType::ALL
        .into_iter()
        .find(|ty| collection_name(*ty).eq_ignore_ascii_case(segment))
}

/// A type cast segment (`microsoft.graph.user`, `graph.user`).
fn cast(segment: &str) -> Option<ObjectType> {
    let lower = segment.to_ascii_lowercase();
    let name = lower
        .strip_prefix("microsoft.graph.")
        .or_else(|| lower.strip_prefix("graph."))?;
    ObjectType::ALL
        .into_iter()
        .find(|ty| super::query::type_name(*ty).eq_ignore_ascii_case(name))
}

fn not_allowed(method: &Method) -> GraphError {
    GraphError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "Request_BadRequest",
        format!("{method} is not supported on this resource"),
    )
}

/// What `method` on `segments` asks for.
pub fn route(method: &Method, segments: &[String]) -> Result<Route, GraphError> {
    let s: Vec<&str> = segments.iter().map(String::as_str).collect();
    let m = method.clone();
    let id = |i: usize| s[i].to_string();
    let unknown =
        |seg: &str| GraphError::bad_request(format!("Resource not found for the segment '{seg}'."));
    if s.is_empty() {
        return Err(unknown(""));
    }
    if s[0].eq_ignore_ascii_case("directory") {
        if s.get(1)
            .is_none_or(|x| !x.eq_ignore_ascii_case("deletedItems"))
        {
            return Err(unknown(s.get(1).copied().unwrap_or("directory")));
        }
        return match (s.len(), m) {
            (2, Method::GET) => Ok(Route::List(Target::Deleted(None))),
            (3, Method::GET) => Ok(match cast(s[2]) {
                Some(ty) => Route::List(Target::Deleted(Some(ty))),
                None => Route::GetDeleted(id(2)),
            }),
            (3, Method::DELETE) if cast(s[2]).is_none() => Ok(Route::PurgeDeleted(id(2))),
            (4, Method::POST)
                if s[3].eq_ignore_ascii_case("restore")
                    || s[3].eq_ignore_ascii_case("microsoft.graph.restore") =>
            {
                Ok(Route::RestoreDeleted(id(2)))
            }
            (4, _) if !s[3].to_ascii_lowercase().ends_with("restore") => Err(unknown(s[3])),
            (n, m) if n <= 4 => Err(not_allowed(&m)),
            _ => Err(unknown(s[4])),
        };
    }
    let ty = collection(s[0]).ok_or_else(|| unknown(s[0]))?;
    match (s.len(), m) {
        (1, Method::GET) => Ok(Route::List(Target::Objects(ty))),
        (1, Method::POST) => Ok(Route::Create(ty)),
        (2, Method::GET) => Ok(Route::Get(ty, id(1))),
        (2, Method::PATCH) => Ok(Route::Update(ty, id(1))),
        (2, Method::DELETE) => Ok(Route::Delete(ty, id(1))),
        (1 | 2, m) => Err(not_allowed(&m)),
        (3, m) => {
            let nav = s[2].to_ascii_lowercase();
            match (nav.as_str(), ty, m) {
                ("members", ObjectType::Group, Method::GET) => {
                    Ok(Route::List(Target::Members(id(1))))
                }
                (
                    "memberof" | "transitivememberof",
                    ObjectType::User
                    | ObjectType::Group
                    | ObjectType::ServicePrincipal
                    | ObjectType::Device,
                    Method::GET,
                ) => Ok(Route::List(Target::MemberOf(
                    id(1),
                    nav == "transitivememberof",
                ))),
                ("members", ObjectType::Group, m) | ("memberof" | "transitivememberof", _, m) => {
                    Err(not_allowed(&m))
                }
                _ => Err(unknown(s[2])),
            }
        }
        (4, m)
            if ty == ObjectType::Group
                && s[2].eq_ignore_ascii_case("members")
                && s[3] == "$ref" =>
        {
            match m {
                Method::POST => Ok(Route::AddMember(id(1))),
                m => Err(not_allowed(&m)),
            }
        }
        (5, m)
            if ty == ObjectType::Group
                && s[2].eq_ignore_ascii_case("members")
                && s[4] == "$ref" =>
        {
            match m {
                Method::DELETE => Ok(Route::RemoveMember(id(1), id(3))),
                m => Err(not_allowed(&m)),
            }
        }
        (n, _) => Err(unknown(s[n.min(3) - 1])),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn r(method: Method, path: &str) -> Result<Route, GraphError> {
        let segs: Vec<String> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        route(&method, &segs)
    }

    #[test]
    fn every_supported_route() {
        use ObjectType::*;
        let cases = [
            (Method::GET, "users", Route::List(Target::Objects(User))),
            (Method::GET, "Users", Route::List(Target::Objects(User))),
            (Method::POST, "groups", Route::Create(Group)),
            (
                Method::GET,
                "servicePrincipals/x",
                Route::Get(ServicePrincipal, "x".into()),
            ),
            (
                Method::PATCH,
                "applications/x",
                Route::Update(Application, "x".into()),
            ),
            (
                Method::DELETE,
                "devices/x",
                Route::Delete(Device, "x".into()),
            ),
            (
                Method::GET,
                "groups/g/members",
                Route::List(Target::Members("g".into())),
            ),
            (
                Method::POST,
                "groups/g/members/$ref",
                Route::AddMember("g".into()),
            ),
            (
                Method::DELETE,
                "groups/g/members/m/$ref",
                Route::RemoveMember("g".into(), "m".into()),
            ),
            (
                Method::GET,
                "users/u/memberOf",
                Route::List(Target::MemberOf("u".into(), false)),
            ),
            (
                Method::GET,
                "users/u/transitiveMemberOf",
                Route::List(Target::MemberOf("u".into(), true)),
            ),
            (
                Method::GET,
                "directory/deletedItems",
                Route::List(Target::Deleted(None)),
            ),
            (
                Method::GET,
                "directory/deletedItems/microsoft.graph.user",
                Route::List(Target::Deleted(Some(User))),
            ),
            (
                Method::GET,
                "directory/deletedItems/graph.servicePrincipal",
                Route::List(Target::Deleted(Some(ServicePrincipal))),
            ),
            (
                Method::GET,
                "directory/deletedItems/x",
                Route::GetDeleted("x".into()),
            ),
            (
                Method::DELETE,
                "directory/deletedItems/x",
                Route::PurgeDeleted("x".into()),
            ),
            (
                Method::POST,
                "directory/deletedItems/x/restore",
                Route::RestoreDeleted("x".into()),
            ),
            (
                Method::POST,
                "directory/deletedItems/x/microsoft.graph.restore",
                Route::RestoreDeleted("x".into()),
            ),
        ];
        for (m, p, want) in cases {
            assert_eq!(
                r(m.clone(), p).unwrap_or_else(|e| panic!("{m} {p}: {e:?}")),
                want,
                "{m} {p}"
            );
        }
        assert!(!Route::List(Target::Objects(User)).writes());
        assert!(Route::RestoreDeleted("x".into()).writes());
    }

    #[test]
    fn unknown_paths_are_400_and_wrong_methods_405() {
        for (m, p, status) in [
            (Method::GET, "", 400),
            (Method::GET, "me", 400),
            (Method::GET, "tenants", 400),
            (Method::GET, "users/u/manager", 400),
            (Method::GET, "devices/d/members", 400),
            (Method::GET, "directory/roles", 400),
            (Method::GET, "users/a/b/c/d/e", 400),
            (Method::PUT, "users", 405),
            (Method::POST, "users/u", 405),
            (Method::POST, "groups/g/members", 405),
            (Method::GET, "groups/g/members/$ref", 405),
            (Method::POST, "directory/deletedItems", 405),
            (Method::GET, "directory/deletedItems/x/restore", 405),
        ] {
            let e = r(m.clone(), p).expect_err(p);
            assert_eq!(e.status.as_u16(), status, "{m} {p}: {e:?}");
        }
    }
}
