//! A Microsoft Graph v1.0–compatible REST API on a server's HTTP address (docs/graph.md):
//! users, groups and their members, applications, service principals, devices, and the
//! recycle bin (`directory/deletedItems`), with Graph's shapes, status codes and errors.
//!
//! - `route`: a request's method and path to a `Route` (pure);
//! - `query`: `$top`, `$select`, `$filter`, `$count`, paging (pure);
//! - `token`: the bearer tokens (Ed25519 JWTs the cluster signs); a token's tenant is the
//!   only one it reaches, its role says whether it may write;
//! - `limits`: the request rate per token; `error`: Graph's error shape.
//!
//! Every request is carried out by `Node::execute` as the engine's own `Request`, exactly as
//! dirctl's are. The session: the replica token of the last write or read comes back in
//! `x-geodir-replica-token`; a client that sends it back reads its own writes anywhere.

mod body;
pub mod error;
pub mod limits;
pub mod query;
pub mod route;
pub mod token;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{Map, Value};

use engine::directory::ObjectType;
use engine::request::{Envelope, Object, Reply, Request};
use engine::session::Token;

use crate::node::Node;
use error::{from_engine, GraphError};
use query::{type_name, Query};
use route::{Route, Target};
use token::{Claims, Keys, Role};

/// The header carrying a session's replica token, both ways.
pub const SESSION_HEADER: &str = "x-geodir-replica-token";

/// The Graph API's limits (geodird's `[graph]` settings).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Requests per second per token, on average (0: no limit).
    pub rate_per_token: u32,
    /// Requests a token may make at once above the rate.
    pub burst_per_token: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_body_bytes: 1024 * 1024,
            rate_per_token: 1000,
            burst_per_token: 2000,
        }
    }
}

/// The Graph API of one server.
pub struct Graph {
    node: Arc<Node>,
    limits: Limits,
    /// The URL scheme clients reach this server by (`https` behind TLS).
    scheme: &'static str,
    /// The cluster's keys once read, and when the control plane was last asked.
    keys: Mutex<Option<Arc<Keys>>>,
    rate: Mutex<limits::RateLimit>,
    /// Tokens whose signature was checked, by their exact text: a signature is checked
    /// once (Ed25519 costs more than the read it guards), the expiry on every request.
    verified: Mutex<std::collections::HashMap<String, Claims>>,
}

/// How many verified tokens a server remembers; past it, it starts over.
const VERIFIED_TOKENS: usize = 10_000;

impl Graph {
    pub fn new(node: Arc<Node>, limits: Limits, tls: bool) -> Arc<Graph> {
        Arc::new(Graph {
            node,
            rate: Mutex::new(limits::RateLimit::new(
                limits.rate_per_token,
                limits.burst_per_token,
            )),
            limits,
            scheme: if tls { "https" } else { "http" },
            keys: Mutex::new(None),
            verified: Mutex::new(Default::default()),
        })
    }

    /// The cluster's signing keys, read from the control plane once they exist (asked
    /// again on every request while they do not: a file read, or one etcd get).
    fn keys(&self) -> Result<Arc<Keys>, GraphError> {
        if let Some(keys) = self.keys.lock().map_err(|_| internal("keys"))?.as_ref() {
            return Ok(keys.clone());
        }
        // The control plane's calls block (etcd's on this runtime): this worker hands its
        // other tasks to the others meanwhile.
        let (seed, cluster) = tokio::task::block_in_place(|| {
            let seed = self.node.secret(token::SECRET)?;
            self.node.cluster_id().map(|c| (seed, c))
        })
        .map_err(|e| from_engine(&e))?;
        let seed = seed.ok_or_else(no_key)?;
        let keys = Arc::new(Keys::from_seed(&seed, &cluster).map_err(|e| from_engine(&e))?);
        *self.keys.lock().map_err(|_| internal("keys"))? = Some(keys.clone());
        Ok(keys)
    }

