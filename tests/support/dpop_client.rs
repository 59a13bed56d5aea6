//! A DPoP client for tests: keys made and proofs signed by `openssl` (EdDSA, ES256, RS256), so
//! the filter's proof checks are tested against an implementation other than its own, and
//! RFC 7638 thumbprints computed here from the RFC's rules.

use std::path::PathBuf;
use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::{NOW, openssl, pki};

/// A client's DPoP key pair.
pub struct ProofKey {
    pub alg: &'static str,
    key_file: PathBuf,
    /// The public JWK, as a proof header carries it.
    pub jwk: Value,
    /// RFC 7638 thumbprint of `jwk`: what a token's `cnf.jkt` says.
    pub jkt: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Ed25519,
    P256,
    Rsa,
    /// A second Ed25519 key: "another client".
    OtherEd25519,
    P384,
    /// An RSA key that signs with RSASSA-PSS (PS256).
    RsaPss,
}

/// The key of `kind`, made once per test binary.
pub fn proof_key(kind: KeyKind) -> &'static ProofKey {
    static KEYS: [OnceLock<ProofKey>; 6] = [const { OnceLock::new() }; 6];
    let slot = &KEYS[kind as usize];
    slot.get_or_init(|| make_key(kind))
}

fn make_key(kind: KeyKind) -> ProofKey {
    let dir = &pki().dir;
    let name = format!("dpop-{kind:?}.key");
    let genpkey: &[&str] = match kind {
        KeyKind::Ed25519 | KeyKind::OtherEd25519 => &["genpkey", "-algorithm", "ED25519"],
        KeyKind::P256 => &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ],
        KeyKind::P384 => &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-384",
        ],
        KeyKind::Rsa | KeyKind::RsaPss => &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ],
    };
    let mut args = genpkey.to_vec();
    args.extend(["-out", name.as_str()]);
    openssl(&args, dir);
    let spki = openssl(&["pkey", "-in", &name, "-pubout", "-outform", "DER"], dir);
    let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
    let (alg, jwk) = match kind {
        // The last 32 bytes of an Ed25519 SubjectPublicKeyInfo are the key.
        KeyKind::Ed25519 | KeyKind::OtherEd25519 => (
            "EdDSA",
            json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&spki[spki.len() - 32..])}),
        ),
        // ... and of a P-256 one the uncompressed point 04 || x || y.
        KeyKind::P256 | KeyKind::P384 => {
            let (alg, crv, size) = if kind == KeyKind::P256 {
                ("ES256", "P-256", 32)
            } else {
                ("ES384", "P-384", 48)
            };
            let point = &spki[spki.len() - (2 * size + 1)..];
            assert_eq!(point[0], 4);
            (
                alg,
                json!({"kty": "EC", "crv": crv, "x": b64(&point[1..=size]), "y": b64(&point[size + 1..])}),
            )
        }
        KeyKind::Rsa | KeyKind::RsaPss => {
            let pem = String::from_utf8(openssl(&["pkey", "-in", &name, "-pubout"], dir)).unwrap();
            let jwk: Value = serde_json::from_str(
                &jwt_simple::prelude::RS256PublicKey::from_pem(&pem)
                    .unwrap()
                    .to_jwk(),
            )
            .unwrap();
            let alg = if kind == KeyKind::Rsa {
                "RS256"
            } else {
                "PS256"
            };
            (alg, json!({"kty": "RSA", "n": jwk["n"], "e": jwk["e"]}))
        }
    };
    ProofKey {
        alg,
        key_file: dir.join(name),
        jkt: thumbprint(&jwk),
        jwk,
    }
}

/// RFC 7638 §3: the required members in lexicographic order, no whitespace, SHA-256.
pub fn thumbprint(jwk: &Value) -> String {
    let members: &[&str] = match jwk["kty"].as_str().unwrap() {
        "EC" => &["crv", "kty", "x", "y"],
        "RSA" => &["e", "kty", "n"],
        "OKP" => &["crv", "kty", "x"],
        other => panic!("{other}"),
    };
    let body: Vec<String> = members
        .iter()
        .map(|m| format!("\"{m}\":\"{}\"", jwk[*m].as_str().unwrap()))
        .collect();
    let canonical = format!("{{{}}}", body.join(","));
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// base64url(SHA-256(token)): a proof's `ath`.
pub fn ath(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()))
}

/// The claims of a good proof for `method url` with `token`, made now.
pub fn proof_claims(method: &str, url: &str, token: &str, jti: &str) -> Map<String, Value> {
    json!({"jti": jti, "htm": method, "htu": url, "iat": NOW, "ath": ath(token)})
        .as_object()
        .unwrap()
        .clone()
}

/// A proof JWT with `header` and `claims`, signed by `signer` with openssl.
pub fn sign(signer: &ProofKey, header: &Value, claims: &Map<String, Value>) -> String {
    let dir = &pki().dir;
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(Value::Object(claims.clone()).to_string())
    );
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let input_file = dir.join(format!("dpop-input-{}-{n}", std::process::id()));
    std::fs::write(&input_file, &input).unwrap();
    let key = signer.key_file.to_string_lossy().into_owned();
    let input_path = input_file.to_string_lossy().into_owned();
    let signature = match signer.alg {
        "EdDSA" => openssl(
            &[
                "pkeyutl",
                "-sign",
                "-rawin",
                "-inkey",
                &key,
                "-in",
                &input_path,
            ],
            dir,
        ),
        "RS256" => openssl(&["dgst", "-sha256", "-sign", &key, &input_path], dir),
        "PS256" => openssl(
            &[
                "dgst",
                "-sha256",
                "-sigopt",
                "rsa_padding_mode:pss",
                "-sigopt",
                "rsa_pss_saltlen:32",
                "-sign",
                &key,
                &input_path,
            ],
            dir,
        ),
        "ES256" => ecdsa_raw(
            &openssl(&["dgst", "-sha256", "-sign", &key, &input_path], dir),
            32,
        ),
        "ES384" => ecdsa_raw(
            &openssl(&["dgst", "-sha384", "-sign", &key, &input_path], dir),
            48,
        ),
        other => panic!("{other}"),
    };
    let _ = std::fs::remove_file(&input_file);
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// JOSE wants ECDSA signatures as r || s (`size` bytes each); openssl writes DER
/// `SEQUENCE { INTEGER r, INTEGER s }` (short-form lengths for P-256 and P-384).
fn ecdsa_raw(der: &[u8], size: usize) -> Vec<u8> {
    assert_eq!(der[0], 0x30);
    assert!(der[1] < 0x80);
    let mut at = 2;
    let mut out = Vec::new();
    for _ in 0..2 {
        assert_eq!(der[at], 0x02);
        let len = der[at + 1] as usize;
        let int = &der[at + 2..at + 2 + len];
        let int = &int[int.len().saturating_sub(size)..];
        out.extend(std::iter::repeat_n(0u8, size - int.len()));
        out.extend_from_slice(int);
        at += 2 + len;
    }
    out
}

/// The standard proof header for `key`.
pub fn header_for(key: &ProofKey) -> Value {
    json!({"typ": "dpop+jwt", "alg": key.alg, "jwk": key.jwk})
}

/// A good proof by `key` for `method url` with `token`.
pub fn proof(key: &ProofKey, method: &str, url: &str, token: &str, jti: &str) -> String {
    sign(
        key,
        &header_for(key),
        &proof_claims(method, url, token, jti),
    )
}
