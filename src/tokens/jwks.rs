//! The IdP's signing keys: the algorithms we verify, and a JWKS parsed into ready
//! verification keys (jwt-simple). When a remote JWKS is fetched is `flow::keys`'s business.

use std::sync::Arc;

use jwt_simple::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::sigalgs::RsaScheme;

/// Signature algorithms we verify. `none` and HMAC are not representable: a public key can
/// never be used as an HMAC secret here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Alg {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

impl Alg {
    /// The algorithms of an RSA key.
    pub const RSA: [Alg; 6] = [
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
    ];
    pub const ALL: [Alg; 9] = [
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
        Alg::ES256,
        Alg::ES384,
        Alg::EdDSA,
    ];

    /// The RSA signature scheme of an `RS*`/`PS*` algorithm.
    pub fn rsa_scheme(self) -> Option<RsaScheme> {
        Some(match self {
            Alg::RS256 => RsaScheme::Pkcs1Sha256,
            Alg::RS384 => RsaScheme::Pkcs1Sha384,
            Alg::RS512 => RsaScheme::Pkcs1Sha512,
            Alg::PS256 => RsaScheme::PssSha256,
            Alg::PS384 => RsaScheme::PssSha384,
            Alg::PS512 => RsaScheme::PssSha512,
            Alg::ES256 | Alg::ES384 | Alg::EdDSA => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::EdDSA => "EdDSA",
        }
    }

    pub fn from_name(name: &str) -> Option<Alg> {
        Alg::ALL.into_iter().find(|a| a.name() == name)
    }
}

/// Bounds on what a JWKS may cost us: a JWKS with hundreds of keys is an attack or a mistake.
pub const MAX_KEYS: usize = 64;
pub const MAX_JWKS_BYTES: usize = 256 * 1024;

/// A public key ready to verify one algorithm. RSA keys are verified by `sigalgs` (rsa 0.10,
/// much faster in wasm than jwt-simple's rsa 0.9: see there), the others by jwt-simple.
#[derive(Debug, Clone)]
pub enum VerifyKey {
    /// `RS*` or `PS*`; the algorithms one JWK serves share one parsed key.
    Rsa(Alg, Arc<rsa::PublicKey>),
    ES256(ES256PublicKey),
    ES384(ES384PublicKey),
    EdDSA(Ed25519PublicKey),
}

impl VerifyKey {
    /// A key for `alg` from the (trimmed) JWK text; `rsa` is the JWK's RSA key, parsed once.
    fn from_jwk(
        jwk: &str,
        alg: Alg,
        rsa: Option<&Result<Arc<rsa::PublicKey>, String>>,
    ) -> Result<VerifyKey, String> {
        let simple = |e: jwt_simple::Error| e.to_string();
        Ok(match alg {
            Alg::ES256 => VerifyKey::ES256(ES256PublicKey::from_jwk(jwk).map_err(simple)?),
            Alg::ES384 => VerifyKey::ES384(ES384PublicKey::from_jwk(jwk).map_err(simple)?),
            Alg::EdDSA => VerifyKey::EdDSA(Ed25519PublicKey::from_jwk(jwk).map_err(simple)?),
            _ => {
                // Which RSA JWKs are usable stays jwt-simple's call, as before the switch to
                // rsa 0.10 (2048 to 4096 bits, `e` = 65537, `key_ops`, no EC members, size):
                // checked once per key at load, never per request.
                jwt_simple_accepts_rsa(jwk, alg).map_err(simple)?;
                match rsa {
                    Some(Ok(key)) => VerifyKey::Rsa(alg, Arc::clone(key)),
                    Some(Err(e)) => return Err(e.clone()),
                    None => return Err("is not an RSA key".into()),
                }
            }
        })
    }

    pub fn alg(&self) -> Alg {
        match self {
            VerifyKey::Rsa(alg, _) => *alg,
            VerifyKey::ES256(_) => Alg::ES256,
            VerifyKey::ES384(_) => Alg::ES384,
            VerifyKey::EdDSA(_) => Alg::EdDSA,
        }
    }