    /// The bearer token's claims, or the 401.
    fn authenticate(&self, headers: &HeaderMap) -> Result<Claims, GraphError> {
        let value = headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| GraphError::unauthenticated("Access token is empty."))?;
        let bearer = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .ok_or_else(|| {
                GraphError::unauthenticated("the Authorization header is not `Bearer <token>`")
            })?;
        let bearer = bearer.trim();
        let now = chrono::Utc::now().timestamp();
        let known = self
            .verified
            .lock()
            .map_err(|_| internal("tokens"))?
            .get(bearer)
            .cloned();
        match known {
            Some(claims) if token::unexpired(&claims, now) => return Ok(claims),
            Some(_) => return Err(GraphError::unauthenticated("the token has expired")),
            None => {}
        }
        let claims = self
            .keys()?
            .verify(bearer)
            .map_err(GraphError::unauthenticated)?;
        let mut verified = self.verified.lock().map_err(|_| internal("tokens"))?;
        if verified.len() >= VERIFIED_TOKENS {
            verified.clear();
        }
        verified.insert(bearer.to_string(), claims.clone());
        Ok(claims)
    }
}

fn no_key() -> GraphError {
    GraphError::unauthenticated(
        "this cluster has no token signing key yet: `dirctl token issue` makes one",
    )
}

fn internal(what: &str) -> GraphError {
    GraphError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "generalException",
        format!("a server thread panicked ({what})"),
    )
}

/// The Graph routes, under `/v1.0`.
pub fn router(graph: Arc<Graph>) -> Router {
    Router::new()
        .route("/v1.0", axum::routing::any(handle))
        .route("/v1.0/{*rest}", axum::routing::any(handle))
        .with_state(graph)
}

/// What one request needs beside its route: who asks, and where the answer's links point.
struct Call {
    claims: Claims,
    request_id: String,
    /// `http://HOST/v1.0`, as the client addressed this server.
    base: String,
    raw_query: String,
    eventual: bool,
    session: Option<Token>,
}

async fn handle(
    State(g): State<Arc<Graph>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let request_id = headers
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            v.len() <= 64
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
        .map(str::to_string)
        // A version 4 id from the thread's generator (no system call per request).
        .unwrap_or_else(|| {
            uuid::Builder::from_random_bytes(rand::random())
                .into_uuid()
                .to_string()
        });
    match serve(&g, method, &uri, &headers, body, &request_id).await {
        Ok(mut r) => {
            if let Ok(v) = HeaderValue::from_str(&request_id) {
                r.headers_mut().insert("request-id", v.clone());
                r.headers_mut().insert("client-request-id", v);
            }
            r
        }
        Err(e) => e.into_response_for(&request_id),
    }
}

async fn serve(
    g: &Arc<Graph>,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
    request_id: &str,
) -> Result<Response, GraphError> {
    let path = uri.path().trim_start_matches("/v1.0");
    let segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            body::percent_decode(s)
                .ok_or_else(|| GraphError::bad_request(format!("bad escape in {s:?}")))
        })
        .collect::<Result<_, _>>()?;
    let route = route::route(&method, &segments)?;
    let claims = g.authenticate(headers)?;
    let wait = g
        .rate
        .lock()
        .map_err(|_| internal("rate"))?
        .take(&claims.jti, Instant::now());
    if let Err(wait) = wait {
        return Err(GraphError::throttled(wait.as_secs().max(1)));
    }
    if route.writes() && claims.role != Role::Writer {
        return Err(GraphError::forbidden(format!(
            "Insufficient privileges to complete the operation: this token's role is reader; {} needs a writer token",
            method
        )));
    }
    let body = body::read_body(body, g.limits.max_body_bytes).await?;
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".:-[]".contains(c))
        })
        .unwrap_or("localhost");
    let session = match headers.get(SESSION_HEADER) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| GraphError::bad_request(format!("{SESSION_HEADER} is not text")))?
                .parse::<Token>()
                .map_err(|e| from_engine(&e))?,
        ),
    };
    let call = Call {
        claims,
        request_id: request_id.to_string(),
        // Behind the gateway, the scheme the client used (its `Host` passes through too).
        base: format!(
            "{}://{host}/v1.0",
            match headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
            {
                Some("https") => "https",
                Some("http") => "http",
                _ => g.scheme,
            }
        ),
        raw_query: uri.query().unwrap_or_default().to_string(),
        eventual: headers
            .get("consistencylevel")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("eventual")),
        session,
    };
    let node = g.node.clone();
    // A read of one object without a session token: answered here when the node's cluster
    // handle is free (a point read takes microseconds), else on the blocking pool.
    if matches!(route, Route::Get(..) | Route::GetDeleted(_)) && call.session.is_none() {
        // In place (a read that turns out to need another server waits on it with
        // `crate::wait`, which lets this worker out of the runtime first).
        match answer(&node, &call, route.clone(), &body, true) {
            Err(e) if e.code == BUSY => {}
            done => return done,
        }
    }
    tokio::task::spawn_blocking(move || answer(&node, &call, route, &body, false))
        .await
        .map_err(|_| internal("request"))?
}

