//! Token introspection (RFC 7662): the request the gateway sends, and what an answer means.
//! Every failure to get a clear "active" answer keeps the request out.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Map, Value};

use crate::config::{ClientAuth, IntrospectionSettings};
use crate::endpoint::{CallOutcome, OutboundRequest};
use crate::tokens::claims::Claims;

/// Largest introspection response we read.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// RFC 9701 §4: the media type of a signed introspection response.
pub const SIGNED_MEDIA_TYPE: &str = "application/token-introspection+jwt";

/// Seconds a signed introspection response's `iat` may lie in the past (plus `leeway`).
pub const MAX_SIGNED_AGE: u64 = 60;

/// application/x-www-form-urlencoded keeps only these unescaped (WHATWG URL, form encoding).
const FORM: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'*')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_');

fn form_encode(s: &str) -> String {
    utf8_percent_encode(s, FORM).to_string().replace("%20", "+")
}

/// The POST to the introspection endpoint. RFC 6749 §2.3.1: the Basic credentials are the
/// form-encoded client id and secret.
pub fn request(
    settings: &IntrospectionSettings,
    token: &str,
    timeout: Duration,
) -> OutboundRequest {
    let mut req = OutboundRequest::new(&settings.endpoint, "POST", timeout);
    if settings.signed.is_some() {
        // RFC 9701 §4: ask for the signed form.
        for (k, v) in &mut req.headers {
            if k == "accept" {
                *v = SIGNED_MEDIA_TYPE.to_string();
            }
        }
    }
    req.headers.push((
        "content-type".into(),
        "application/x-www-form-urlencoded".into(),
    ));
    let mut body = format!("token={}&token_type_hint=access_token", form_encode(token));
    match settings.client_auth {
        ClientAuth::ClientSecretBasic => {
            let pair = format!(
                "{}:{}",
                form_encode(&settings.client_id),
                form_encode(&settings.client_secret)
            );
            req.headers.push((
                "authorization".into(),
                format!("Basic {}", STANDARD.encode(pair)),
            ));
        }
        ClientAuth::ClientSecretPost => {
            body.push_str(&format!(
                "&client_id={}&client_secret={}",
                form_encode(&settings.client_id),
                form_encode(&settings.client_secret)
            ));
        }
    }
    req.body = Some(body.into_bytes());
    req
}

/// An introspection answer: the token is active with these claims, or it is not.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Active(Claims),
    Inactive,
}

/// Why no answer could be had. All of them mean 503 for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No HTTP response (connect, TLS, timeout); the host's reason if it gave one.
    Unreachable(String),
    /// A status other than 200 (401 here usually means the gateway's own credentials are wrong).
    Status(u16),
    /// 200 but not a JSON object with a boolean `active`.
    Malformed,
    /// A signed response was asked for (RFC 9701) and something else came back.
    NotSigned,
    /// A signed response that does not verify: signature, `iss`, `aud` or `iat`.
    BadSignature(&'static str),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Unreachable(why) => write!(f, "introspection endpoint unreachable ({why})"),
            Failure::Status(401) => {
                f.write_str("introspection endpoint refused the gateway's credentials (HTTP 401)")
            }
            Failure::Status(s) => write!(f, "introspection endpoint answered HTTP {s}"),
            Failure::Malformed => {
                f.write_str("introspection response is not a JSON object with a boolean \"active\"")
            }
            Failure::NotSigned => f.write_str(
                "introspection response is not the signed JWT (RFC 9701) that was asked for",
            ),
            Failure::BadSignature(why) => {
                write!(f, "signed introspection response refused: {why}")
            }
        }
    }
}

/// The body of a 200 response, or why there is none to use.
fn body(outcome: &CallOutcome) -> Result<&[u8], Failure> {
    let status = outcome.status.ok_or_else(|| {
        Failure::Unreachable(
            outcome
                .failure
                .clone()
                .unwrap_or_else(|| "no response".into()),
        )
    })?;
    if status != 200 {
        return Err(Failure::Status(status));
    }
    if outcome.body.len() > MAX_RESPONSE_BYTES {
        return Err(Failure::Malformed);
    }
    Ok(&outcome.body)
}

