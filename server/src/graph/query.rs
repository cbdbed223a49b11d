//! OData query options as the Graph API takes them on a collection: `$top`, `$select`,
//! `$filter` (`eq`, `ne`, `startsWith`, `in`, `and`, `or`, `not`, parentheses), `$count`
//! and the server's own `$skiptoken`. Parsing and evaluation are pure: a filter is parsed
//! whole, its properties and literal kinds checked against the object type, before
//! anything is read; a string is compared case-insensitively, as Entra compares names.

use engine::directory::{ObjectType, PropertyKind};
use engine::request::Object;
use serde_json::Value;

use super::error::GraphError;

/// Graph's largest page.
pub const MAX_TOP: usize = 999;
/// A page when the client names no `$top`.
pub const DEFAULT_TOP: usize = 100;
/// The longest `$filter` taken.
const MAX_FILTER_CHARS: usize = 4096;
/// The most values an `in` list takes (Graph's own limit is 15).
const MAX_IN_VALUES: usize = 15;

/// The query options of one request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Query {
    pub top: Option<usize>,
    pub select: Option<Vec<String>>,
    pub filter: Option<Filter>,
    pub count: bool,
    /// The last ID of the page before.
    pub skiptoken: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    Str(String),
    Bool(bool),
    Null,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    Eq(String, Literal),
    Ne(String, Literal),
    In(String, Vec<Literal>),
    StartsWith(String, String),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
}

/// Parses a request's raw query string. `eventual`: the request said
/// `ConsistencyLevel: eventual` (which `$count` needs, as in Graph). `collection`: whether
/// it addresses a collection (a single object takes `$select` only).
pub fn parse(
    raw: &str,
    ty: &[ObjectType],
    eventual: bool,
    collection: bool,
) -> Result<Query, GraphError> {
    let mut q = Query::default();
    let mut seen = std::collections::BTreeSet::new();
    for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
        if !k.starts_with('$') {
            continue; // Not a query option: Graph ignores it too.
        }
        if !seen.insert(k.to_string()) {
            return Err(GraphError::bad_request(format!(
                "query option {k} is given twice"
            )));
        }
        let only_collection = |name: &str| -> Result<(), GraphError> {
            match collection {
                true => Ok(()),
                false => Err(GraphError::bad_request(format!(
                    "query option {name} applies to a collection, not to one object"
                ))),
            }
        };
        match k.as_ref() {
            "$top" => {
                only_collection("$top")?;
                let n: usize = v.parse().map_err(|_| {
                    GraphError::bad_request(format!("Invalid page size specified: {v:?}"))
                })?;
                if !(1..=MAX_TOP).contains(&n) {
                    return Err(GraphError::bad_request(format!(
                        "Invalid page size specified: {n}; $top is 1 to {MAX_TOP}"
                    )));
                }
                q.top = Some(n);
            }
            "$select" => q.select = Some(parse_select(&v, ty)?),
            "$filter" => {
                only_collection("$filter")?;
                q.filter = Some(parse_filter(&v, ty)?);
            }
            "$count" => {
                only_collection("$count")?;
                q.count = match v.as_ref() {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(GraphError::bad_request(format!(
                            "$count is true or false, not {v:?}"
                        )))
                    }
                };
                if q.count && !eventual {
                    return Err(GraphError::bad_request(
                        "$count needs the request header ConsistencyLevel: eventual",
                    ));
                }
            }
            "$skiptoken" => {
                only_collection("$skiptoken")?;
                uuid::Uuid::parse_str(&v).map_err(|_| {
                    GraphError::bad_request(format!("$skiptoken {v:?} is not one this service made"))
                })?;
                q.skiptoken = Some(v.to_string());
            }
            other => {
                return Err(GraphError::unsupported_query(format!(
                    "query option {other} is not supported (supported: $top, $select, $filter, $count, $skiptoken)"
                )))
            }
        }
    }
    Ok(q)
}

fn parse_select(v: &str, ty: &[ObjectType]) -> Result<Vec<String>, GraphError> {
    let names: Vec<String> = v.split(',').map(|s| s.trim().to_string()).collect();
    for n in &names {
        if property_kind(ty, n).is_none() {
            return Err(GraphError::bad_request(format!(
                "Could not find a property named '{n}' on type 'microsoft.graph.{}'",
                types_name(ty)
            )));
        }
    }
    Ok(names)
}