/// The code of `answer`'s inline read that found the cluster handle busy (never sent).
const BUSY: &str = "geodir_inlineReadBusy";

/// Carries out one routed request on the node (blocking).
/// `inline`: only reads, each at once or not at all (`Node::read_if_free`); a busy node is
/// the error `BUSY`, and the caller asks again on the blocking pool.
fn answer(
    node: &Node,
    call: &Call,
    route: Route,
    body: &[u8],
    inline: bool,
) -> Result<Response, GraphError> {
    let tenant = call.claims.tid.clone();
    // A session token of another partition says nothing about this tenant's.
    let partition = node
        .tenant_partition(&tenant)
        .map_err(|e| from_engine(&e))?;
    let session = call.session.clone().filter(|t| t.partition == partition);
    let envelope = Envelope {
        actor: format!("token:{}", call.claims.sub),
        correlation_id: call.request_id.clone(),
        datacenter: Some(node.datacenter.clone()),
        token: session.clone(),
    };
    let run = |request: Request| -> Result<engine::request::Response, GraphError> {
        let got = match inline {
            true => node
                .read_if_free(&envelope, &request)
                .ok_or_else(|| GraphError::new(StatusCode::SERVICE_UNAVAILABLE, BUSY, "busy"))?,
            false => node.execute(&envelope, request, false, &mut |_| {}),
        };
        got.map(|(r, _notes)| r).map_err(|e| from_engine(&e))
    };
    let json_body = || -> Result<Map<String, Value>, GraphError> {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => Err(GraphError::bad_request(
                "the request body is not a JSON object",
            )),
            Err(e) => Err(GraphError::bad_request(format!(
                "the request body is not valid JSON: {e}"
            ))),
        }
    };
    let newest = |r: &engine::request::Response| -> Option<Token> {
        let got = r.token.clone().or_else(|| {
            r.served_by.as_ref().map(|s| Token {
                partition: s.partition,
                term: s.term,
                lsn: s.lsn,
                datacenter: s.datacenter.clone(),
            })
        });
        match (got, session.clone()) {
            (Some(a), Some(b)) => Some(if (a.term, a.lsn) >= (b.term, b.lsn) {
                a
            } else {
                b
            }),
            (a, b) => a.or(b),
        }
    };
    // A change Graph answers with 204: only the session's token comes back.
    let no_content =
        |r: engine::request::Response| (StatusCode::NO_CONTENT, None, None, newest(&r));
    // Graph's write-only password: geodir keeps no credentials (docs/graph.md); and the
    // object's own type, which a client may name.
    let fields_of = |ty: ObjectType| -> Result<Map<String, Value>, GraphError> {
        let mut fields = json_body()?;
        if ty == ObjectType::User {
            fields.remove("passwordProfile");
        }
        Ok(fields)
    };
    let (status, json, location, token) = match route {
        Route::List(target) => {
            let q = query::parse(&call.raw_query, &target.types(), call.eventual, true)?;
            let r = run(target.list_request(&tenant))?;
            let objects = target.objects_of(r.reply.clone())?;
            let t = newest(&r);
            (
                StatusCode::OK,
                collection(call, &target, objects, &q),
                None,
                t,
            )
        }
        Route::Get(ty, id) => {
            let q = query::parse(&call.raw_query, &[ty], call.eventual, false)?;
            let r = run(Request::GetObject {
                tenant,
                object_type: ty,
                id,
            })?;
            let Reply::Object(o) = r.reply.clone() else {
                return Err(unexpected(&r.reply));
            };
            let t = newest(&r);
            let o = entity(
                call,
                &route::collection_name(ty),
                query::project(o, q.select.as_deref()),
            );
            (StatusCode::OK, Some(o), None, t)
        }
        Route::Create(ty) => {
            let fields = fields_of(ty)?;
            let r = run(Request::CreateObject {
                tenant,
                object_type: ty,
                fields,
            })?;
            let Reply::Object(o) = r.reply.clone() else {
                return Err(unexpected(&r.reply));
            };
            let id = o
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let name = route::collection_name(ty);
            let location = format!("{}/{name}/{id}", call.base);
            let t = newest(&r);
            (
                StatusCode::CREATED,
                Some(entity(call, &name, o)),
                Some(location),
                t,
            )
        }
        Route::Update(ty, id) => {
            let mut patch = fields_of(ty)?;
            if patch.get("@odata.type").and_then(Value::as_str) == Some(ty.odata_type()) {
                patch.remove("@odata.type");
            }
            no_content(run(Request::UpdateObject {
                tenant,
                object_type: ty,
                id,
                patch,
            })?)
        }
        Route::Delete(ty, id) => no_content(run(Request::DeleteObject {
            tenant,
            object_type: ty,
            id,
        })?),
        Route::AddMember(group) => {
            let b = json_body()?;
            let member = b
                .get("@odata.id")
                .and_then(Value::as_str)
                .and_then(|u| u.trim_end_matches('/').rsplit('/').next())
                .filter(|s| !s.is_empty())
                .ok_or_else(|| GraphError::bad_request("the body needs \"@odata.id\": \"https://graph.microsoft.com/v1.0/directoryObjects/{id}\""))?
                .to_string();
            no_content(run(Request::AddMember {
                tenant,
                group,
                member,
            })?)
        }
        Route::RemoveMember(group, member) => no_content(run(Request::RemoveMember {
            tenant,
            group,
            member,
        })?),
        Route::GetDeleted(id) => {
            let q = query::parse(&call.raw_query, &ObjectType::ALL, call.eventual, false)?;
            let r = run(Request::GetDeleted { tenant, id })?;
            let Reply::Tombstone(t) = r.reply.clone() else {
                return Err(unexpected(&r.reply));
            };
            let o = query::project(t.object, q.select.as_deref());
            let tok = newest(&r);
            (
                StatusCode::OK,
                Some(entity(call, "directory/deletedItems", o)),
                None,
                tok,
            )
        }
        Route::PurgeDeleted(id) => no_content(run(Request::PurgeDeleted { tenant, id })?),
        Route::RestoreDeleted(id) => {
            let new_upn = match body.iter().all(u8::is_ascii_whitespace) {
                true => None,
                false => match json_body()?.get("newUserPrincipalName") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(other) => {
                        return Err(GraphError::bad_request(format!(
                            "newUserPrincipalName must be a string, got {other}"
                        )))
                    }
                },
            };
            let r = run(Request::RestoreDeleted {
                tenant,
                id,
                new_upn,
            })?;
            let Reply::Restored(restored) = r.reply.clone() else {
                return Err(unexpected(&r.reply));
            };
            let t = newest(&r);
            (
                StatusCode::OK,
                Some(entity(call, "directoryObjects", restored.object)),
                None,
                t,
            )
        }
    };
    let mut resp = match json {
        Some(v) => (status, axum::Json(Value::Object(v))).into_response(),
        None => status.into_response(),
    };
    if let Some(l) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        resp.headers_mut().insert(header::LOCATION, l);
    }
    if let Some(t) = token.and_then(|t| HeaderValue::from_str(&t.to_string()).ok()) {
        resp.headers_mut().insert(SESSION_HEADER, t);
    }
    Ok(resp)
}

