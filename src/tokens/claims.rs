//! Read access to a token's claims, whether they came from a JWT payload or an introspection
//! response (RFC 7662 uses the same member names: `scope`, `aud`, `exp`, `cnf`, ...).

use serde_json::{Map, Value};

/// The `cnf` (confirmation) member, RFC 7800: what the token is bound to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Confirmation {
    /// `cnf["x5t#S256"]`: a client certificate (RFC 8705 §3.1).
    pub x5t_s256: Option<String>,
    /// `cnf.jkt`: a DPoP key (RFC 9449 §6).
    pub jkt: Option<String>,
    /// A `cnf` that binds to something neither of those: a member we cannot check (`jwk`,
    /// `x5t#S256` that is not a string), or a `cnf` that is not an object.
    pub unknown: bool,
}

impl Confirmation {
    /// No `cnf`: a plain bearer token.
    pub fn is_unbound(&self) -> bool {
        self.x5t_s256.is_none() && self.jkt.is_none() && !self.unknown
    }
}

/// A time claim that is not a NumericDate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotNumericDate;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Claims(pub Map<String, Value>);

impl Claims {
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    pub fn str(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(Value::as_str)
    }

    /// A NumericDate (RFC 7519 §2), truncated to whole seconds. `Err` if present but not a
    /// non-negative number.
    pub fn time(&self, name: &str) -> Result<Option<u64>, NotNumericDate> {
        match self.0.get(name) {
            None => Ok(None),
            Some(v) => match (v.as_u64(), v.as_f64()) {
                (Some(n), _) => Ok(Some(n)),
                (None, Some(f)) if f.is_finite() && f >= 0.0 => Ok(Some(f as u64)),
                _ => Err(NotNumericDate),
            },
        }
    }

    pub fn confirmation(&self) -> Confirmation {
        let cnf = match self.0.get("cnf") {
            None | Some(Value::Null) => return Confirmation::default(),
            Some(Value::Object(cnf)) => cnf,
            Some(_) => {
                return Confirmation {
                    unknown: true,
                    ..Confirmation::default()
                };
            }
        };
        let mut found = Confirmation::default();
        for (member, value) in cnf {
            match (member.as_str(), value) {
                ("x5t#S256", Value::String(t)) => found.x5t_s256 = Some(t.clone()),
                ("jkt", Value::String(t)) => found.jkt = Some(t.clone()),
                _ => found.unknown = true,
            }
        }
        if cnf.is_empty() {
            found.unknown = true;
        }
        found
    }

    /// Granted scopes: the space-separated `scope` string (RFC 9068 / RFC 7662), or an `scp`
    /// array or string as some IdPs emit.
    pub fn scopes(&self) -> Vec<&str> {
        let mut out = self.0.get("scope").map(scope_list).unwrap_or_default();
        if let Some(scp) = self.0.get("scp") {
            out.extend(scope_list(scp));
        }
        out
    }

    /// `aud` as a string or an array of strings.
    pub fn audiences(&self) -> Vec<&str> {
        match self.0.get("aud") {
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        }
    }

    /// A claim rendered as a header value: strings as-is, numbers and booleans in JSON form,
    /// arrays of strings space-joined, objects as JSON. `None` if absent or if the value
    /// would smuggle control characters (a header break) upstream.
    pub fn header_value(&self, name: &str) -> Option<String> {
        let text = match self.0.get(name)? {
            Value::Null => return None,
            Value::String(s) => s.clone(),
            Value::Array(items) if items.iter().all(Value::is_string) => items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" "),
            other => other.to_string(),
        };
        (!text.bytes().any(|b| b.is_ascii_control())).then_some(text)
    }
}

fn scope_list(v: &Value) -> Vec<&str> {
    match v {
        Value::String(s) => s.split(' ').filter(|s| !s.is_empty()).collect(),
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Claims {
        match v {
            Value::Object(m) => Claims(m),
            _ => Claims::default(),
        }
    }

    #[test]
    fn confirmation_forms() {
        let c = |v: Value| claims(v).confirmation();
        assert!(c(json!({})).is_unbound());
        assert!(c(json!({"cnf": null})).is_unbound());
        assert_eq!(
            c(json!({"cnf": {"x5t#S256": "abc"}})).x5t_s256.as_deref(),
            Some("abc")
        );
        let both = c(json!({"cnf": {"x5t#S256": "a", "jkt": "b"}}));
        assert_eq!(
            (both.x5t_s256.as_deref(), both.jkt.as_deref()),
            (Some("a"), Some("b"))
        );
        assert!(!both.unknown);
        assert!(c(json!({"cnf": {"x5t#S256": 5}})).unknown);
        assert!(c(json!({"cnf": {"jwk": {}}})).unknown);
        assert!(c(json!({"cnf": "x"})).unknown);
        assert!(c(json!({"cnf": {}})).unknown);
    }

    #[test]
    fn scopes_from_scope_and_scp() {
        assert_eq!(claims(json!({"scope": "a  b"})).scopes(), vec!["a", "b"]);
        assert_eq!(claims(json!({"scp": ["a", "b"]})).scopes(), vec!["a", "b"]);
        assert_eq!(
            claims(json!({"scope": "a", "scp": "b"})).scopes(),
            vec!["a", "b"]
        );
        assert!(claims(json!({"scope": 5})).scopes().is_empty());
    }

    #[test]
    fn times_accept_integers_and_fractions_only() {
        let c = claims(json!({"exp": 10, "nbf": 10.9, "iat": "10", "x": -1}));
        assert_eq!(c.time("exp"), Ok(Some(10)));
        assert_eq!(c.time("nbf"), Ok(Some(10)));
        assert_eq!(c.time("iat"), Err(NotNumericDate));
        assert_eq!(c.time("x"), Err(NotNumericDate));
        assert_eq!(c.time("missing"), Ok(None));
    }

    #[test]
    fn header_values_never_carry_control_characters() {
        let c = claims(
            json!({"sub": "alice", "n": 5, "roles": ["a", "b"], "evil": "x\r\nset-cookie: y", "o": {"k": 1}}),
        );
        assert_eq!(c.header_value("sub").as_deref(), Some("alice"));
        assert_eq!(c.header_value("n").as_deref(), Some("5"));
        assert_eq!(c.header_value("roles").as_deref(), Some("a b"));
        assert_eq!(c.header_value("o").as_deref(), Some("{\"k\":1}"));
        assert_eq!(c.header_value("evil"), None);
        assert_eq!(c.header_value("missing"), None);
    }
}
