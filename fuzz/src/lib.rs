//! What the fuzz targets share: fixed signing keys and the JWKS of their public halves, two
//! public test certificates, the fixed filter configurations the decider runs with, token
//! building, the checks every allowed request must pass, and the seeds that need keys.
//!
//! Keys come from fixed seeds (nothing random), so a token the fuzzer found keeps its meaning
//! in every later run, and the seeds written by `make fuzz-seeds` verify against the JWKS the
//! targets use. They sign nothing but fuzz inputs.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs;
use std::path::PathBuf;
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use certbound::binding::certificate::Thumbprint;
use certbound::config::Settings;
use certbound::flow::cache::LocalStore;
use certbound::flow::decider::{self, Decision, Phase, View};
use certbound::flow::extract::Presented;
use certbound::flow::keys::KeyFetcher;
use certbound::flow::worker::Worker;
use certbound::tokens::claims::{Claims, Confirmation};
use certbound::tokens::jwks::Alg;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;
use rsa::signature::{RandomizedSigner, SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use serde_json::{Map, Value, json};

/// "Now" for every check (2027-01-15), as in the tests.
pub const NOW: u64 = 1_800_000_000;
pub const ISSUER: &str = "https://idp.example:8443";
pub const AUDIENCE: &str = "https://api.example";
/// The scope every profile but `Narrow` requires.
pub const SCOPE: &str = "accounts:read";
pub const LEEWAY: u64 = 30;

// --- certificates ---------------------------------------------------------------------------

/// A public test certificate (self-signed, its key thrown away when it was made).
pub struct Cert {
    pub pem: &'static str,
    pub der: Vec<u8>,
    /// Lower-case hex SHA-256 of the DER, as Envoy's XFCC `Hash=` has it.
    pub hex: String,
    /// `x5t#S256`.
    pub x5t: String,
    pub thumbprint: Thumbprint,
}

const PEMS: [&str; 2] = [
    include_str!("../data/client-a.pem"),
    include_str!("../data/client-b.pem"),
];

pub fn certs() -> &'static [Cert; 2] {
    static CERTS: OnceLock<[Cert; 2]> = OnceLock::new();
    CERTS.get_or_init(|| PEMS.map(cert))
}

fn cert(pem: &'static str) -> Cert {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = STANDARD
        .decode(body)
        .expect("the test certificate is base64");
    let thumbprint = Thumbprint::from_pem(pem.as_bytes()).expect("the test certificate parses");
    let x5t = thumbprint.to_x5t_s256();
    Cert {
        pem,
        der,
        hex: hex(&thumbprint_bytes(&thumbprint)),
        x5t,
        thumbprint,
    }
}

pub fn thumbprint_bytes(tp: &Thumbprint) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(tp.to_x5t_s256())
        .expect("x5t#S256 is base64url")
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Which certificate a request presents (or a token is bound to).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
pub enum CertChoice {
    None,
    A,
    B,
}

impl CertChoice {
    pub fn cert(self) -> Option<&'static Cert> {
        match self {
            CertChoice::None => None,
            CertChoice::A => Some(&certs()[0]),
            CertChoice::B => Some(&certs()[1]),
        }
    }
    pub fn thumbprint(self) -> Option<Thumbprint> {
        self.cert().map(|c| c.thumbprint)
    }
}

// --- signing keys ---------------------------------------------------------------------------

/// Whose key signs: the IdP's (in the JWKS) or an attacker's with the same `kid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Arbitrary)]
pub enum KeyOwner {
    Idp,
    Rogue,
}

struct Pair {
    rsa: rsa::RsaPrivateKey,
    ec256: p256::ecdsa::SigningKey,
    ec384: p384::ecdsa::SigningKey,
    ed: ed25519_compact::KeyPair,
}

/// The RSA key of `seed`. Generating one takes seconds in an instrumented build, so the first
/// run keeps it (PKCS#1 DER) beside the fuzz binaries, under fuzz/target/: a build product,
/// never checked in, and the same key a fresh generation would give.
fn rsa_key(seed: u8) -> rsa::RsaPrivateKey {
    use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
    let kept = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join(format!("certbound-fuzz-rsa-{seed}.der"))));
    if let Some(key) = kept
        .as_ref()
        .and_then(|p| fs::read(p).ok())
        .and_then(|der| rsa::RsaPrivateKey::from_pkcs1_der(&der).ok())
    {
        return key;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(u64::from(seed));
    let key = rsa::RsaPrivateKey::new(&mut rng, 2048).expect("RSA key generation");
    if let (Some(path), Ok(der)) = (kept, key.to_pkcs1_der()) {
        let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
        if fs::write(&tmp, der.as_bytes()).is_ok() {
            let _ = fs::rename(&tmp, &path);
        }
    }
    key
}

