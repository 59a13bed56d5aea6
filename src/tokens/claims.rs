//! Read access to a token's claims, whether they came from a JWT payload or an introspection
//! response (RFC 7662 uses the same member names: `scope`, `aud`, `exp`, `cnf`, ...).

use serde_json::{Map, Value};

/// The `cnf` (confirmation) member, RFC 7800 / RFC 8705 §3.1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmation {
    /// No `cnf`: a plain bearer token.
    None,
    /// `cnf["x5t#S256"]`: bound to a certificate.
    X5tS256(String),
    /// A `cnf` without a usable `x5t#S256` (e.g. a DPoP `jkt`): bound to something we cannot check.
    Other,
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
        match self.0.get("cnf") {
            None | Some(Value::Null) => Confirmation::None,
            Some(Value::Object(cnf)) => match cnf.get("x5t#S256") {
                Some(Value::String(t)) => Confirmation::X5tS256(t.clone()),
                _ => Confirmation::Other,
            },
            Some(_) => Confirmation::Other,
        }
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
        assert_eq!(claims(json!({})).confirmation(), Confirmation::None);
        assert_eq!(
            claims(json!({"cnf": null})).confirmation(),
            Confirmation::None
        );
        assert_eq!(
            claims(json!({"cnf": {"x5t#S256": "abc"}})).confirmation(),
            Confirmation::X5tS256("abc".into())
        );
        assert_eq!(
            claims(json!({"cnf": {"jkt": "abc"}})).confirmation(),
            Confirmation::Other
        );
        assert_eq!(
            claims(json!({"cnf": {"x5t#S256": 5}})).confirmation(),
            Confirmation::Other
        );
        assert_eq!(
            claims(json!({"cnf": "x"})).confirmation(),
            Confirmation::Other
        );
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
