//! JWT access tokens (RFC 9068): recognising one, the cheap checks on the still-unverified
//! header and claims, and the signature check with jwt-simple last. A forged token from a
//! client without the bound certificate is refused before any signature arithmetic.

use std::collections::HashSet;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jwt_simple::prelude::{
    Duration as JwtDuration, JWTClaims, NoCustomClaims, UnixTimeStamp, VerificationOptions,
};
use serde_json::{Map, Value};

use crate::reply::rejection::Rejection;
use crate::tokens::claims::Claims;
use crate::tokens::credentials::MAX_TOKEN_LENGTH;
use crate::tokens::jwks::{Alg, VerifyKey};

/// The protected header members we act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub alg: String,
    pub kid: Option<String>,
    pub typ: Option<String>,
    pub crit: bool,
}

/// A token split and decoded, nothing verified yet.
#[derive(Debug, Clone)]
pub struct UnverifiedJwt {
    pub header: Header,
    pub alg: Alg,
    pub claims: Claims,
}

/// What JWT validation needs from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct JwtRules<'a> {
    pub issuer: &'a str,
    pub algorithms: &'a [Alg],
    pub typ_strict: bool,
    pub audience_required: &'a [String],
    pub leeway: u64,
    /// Refuse a token whose `iat` is older than this many seconds (signed introspection
    /// responses must be fresh).
    pub max_age: Option<u64>,
}

