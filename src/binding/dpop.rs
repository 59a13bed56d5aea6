//! DPoP (RFC 9449): the proof a client sends in the `DPoP` header, checked per §4.3 in order
//! of cost. `Proof::parse` decodes it and computes the key's RFC 7638 thumbprint without any
//! signature work, so a proof for another key is refused cheaply; `check_claims` compares it
//! with the request; `verify` checks its signature with the public key it carries. Nonces are
//! a MAC of the time step under a configured secret: any worker can check them, nothing is
//! shared.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::binding::jws::{self, JwsError};
use crate::reply::rejection::Rejection;
use crate::tokens::jwks::Alg;

/// Longest proof we look at; a proof with an RSA-4096 key is about 1.5 KiB.
pub const MAX_PROOF_LENGTH: usize = 8 * 1024;
/// Longest `jti` we accept (RFC 9449 asks for at least 96 bits of randomness).
const MAX_JTI_LENGTH: usize = 256;
/// Seconds per nonce: a nonce is good in its step and the next one.
pub const NONCE_STEP: u64 = 60;

/// The request a proof must be for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestTarget {
    pub method: String,
    /// `scheme://authority/path`, normalised (`normalize_htu`), no query or fragment.
    pub url: String,
}

/// A DPoP proof, decoded, its key's thumbprint computed; not verified yet.
#[derive(Debug, Clone)]
pub struct Proof {
    raw: String,
    alg: Alg,
    jwk: Map<String, Value>,
    /// RFC 7638 SHA-256 thumbprint of the proof's key, base64url: what `cnf.jkt` must equal.
    pub jkt: String,
    claims: Map<String, Value>,
}

fn decode_object(segment: &str) -> Option<Map<String, Value>> {
    match serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).ok()?).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// Members that make a JWK a private key (or a symmetric one).
const PRIVATE_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "k"];

/// RSA keys a proof may carry: 2048 to 4096 bits, exponent 65537. The key is the attacker's
/// choice and its check is done before the token is known good: a larger modulus or exponent
/// would buy an expensive verification per request.
const RSA_MIN_BYTES: usize = 256;
const RSA_MAX_BYTES: usize = 512;

fn key_size_allowed(jwk: &Map<String, Value>) -> bool {
    if jwk.get("kty").and_then(Value::as_str) != Some("RSA") {
        return true;
    }
    let decoded = |k: &str| {
        jwk.get(k)
            .and_then(Value::as_str)
            .and_then(|v| URL_SAFE_NO_PAD.decode(v).ok())
    };
    let n_ok = decoded("n").is_some_and(|n| {
        n.first().is_some_and(|b| *b != 0) && (RSA_MIN_BYTES..=RSA_MAX_BYTES).contains(&n.len())
    });
    n_ok && decoded("e").as_deref() == Some(&[1, 0, 1])
}

/// RFC 7638: SHA-256 of the JWK's required members, in lexicographic order, as compact JSON.
pub fn thumbprint(jwk: &Map<String, Value>) -> Option<String> {
    let text = |k: &str| jwk.get(k).and_then(Value::as_str);
    let members: &[&str] = match text("kty")? {
        "EC" => &["crv", "kty", "x", "y"],
        "RSA" => &["e", "kty", "n"],
        "OKP" => &["crv", "kty", "x"],
        _ => return None,
    };
    let mut canonical = Map::new();
    for m in members {
        canonical.insert((*m).to_string(), Value::String(text(m)?.to_string()));
    }
    // serde_json's Map keeps keys sorted (no preserve_order feature): the RFC's order.
    let json = Value::Object(canonical).to_string();
    Some(URL_SAFE_NO_PAD.encode(Sha256::digest(json.as_bytes())))
}