/// What property `name` holds in the first of `types` that has it.
fn property_kind(types: &[ObjectType], name: &str) -> Option<PropertyKind> {
    types.iter().find_map(|t| t.property_kind(name))
}

/// Graph's name of one type, or `directoryObject` for several.
fn types_name(types: &[ObjectType]) -> &'static str {
    match types {
        [one] => type_name(*one),
        _ => "directoryObject",
    }
}

/// Graph's name of the type (`user`, `servicePrincipal`...).
pub fn type_name(ty: ObjectType) -> &'static str {
    ty.odata_type().trim_start_matches("#microsoft.graph.")
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Open,
    Close,
    Comma,
}

fn tokenize(s: &str) -> Result<Vec<Tok>, GraphError> {
    let bad = |m: String| GraphError::bad_request(format!("Invalid filter clause: {m}"));
    let mut out = Vec::new();
    let mut it = s.char_indices().peekable();
    while let Some((i, c)) = it.next() {
        match c {
            c if c.is_whitespace() => {}
            '(' => out.push(Tok::Open),
            ')' => out.push(Tok::Close),
            ',' => out.push(Tok::Comma),
            '\'' => {
                let mut lit = String::new();
                loop {
                    match it.next() {
                        Some((_, '\'')) if it.peek().map(|p| p.1) == Some('\'') => {
                            it.next();
                            lit.push('\'');
                        }
                        Some((_, '\'')) => break,
                        Some((_, ch)) => lit.push(ch),
                        None => return Err(bad(format!("unterminated string starting at {i}"))),
                    }
                }
                out.push(Tok::Str(lit));
            }
            c if c.is_ascii_alphabetic() => {
                let mut id = String::from(c);
                while let Some(&(_, n)) = it.peek() {
                    if n.is_ascii_alphanumeric() || n == '_' {
                        id.push(n);
                        it.next();
                    } else {
                        break;
                    }
                }
                out.push(Tok::Ident(id));
            }
            other => return Err(bad(format!("unexpected {other:?} at {i}"))),
        }
    }
    Ok(out)
}

/// Parses `$filter` for objects of `ty`.
pub fn parse_filter(s: &str, ty: &[ObjectType]) -> Result<Filter, GraphError> {
    if s.chars().count() > MAX_FILTER_CHARS {
        return Err(GraphError::bad_request(format!(
            "Invalid filter clause: longer than {MAX_FILTER_CHARS} characters"
        )));
    }
    let toks = tokenize(s)?;
    let mut p = Parser {
        toks,
        at: 0,
        ty: ty.to_vec(),
        depth: 0,
    };
    let f = p.or()?;
    if p.at != p.toks.len() {
        return Err(p.bad(format!("unexpected {:?}", p.toks[p.at])));
    }
    Ok(f)
}

struct Parser {
    toks: Vec<Tok>,
    at: usize,
    ty: Vec<ObjectType>,
    depth: usize,
}

impl Parser {
    fn bad(&self, m: String) -> GraphError {
        GraphError::bad_request(format!("Invalid filter clause: {m}"))
    }

    fn peek_word(&self, w: &str) -> bool {
        matches!(self.toks.get(self.at), Some(Tok::Ident(i)) if i.eq_ignore_ascii_case(w))
    }

    fn next(&mut self) -> Result<Tok, GraphError> {
        let t = self
            .toks
            .get(self.at)
            .cloned()
            .ok_or_else(|| self.bad("unexpected end".into()))?;
        self.at += 1;
        Ok(t)
    }

    fn expect(&mut self, want: Tok) -> Result<(), GraphError> {
        let got = self.next()?;
        match got == want {
            true => Ok(()),
            false => Err(self.bad(format!("expected {want:?}, got {got:?}"))),
        }
    }

    fn or(&mut self) -> Result<Filter, GraphError> {
        self.depth += 1;
        if self.depth > 32 {
            return Err(self.bad("nested too deeply".into()));
        }
        let mut f = self.and()?;
        while self.peek_word("or") {
            self.at += 1;
            f = Filter::Or(Box::new(f), Box::new(self.and()?));
        }
        self.depth -= 1;
        Ok(f)
    }