fn pair(seed: u8) -> Pair {
    Pair {
        rsa: rsa_key(seed),
        ec256: p256::ecdsa::SigningKey::from_slice(&[seed.wrapping_add(0x11); 32])
            .expect("a P-256 scalar"),
        ec384: p384::ecdsa::SigningKey::from_slice(&[seed.wrapping_add(0x22); 48])
            .expect("a P-384 scalar"),
        ed: ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(
            [seed.wrapping_add(0x33); 32],
        )),
    }
}

fn idp() -> &'static Pair {
    static IDP: OnceLock<Pair> = OnceLock::new();
    IDP.get_or_init(|| pair(1))
}

fn rogue() -> &'static Pair {
    static ROGUE: OnceLock<Pair> = OnceLock::new();
    ROGUE.get_or_init(|| pair(2))
}

/// The `kid` of the IdP's key for `alg` (one RSA key serves the six RSA algorithms).
pub fn kid(alg: Alg) -> &'static str {
    match alg {
        Alg::ES256 => "ec-1",
        Alg::ES384 => "ec384-1",
        Alg::EdDSA => "ed-1",
        _ => "rsa-1",
    }
}

/// The JWS signature of `input` with `alg` (RFC 7518 encodings: PKCS#1 v1.5 or PSS, raw r||s,
/// Ed25519). Deterministic: PSS takes its salt from a fixed-seed generator. RSA signatures
/// cost milliseconds in an instrumented build and a mutation often leaves the signed bytes
/// alone, so the last few thousand are remembered.
pub fn sign(alg: Alg, owner: KeyOwner, input: &[u8]) -> Vec<u8> {
    type Memo = HashMap<(Alg, KeyOwner, Vec<u8>), Vec<u8>>;
    thread_local! {
        static MEMO: RefCell<Memo> = RefCell::new(HashMap::new());
    }
    let key = (alg, owner, input.to_vec());
    if let Some(sig) = MEMO.with(|m| m.borrow().get(&key).cloned()) {
        return sig;
    }
    let sig = sign_now(alg, owner, input);
    MEMO.with(|m| {
        let mut m = m.borrow_mut();
        if m.len() >= 4096 {
            m.clear();
        }
        m.insert(key, sig.clone());
    });
    sig
}

fn sign_now(alg: Alg, owner: KeyOwner, input: &[u8]) -> Vec<u8> {
    use rsa::sha2::{Sha256, Sha384, Sha512};
    let k = match owner {
        KeyOwner::Idp => idp(),
        KeyOwner::Rogue => rogue(),
    };
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let rsa = || k.rsa.clone();
    match alg {
        Alg::RS256 => rsa::pkcs1v15::SigningKey::<Sha256>::new(rsa())
            .sign(input)
            .to_vec(),
        Alg::RS384 => rsa::pkcs1v15::SigningKey::<Sha384>::new(rsa())
            .sign(input)
            .to_vec(),
        Alg::RS512 => rsa::pkcs1v15::SigningKey::<Sha512>::new(rsa())
            .sign(input)
            .to_vec(),
        Alg::PS256 => rsa::pss::SigningKey::<Sha256>::new(rsa())
            .sign_with_rng(&mut rng, input)
            .to_vec(),
        Alg::PS384 => rsa::pss::SigningKey::<Sha384>::new(rsa())
            .sign_with_rng(&mut rng, input)
            .to_vec(),
        Alg::PS512 => rsa::pss::SigningKey::<Sha512>::new(rsa())
            .sign_with_rng(&mut rng, input)
            .to_vec(),
        Alg::ES256 => {
            let sig: p256::ecdsa::Signature = p256::ecdsa::signature::Signer::sign(&k.ec256, input);
            sig.to_bytes().to_vec()
        }
        Alg::ES384 => {
            let sig: p384::ecdsa::Signature = p384::ecdsa::signature::Signer::sign(&k.ec384, input);
            sig.to_bytes().to_vec()
        }
        Alg::EdDSA => k.ed.sk.sign(input, None).to_vec(),
    }
}

