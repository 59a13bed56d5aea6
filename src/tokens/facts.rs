//! What a decision needs from a token's claims, read out once: its lifetime, its binding,
//! whether it grants the required scopes, and the identity headers it yields. A worker keeps
//! them with the whole token (flow/known.rs), so a token seen before costs no base64, JSON or
//! hashing on the next request: only the checks that depend on the time and on the request.

use std::rc::Rc;

use crate::reply::rejection::Rejection;
use crate::tokens::claims::{Claims, Confirmation, NotNumericDate};
use crate::tokens::policy;

/// `exp`, `nbf` and `iat` as NumericDates (fractions cut).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    pub exp: Option<u64>,
    pub nbf: Option<u64>,
    pub iat: Option<u64>,
}

impl Lifetime {
    pub fn of(claims: &Claims) -> Result<Lifetime, NotNumericDate> {
        Ok(Lifetime {
            exp: claims.time("exp")?,
            nbf: claims.time("nbf")?,
            iat: claims.time("iat")?,
        })
    }

    /// Against `now`, with `leeway` seconds of skew either way.
    pub fn check(&self, now: u64, leeway: u64, exp_required: bool) -> Result<(), Rejection> {
        match self.exp {
            Some(exp) if now > exp.saturating_add(leeway) => return Err(Rejection::Expired),
            None if exp_required => return Err(Rejection::MissingExpiry),
            _ => {}
        }
        if self.nbf.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
            return Err(Rejection::NotYetValid);
        }
        if self.iat.is_some_and(|iat| iat > now.saturating_add(leeway)) {
            return Err(Rejection::IssuedInFuture);
        }
        Ok(())
    }
}

/// The values of the configured identity headers (`Settings::upstream_headers`, same order):
/// `None` clears that header.
pub type Identity = Rc<[Option<String>]>;

/// A token's claims, reduced to what is checked per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub lifetime: Lifetime,
    pub cnf: Confirmation,
    /// Every scope in `scopes_required` is granted.
    pub scopes_ok: bool,
    pub identity: Identity,
}

impl Facts {
    /// `malformed`: the rejection for a time claim that is not a NumericDate.
    pub fn of(
        claims: &Claims,
        scopes_required: &[String],
        upstream_headers: &[(Option<String>, String)],
        malformed: Rejection,
    ) -> Result<Facts, Rejection> {
        Ok(Facts {
            lifetime: Lifetime::of(claims).map_err(|_| malformed)?,
            cnf: claims.confirmation(),
            scopes_ok: policy::check_scopes(claims, scopes_required).is_ok(),
            identity: upstream_headers
                .iter()
                .map(|(claim, _)| claim.as_deref().and_then(|c| claims.header_value(c)))
                .collect(),
        })
    }

    /// The required scopes, from what was read.
    pub fn check_scopes(&self) -> Result<(), Rejection> {
        if self.scopes_ok {
            Ok(())
        } else {
            Err(Rejection::InsufficientScope)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: serde_json::Value) -> Claims {
        Claims(v.as_object().cloned().unwrap_or_default())
    }

    #[test]
    fn lifetime_bounds_with_leeway() {
        let l = Lifetime::of(&claims(json!({"exp": 100, "nbf": 50, "iat": 50}))).unwrap();
        assert_eq!(l.check(110, 10, true), Ok(()));
        assert_eq!(l.check(111, 10, true), Err(Rejection::Expired));
        assert_eq!(l.check(39, 10, true), Err(Rejection::NotYetValid));
        let none = Lifetime::of(&claims(json!({}))).unwrap();
        assert_eq!(none.check(0, 0, true), Err(Rejection::MissingExpiry));
        assert_eq!(none.check(0, 0, false), Ok(()));
        assert!(Lifetime::of(&claims(json!({"exp": "100"}))).is_err());
    }

    #[test]
    fn identity_follows_the_configured_headers() {
        let c = claims(json!({"sub": "alice", "scope": "a b", "exp": 1}));
        let headers = [
            (Some("sub".to_string()), "x-sub".to_string()),
            (Some("client_id".to_string()), "x-client".to_string()),
            (None, "x-cleared".to_string()),
        ];
        let f = Facts::of(&c, &["a".into()], &headers, Rejection::MalformedJwt).unwrap();
        assert_eq!(&*f.identity, &[Some("alice".to_string()), None, None]);
        assert_eq!(f.check_scopes(), Ok(()));
        let f = Facts::of(&c, &["c".into()], &headers, Rejection::MalformedJwt).unwrap();
        assert_eq!(f.check_scopes(), Err(Rejection::InsufficientScope));
    }
}
