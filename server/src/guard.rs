//! Who calls a server, and whether they may: every gRPC call carries a credential in its
//! `geodir-credential` metadata, a login signed with the cluster key (`identity::Login`):
//! an operator's from `dirctl login`, a service identity's, or a server's own (`Minter`,
//! for the calls servers make of each other). On a cluster with operators the servers
//! enforce it (`permit`); an open cluster (no operators) permits every call, as before.
//! The decisions here are pure; `Node::permit` (node/guard.rs) reads what they need.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use engine::clock::Clock;
use engine::operators::Need;
use engine::topology::{ControlPlane, Topology};
use engine::Result;

use crate::graph::token;
use crate::identity::{self, Login, LoginClaims};

/// The metadata key of a call's credential.
pub const CREDENTIAL: &str = "geodir-credential";

/// A server's own credential names it `geodird:DC` (operator names cannot hold a colon).
pub const SERVER_PREFIX: &str = "geodird:";

/// How long a server's own credential is good for; a new one is made when half is left.
const SERVER_CREDENTIAL_SECS: i64 = 2 * 3600;

/// Who a call proves to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// Another server of the cluster (`geodird:DC`).
    Server(String),
    /// An enrolled operator or service identity, its login verified.
    Operator(String),
    /// Nothing proven, and why.
    Unproven(String),
}

/// Who `credential` (a login's JSON) proves at `now` on the cluster of `t`, with the
/// cluster key `seed`.
pub fn caller_of(seed: Option<&[u8]>, t: &Topology, credential: Option<&str>, now: i64) -> Caller {
    let Some(text) = credential else {
        return Caller::Unproven("no login was presented".into());
    };
    let Some(seed) = seed else {
        return Caller::Unproven(
            "the cluster has no signing key, so no login of it can be valid".into(),
        );
    };
    let login: Login = match serde_json::from_str(text) {
        Ok(l) => l,
        Err(e) => return Caller::Unproven(format!("the login presented is malformed ({e})")),
    };
    match identity::verify_login(seed, &t.cluster_id, &login, now) {
        Err(why) => Caller::Unproven(why),
        Ok(name) if name.starts_with(SERVER_PREFIX) => Caller::Server(name),
        Ok(name) => match t.operators.get(&name) {
            Some(o) => match engine::operators::login_stands(&name, o, login.claims.from) {
                Ok(()) => Caller::Operator(name),
                Err(why) => Caller::Unproven(why),
            },
            None => Caller::Unproven(format!("operator {name} is not enrolled (any more)")),
        },
    }
}

/// What a call needs of its caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    /// Anyone: health probes, the topology, a login (its code is the proof).
    Open,
    /// The cluster's servers only: replication, writes sent on to a primary.
    Server,
    /// An audit record of a command's own outcome: anyone, the record naming who is proven
    /// (`unproven:NAME` when nobody is).
    Audit,
    /// What `engine::operators::decide` judges.
    Need(Need),
}

/// Whether `caller` may make `call` (named `what` in a refusal) at `now` on the cluster of
/// `t`. Permitted: the actor the audit records name, None to keep the one the request
/// declares (an open cluster, another server's call). Refused: why, and what grants it.
pub fn permit(
    t: &Topology,
    caller: &Caller,
    call: &Call,
    what: &str,
    declared: &str,
    now: i64,
) -> std::result::Result<Option<String>, String> {
    if t.operators.is_empty() {
        return Ok(None);
    }
    let (who, why_not) = match caller {
        Caller::Server(_) => return Ok(None),
        Caller::Operator(name) => (Some(name.as_str()), None),
        Caller::Unproven(why) => (None, Some(why.as_str())),
    };
    let stamp = || {
        Some(who.map_or_else(
            || format!("unproven:{}", declared_name(declared)),
            str::to_string,
        ))
    };
    match call {
        Call::Open | Call::Audit => Ok(stamp()),
        Call::Server => Err(format!("{what} is for the cluster's servers only")),
        Call::Need(need) => {
            engine::operators::decide(&t.operators, &t.elevations, who, need, what, now).map_err(
                |e| match why_not {
                    Some(w) => format!("{e} ({w})"),
                    None => e,
                },
            )?;
            Ok(stamp())
        }
    }
}