    fn and(&mut self) -> Result<Filter, GraphError> {
        let mut f = self.unary()?;
        while self.peek_word("and") {
            self.at += 1;
            f = Filter::And(Box::new(f), Box::new(self.unary()?));
        }
        Ok(f)
    }

    fn unary(&mut self) -> Result<Filter, GraphError> {
        if self.peek_word("not") {
            self.at += 1;
            self.depth += 1;
            if self.depth > 32 {
                return Err(self.bad("nested too deeply".into()));
            }
            let f = Filter::Not(Box::new(self.unary()?));
            self.depth -= 1;
            return Ok(f);
        }
        match self.next()? {
            Tok::Open => {
                let f = self.or()?;
                self.expect(Tok::Close)?;
                Ok(f)
            }
            Tok::Ident(w) if w.eq_ignore_ascii_case("startswith") => {
                self.expect(Tok::Open)?;
                let prop = self.property()?;
                if self.kind(&prop)? != PropertyKind::String {
                    return Err(self.bad(format!(
                        "startsWith needs a string property; {prop} is not one"
                    )));
                }
                self.expect(Tok::Comma)?;
                let Tok::Str(prefix) = self.next()? else {
                    return Err(self.bad("startsWith's second argument is a quoted string".into()));
                };
                self.expect(Tok::Close)?;
                Ok(Filter::StartsWith(prop, prefix))
            }
            Tok::Ident(_) => {
                self.at -= 1;
                let prop = self.property()?;
                let op = match self.next()? {
                    Tok::Ident(op) => op.to_ascii_lowercase(),
                    other => {
                        return Err(
                            self.bad(format!("expected eq, ne or in after {prop}, got {other:?}"))
                        )
                    }
                };
                match op.as_str() {
                    "eq" | "ne" => {
                        let lit = self.literal(&prop)?;
                        Ok(match op.as_str() {
                            "eq" => Filter::Eq(prop, lit),
                            _ => Filter::Ne(prop, lit),
                        })
                    }
                    "in" => {
                        self.expect(Tok::Open)?;
                        let mut values = vec![self.literal(&prop)?];
                        loop {
                            match self.next()? {
                                Tok::Comma => values.push(self.literal(&prop)?),
                                Tok::Close => break,
                                other => return Err(self.bad(format!("expected , or ) in the in list, got {other:?}"))),
                            }
                        }
                        if values.len() > MAX_IN_VALUES {
                            return Err(self.bad(format!("an in list takes at most {MAX_IN_VALUES} values")));
                        }
                        Ok(Filter::In(prop, values))
                    }
                    other => Err(GraphError::unsupported_query(format!(
                        "Invalid filter clause: operator {other:?} is not supported (eq, ne, in, startsWith, and, or, not)"
                    ))),
                }
            }
            other => Err(self.bad(format!("unexpected {other:?}"))),
        }
    }

    fn property(&mut self) -> Result<String, GraphError> {
        match self.next()? {
            Tok::Ident(p) => {
                self.kind(&p)?;
                Ok(p)
            }
            other => Err(self.bad(format!("expected a property, got {other:?}"))),
        }
    }

    fn kind(&self, prop: &str) -> Result<PropertyKind, GraphError> {
        match property_kind(&self.ty, prop) {
            Some(PropertyKind::StringList) => Err(GraphError::unsupported_query(format!(
                "Invalid filter clause: {prop} is a collection; filtering on it is not supported"
            ))),
            Some(k) => Ok(k),
            None => Err(GraphError::bad_request(format!(
                "Invalid filter clause: could not find a property named '{prop}' on type 'microsoft.graph.{}'",
                types_name(&self.ty)
            ))),
        }
    }

    fn literal(&mut self, prop: &str) -> Result<Literal, GraphError> {
        let kind = self.kind(prop)?;
        let lit = match self.next()? {
            Tok::Str(s) => Literal::Str(s),
            Tok::Ident(w) if w == "true" => Literal::Bool(true),
            Tok::Ident(w) if w == "false" => Literal::Bool(false),
            Tok::Ident(w) if w == "null" => Literal::Null,
            other => return Err(self.bad(format!("expected a literal for {prop}, got {other:?}"))),
        };
        let fits = matches!(
            (&lit, kind),
            (Literal::Null, _)
                | (Literal::Str(_), PropertyKind::String)
                | (Literal::Bool(_), PropertyKind::Bool)
        );
        match fits {
            true => Ok(lit),
            false => Err(self.bad(format!("{prop} cannot be compared with {lit:?}"))),
        }
    }
}