impl Proof {
    /// Decodes the proof: three segments, `typ` `dpop+jwt`, an allowed asymmetric `alg`, a
    /// `jwk` that is a public key. No signature work.
    pub fn parse(proof: &str, algorithms: &[Alg]) -> Result<Proof, Rejection> {
        let malformed = Rejection::DpopProofMalformed;
        if proof.len() > MAX_PROOF_LENGTH {
            return Err(malformed);
        }
        let mut parts = proof.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed);
        };
        if s.is_empty() {
            return Err(malformed);
        }
        let header = decode_object(h).ok_or(malformed)?;
        let claims = decode_object(c).ok_or(malformed)?;
        let text = |k: &str| header.get(k).and_then(Value::as_str);
        if !text("typ").is_some_and(|t| t.eq_ignore_ascii_case("dpop+jwt")) {
            return Err(malformed);
        }
        let alg = text("alg")
            .and_then(Alg::from_name)
            .filter(|a| algorithms.contains(a))
            .ok_or(Rejection::DpopAlgorithm)?;
        let Some(Value::Object(jwk)) = header.get("jwk") else {
            return Err(malformed);
        };
        if PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m)) {
            return Err(malformed);
        }
        if !key_size_allowed(jwk) {
            return Err(malformed);
        }
        let jkt = thumbprint(jwk).ok_or(malformed)?;
        Ok(Proof {
            raw: proof.to_string(),
            alg,
            jwk: jwk.clone(),
            jkt,
            claims,
        })
    }

    fn claim(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    /// The proof's `jti`, for replay detection.
    pub fn jti(&self) -> Option<&str> {
        self.claim("jti")
    }

    /// When the proof was made: a NumericDate, which may have a fraction (RFC 7519 §2).
    pub fn iat(&self) -> Option<u64> {
        match self.claims.get("iat")? {
            Value::Number(n) => n.as_u64().or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite() && *f >= 0.0 && *f < u64::MAX as f64)
                    .map(|f| f as u64)
            }),
            _ => None,
        }
    }

    /// The checks against the request, cheapest first: `jti`, `htm`, `htu`, `iat` within
    /// `lifetime` (+ `leeway`), `ath` of this access token, and the nonce when one is required.
    pub fn check_claims(
        &self,
        target: &RequestTarget,
        access_token: &str,
        now: u64,
        lifetime: u64,
        leeway: u64,
        nonce_key: Option<&[u8]>,
    ) -> Result<(), Rejection> {
        let jti = self.jti().ok_or(Rejection::DpopProofMalformed)?;
        if jti.is_empty() || jti.len() > MAX_JTI_LENGTH {
            return Err(Rejection::DpopProofMalformed);
        }
        if self.claim("htm") != Some(target.method.as_str()) {
            return Err(Rejection::DpopMethodMismatch);
        }
        if self.claim("htu").map(normalize_htu) != Some(Some(target.url.clone())) {
            return Err(Rejection::DpopUrlMismatch);
        }
        let iat = self.iat().ok_or(Rejection::DpopProofMalformed)?;
        if iat > now.saturating_add(leeway)
            || now > iat.saturating_add(lifetime).saturating_add(leeway)
        {
            return Err(Rejection::DpopStale);
        }
        let ath = URL_SAFE_NO_PAD.encode(Sha256::digest(access_token.as_bytes()));
        let presented = self.claim("ath").unwrap_or_default();
        if !bool::from(presented.as_bytes().ct_eq(ath.as_bytes())) {
            return Err(Rejection::DpopAth);
        }
        if let Some(key) = nonce_key {
            let fresh = self
                .claim("nonce")
                .is_some_and(|n| nonce_valid(key, n, now));
            if !fresh {
                return Err(Rejection::UseDpopNonce);
            }
        }
        Ok(())
    }

    /// The proof's signature, by the key it carries (`typ`, `alg` and the claims were
    /// checked by `parse` and `check_claims`).
    pub fn verify(&self) -> Result<(), Rejection> {
        let (input, signature) = self
            .raw
            .rsplit_once('.')
            .ok_or(Rejection::DpopProofMalformed)?;
        jws::verify(self.alg, &self.jwk, input.as_bytes(), signature).map_err(|e| match e {
            JwsError::Key => Rejection::DpopProofMalformed,
            JwsError::Signature => Rejection::DpopSignature,
        })
    }
}

/// `htu` compared per RFC 9449 §4.3: scheme and host case-insensitive, the default port
/// dropped, no query or fragment. `None` when it is not an http(s) URL.
pub fn normalize_htu(url: &str) -> Option<String> {
    let url = url.split(['?', '#']).next().unwrap_or_default();
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => ":443",
        "http" => ":80",
        _ => return None,
    };
    let split = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    let authority = authority.to_ascii_lowercase();
    let authority = authority
        .strip_suffix(default_port)
        .unwrap_or(&authority)
        .to_string();
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let path = if path.is_empty() { "/" } else { path };
    Some(format!("{scheme}://{authority}{path}"))
}

/// The nonce for `now`: the time step and a MAC of it under the configured secret, so any
/// worker can check it and none needs to remember it.
pub fn nonce(key: &[u8], now: u64) -> String {
    let step = (now / NONCE_STEP).to_be_bytes();
    let mac = hmac_sha256::HMAC::mac(step, key);
    let mut raw = step.to_vec();
    raw.extend_from_slice(mac.get(..16).unwrap_or_default());
    URL_SAFE_NO_PAD.encode(raw)
}

/// Whether `nonce` was made for this step or the previous one.
pub fn nonce_valid(key: &[u8], presented: &str, now: u64) -> bool {
    let step = now / NONCE_STEP;
    [step, step.saturating_sub(1)].into_iter().any(|s| {
        bool::from(
            nonce(key, s * NONCE_STEP)
                .as_bytes()
                .ct_eq(presented.as_bytes()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7638_thumbprint_example() {
        // RFC 7638 §3.1.
        let jwk: Map<String, Value> = serde_json::from_str(r#"{"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB","alg":"RS256","kid":"2011-04-29"}"#).unwrap();
        assert_eq!(
            thumbprint(&jwk).as_deref(),
            Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
        );
    }

    #[test]
    fn htu_normalisation() {
        assert_eq!(
            normalize_htu("HTTPS://API.Example:443/a/b?x=1#f").as_deref(),
            Some("https://api.example/a/b")
        );
        assert_eq!(
            normalize_htu("http://a:8080").as_deref(),
            Some("http://a:8080/")
        );
        assert_eq!(normalize_htu("ftp://a/b"), None);
        assert_eq!(normalize_htu("https://u@a/b"), None);
        assert_ne!(normalize_htu("https://a/B"), normalize_htu("https://a/b"));
    }

    #[test]
    fn nonces_hold_for_two_steps_under_their_key_only() {
        let key = b"0123456789abcdef0123456789abcdef";
        let n = nonce(key, 6000);
        assert!(nonce_valid(key, &n, 6000));
        assert!(nonce_valid(key, &n, 6000 + NONCE_STEP));
        assert!(!nonce_valid(key, &n, 6000 + 2 * NONCE_STEP));
        assert!(!nonce_valid(b"another key, another key, another", &n, 6000));
        assert!(!nonce_valid(key, "garbage", 6000));
    }
}