    /// Signature and registered claims, by jwt-simple; `None` for an RSA key (`jwt` checks
    /// those with `sigalgs` and its own claim re-check).
    pub fn verify_with_jwt_simple<C: serde::de::DeserializeOwned + serde::Serialize>(
        &self,
        token: &str,
        options: VerificationOptions,
    ) -> Option<Result<JWTClaims<C>, jwt_simple::Error>> {
        let o = Some(options);
        Some(match self {
            VerifyKey::Rsa(..) => return None,
            VerifyKey::ES256(k) => k.verify_token(token, o),
            VerifyKey::ES384(k) => k.verify_token(token, o),
            VerifyKey::EdDSA(k) => k.verify_token(token, o),
        })
    }
}

/// Whether jwt-simple's own JWK import takes this RSA key for `alg`.
fn jwt_simple_accepts_rsa(jwk: &str, alg: Alg) -> Result<(), jwt_simple::Error> {
    match alg {
        Alg::RS256 => RS256PublicKey::from_jwk(jwk).map(drop),
        Alg::RS384 => RS384PublicKey::from_jwk(jwk).map(drop),
        Alg::RS512 => RS512PublicKey::from_jwk(jwk).map(drop),
        Alg::PS256 => PS256PublicKey::from_jwk(jwk).map(drop),
        Alg::PS384 => PS384PublicKey::from_jwk(jwk).map(drop),
        Alg::PS512 => PS512PublicKey::from_jwk(jwk).map(drop),
        Alg::ES256 | Alg::ES384 | Alg::EdDSA => {
            Err(jwt_simple::Error::msg("is not an RSA algorithm"))
        }
    }
}

/// The RSA key of a JWK's `n` and `e` (base64url, RFC 7518 §6.3.1), read once for rsa 0.10
/// after jwt-simple has found the JWK usable.
fn rsa_key_of(jwk: &Map<String, Value>) -> Result<Arc<rsa::PublicKey>, String> {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let member = |name: &str| {
        jwk.get(name)
            .and_then(Value::as_str)
            .and_then(|t| URL_SAFE_NO_PAD.decode(t).ok())
            .ok_or_else(|| format!("has no base64url \"{name}\""))
    };
    crate::sigalgs::rsa_public(&member("n")?, &member("e")?)
        .map(Arc::new)
        .map_err(|_| "is not an RSA public key of 2048 to 8192 bits".to_string())
}

#[derive(Debug, Clone)]
struct Entry {
    kid: Option<String>,
    key: VerifyKey,
    print: KeyPrint,
}

/// A key's fingerprint: SHA-256 of its algorithm and public members, cut to 16 bytes. What
/// a verdict shared between workers names, so a worker takes it only for a key it holds too.
pub type KeyPrint = [u8; 16];

fn key_print(alg: Alg, jwk_text: &str) -> KeyPrint {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(alg.name().as_bytes())
        .chain_update(b"|")
        .chain_update(jwk_text.as_bytes())
        .finalize();
    let mut print = [0u8; 16];
    print.copy_from_slice(digest.get(..16).unwrap_or(&[0u8; 16]));
    print
}

/// Verification keys by `kid` and algorithm.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    entries: Vec<Entry>,
}

/// Why a JWKS was refused; `path` is relative to the JWKS (`.keys[2]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksError {
    pub path: String,
    pub message: String,
}

fn jwks_error(path: impl Into<String>, message: impl Into<String>) -> JwksError {
    JwksError {
        path: path.into(),
        message: message.into(),
    }
}

/// The algorithms a JWK can serve, from its `kty`/`crv` (and `alg` when it names one).
fn algorithms_for(jwk: &Map<String, Value>) -> Vec<Alg> {
    let text = |k: &str| jwk.get(k).and_then(Value::as_str);
    let family: &[Alg] = match (text("kty"), text("crv")) {
        (Some("RSA"), _) => &Alg::RSA,
        (Some("EC"), Some("P-256")) => &[Alg::ES256],
        (Some("EC"), Some("P-384")) => &[Alg::ES384],
        (Some("OKP"), Some("Ed25519")) => &[Alg::EdDSA],
        _ => &[],
    };
    match text("alg") {
        // jwt-simple accepts `Ed25519` as an alias of `EdDSA`.
        Some("Ed25519") => family
            .iter()
            .copied()
            .filter(|a| *a == Alg::EdDSA)
            .collect(),
        Some(name) => family
            .iter()
            .copied()
            .filter(|a| a.name() == name)
            .collect(),
        None => family.to_vec(),
    }
}

/// Members jwt-simple needs; `x5c` chains and other extras are dropped so the key fits its
/// JWK size limit.
const KEY_MEMBERS: [&str; 10] = [
    "kty", "crv", "alg", "use", "kid", "key_ops", "n", "e", "x", "y",
];