fn unexpected(reply: &Reply) -> GraphError {
    GraphError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "generalException",
        format!("unexpected reply {reply:?}"),
    )
}

/// One object as Graph answers it, with its `@odata.context`.
fn entity(call: &Call, set: &str, o: Object) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(
        "@odata.context".into(),
        Value::from(format!("{}/$metadata#{set}/$entity", call.base)),
    );
    m.extend(o);
    m
}

/// A page of a collection: `@odata.context`, `@odata.count` when asked, `value`, and
/// `@odata.nextLink` while more remain (the same query, with the next `$skiptoken`).
fn collection(
    call: &Call,
    target: &Target,
    objects: Vec<Object>,
    q: &Query,
) -> Option<Map<String, Value>> {
    let (page, next, total) = query::page(objects, q);
    let mut m = Map::new();
    m.insert(
        "@odata.context".into(),
        Value::from(format!("{}/$metadata#{}", call.base, target.context())),
    );
    if q.count {
        m.insert("@odata.count".into(), Value::from(total));
    }
    let value: Vec<Value> = page
        .into_iter()
        .map(|o| Value::Object(query::project(o, q.select.as_deref())))
        .collect();
    m.insert("value".into(), Value::Array(value));
    if let Some(after) = next {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in form_urlencoded::parse(call.raw_query.as_bytes()) {
            if k != "$skiptoken" {
                s.append_pair(&k, &v);
            }
        }
        s.append_pair("$skiptoken", &after);
        m.insert(
            "@odata.nextLink".into(),
            Value::from(format!("{}/{}?{}", call.base, target.path(), s.finish())),
        );
    }
    Some(m)
}

