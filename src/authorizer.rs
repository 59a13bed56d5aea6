//! The decision for one token: which validation path it takes, and the ordered checks of each.
//! Pure: keys, cached answers and the clock are passed in.

use crate::certificate::Thumbprint;
use crate::claims::Claims;
use crate::config::{BearerSettings, Settings};
use crate::introspection::Answer;
use crate::jwks::KeySet;
use crate::jwt::{self, JwtRules, UnverifiedJwt};
use crate::policy;
use crate::rejection::Rejection;

/// How a token is validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Jwt,
    Introspect,
}

/// A JWT (three base64url segments, JSON header with `alg`) goes to local verification when
/// `bearer` is on; everything else is introspected when `introspection` is on. With only
/// introspection enabled every token, JWT or not, is introspected.
pub fn route(settings: &Settings, token: &str) -> Result<Route, Rejection> {
    match (&settings.bearer, &settings.introspection) {
        (Some(_), _) if jwt::header_of(token).is_some() => Ok(Route::Jwt),
        (_, Some(_)) => Ok(Route::Introspect),
        _ => Err(Rejection::NotAJwt),
    }
}

pub fn jwt_rules<'a>(settings: &'a Settings, bearer: &'a BearerSettings) -> JwtRules<'a> {
    JwtRules {
        issuer: &bearer.issuer,
        algorithms: &bearer.algorithms,
        typ_strict: bearer.typ_strict,
        audience_required: &settings.audience_required,
        leeway: settings.leeway,
    }
}

/// Every JWT check that needs no key, in order of cost: algorithm, `crit`, `typ`, `iss`,
/// lifetime, audience, then the certificate binding. Only a token that passes all of them
/// is worth a key lookup (which may cost an IdP call) and a signature check.
pub fn precheck_jwt(
    settings: &Settings,
    bearer: &BearerSettings,
    token: &str,
    thumbprint: Option<&Thumbprint>,
    now: u64,
) -> Result<UnverifiedJwt, Rejection> {
    let unverified = jwt::inspect(token, &jwt_rules(settings, bearer), now)?;
    policy::check_binding(settings.pop, &unverified.claims, thumbprint)?;
    Ok(unverified)
}

/// The outcome of looking for a key and checking the signature.
#[derive(Debug)]
pub enum Signature {
    Valid(Claims),
    Invalid(Rejection),
    /// No key with this `kid` and algorithm in any key set we hold.
    NoKey,
}

/// Checks the signature against the inline keys, then the fetched ones. A key that fails on
/// a time or audience re-check (done by jwt-simple on the verified payload) gives that
/// rejection; otherwise a bad signature.
pub fn verify_jwt(
    settings: &Settings,
    bearer: &BearerSettings,
    token: &str,
    unverified: UnverifiedJwt,
    keysets: &[&KeySet],
    now: u64,
) -> Signature {
    let rules = jwt_rules(settings, bearer);
    let kid = unverified.header.kid.as_deref();
    let mut outcome = Signature::NoKey;
    for key in keysets
        .iter()
        .flat_map(|set| set.candidates(kid, unverified.alg))
    {
        match jwt::verify_signature(token, key, &rules, now) {
            Ok(()) => {
                return match accept_verified(settings, unverified.claims) {
                    Ok(claims) => Signature::Valid(claims),
                    Err(r) => Signature::Invalid(r),
                };
            }
            Err(Rejection::BadSignature) if matches!(outcome, Signature::Invalid(_)) => {}
            Err(r) => outcome = Signature::Invalid(r),
        }
    }
    outcome
}

/// The last check on a token whose signature is known good (now, or from the cache of
/// verified tokens): the required scopes.
pub fn accept_verified(settings: &Settings, claims: Claims) -> Result<Claims, Rejection> {
    policy::check_scopes(&claims, &settings.scopes_required).map(|()| claims)
}

/// The checks on an introspection answer, with the current request's certificate: a cached
/// answer is re-checked on every request, so a token replayed from another connection fails
/// here even on a cache hit.
pub fn check_introspected(
    settings: &Settings,
    answer: &Answer,
    thumbprint: Option<&Thumbprint>,
    now: u64,
) -> Result<Claims, Rejection> {
    let claims = match answer {
        Answer::Inactive => return Err(Rejection::Inactive),
        Answer::Active(claims) => claims,
    };
    // The hint says access_token, but an IdP may still find and describe a refresh token.
    if claims
        .str("token_type")
        .is_some_and(|t| t.to_ascii_lowercase().contains("refresh_token"))
    {
        return Err(Rejection::NotAnAccessToken);
    }
    if let Some(issuer) = settings
        .introspection
        .as_ref()
        .and_then(|i| i.issuer.as_deref())
    {
        policy::check_issuer(claims, issuer, false)?;
    }
    policy::check_lifetime(claims, now, settings.leeway, false, Rejection::Inactive)?;
    policy::check_audience(claims, &settings.audience_required)?;
    policy::check_binding(settings.pop, claims, thumbprint)?;
    policy::check_scopes(claims, &settings.scopes_required)?;
    Ok(claims.clone())
}