impl Filter {
    pub fn matches(&self, o: &Object) -> bool {
        match self {
            Filter::Eq(p, l) => equal(o.get(p), l),
            Filter::Ne(p, l) => !equal(o.get(p), l),
            Filter::In(p, ls) => ls.iter().any(|l| equal(o.get(p), l)),
            Filter::StartsWith(p, prefix) => o
                .get(p)
                .and_then(Value::as_str)
                .is_some_and(|v| v.to_lowercase().starts_with(&prefix.to_lowercase())),
            Filter::And(a, b) => a.matches(o) && b.matches(o),
            Filter::Or(a, b) => a.matches(o) || b.matches(o),
            Filter::Not(a) => !a.matches(o),
        }
    }
}

fn equal(v: Option<&Value>, l: &Literal) -> bool {
    match (v, l) {
        (None | Some(Value::Null), Literal::Null) => true,
        (Some(Value::String(s)), Literal::Str(x)) => s.to_lowercase() == x.to_lowercase(),
        (Some(Value::Bool(b)), Literal::Bool(x)) => b == x,
        _ => false,
    }
}

/// One page of `objects`: those the filter keeps, by ID, after the skip token, at most
/// `$top`; the skip token of the next page if there is one; how many the filter keeps in all.
pub fn page(mut objects: Vec<Object>, q: &Query) -> (Vec<Object>, Option<String>, usize) {
    if let Some(f) = &q.filter {
        objects.retain(|o| f.matches(o));
    }
    let total = objects.len();
    let id = |o: &Object| {
        o.get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    objects.sort_by_key(id);
    if let Some(after) = &q.skiptoken {
        let after = after.to_lowercase();
        objects.retain(|o| id(o) > after);
    }
    let top = q.top.unwrap_or(DEFAULT_TOP);
    let next = (objects.len() > top).then(|| id(&objects[top - 1]));
    objects.truncate(top);
    (objects, next, total)
}

/// `o` with only the properties `$select` names (and its `@odata.type`, which clients
/// need to tell a user from a group in a mixed collection).
pub fn project(o: Object, select: Option<&[String]>) -> Object {
    let Some(names) = select else { return o };
    o.into_iter()
        .filter(|(k, _)| k == "@odata.type" || names.iter().any(|n| n == k))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn user(id: &str, upn: &str, name: &str, enabled: Option<bool>) -> Object {
        let mut v = serde_json::json!({"id": id, "userPrincipalName": upn, "displayName": name});
        if let Some(e) = enabled {
            v["accountEnabled"] = Value::Bool(e);
        }
        v.as_object().cloned().unwrap()
    }

    fn f(s: &str) -> Result<Filter, GraphError> {
        parse_filter(s, &[ObjectType::User])
    }

    #[test]
    fn filters_parse_and_match() {
        let ada = user("1", "ada@contoso.com", "Ada Lovelace", Some(true));
        let bob = user("2", "bob@contoso.com", "Bob", None);
        let cases = [
            ("userPrincipalName eq 'ADA@contoso.com'", true, false),
            ("startsWith(displayName,'ada')", true, false),
            ("startswith(displayName, 'B')", false, true),
            ("displayName in ('Bob', 'Carol')", false, true),
            ("accountEnabled eq true", true, false),
            ("accountEnabled eq null", false, true),
            ("accountEnabled ne true", false, true),
            ("not (displayName eq 'Bob')", true, false),
            (
                "displayName eq 'Bob' or startsWith(userPrincipalName,'ada')",
                true,
                true,
            ),
            (
                "displayName eq 'Bob' and accountEnabled eq true",
                false,
                false,
            ),
            (
                "mail eq null and (displayName eq 'Bob' or displayName eq 'x')",
                false,
                true,
            ),
            ("displayName eq 'it''s'", false, false),
        ];
        for (s, a, b) in cases {
            let filter = f(s).unwrap_or_else(|e| panic!("{s}: {e:?}"));
            assert_eq!((filter.matches(&ada), filter.matches(&bob)), (a, b), "{s}");
        }
        assert_eq!(
            f("displayName eq 'it''s'").unwrap(),
            Filter::Eq("displayName".into(), Literal::Str("it's".into()))
        );
    }

    #[test]
    fn bad_filters_and_injection_attempts_are_400s() {
        for s in [
            "",
            "displayName",
            "displayName eq",
            "displayName eq 'x",
            "displayName eq 'x' or 1 eq 1",
            "displayName eq 'x'; drop",
            "displayName eq 'x' --",
            "nosuch eq 'x'",
            "accountEnabled eq 'yes'",
            "displayName eq true",
            "startsWith(accountEnabled,'t')",
            "displayName gt 'a'",
            "(displayName eq 'x'",
            "displayName eq 'x')",
            "displayName in ()",
            "displayName eq \"x\"",
            "displayName eq 'x' or",
            "' or ''='",
            "$filter=displayName eq 'x'",
        ] {
            let e = f(s).expect_err(s);
            assert_eq!(e.status.as_u16(), 400, "{s}: {e:?}");
        }
        let deep = format!("{}displayName eq 'x'{}", "(".repeat(100), ")".repeat(100));
        assert_eq!(f(&deep).unwrap_err().status.as_u16(), 400);
        let long = format!("displayName eq '{}'", "x".repeat(5000));
        assert_eq!(f(&long).unwrap_err().status.as_u16(), 400);
    }

    #[test]
    fn query_options_are_checked() {
        let q = parse(
            "%24top=5&%24select=id,displayName&%24count=true",
            &[ObjectType::User],
            true,
            true,
        )
        .unwrap();
        assert_eq!(q.top, Some(5));
        assert_eq!(
            q.select.as_deref(),
            Some(&["id".to_string(), "displayName".to_string()][..])
        );
        assert!(q.count);
        for (raw, eventual) in [
            ("$top=1000", true),
            ("$top=0", true),
            ("$top=99999999999999999999999", true),
            ("$top=-1", true),
            ("$top=1&$top=2", true),
            ("$count=true", false),
            ("$select=nosuch", true),
            ("$orderby=displayName", true),
            ("$skiptoken=abc", true),
            ("$search=x", true),
        ] {
            let e = parse(raw, &[ObjectType::User], eventual, true).expect_err(raw);
            assert_eq!(e.status.as_u16(), 400, "{raw}");
        }
        assert!(
            parse("$top=5", &[ObjectType::User], false, false).is_err(),
            "$top on one object"
        );
        assert!(parse("api-version=1&x=y", &[ObjectType::User], false, true).is_ok());
    }

    #[test]
    fn pages_follow_ids_and_count_what_the_filter_keeps() {
        let ids: Vec<String> = (0..7)
            .map(|i| format!("0000000{i}-0000-4000-8000-000000000000"))
            .collect();
        let objs: Vec<Object> = ids
            .iter()
            .rev()
            .map(|id| user(id, &format!("u{id}@c.com"), "n", None))
            .collect();
        let mut q = Query {
            top: Some(3),
            ..Query::default()
        };
        let mut seen = Vec::new();
        loop {
            let (p, next, total) = page(objs.clone(), &q);
            assert_eq!(total, 7);
            seen.extend(p.iter().map(|o| o["id"].as_str().unwrap().to_string()));
            match next {
                Some(t) => q.skiptoken = Some(t),
                None => break,
            }
        }
        assert_eq!(seen, ids, "every object once, in ID order");
        let q = Query {
            filter: Some(f("displayName eq 'none'").unwrap()),
            ..Query::default()
        };
        assert_eq!(page(objs, &q), (Vec::new(), None, 0));
    }

    #[test]
    fn select_keeps_the_named_properties_and_the_type() {
        let mut o = user("1", "a@b.com", "A", Some(true));
        o.insert("@odata.type".into(), "#microsoft.graph.user".into());
        let p = project(o, Some(&["displayName".to_string()]));
        let keys: Vec<&String> = p.keys().collect();
        assert_eq!(keys, vec!["@odata.type", "displayName"]);
    }
}