impl Target {
    /// The types a query on this collection may name properties of.
    fn types(&self) -> Vec<ObjectType> {
        match self {
            Target::Objects(ty) | Target::Deleted(Some(ty)) => vec![*ty],
            Target::MemberOf(..) => vec![ObjectType::Group],
            Target::Members(_) | Target::Deleted(None) => ObjectType::ALL.to_vec(),
        }
    }

    fn list_request(&self, tenant: &str) -> Request {
        let tenant = tenant.to_string();
        match self {
            Target::Objects(ty) => Request::ListObjects {
                tenant,
                object_type: *ty,
            },
            Target::Members(group) => Request::ListMembers {
                tenant,
                group: group.clone(),
            },
            Target::MemberOf(member, transitive) => Request::ListMemberOf {
                tenant,
                member: member.clone(),
                transitive: *transitive,
            },
            Target::Deleted(_) => Request::ListDeleted { tenant },
        }
    }

    fn objects_of(&self, reply: Reply) -> Result<Vec<Object>, GraphError> {
        match (self, reply) {
            (Target::Deleted(ty), Reply::Tombstones(ts)) => Ok(ts
                .into_iter()
                .filter(|t| !t.expired)
                .map(|t| t.object)
                .filter(|o| {
                    ty.is_none_or(|ty| {
                        o.get("@odata.type").and_then(Value::as_str) == Some(ty.odata_type())
                    })
                })
                .collect()),
            (_, Reply::Objects(v)) => Ok(v),
            (_, other) => Err(unexpected(&other)),
        }
    }

    /// The collection's path under `/v1.0`.
    fn path(&self) -> String {
        match self {
            Target::Objects(ty) => route::collection_name(*ty),
            Target::Members(g) => format!("groups/{g}/members"),
            Target::MemberOf(m, false) => format!("users/{m}/memberOf"),
            Target::MemberOf(m, true) => format!("users/{m}/transitiveMemberOf"),
            Target::Deleted(Some(ty)) => {
                format!("directory/deletedItems/microsoft.graph.{}", type_name(*ty))
            }
            Target::Deleted(None) => "directory/deletedItems".into(),
        }
    }

    /// What `@odata.context` names after `$metadata#`.
    fn context(&self) -> String {
        match self {
            Target::Objects(ty) => route::collection_name(*ty),
            Target::Members(_) | Target::MemberOf(..) => "directoryObjects".into(),
            Target::Deleted(_) => "directory/deletedItems".into(),
        }
    }
}