/// Whether a refusal may turn into a permission with a fresher control plane (an elevation
/// or a login made a moment ago, seen by this server's copy a moment later).
pub fn worth_reloading(caller: &Caller) -> bool {
    matches!(caller, Caller::Operator(_))
}

/// A name a caller declared, as an audit record shows it: at most 64 characters, none of
/// them a control character.
fn declared_name(declared: &str) -> String {
    declared
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect()
}

/// A credential for the calls a client makes: presented in each call's metadata. Cloned
/// into every client of a server's or dirctl's. It must not do I/O: it is asked on the
/// runtime, for every call.
#[derive(Clone, Default)]
pub struct Credential(Option<Arc<dyn Fn() -> Option<String> + Send + Sync>>);

impl Credential {
    /// No credential (an open cluster, or a probe before the login is read).
    pub fn none() -> Credential {
        Credential(None)
    }

    /// A login's JSON, as kept in its file (dirctl).
    pub fn fixed(login: &Login) -> Result<Credential> {
        let text = serde_json::to_string(login)
            .map_err(|e| engine::Error::Invalid(format!("encode the login: {e}")))?;
        Ok(Credential(Some(Arc::new(move || Some(text.clone())))))
    }

    /// A server's own, made when needed.
    pub fn minted(minter: Arc<Minter>) -> Credential {
        Credential(Some(Arc::new(move || minter.credential())))
    }
}

impl tonic::service::Interceptor for Credential {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> std::result::Result<tonic::Request<()>, tonic::Status> {
        if let Some(text) = self.0.as_ref().and_then(|f| f()) {
            let value = text.parse().map_err(|_| {
                tonic::Status::invalid_argument("the credential is not ASCII metadata")
            })?;
            request.metadata_mut().insert(CREDENTIAL, value);
        }
        Ok(request)
    }
}

/// A call's credential, if it has one.
pub fn presented(meta: &tonic::metadata::MetadataMap) -> Option<&str> {
    meta.get(CREDENTIAL).and_then(|v| v.to_str().ok())
}