/// The IdP's JWKS: RSA without `alg` (usable for RS* and PS*), EC P-256, P-384, Ed25519.
pub fn jwks() -> &'static Value {
    static JWKS: OnceLock<Value> = OnceLock::new();
    JWKS.get_or_init(|| {
        let k = idp();
        let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        let rsa = json!({
            "kty": "RSA", "kid": kid(Alg::RS256), "use": "sig",
            "n": b64(&k.rsa.n().to_bytes_be()), "e": b64(&k.rsa.e().to_bytes_be()),
        });
        let ec = |jwk: String, kid: &str| {
            let mut v: Value = serde_json::from_str(&jwk).expect("jwt-simple writes JSON");
            v["kid"] = json!(kid);
            v
        };
        let ec256 = jwt_simple::prelude::ES256KeyPair::from_bytes(&k.ec256.to_bytes())
            .expect("P-256 key")
            .public_key()
            .to_jwk();
        let ec384 = jwt_simple::prelude::ES384KeyPair::from_bytes(&k.ec384.to_bytes())
            .expect("P-384 key")
            .public_key()
            .to_jwk();
        let ed = json!({
            "kty": "OKP", "crv": "Ed25519", "kid": kid(Alg::EdDSA), "x": b64(k.ed.pk.as_ref()),
        });
        json!({"keys": [rsa, ec(ec256, kid(Alg::ES256)), ec(ec384, kid(Alg::ES384)), ed]})
    })
}

// --- tokens ---------------------------------------------------------------------------------

pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `header.payload` of a JWS, the part that is signed.
pub fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    )
}

/// A compact JWS signed by `owner`'s key for `alg`.
pub fn signed(alg: Alg, owner: KeyOwner, header: &Value, claims: &Value) -> String {
    let input = signing_input(header, claims);
    let sig = sign(alg, owner, input.as_bytes());
    format!("{input}.{}", b64url(&sig))
}

/// The header of an RFC 9068 token from the IdP.
pub fn good_header(alg: Alg) -> Value {
    json!({"alg": alg.name(), "typ": "at+jwt", "kid": kid(alg)})
}

/// Claims that pass every profile, bound to `cert` (unbound for `None`).
pub fn good_claims(cert: CertChoice) -> Map<String, Value> {
    let mut claims = json!({
        "iss": ISSUER,
        "sub": "client-a",
        "client_id": "client-a",
        "aud": AUDIENCE,
        "scope": "accounts:read accounts:write",
        "iat": NOW - 10,
        "nbf": NOW - 10,
        "exp": NOW + 300,
        "jti": "jti-1",
    });
    if let Some(c) = cert.cert() {
        claims["cnf"] = json!({"x5t#S256": c.x5t});
    }
    match claims {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

// --- the fixed configurations ---------------------------------------------------------------

/// The fixed filter configurations the decider runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
pub enum Profile {
    /// JWT and introspection, strict binding, audience and scope required: the tests' base.
    Strict,
    /// The same with optional binding.
    Optional,
    /// The same with no binding check and no introspection cache.
    Off,
    /// JWT only, ES256 and EdDSA only, `typ` not enforced, no audience or scope required.
    Narrow,
}

impl Profile {
    pub const ALL: [Profile; 4] = [
        Profile::Strict,
        Profile::Optional,
        Profile::Off,
        Profile::Narrow,
    ];

    pub fn from_byte(b: u8) -> Profile {
        Profile::ALL[usize::from(b) % Profile::ALL.len()]
    }

    pub fn config(self) -> Value {
        let mut c = json!({
            "issuer": ISSUER,
            "auth_methods": ["bearer", "introspection"],
            "audience_required": [AUDIENCE],
            "scopes_required": [SCOPE],
            "leeway": LEEWAY,
            "jwks": jwks(),
            "introspection_endpoint": "https://idp.example:8443/token/introspection",
            "client_id": "gateway",
            "client_secret": "not-a-secret",
            "upstreams": {"idp.example:8443": "idp"},
            "upstream_headers_claims": ["sub", "client_id"],
            "upstream_headers_names": ["x-authenticated-sub", "x-authenticated-client"],
            "realm": "api"
        });
        match self {
            Profile::Strict => {}
            Profile::Optional => c["proof_of_possession_mtls"] = json!("optional"),
            Profile::Off => {
                c["proof_of_possession_mtls"] = json!("off");
                c["cache_introspection"] = json!(0);
            }
            Profile::Narrow => {
                c["auth_methods"] = json!(["bearer"]);
                c["jwt_algorithms"] = json!(["ES256", "EdDSA"]);
                c["jwt_typ_strict"] = json!(false);
                c["audience_required"] = json!([]);
                c["scopes_required"] = json!([]);
                for k in ["introspection_endpoint", "client_id", "client_secret"] {
                    c.as_object_mut().map(|o| o.remove(k));
                }
            }
        }
        c
    }

    pub fn settings(self) -> &'static Settings {
        static SETTINGS: OnceLock<Vec<Settings>> = OnceLock::new();
        let all = SETTINGS.get_or_init(|| {
            Profile::ALL
                .iter()
                .map(|p| {
                    Settings::from_json(p.config().to_string().as_bytes())
                        .unwrap_or_else(|e| panic!("{p:?}: {e}"))
                })
                .collect()
        });
        &all[self as usize]
    }

    pub fn algorithms(self) -> &'static [Alg] {
        self.settings()
            .bearer
            .as_ref()
            .map_or(&[], |b| b.algorithms.as_slice())
    }
}