fn decode_json_object(segment: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(segment).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// A JSON object read in one pass, noting whether a member is named twice at its top level:
/// serde_json's map keeps the last silently, and jwt-simple refuses such a payload only after
/// the signature check, which would name the refusal wrongly.
struct Members {
    map: Map<String, Value>,
    repeated: bool,
}

impl<'de> serde::Deserialize<'de> for Members {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Members;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Members, A::Error> {
                let mut out = Members {
                    map: Map::new(),
                    repeated: false,
                };
                while let Some((name, value)) = m.next_entry::<String, Value>()? {
                    out.repeated |= out.map.insert(name, value).is_some();
                }
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }
}

fn decode_members(segment: &str) -> Option<Members> {
    let bytes = URL_SAFE_NO_PAD.decode(segment).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn split3(token: &str) -> Option<(&str, &str, &str)> {
    let mut parts = token.split('.');
    let (h, c, s) = (parts.next()?, parts.next()?, parts.next()?);
    parts.next().is_none().then_some((h, c, s))
}

/// The payload of a token shaped like a JWS, unverified.
pub fn payload_of(token: &str) -> Option<Claims> {
    let (_, payload, _) = split3(token)?;
    decode_json_object(payload).map(Claims)
}

/// A token whose first segment is a JSON object (a JOSE header) that is neither a JWS with a
/// string `alg` (three segments) nor a JWE (five segments, `enc` in its header): something
/// no IdP issues, so not worth an introspection call.
pub fn is_broken_jose(token: &str) -> bool {
    let mut segments = token.split('.');
    let Some(header) = segments.next().and_then(decode_json_object) else {
        return false;
    };
    let count = 1 + segments.count();
    let jws = count == 3 && header.get("alg").is_some_and(Value::is_string);
    let jwe = count == 5 && header.get("enc").is_some_and(Value::is_string);
    !(jws || jwe)
}

/// The protected header, if the token is shaped like a JWS: three base64url segments whose
/// first is a JSON object with a string `alg`. Anything else is an opaque token.
pub fn header_of(token: &str) -> Option<Header> {
    let (h, _, _) = split3(token)?;
    let header = decode_json_object(h)?;
    let alg = header.get("alg")?.as_str()?.to_string();
    let text = |k: &str| header.get(k).and_then(Value::as_str).map(str::to_string);
    Some(Header {
        alg,
        kid: text("kid"),
        typ: text("typ"),
        crit: header.get("crit").is_some(),
    })
}

/// RFC 9068 §4: `typ` is `at+jwt` (or `application/at+jwt`), compared case-insensitively.
fn typ_allowed(typ: Option<&str>, strict: bool) -> bool {
    let norm = typ.map(|t| {
        let t = t.to_ascii_lowercase();
        t.strip_prefix("application/")
            .map(str::to_string)
            .unwrap_or(t)
    });
    match norm.as_deref() {
        Some("at+jwt") => true,
        Some("jwt") | None => !strict,
        Some(_) => false,
    }
}

/// Decodes the token and runs every check that needs neither a key nor the time: algorithm,
/// `crit`, `typ`, `iss` and audience. The caller checks the lifetime and the binding next
/// (from `tokens::facts`), then the signature.
pub fn inspect(token: &str, rules: &JwtRules<'_>) -> Result<UnverifiedJwt, Rejection> {
    let header = header_of(token).ok_or(Rejection::MalformedJwt)?;
    let alg = Alg::from_name(&header.alg)
        .filter(|a| rules.algorithms.contains(a))
        .ok_or(Rejection::AlgorithmNotAllowed)?;
    if header.crit {
        return Err(Rejection::CriticalHeader);
    }
    if !typ_allowed(header.typ.as_deref(), rules.typ_strict) {
        return Err(Rejection::TypeNotAllowed);
    }
    let (_, payload, signature) = split3(token).ok_or(Rejection::MalformedJwt)?;
    if signature.is_empty() {
        return Err(Rejection::MalformedJwt);
    }
    let members = decode_members(payload).ok_or(Rejection::MalformedJwt)?;
    if members.repeated {
        return Err(Rejection::DuplicateClaim);
    }
    let claims = Claims(members.map);
    crate::tokens::policy::check_issuer(&claims, rules.issuer, true)?;
    crate::tokens::policy::check_audience(&claims, rules.audience_required)?;
    Ok(UnverifiedJwt {
        header,
        alg,
        claims,
    })
}

/// Verifies the signature with `key`, then re-checks the registered claims on the
/// now-authenticated payload with our clock, leeway and limits: jwt-simple does both for EC and
/// Ed25519 keys (its defaults would be a 15-minute tolerance and a 1 MB token), `sigalgs` and
/// `recheck_claims` (the same rules) for RSA keys.
pub fn verify_signature(
    token: &str,
    key: &VerifyKey,
    rules: &JwtRules<'_>,
    now: u64,
) -> Result<(), Rejection> {
    let options = VerificationOptions {
        time_tolerance: Some(JwtDuration::from_secs(rules.leeway)),
        artificial_time: Some(UnixTimeStamp::from_secs(now)),
        allowed_issuers: Some(HashSet::from([rules.issuer.to_string()])),
        allowed_audiences: (!rules.audience_required.is_empty())
            .then(|| rules.audience_required.iter().cloned().collect()),
        max_token_length: Some(MAX_TOKEN_LENGTH),
        max_validity: rules.max_age.map(JwtDuration::from_secs),
        ..Default::default()
    };
    let Some(verified) = key.verify_with_jwt_simple::<NoCustomClaims>(token, options) else {
        return verify_rsa(token, key, rules, now);
    };
    verified.map(|_| ()).map_err(|e| {
        use jwt_simple::JWTError;
        match e.downcast_ref::<JWTError>() {
            Some(JWTError::TokenHasExpired) => Rejection::Expired,
            Some(JWTError::TokenNotValidYet) => Rejection::NotYetValid,
            Some(JWTError::ClockDrift) => Rejection::IssuedInFuture,
            Some(JWTError::RequiredIssuerMismatch | JWTError::RequiredIssuerMissing) => {
                Rejection::IssuerMismatch
            }
            Some(JWTError::RequiredAudienceMismatch | JWTError::RequiredAudienceMissing) => {
                Rejection::AudienceMismatch
            }
            _ => Rejection::BadSignature,
        }
    })
}

/// An RSA key's half of `verify_signature`, in jwt-simple's order and with its parsers, so an
/// RSA token is held to exactly what an EC one is: the header read into jwt-simple's typed
/// `JWTHeader` (size limit, member types, no duplicates), no `crit`, a `typ` of `JWT` or
/// `*+JWT`, a base64url `salt` if any, the header's `alg` equal to the key's; then the
/// signature (RFC 7515 §5.2: over `header.payload` as sent); then the payload read into jwt-simple's typed `JWTClaims`
/// (registered claims of the wrong type refused) and `recheck_claims`.
fn verify_rsa(
    token: &str,
    key: &VerifyKey,
    rules: &JwtRules<'_>,
    now: u64,
) -> Result<(), Rejection> {
    let VerifyKey::Rsa(alg, public) = key else {
        return Err(Rejection::BadSignature);
    };
    let scheme = alg.rsa_scheme().ok_or(Rejection::BadSignature)?;
    if token.len() > MAX_TOKEN_LENGTH {
        return Err(Rejection::BadSignature);
    }
    let header =
        jwt_simple::token::Token::decode_metadata(token).map_err(|_| Rejection::BadSignature)?;
    let typ_ok = header.signature_type().is_none_or(|t| {
        let t = t.to_uppercase();
        t == "JWT" || t.ends_with("+JWT")
    });
    let (h, payload, _) = split3(token).ok_or(Rejection::BadSignature)?;
    // jwt-simple refuses a `salt` that is not base64url; its metadata only shows a good one.
    let salt_ok = decode_json_object(h).is_some_and(|m| {
        m.get("salt").is_none_or(|v| {
            v.as_str()
                .is_some_and(|t| URL_SAFE_NO_PAD.decode(t).is_ok())
        })
    });
    if header.critical().is_some_and(|c| !c.is_empty())
        || !typ_ok
        || !salt_ok
        || header.algorithm() != alg.name()
    {
        return Err(Rejection::BadSignature);
    }
    let (signing_input, signature) = token.rsplit_once('.').ok_or(Rejection::BadSignature)?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| Rejection::BadSignature)?;
    crate::sigalgs::rsa_verify(public, scheme, signing_input.as_bytes(), &signature)
        .map_err(|_| Rejection::BadSignature)?;
    let payload = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| Rejection::BadSignature)?;
    serde_json::from_slice::<JWTClaims<NoCustomClaims>>(&payload)
        .map_err(|_| Rejection::BadSignature)?;
    let claims = serde_json::from_slice(&payload).map_err(|_| Rejection::BadSignature)?;
    recheck_claims(&Claims(claims), rules, now)
}