/// An answer from a JSON object: `active` must be the JSON boolean `true`; a string "true"
/// or a missing member is a malformed answer, not an active token.
fn answer_of(map: Map<String, Value>) -> Result<Answer, Failure> {
    match map.get("active") {
        Some(Value::Bool(true)) => Ok(Answer::Active(Claims(map))),
        Some(Value::Bool(false)) => Ok(Answer::Inactive),
        _ => Err(Failure::Malformed),
    }
}

/// Reads the endpoint's JSON response (RFC 7662).
pub fn parse(outcome: &CallOutcome) -> Result<Answer, Failure> {
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body(outcome)?) else {
        return Err(Failure::Malformed);
    };
    answer_of(map)
}

/// The signed response (RFC 9701) of a 200 answer: the JWT, to be verified by the caller
/// with the IdP's keys. Its `typ` must be `token-introspection+jwt`: an unsigned JSON answer
/// to a request for the signed form is a failure, not a fallback.
pub fn signed_response(outcome: &CallOutcome) -> Result<String, Failure> {
    let text = std::str::from_utf8(body(outcome)?)
        .map_err(|_| Failure::NotSigned)?
        .trim();
    let header = crate::tokens::jwt::header_of(text).ok_or(Failure::NotSigned)?;
    let typ = header
        .typ
        .as_deref()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if typ != "token-introspection+jwt" && typ != SIGNED_MEDIA_TYPE {
        return Err(Failure::NotSigned);
    }
    Ok(text.to_string())
}

/// The answer in a verified signed response: its `token_introspection` member (RFC 9701 §5).
pub fn signed_answer(verified_jwt: &str) -> Result<Answer, Failure> {
    let claims = crate::tokens::jwt::payload_of(verified_jwt).ok_or(Failure::Malformed)?;
    if claims.time("iat").ok().flatten().is_none() {
        return Err(Failure::Malformed);
    }
    match claims.0.get("token_introspection") {
        Some(Value::Object(map)) => answer_of(map.clone()),
        _ => Err(Failure::Malformed),
    }
}

