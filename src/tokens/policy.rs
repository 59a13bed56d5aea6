//! The claim checks every token goes through, JWT or introspected: lifetime, issuer,
//! audience and scopes (the binding is `binding`'s). Each returns the named rejection it
//! fails with.

use crate::reply::rejection::Rejection;
use crate::tokens::claims::Claims;
use crate::tokens::facts::Lifetime;

/// `exp`, `nbf` and `iat` against `now`, with `leeway` seconds of skew either way.
/// `malformed` is the rejection for a time claim that is not a NumericDate.
pub fn check_lifetime(
    claims: &Claims,
    now: u64,
    leeway: u64,
    exp_required: bool,
    malformed: Rejection,
) -> Result<(), Rejection> {
    Lifetime::of(claims)
        .map_err(|_| malformed)?
        .check(now, leeway, exp_required)
}

/// `iss` must equal `expected` exactly (no normalisation: RFC 8414 §3.3 style comparison).
/// With `required` false an absent `iss` passes (introspection responses may omit it).
pub fn check_issuer(claims: &Claims, expected: &str, required: bool) -> Result<(), Rejection> {
    match claims.get("iss") {
        None if !required => Ok(()),
        Some(v) if v.as_str() == Some(expected) => Ok(()),
        _ => Err(Rejection::IssuerMismatch),
    }
}

/// Any one of `required` in `aud` is enough; an empty `required` checks nothing.
pub fn check_audience(claims: &Claims, required: &[String]) -> Result<(), Rejection> {
    if required.is_empty() {
        return Ok(());
    }
    let auds = claims.audiences();
    if required.iter().any(|r| auds.contains(&r.as_str())) {
        Ok(())
    } else {
        Err(Rejection::AudienceMismatch)
    }
}

/// Every scope in `required` must be granted.
pub fn check_scopes(claims: &Claims, required: &[String]) -> Result<(), Rejection> {
    let granted = claims.scopes();
    if required.iter().all(|r| granted.contains(&r.as_str())) {
        Ok(())
    } else {
        Err(Rejection::InsufficientScope)
    }
}