/// A server's own credential, signed with the cluster key once the cluster has operators
/// (an open cluster needs none, and gets no key made for it), and the key the server checks
/// credentials with.
pub struct Minter {
    datacenter: String,
    control: Box<dyn ControlPlane + Sync>,
    clock: Clock,
    state: Mutex<MinterState>,
    /// Whether the cluster had operators at the last `refresh`.
    closed: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct MinterState {
    seed: Option<Vec<u8>>,
    credential: Option<(String, i64)>,
    /// When the control plane was last asked for a key that was not there.
    looked: Option<Instant>,
}

impl Minter {
    pub fn new(datacenter: &str, control: Box<dyn ControlPlane + Sync>, clock: Clock) -> Minter {
        Minter {
            datacenter: datacenter.to_string(),
            control,
            clock,
            state: Mutex::new(MinterState::default()),
            closed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Notes whether the cluster has operators, from a topology read elsewhere (a server's
    /// start: it is never open by default).
    pub fn note_operators(&self, any: bool) {
        self.closed.store(any, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether the cluster had operators when last looked at (at most a second ago): an
    /// open cluster's calls are permitted without a look at the control plane.
    pub fn closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The control plane this server proves operators and grants elevations on.
    pub fn control(&self) -> &dyn ControlPlane {
        self.control.as_ref()
    }

    /// A key may have been made just now (a login): look for it at the next call.
    pub fn key_made(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.looked = None;
        }
    }

    /// The cluster key, once there is one (looked for at most once a second until then).
    pub fn seed(&self) -> Option<Vec<u8>> {
        let mut s = self.state.lock().ok()?;
        if s.seed.is_none()
            && s.looked
                .is_none_or(|l| l.elapsed() >= Duration::from_secs(1))
        {
            s.looked = Some(Instant::now());
            s.seed = self.control.secret(token::SECRET).ok().flatten();
        }
        s.seed.clone()
    }

    /// This server's credential, as last made (`refresh`); None on an open cluster. No
    /// I/O: it is read by every call a server makes of another.
    pub fn credential(&self) -> Option<String> {
        let s = self.state.lock().ok()?;
        s.credential.as_ref().map(|(c, _)| c.clone())
    }

    /// Makes this server's credential anew when the cluster has operators and the last one
    /// is half spent (the cluster key made if it has none yet); drops it on an open
    /// cluster; notes whether the cluster has operators (`closed`). Reads the control
    /// plane: `Node::keep_credential` runs it once a second.
    pub fn refresh(&self) {
        let now = self.clock.now().timestamp();
        let spent = |s: &MinterState| {
            s.credential
                .as_ref()
                .is_none_or(|(_, until)| until - now <= SERVER_CREDENTIAL_SECS / 2)
        };
        let Ok(t) = self.control.load() else { return };
        self.closed
            .store(!t.operators.is_empty(), std::sync::atomic::Ordering::SeqCst);
        if !self.state.lock().is_ok_and(|s| spent(&s)) {
            return;
        }
        if t.operators.is_empty() {
            if let Ok(mut s) = self.state.lock() {
                s.credential = None;
            }
            return;
        }
        let Ok(seed) = self
            .control
            .secret_or_create(token::SECRET, &mut token::generate_seed)
        else {
            return;
        };
        let signed = identity::sign_login(
            &seed,
            LoginClaims {
                cluster: t.cluster_id,
                operator: format!("{SERVER_PREFIX}{}", self.datacenter),
                id: format!("server-{}", self.datacenter),
                from: now,
                until: now + SERVER_CREDENTIAL_SECS,
            },
        );
        let Some(text) = signed.ok().and_then(|l| serde_json::to_string(&l).ok()) else {
            return;
        };
        if let Ok(mut s) = self.state.lock() {
            s.seed = Some(seed);
            s.credential = Some((text, now + SERVER_CREDENTIAL_SECS));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::operators::{Elevation, Operator, Role};

    fn cluster(with_operators: bool) -> Topology {
        let mut t: Topology = serde_json::from_value(serde_json::json!({
            "format": 1, "cluster_id": "c1", "generation": 1, "datacenters": [], "partitions": [], "tenants": {}
        }))
        .expect("topology");
        if with_operators {
            for (name, roles) in [("ann", vec![Role::Operator]), ("bob", vec![Role::Reader])] {
                t.operators.insert(
                    name.into(),
                    Operator {
                        roles,
                        sealed_secret: String::new(),
                        enrolled_at: 0,
                        last_step: 0,
                        failures: 0,
                        locked_until: None,
                        service: false,
                        logins_after: 50,
                    },
                );
            }
        }
        t
    }

    fn login(seed: &[u8], cluster: &str, who: &str, from: i64) -> String {
        let claims = LoginClaims {
            cluster: cluster.into(),
            operator: who.into(),
            id: "l".into(),
            from,
            until: from + 1000,
        };
        serde_json::to_string(&identity::sign_login(seed, claims).expect("sign")).expect("json")
    }

    #[test]
    fn a_credential_proves_its_server_or_operator_only_when_signed_and_current() {
        let seed = token::generate_seed();
        let t = cluster(true);
        let at = |c: Option<&str>, now| caller_of(Some(&seed), &t, c, now);
        let ann = login(&seed, "c1", "ann", 100);
        assert_eq!(at(Some(&ann), 150), Caller::Operator("ann".into()));
        let server = login(&seed, "c1", "geodird:westus", 100);
        assert_eq!(
            at(Some(&server), 150),
            Caller::Server("geodird:westus".into())
        );
        // Expired, of another cluster, ended by logout, not enrolled, forged, malformed,
        // absent, or with no key to check it: nothing proven.
        assert!(matches!(at(Some(&ann), 5000), Caller::Unproven(w) if w.contains("expired")));
        let other = login(&seed, "c2", "ann", 100);
        assert!(matches!(at(Some(&other), 150), Caller::Unproven(_)));
        let old = login(&seed, "c1", "ann", 40);
        assert!(matches!(at(Some(&old), 60), Caller::Unproven(w) if w.contains("logout")));
        // A lock-out stops new codes, not a login made before it.
        let mut locked = t.clone();
        if let Some(o) = locked.operators.get_mut("ann") {
            o.locked_until = Some(200);
        }
        let r = caller_of(Some(&seed), &locked, Some(&ann), 150);
        assert_eq!(r, Caller::Operator("ann".into()));
        let eve = login(&seed, "c1", "eve", 100);
        assert!(matches!(at(Some(&eve), 150), Caller::Unproven(w) if w.contains("not enrolled")));
        let forged = ann.replace("\"ann\"", "\"bob\"");
        assert!(matches!(at(Some(&forged), 150), Caller::Unproven(w) if w.contains("signature")));
        let by_other_key = login(&token::generate_seed(), "c1", "geodird:westus", 100);
        assert!(matches!(at(Some(&by_other_key), 150), Caller::Unproven(_)));
        assert!(
            matches!(at(Some("{not json"), 150), Caller::Unproven(w) if w.contains("malformed"))
        );
        assert!(matches!(at(None, 150), Caller::Unproven(_)));
        assert!(matches!(
            caller_of(None, &t, Some(&ann), 150),
            Caller::Unproven(_)
        ));
    }

    #[test]
    fn the_servers_enforce_roles_and_elevations_only_on_a_cluster_with_operators() {
        let need = Call::Need(Need::Elevated(Role::Operator));
        let nobody = Caller::Unproven("no login was presented".into());
        // An open cluster: everyone, the declared actor kept.
        let open = cluster(false);
        assert_eq!(permit(&open, &nobody, &need, "drain", "x", 100), Ok(None));
        assert_eq!(
            permit(&open, &nobody, &Call::Server, "append", "x", 100),
            Ok(None)
        );
        let mut t = cluster(true);
        let ann = Caller::Operator("ann".into());
        let server = Caller::Server("geodird:eastus".into());
        // Servers may do anything, the envelope's actor kept (decided where it came in).
        assert_eq!(
            permit(&t, &server, &Call::Server, "append", "ann", 100),
            Ok(None)
        );
        assert_eq!(permit(&t, &server, &need, "drain", "ann", 100), Ok(None));
        // Nobody else makes a server's calls.
        assert!(permit(&t, &ann, &Call::Server, "append", "ann", 100).is_err());
        // An operator's privileged call waits for an elevation, and stops when it ends.
        let e = permit(&t, &ann, &need, "drain", "x", 100).expect_err("not elevated");
        assert!(e.contains("dirctl elevate"), "{e}");
        t.elevations.push(Elevation {
            id: "e1".into(),
            operator: "ann".into(),
            role: Role::Operator,
            reason: "INC-1".into(),
            from: 100,
            until: 1900,
        });
        assert_eq!(
            permit(&t, &ann, &need, "drain", "x", 100),
            Ok(Some("ann".into()))
        );
        assert!(permit(&t, &ann, &need, "drain", "x", 1900).is_err());
        // The unproven: refused, saying why; their audit records say they are unproven.
        let e = permit(
            &t,
            &nobody,
            &Call::Need(Need::Read),
            "user list",
            "mallory",
            100,
        )
        .expect_err("no login");
        assert!(
            e.contains("dirctl login") && e.contains("no login was presented"),
            "{e}"
        );
        assert_eq!(
            permit(&t, &nobody, &Call::Audit, "record", "mallory", 100),
            Ok(Some("unproven:mallory".into()))
        );
        assert_eq!(
            permit(
                &t,
                &Caller::Operator("bob".into()),
                &Call::Open,
                "login",
                "bob",
                100
            ),
            Ok(Some("bob".into()))
        );
    }
}