/// The decider's first decision on `token` presented with `certificate`, with a fresh worker
/// (no verified-signature or introspection cache entries) and no remote keys.
pub fn decide(profile: Profile, token: &str, certificate: Option<Thumbprint>) -> Decision {
    let worker = Worker::new(profile.settings().clone());
    let keys = KeyFetcher::default();
    let answers = LocalStore::default();
    let view = View {
        worker: &worker,
        keys: &keys,
        answers: &answers,
        now: NOW,
    };
    let presented = Presented {
        token: token.to_string(),
        certificate,
    };
    decider::decide(&presented, &view, Phase::First)
}

/// Where an allowed request's claims came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Jwt,
    Introspection,
}

/// What every allowed request must satisfy, checked here independently of the decider's code:
/// the binding per the profile's mode, issuer, lifetime, audience and scope.
pub fn assert_allowed_ok(
    profile: Profile,
    source: Source,
    claims: &Claims,
    presented: Option<&Thumbprint>,
) {
    let s = profile.settings();
    let m = &claims.0;
    // Binding (RFC 8705 §3).
    let bound = match m.get("cnf") {
        None | Some(Value::Null) => None,
        Some(cnf) => Some(cnf.get("x5t#S256").and_then(Value::as_str)),
    };
    let matches = |x5t: Option<&str>| {
        let (Some(x5t), Some(tp)) = (x5t, presented) else {
            return false;
        };
        x5t == tp.to_x5t_s256()
    };
    match profile {
        Profile::Strict | Profile::Narrow => assert!(
            matches(bound.flatten()),
            "strict binding: allowed a token whose cnf {:?} is not the presented certificate {presented:?}",
            m.get("cnf")
        ),
        Profile::Optional => assert!(
            bound.is_none() || matches(bound.flatten()),
            "optional binding: allowed a bound token whose cnf {:?} is not the presented certificate {presented:?}",
            m.get("cnf")
        ),
        Profile::Off => {}
    }
    assert!(
        claims.confirmation() != Confirmation::Other || profile == Profile::Off,
        "allowed a token bound to something we cannot check: {:?}",
        m.get("cnf")
    );
    // Issuer: required and exact for JWTs; for introspection an `iss` present must match.
    match (source, m.get("iss")) {
        (Source::Introspection, None) => {}
        (_, iss) => assert_eq!(iss, Some(&json!(ISSUER)), "allowed with issuer {iss:?}"),
    }
    // Lifetime, with the leeway either way.
    let time = |name: &str| -> Option<u64> {
        let v = m.get(name)?;
        v.as_u64().or_else(|| {
            let f = v.as_f64().filter(|f| f.is_finite() && *f >= 0.0);
            assert!(f.is_some(), "allowed with a non-numeric {name}: {v}");
            f.map(|f| f as u64)
        })
    };
    match time("exp") {
        Some(exp) => assert!(
            NOW <= exp.saturating_add(LEEWAY),
            "allowed an expired token (exp {exp})"
        ),
        None => assert_eq!(source, Source::Introspection, "allowed a JWT without exp"),
    }
    for name in ["nbf", "iat"] {
        if let Some(t) = time(name) {
            assert!(t <= NOW + LEEWAY, "allowed with {name} {t} in the future");
        }
    }
    if !s.audience_required.is_empty() {
        let ok = match m.get("aud") {
            Some(Value::String(a)) => s.audience_required.contains(a),
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .any(|a| s.audience_required.iter().any(|r| r == a)),
            _ => false,
        };
        assert!(ok, "allowed with aud {:?}", m.get("aud"));
    }
    for required in &s.scopes_required {
        let granted = |v: Option<&Value>| match v {
            Some(Value::String(s)) => s.split(' ').any(|x| x == required),
            Some(Value::Array(items)) => items.iter().any(|x| x.as_str() == Some(required)),
            _ => false,
        };
        assert!(
            granted(m.get("scope")) || granted(m.get("scp")),
            "allowed without scope {required}: scope {:?} scp {:?}",
            m.get("scope"),
            m.get("scp")
        );
    }
    if source == Source::Introspection {
        assert_eq!(
            m.get("active"),
            Some(&json!(true)),
            "allowed an inactive answer"
        );
        if let Some(t) = m.get("token_type").and_then(Value::as_str) {
            assert!(
                !t.to_ascii_lowercase().contains("refresh_token"),
                "allowed a refresh token"
            );
        }
    }
}