/// The claims a cached answer needs: those the checks read and those forwarded upstream.
/// Everything else an IdP returns stays out of the cache.
pub fn cacheable(answer: &Answer, forwarded: &[(Option<String>, String)]) -> Answer {
    const CHECKED: [&str; 10] = [
        "active",
        "exp",
        "nbf",
        "iat",
        "iss",
        "aud",
        "scope",
        "scp",
        "cnf",
        "token_type",
    ];
    match answer {
        Answer::Inactive => Answer::Inactive,
        Answer::Active(claims) => {
            let keep = |k: &str| {
                CHECKED.contains(&k) || forwarded.iter().any(|(c, _)| c.as_deref() == Some(k))
            };
            let map: Map<String, Value> = claims
                .0
                .iter()
                .filter(|(k, _)| keep(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            Answer::Active(Claims(map))
        }
    }
}

/// Cache payload: the JSON object for an active token, `{"active":false}` otherwise; with
/// the signed response it came in, `[object, "jwt"]` (forwarded upstream on a hit).
pub fn encode(answer: &Answer, signed: Option<&str>) -> Vec<u8> {
    let object = match answer {
        Answer::Active(claims) => Value::Object(claims.0.clone()),
        Answer::Inactive => serde_json::json!({"active": false}),
    };
    match signed {
        None => object.to_string().into_bytes(),
        Some(jwt) => Value::Array(vec![object, Value::String(jwt.to_string())])
            .to_string()
            .into_bytes(),
    }
}

/// A cached answer and the signed response it came in, if any.
pub fn decode(payload: &[u8]) -> Option<(Answer, Option<String>)> {
    match serde_json::from_slice::<Value>(payload).ok()? {
        Value::Object(map) => Some((answer_of(map).ok()?, None)),
        Value::Array(items) => match <[Value; 2]>::try_from(items).ok()? {
            [Value::Object(map), Value::String(jwt)] => Some((answer_of(map).ok()?, Some(jwt))),
            _ => None,
        },
        _ => None,
    }
}

/// How long an answer may be cached: at most `ttl`, never past the token's `exp`.
/// An inactive token never becomes active again, so `ttl` alone bounds it.
pub fn cache_until(answer: &Answer, now: u64, ttl: u64) -> Option<u64> {
    if ttl == 0 {
        return None;
    }
    let limit = now.saturating_add(ttl);
    match answer {
        Answer::Inactive => Some(limit),
        Answer::Active(claims) => match claims.time("exp") {
            Ok(Some(exp)) if exp <= now => None,
            Ok(Some(exp)) => Some(limit.min(exp)),
            Ok(None) => Some(limit),
            Err(_) => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn active(v: Value) -> Answer {
        match v {
            Value::Object(m) => Answer::Active(Claims(m)),
            _ => Answer::Inactive,
        }
    }

    #[test]
    fn cache_lifetime_is_bounded_by_ttl_and_exp() {
        assert_eq!(
            cache_until(&active(json!({"exp": 1_000})), 100, 60),
            Some(160)
        );
        assert_eq!(
            cache_until(&active(json!({"exp": 130})), 100, 60),
            Some(130)
        );
        assert_eq!(cache_until(&active(json!({"exp": 100})), 100, 60), None);
        assert_eq!(cache_until(&active(json!({})), 100, 60), Some(160));
        assert_eq!(cache_until(&active(json!({"exp": "soon"})), 100, 60), None);
        assert_eq!(cache_until(&Answer::Inactive, 100, 60), Some(160));
        assert_eq!(cache_until(&active(json!({"exp": 1_000})), 100, 0), None);
    }

    #[test]
    fn only_the_needed_claims_are_kept_and_round_trip() {
        let forwarded = vec![(Some("sub".to_string()), "x-sub".to_string())];
        let a = active(
            json!({"active": true, "sub": "s", "scope": "a", "cnf": {"x5t#S256": "t"}, "username": "u", "ext": {"big": 1}}),
        );
        let kept = cacheable(&a, &forwarded);
        let Answer::Active(c) = &kept else { panic!() };
        assert!(c.get("sub").is_some() && c.get("cnf").is_some() && c.get("scope").is_some());
        assert!(c.get("username").is_none() && c.get("ext").is_none());
        assert_eq!(decode(&encode(&kept, None)), Some((kept.clone(), None)));
        assert_eq!(
            decode(&encode(&Answer::Inactive, None)),
            Some((Answer::Inactive, None))
        );
        assert_eq!(
            decode(&encode(&kept, Some("a.b.c"))),
            Some((kept, Some("a.b.c".to_string())))
        );
        assert_eq!(decode(b"garbage"), None);
        assert_eq!(decode(b"[1, 2]"), None);
    }

    #[test]
    fn active_must_be_a_json_true() {
        let ok = |body: &str| {
            parse(&CallOutcome {
                status: Some(200),
                body: body.as_bytes().to_vec(),
                failure: None,
            })
        };
        assert!(matches!(ok(r#"{"active":true}"#), Ok(Answer::Active(_))));
        assert_eq!(ok(r#"{"active":false,"scope":"x"}"#), Ok(Answer::Inactive));
        for bad in [
            r#"{"active":"true"}"#,
            r#"{"active":1}"#,
            r#"{}"#,
            "[]",
            "",
            "{",
        ] {
            assert_eq!(ok(bad), Err(Failure::Malformed), "{bad}");
        }
        let big = format!(
            r#"{{"active":true,"pad":"{}"}}"#,
            "x".repeat(MAX_RESPONSE_BYTES)
        );
        assert_eq!(ok(&big), Err(Failure::Malformed));
    }
}
