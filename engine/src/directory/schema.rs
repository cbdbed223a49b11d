//! The object types, Graph's field names, and the checks a client's fields must pass.

use serde_json::{Map, Value};
use uuid::Uuid;

use super::keys::parse_id;
use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ObjectType {
    User,
    Group,
    Application,
    ServicePrincipal,
    Device,
}

/// What a property holds, as a query sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PropertyKind {
    String,
    Bool,
    StringList,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    Bool,
    StrList,
}

struct Field {
    name: &'static str,
    kind: Kind,
    required: bool,
}

const fn f(name: &'static str, kind: Kind, required: bool) -> Field {
    Field {
        name,
        kind,
        required,
    }
}

const USER_FIELDS: &[Field] = &[
    f("userPrincipalName", Kind::Str, true),
    f("displayName", Kind::Str, true),
    f("mail", Kind::Str, false),
    f("mailNickname", Kind::Str, false),
    f("givenName", Kind::Str, false),
    f("surname", Kind::Str, false),
    f("jobTitle", Kind::Str, false),
    f("department", Kind::Str, false),
    f("officeLocation", Kind::Str, false),
    f("mobilePhone", Kind::Str, false),
    f("usageLocation", Kind::Str, false),
    f("accountEnabled", Kind::Bool, false),
];
const GROUP_FIELDS: &[Field] = &[
    f("displayName", Kind::Str, true),
    f("description", Kind::Str, false),
    f("mailNickname", Kind::Str, false),
    f("mail", Kind::Str, false),
    f("mailEnabled", Kind::Bool, false),
    f("securityEnabled", Kind::Bool, false),
    f("groupTypes", Kind::StrList, false),
];
const APP_FIELDS: &[Field] = &[
    f("displayName", Kind::Str, true),
    f("appId", Kind::Str, false),
    f("signInAudience", Kind::Str, false),
    f("description", Kind::Str, false),
    f("identifierUris", Kind::StrList, false),
];
const SP_FIELDS: &[Field] = &[
    f("appId", Kind::Str, true),
    f("displayName", Kind::Str, false),
    f("accountEnabled", Kind::Bool, false),
    f("servicePrincipalType", Kind::Str, false),
    f("appDisplayName", Kind::Str, false),
];
const DEVICE_FIELDS: &[Field] = &[
    f("displayName", Kind::Str, true),
    f("deviceId", Kind::Str, false),
    f("operatingSystem", Kind::Str, false),
    f("operatingSystemVersion", Kind::Str, false),
    f("accountEnabled", Kind::Bool, false),
    f("trustType", Kind::Str, false),
];
/// Fields the service sets; a client may supply `id` (import), never the others.
const SERVER_FIELDS: &[&str] = &["id", "@odata.type", "createdDateTime", "deletedDateTime"];

impl ObjectType {
    pub const ALL: [ObjectType; 5] = [
        ObjectType::User,
        ObjectType::Group,
        ObjectType::Application,
        ObjectType::ServicePrincipal,
        ObjectType::Device,
    ];

    pub fn odata_type(self) -> &'static str {
        match self {
            ObjectType::User => "#microsoft.graph.user",
            ObjectType::Group => "#microsoft.graph.group",
            ObjectType::Application => "#microsoft.graph.application",
            ObjectType::ServicePrincipal => "#microsoft.graph.servicePrincipal",
            ObjectType::Device => "#microsoft.graph.device",
        }
    }

    /// The CLI's noun.
    pub fn noun(self) -> &'static str {
        match self {
            ObjectType::User => "user",
            ObjectType::Group => "group",
            ObjectType::Application => "app",
            ObjectType::ServicePrincipal => "sp",
            ObjectType::Device => "device",
        }
    }

    pub fn from_odata(s: &str) -> Option<ObjectType> {
        ObjectType::ALL.into_iter().find(|t| t.odata_type() == s)
    }

    /// Accepts the CLI noun, Graph's type name, or the full `@odata.type`.
    pub fn parse(s: &str) -> Result<ObjectType> {
        let lower = s
            .trim_start_matches("#microsoft.graph.")
            .to_ascii_lowercase();
        match lower.as_str() {
            "user" => Ok(ObjectType::User),
            "group" => Ok(ObjectType::Group),
            "app" | "application" => Ok(ObjectType::Application),
            "sp" | "serviceprincipal" => Ok(ObjectType::ServicePrincipal),
            "device" => Ok(ObjectType::Device),
            _ => Err(Error::Invalid(format!("unknown object type {s:?} (known: user, group, application, servicePrincipal, device)"))),
        }
    }

    fn fields(self) -> &'static [Field] {
        match self {
            ObjectType::User => USER_FIELDS,
            ObjectType::Group => GROUP_FIELDS,
            ObjectType::Application => APP_FIELDS,
            ObjectType::ServicePrincipal => SP_FIELDS,
            ObjectType::Device => DEVICE_FIELDS,
        }
    }

    /// The kind of value property `name` holds (the client's fields and the service's
    /// `id`, `createdDateTime`, `deletedDateTime`); None for a property the type lacks.
    pub fn property_kind(self, name: &str) -> Option<PropertyKind> {
        if matches!(name, "id" | "createdDateTime" | "deletedDateTime") {
            return Some(PropertyKind::String);
        }
        self.fields()
            .iter()
            .find(|f| f.name == name)
            .map(|f| match f.kind {
                Kind::Str => PropertyKind::String,
                Kind::Bool => PropertyKind::Bool,
                Kind::StrList => PropertyKind::StringList,
            })
    }

    /// Every property of the type, service-set ones first.
    pub fn property_names(self) -> Vec<&'static str> {
        let mut v = vec!["id", "createdDateTime", "deletedDateTime"];
        v.extend(self.fields().iter().map(|f| f.name));
        v
    }

    /// Whether `name` is a field every object of this type has.
    pub(crate) fn requires(self, name: &str) -> bool {
        self.fields().iter().any(|f| f.name == name && f.required)
    }

    /// Users, groups, applications and service principals go to the recycle bin; devices do not.
    pub fn soft_deleted(self) -> bool {
        self != ObjectType::Device
    }

    /// What a group may hold as a member.
    pub fn can_be_member(self) -> bool {
        matches!(
            self,
            ObjectType::User | ObjectType::Group | ObjectType::ServicePrincipal
        )
    }
}