/// The registered-claim checks jwt-simple makes after its signature check, with the same
/// outcomes (a `tests` case holds the two to the same answers): `iat` not in the future, not
/// older than `max_age` (and present, if `max_age` is set), `nbf`, `exp`, `iss`, `aud`.
fn recheck_claims(claims: &Claims, rules: &JwtRules<'_>, now: u64) -> Result<(), Rejection> {
    let lifetime =
        crate::tokens::facts::Lifetime::of(claims).map_err(|_| Rejection::BadSignature)?;
    let late = |t: u64| now > t.saturating_add(rules.leeway);
    let early = |t: u64| t > now.saturating_add(rules.leeway);
    if lifetime.iat.is_some_and(early) {
        return Err(Rejection::IssuedInFuture);
    }
    if let Some(max_age) = rules.max_age {
        let iat = lifetime.iat.ok_or(Rejection::BadSignature)?;
        if now > iat && now - iat > max_age {
            return Err(Rejection::BadSignature);
        }
    }
    if lifetime.nbf.is_some_and(early) {
        return Err(Rejection::NotYetValid);
    }
    if lifetime.exp.is_some_and(late) {
        return Err(Rejection::Expired);
    }
    crate::tokens::policy::check_issuer(claims, rules.issuer, true)?;
    crate::tokens::policy::check_audience(claims, rules.audience_required)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typ_rules() {
        for ok in ["at+jwt", "AT+JWT", "application/at+jwt"] {
            assert!(typ_allowed(Some(ok), true), "{ok}");
        }
        assert!(!typ_allowed(Some("JWT"), true));
        assert!(!typ_allowed(None, true));
        assert!(typ_allowed(Some("JWT"), false));
        assert!(typ_allowed(None, false));
        assert!(!typ_allowed(Some("dpop+jwt"), false));
        assert!(!typ_allowed(Some("id_token+jwt"), false));
    }

    #[test]
    fn opaque_tokens_are_not_jwts() {
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#);
        assert!(header_of(&format!("{h}.e30.c2ln")).is_some());
        assert!(header_of("abc").is_none());
        assert!(header_of("a.b").is_none());
        assert!(header_of(&format!("{h}.e30.c2ln.x")).is_none());
        let no_alg = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT"}"#);
        assert!(header_of(&format!("{no_alg}.e30.c2ln")).is_none());
        let array = URL_SAFE_NO_PAD.encode(br#"["alg"]"#);
        assert!(header_of(&format!("{array}.e30.c2ln")).is_none());
    }

    #[test]
    fn alg_names_round_trip_and_exclude_none_and_hmac() {
        for a in Alg::ALL {
            assert_eq!(Alg::from_name(a.name()), Some(a));
        }
        for bad in ["none", "HS256", "rs256", ""] {
            assert_eq!(Alg::from_name(bad), None);
        }
    }
}