impl KeySet {
    /// Parses a configured JWKS (`{"keys": [...]}`, the schema checked its shape), keeping the
    /// keys usable with `allowed` algorithms. Encryption keys and key types we do not verify
    /// with are left out; a key that does not decode is left out and reported (the caller
    /// warns: a JWT it would have verified is refused, never let through).
    pub fn from_jwks(jwks: &Value, allowed: &[Alg]) -> (KeySet, Vec<JwksError>) {
        let keys = match key_list(jwks) {
            Ok(keys) => keys,
            Err(e) => return (KeySet::default(), vec![e]),
        };
        let mut entries = Vec::new();
        let mut problems = Vec::new();
        for (i, jwk) in keys.iter().enumerate().take(MAX_KEYS) {
            match parse_jwk(jwk, allowed) {
                Ok(found) => entries.extend(found),
                Err((sub, m)) => problems.push(jwks_error(format!(".keys[{i}]{sub}"), m)),
            }
        }
        if keys.len() > MAX_KEYS {
            problems.push(jwks_error(
                ".keys",
                format!("has more than {MAX_KEYS} keys; the rest"),
            ));
        }
        (KeySet { entries }, problems)
    }

    /// A JWKS fetched from the IdP. Unlike configuration, one key we cannot read (or keys
    /// past `MAX_KEYS`) must not cost the others: those are skipped and counted.
    pub fn from_fetched(body: &[u8], allowed: &[Alg]) -> Result<(KeySet, usize), JwksError> {
        if body.len() > MAX_JWKS_BYTES {
            return Err(jwks_error("", "response too large"));
        }
        let value: Value =
            serde_json::from_slice(body).map_err(|_| jwks_error("", "response is not JSON"))?;
        let keys = key_list(&value)?;
        let mut entries = Vec::new();
        let mut skipped = keys.len().saturating_sub(MAX_KEYS);
        for jwk in keys.iter().take(MAX_KEYS) {
            match parse_jwk(jwk, allowed) {
                Ok(found) => entries.extend(found),
                Err(_) => skipped += 1,
            }
        }
        Ok((KeySet { entries }, skipped))
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Candidate keys for a token: same algorithm, and same `kid` when the token names one.
    /// A token without `kid` is tried against every key of its algorithm.
    pub fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Alg,
    ) -> impl Iterator<Item = &'a VerifyKey> + 'a {
        self.entries
            .iter()
            .filter(move |e| e.key.alg() == alg && (kid.is_none() || e.kid.as_deref() == kid))
            .map(|e| &e.key)
    }

    /// `candidates`, each with its fingerprint.
    pub fn candidates_with_print<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Alg,
    ) -> impl Iterator<Item = (&'a VerifyKey, KeyPrint)> + 'a {
        self.entries
            .iter()
            .filter(move |e| e.key.alg() == alg && (kid.is_none() || e.kid.as_deref() == kid))
            .map(|e| (&e.key, e.print))
    }

    pub fn has_candidate(&self, kid: Option<&str>, alg: Alg) -> bool {
        self.candidates(kid, alg).next().is_some()
    }
}

/// The `keys` array; `{}` is an empty array that went through Kong's Lua JSON encoding.
fn key_list(jwks: &Value) -> Result<&[Value], JwksError> {
    match jwks.get("keys") {
        Some(Value::Array(keys)) => Ok(keys),
        Some(Value::Object(o)) if o.is_empty() => Ok(&[]),
        _ => Err(jwks_error("", "must be an object with a \"keys\" array")),
    }
}

/// The verification keys of one JWK: none for an encryption key or a key type we do not
/// verify with, one per allowed algorithm otherwise. `Err((sub-path, message))` if malformed.
fn parse_jwk(jwk: &Value, allowed: &[Alg]) -> Result<Vec<Entry>, (String, String)> {
    let obj = jwk
        .as_object()
        .ok_or_else(|| (String::new(), "is not a JSON object".to_string()))?;
    if obj
        .get("use")
        .and_then(Value::as_str)
        .is_some_and(|u| u != "sig")
    {
        return Ok(Vec::new());
    }
    let kid = match obj.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err((".kid".into(), "must be a string".into())),
    };
    let trimmed: Map<String, Value> = obj
        .iter()
        .filter(|(k, _)| KEY_MEMBERS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let text = Value::Object(trimmed).to_string();
    let algs: Vec<Alg> = algorithms_for(obj)
        .into_iter()
        .filter(|a| allowed.contains(a))
        .collect();
    let rsa = algs
        .iter()
        .any(|a| a.rsa_scheme().is_some())
        .then(|| rsa_key_of(obj));
    algs.into_iter()
        .map(|alg| {
            VerifyKey::from_jwk(&text, alg, rsa.as_ref())
                .map(|key| Entry {
                    kid: kid.clone(),
                    key,
                    print: key_print(alg, &text),
                })
                .map_err(|e| {
                    (
                        String::new(),
                        format!("is not a valid {} public key: {e}", alg.name()),
                    )
                })
        })
        .collect()
}