pub(crate) fn decode(raw: &[u8], what: &str) -> Result<Map<String, Value>> {
    match serde_json::from_slice(raw) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Error::Corrupt(format!(
            "{what}: stored value is not a JSON object"
        ))),
        Err(e) => Err(Error::Corrupt(format!("{what}: {e}"))),
    }
}

pub(crate) fn encode(m: &Map<String, Value>) -> Vec<u8> {
    // A map of JSON values always serializes (its keys are strings).
    serde_json::to_vec(m).unwrap_or_default()
}

pub(crate) fn type_of(m: &Map<String, Value>) -> Option<ObjectType> {
    m.get("@odata.type")
        .and_then(Value::as_str)
        .and_then(ObjectType::from_odata)
}

/// Characters no stored name may hold: control characters, and the ones that break or
/// reorder a line on a terminal (line and paragraph separators, bidirectional overrides).
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// Longest string a field takes (Graph's own limits are lower for most fields: 256 for
/// displayName, 113 for userPrincipalName).
const MAX_STRING_CHARS: usize = 1024;

/// Checks client-supplied fields against the type's schema.
pub(crate) fn check_fields(
    ty: ObjectType,
    fields: &Map<String, Value>,
    creating: bool,
) -> Result<()> {
    let schema = ty.fields();
    for (name, v) in fields {
        if name == "id" && creating {
            parse_id(v.as_str().unwrap_or_default())?;
            continue;
        }
        if name == "@odata.type" && v.as_str().and_then(ObjectType::from_odata) == Some(ty) {
            continue;
        }
        let Some(field) = schema.iter().find(|f| f.name == name) else {
            if SERVER_FIELDS.contains(&name.as_str()) {
                return Err(Error::Invalid(format!(
                    "{} field {name} is set by the service, not by a client",
                    ty.noun()
                )));
            }
            let known: Vec<_> = schema.iter().map(|f| f.name).collect();
            return Err(Error::Invalid(format!(
                "{} has no field {name:?} (known: {})",
                ty.noun(),
                known.join(", ")
            )));
        };
        check_value(ty, name, field, v)?;
    }
    if creating {
        for f in schema.iter().filter(|f| f.required) {
            if !fields.contains_key(f.name) {
                return Err(Error::Invalid(format!("a {} needs {}", ty.noun(), f.name)));
            }
        }
    }
    if let Some(app_id) = fields.get("appId").and_then(Value::as_str) {
        if Uuid::parse_str(app_id).is_err() {
            return Err(Error::Invalid(format!(
                "appId {app_id:?} is not a GUID (such as 3f2504e0-4f89-11d3-9a0c-0305e82c3301)"
            )));
        }
    }
    if let Some(upn) = fields.get("userPrincipalName").and_then(Value::as_str) {
        let dotted = |p: &str| !p.is_empty() && p.split('.').all(|l| !l.is_empty());
        let valid = upn.split_once('@').is_some_and(|(alias, domain)| {
            dotted(alias)
                && alias.chars().count() <= 64
                && dotted(domain)
                && domain.contains('.')
                && !domain.contains('@')
                && upn.chars().count() <= 113
                && !upn.contains(char::is_whitespace)
        });
        if !valid {
            return Err(Error::Invalid(format!(
                "userPrincipalName {upn:?} is not of the form alias@domain.tld (one @, no empty or leading/trailing dot parts, alias at most 64 and all at most 113 characters)"
            )));
        }
    }
    Ok(())
}

/// Checks one client-supplied value against its field: its kind, and every string in it
/// (length, no control or text-direction characters).
fn check_value(ty: ObjectType, name: &str, field: &Field, v: &Value) -> Result<()> {
    let ok = match field.kind {
        Kind::Str => {
            v.as_str().is_some_and(|s| !s.trim().is_empty()) || (!field.required && v.is_null())
        }
        Kind::Bool => v.is_boolean(),
        Kind::StrList => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
    };
    let strings: Vec<&str> = match v {
        Value::String(s) => vec![s],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    for s in strings {
        if s.chars().count() > MAX_STRING_CHARS {
            return Err(Error::Invalid(format!(
                "{} field {name} is {} characters long; at most {MAX_STRING_CHARS}",
                ty.noun(),
                s.chars().count()
            )));
        }
        if s.chars().any(is_unsafe_char) {
            return Err(Error::Invalid(format!(
                "{} field {name} holds a control character or a text-direction one (a newline, tab, escape, U+202E...): {s:?}",
                ty.noun()
            )));
        }
    }
    if !ok {
        let want = match field.kind {
            Kind::Str => "a non-empty string",
            Kind::Bool => "true or false",
            Kind::StrList => "a list of strings",
        };
        return Err(Error::Invalid(format!(
            "{} field {name} must be {want}, got {v}",
            ty.noun()
        )));
    }
    Ok(())
}
