//! A JWS signature (RFC 7515, algorithms of RFC 7518 and RFC 8037) checked with a public JWK,
//! for DPoP proofs, which carry their key in the header: jwt-simple reads a header's `jwk` as a
//! string and refuses such a token, so this checks the signature itself with the RustCrypto
//! primitives `sigalgs` already uses. Only the signature: the caller checks the claims.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac_sha256::Hash as Sha256;
use hmac_sha512::sha384::Hash as Sha384;
use serde_json::{Map, Value};

use crate::sigalgs::{self, Ecdsa};
use crate::tokens::jwks::Alg;

/// Why a signature did not verify; the detail is for tests and logs, never for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwsError {
    /// The JWK is not a usable public key for the algorithm.
    Key,
    /// The signature does not verify.
    Signature,
}

/// Checks `signature` (base64url) over `signing_input` (`header.payload` as sent) with `jwk`.
pub fn verify(
    alg: Alg,
    jwk: &Map<String, Value>,
    signing_input: &[u8],
    signature: &str,
) -> Result<(), JwsError> {
    let sig = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| JwsError::Signature)?;
    let member = |name: &str| -> Result<Vec<u8>, JwsError> {
        let text = jwk.get(name).and_then(Value::as_str).ok_or(JwsError::Key)?;
        URL_SAFE_NO_PAD.decode(text).map_err(|_| JwsError::Key)
    };
    let is = |name: &str, value: &str| jwk.get(name).and_then(Value::as_str) == Some(value);
    let bad = |_| JwsError::Signature;
    match alg {
        Alg::ES256 | Alg::ES384 => {
            let (crv, size) = if alg == Alg::ES256 {
                ("P-256", 32)
            } else {
                ("P-384", 48)
            };
            if !is("kty", "EC") || !is("crv", crv) {
                return Err(JwsError::Key);
            }
            let (x, y) = (member("x")?, member("y")?);
            if x.len() != size || y.len() != size {
                return Err(JwsError::Key);
            }
            let mut point = Vec::with_capacity(1 + 2 * size);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            if alg == Alg::ES256 {
                sigalgs::ecdsa_p256(&Sha256::hash(signing_input), &point, Ecdsa::Fixed(&sig))
            } else {
                sigalgs::ecdsa_p384(&Sha384::hash(signing_input), &point, Ecdsa::Fixed(&sig))
            }
            .map_err(bad)
        }
        Alg::EdDSA => {
            if !is("kty", "OKP") || !is("crv", "Ed25519") {
                return Err(JwsError::Key);
            }
            sigalgs::ed25519(&member("x")?, signing_input, &sig).map_err(bad)
        }
        Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512 => {
            if !is("kty", "RSA") {
                return Err(JwsError::Key);
            }
            let key =
                sigalgs::rsa_public(&member("n")?, &member("e")?).map_err(|_| JwsError::Key)?;
            let scheme = alg.rsa_scheme().ok_or(JwsError::Key)?;
            sigalgs::rsa_verify(&key, scheme, signing_input, &sig).map_err(bad)
        }
    }
}