/// JSON equality with floats compared within 2 ULP. KNOWN FINDING (tests/fuzz_findings.rs):
/// serde_json, built without its `float_roundtrip` feature, may read a float it wrote back one
/// ULP off; the round-trip invariants use this until that is fixed.
pub fn json_close(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => {
                    x == y || (x.signum() == y.signum() && x.to_bits().abs_diff(y.to_bits()) <= 2)
                }
                _ => false,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_close(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_close(v, w)))
        }
        _ => a == b,
    }
}

// --- seeds that need keys or certificates ----------------------------------------------------

/// With `CERTBOUND_FUZZ_SEEDS=<corpus root>` set (`make fuzz-seeds`), writes `make()`'s seeds
/// as `<root>/<target>/gen-<name>`: inputs that need the keys or certificates above, which is
/// why they are made here rather than checked in. Called from each target's `init`.
pub fn write_seeds(target: &str, make: impl FnOnce() -> Vec<(String, Vec<u8>)>) {
    let Some(root) = std::env::var_os("CERTBOUND_FUZZ_SEEDS") else {
        return;
    };
    let dir = PathBuf::from(root).join(target);
    fs::create_dir_all(&dir).expect("create the corpus folder");
    for (name, bytes) in make() {
        fs::write(dir.join(format!("gen-{name}")), bytes).expect("write a seed");
    }
}

/// Seeds of valid and almost-valid tokens: every algorithm, bound to certificate A.
pub fn token_seeds() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let bound = Value::Object(good_claims(CertChoice::A));
    for alg in Alg::ALL {
        out.push((
            format!("valid-{}", alg.name()),
            signed(alg, KeyOwner::Idp, &good_header(alg), &bound),
        ));
    }
    let alg = Alg::ES256;
    let with = |k: &str, v: Value| {
        let mut c = good_claims(CertChoice::A);
        c.insert(k.into(), v);
        Value::Object(c)
    };
    let cases = [
        (
            "no-kid",
            json!({"alg": "ES256", "typ": "at+jwt"}),
            bound.clone(),
        ),
        (
            "typ-jwt",
            json!({"alg": "ES256", "typ": "JWT", "kid": "ec-1"}),
            bound.clone(),
        ),
        (
            "crit",
            json!({"alg": "ES256", "typ": "at+jwt", "kid": "ec-1", "crit": ["exp"]}),
            bound.clone(),
        ),
        (
            "unbound",
            good_header(alg),
            Value::Object(good_claims(CertChoice::None)),
        ),
        (
            "bound-b",
            good_header(alg),
            Value::Object(good_claims(CertChoice::B)),
        ),
        ("expired", good_header(alg), with("exp", json!(NOW - 100))),
        (
            "wrong-aud",
            good_header(alg),
            with("aud", json!(["https://other.example"])),
        ),
        (
            "scp",
            good_header(alg),
            with("scp", json!(["accounts:read"])),
        ),
        (
            "cnf-jkt",
            good_header(alg),
            with("cnf", json!({"jkt": "abc"})),
        ),
    ];
    for (name, header, claims) in cases {
        out.push((
            name.to_string(),
            signed(alg, KeyOwner::Idp, &header, &claims),
        ));
    }
    out.push((
        "rogue".into(),
        signed(alg, KeyOwner::Rogue, &good_header(alg), &bound),
    ));
    out.push((
        "junk-signature".into(),
        format!(
            "{}.{}",
            signing_input(&good_header(alg), &bound),
            b64url(b"junk")
        ),
    ));
    out.push((
        "alg-none".into(),
        format!("{}.", signing_input(&json!({"alg": "none"}), &bound)),
    ));
    out
}
