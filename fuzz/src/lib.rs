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
use certbound::binding::PopMode;
use certbound::binding::certificate::Thumbprint;
use certbound::config::Settings;
use certbound::flow::cache::LocalStore;
use certbound::flow::decider::{self, Decision, Phase, View};
use certbound::flow::extract::Presented;
use certbound::flow::keys::KeyFetcher;
use certbound::flow::worker::Worker;
use certbound::reply::rejection::Scheme;
use certbound::tokens::claims::Claims;
use certbound::tokens::jwks::Alg;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;
use rsa::signature::{RandomizedSigner, SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use serde_json::{Map, Value, json};

pub mod proof;

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

/// Whose key signs: the IdP's (in the JWKS), an attacker's with the same `kid` (also "another
/// client" for DPoP proofs), or a DPoP client's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Arbitrary)]
pub enum KeyOwner {
    Idp,
    Rogue,
    Client,
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

fn client() -> &'static Pair {
    static CLIENT: OnceLock<Pair> = OnceLock::new();
    CLIENT.get_or_init(|| pair(3))
}

fn keys_of(owner: KeyOwner) -> &'static Pair {
    match owner {
        KeyOwner::Idp => idp(),
        KeyOwner::Rogue => rogue(),
        KeyOwner::Client => client(),
    }
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
    let k = keys_of(owner);
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

/// The secret DPoP nonces are made under in `Profile::DpopStrict`.
pub const NONCE_SECRET: &str = "fuzz-nonce-secret-0123456789abcdef";

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
    /// The base with DPoP strict and nonces required, certificate binding off.
    DpopStrict,
    /// The base with DPoP optional and certificate binding optional (tests/dpop.rs's setting).
    DpopOptional,
    /// The base with both bindings strict: a token bound to a certificate and a DPoP key.
    DpopMtls,
}

impl Profile {
    pub const ALL: [Profile; 7] = [
        Profile::Strict,
        Profile::Optional,
        Profile::Off,
        Profile::Narrow,
        Profile::DpopStrict,
        Profile::DpopOptional,
        Profile::DpopMtls,
    ];
    /// The profiles without DPoP.
    pub const CLASSIC: [Profile; 4] = [
        Profile::Strict,
        Profile::Optional,
        Profile::Off,
        Profile::Narrow,
    ];
    /// The profiles with DPoP on.
    pub const DPOP: [Profile; 3] = [
        Profile::DpopStrict,
        Profile::DpopOptional,
        Profile::DpopMtls,
    ];

    /// One of the classic profiles.
    pub fn from_byte(b: u8) -> Profile {
        Profile::CLASSIC[usize::from(b) % Profile::CLASSIC.len()]
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
            Profile::DpopStrict => {
                c["proof_of_possession_dpop"] = json!("strict");
                c["proof_of_possession_mtls"] = json!("off");
                c["dpop_use_nonce"] = json!(true);
                c["dpop_nonce_secret"] = json!(NONCE_SECRET);
            }
            Profile::DpopOptional => {
                c["proof_of_possession_dpop"] = json!("optional");
                c["proof_of_possession_mtls"] = json!("optional");
            }
            Profile::DpopMtls => {
                c["proof_of_possession_dpop"] = json!("strict");
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

    /// The JWT algorithms allowed.
    pub fn algorithms(self) -> &'static [Alg] {
        self.settings()
            .keys
            .as_ref()
            .map_or(&[], |k| k.algorithms.as_slice())
    }

    pub fn mtls(self) -> PopMode {
        self.settings().pop
    }

    pub fn dpop(self) -> PopMode {
        self.settings().dpop.mode
    }
}

/// A view of a fresh worker (no known tokens, no cached answers or proofs) with no remote
/// keys, at `NOW`, for `decide`.
pub fn with_view<T>(profile: Profile, f: impl FnOnce(&View<'_>) -> T) -> T {
    let worker = Worker::new(profile.settings().clone());
    let keys = KeyFetcher::default();
    let store = LocalStore::default();
    let view = View {
        worker: &worker,
        keys: &keys,
        store: &store,
        now: NOW,
    };
    f(&view)
}

/// The decider's first decision on `token` presented as a bearer token with `certificate`,
/// with a fresh worker and no remote keys.
pub fn decide(profile: Profile, token: &str, certificate: Option<Thumbprint>) -> Decision {
    let presented = Presented {
        token: token.to_string(),
        scheme: Scheme::Bearer,
        certificate,
        forwarded: None,
        dpop: None,
    };
    with_view(profile, |view| {
        decider::decide(&presented, None, view, Phase::First)
    })
}

/// The claims of a token shaped like a JWS, decoded here (not by certbound): the payload the
/// signature covers, as the fuzzer built it.
pub fn payload_claims(token: &str) -> Option<Claims> {
    let mut parts = token.split('.');
    let (_, payload, _, None) = (parts.next()?, parts.next()?, parts.next()?, parts.next()) else {
        return None;
    };
    match serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()? {
        Value::Object(m) => Some(Claims(m)),
        _ => None,
    }
}

/// The claims of an introspection response body the fuzzer fed, decoded here.
pub fn body_claims(body: &[u8]) -> Option<Claims> {
    match serde_json::from_slice(body).ok()? {
        Value::Object(m) => Some(Claims(m)),
        _ => None,
    }
}

/// Where an allowed request's claims came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Jwt,
    Introspection,
}

/// What an allowed request presented to prove possession, as the fuzzer knows it.
#[derive(Debug, Clone, Copy)]
pub struct Presentation<'a> {
    pub certificate: Option<&'a Thumbprint>,
    pub scheme: Scheme,
    /// With the DPoP scheme: the RFC 7638 thumbprint of the proof's key, computed here, when
    /// the proof passes `proof_check` (signature by that key, htm, htu, ath, iat, nonce).
    pub proof_jkt: Option<&'a str>,
}

impl<'a> Presentation<'a> {
    /// A bearer request with this certificate.
    pub fn bearer(certificate: Option<&'a Thumbprint>) -> Presentation<'a> {
        Presentation {
            certificate,
            scheme: Scheme::Bearer,
            proof_jkt: None,
        }
    }
}

/// What every allowed request must satisfy, checked here independently of the decider's code:
/// the bindings per the profile's modes (RFC 8705 §3, RFC 9449 §6-7), issuer, lifetime,
/// audience and scope. `claims`: what the fuzzer built (the JWT payload it signed, the
/// introspection body it fed), never what the decider says.
pub fn assert_allowed_ok(
    profile: Profile,
    source: Source,
    claims: &Claims,
    presented: &Presentation<'_>,
) {
    let s = profile.settings();
    let m = &claims.0;
    let (mtls, dpop) = (profile.mtls(), profile.dpop());
    let cnf = match m.get("cnf") {
        None | Some(Value::Null) => None,
        Some(cnf) => Some(cnf),
    };
    let member = |name: &str| cnf.and_then(|c| c.get(name)).and_then(Value::as_str);
    let (x5t, jkt) = (member("x5t#S256"), member("jkt"));
    if mtls != PopMode::Off || dpop != PopMode::Off {
        // A certificate binding (RFC 8705 §3): checked, and the presented certificate.
        if let Some(x5t) = x5t {
            assert!(
                mtls != PopMode::Off,
                "allowed a certificate-bound token with certificate binding off: cnf {cnf:?}"
            );
            assert!(
                presented
                    .certificate
                    .is_some_and(|tp| tp.to_x5t_s256() == x5t),
                "allowed a token bound to {x5t:?} with the certificate {:?}",
                presented.certificate
            );
        }
        assert!(
            mtls != PopMode::Strict || x5t.is_some(),
            "strict certificate binding: allowed a token with cnf {cnf:?}"
        );
        // A DPoP binding (RFC 9449 §6-7): checked, the DPoP scheme, a proof by that key.
        if let Some(jkt) = jkt {
            assert!(
                dpop != PopMode::Off,
                "allowed a DPoP-bound token with DPoP off: cnf {cnf:?}"
            );
            assert_eq!(
                presented.scheme,
                Scheme::Dpop,
                "allowed a DPoP-bound token sent as a bearer token"
            );
            assert_eq!(
                presented.proof_jkt,
                Some(jkt),
                "allowed a token bound to the DPoP key {jkt:?} without a valid proof by that key"
            );
        }
        assert!(
            dpop != PopMode::Strict || jkt.is_some(),
            "strict DPoP: allowed a token with cnf {cnf:?}"
        );
        if presented.scheme == Scheme::Dpop {
            assert!(
                jkt.is_some(),
                "allowed the DPoP scheme for a token not bound to a key"
            );
        }
        // A `cnf` that binds to something we cannot check never passes as a bearer token.
        assert!(
            cnf.is_none() || x5t.is_some() || jkt.is_some(),
            "allowed a token bound to something we cannot check: cnf {cnf:?}"
        );
    }
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

/// An allowed JWT names an algorithm the profile allows, and verifies, checked here, with a key
/// of the IdP's JWKS.
pub fn assert_idp_signed(profile: Profile, token: &str) {
    let header = split_jws(token).map(|j| j.header).unwrap_or_default();
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .and_then(Alg::from_name);
    assert!(
        alg.is_some_and(|a| profile.algorithms().contains(&a)),
        "allowed a JWT with alg {:?} under {profile:?}",
        header.get("alg")
    );
    assert!(
        idp_signed(token),
        "allowed a JWT no key of the IdP verifies: {token}"
    );
}

// --- JWKs, JWS and DPoP checks made here, independently of certbound --------------------------

/// The public JWK of `owner`'s key for `alg`: the members RFC 7638 requires, nothing else.
pub fn public_jwk(owner: KeyOwner, alg: Alg) -> &'static Map<String, Value> {
    type Jwks = HashMap<(KeyOwner, u8), Map<String, Value>>;
    static JWKS: OnceLock<Jwks> = OnceLock::new();
    let family = |alg: Alg| match alg {
        Alg::ES256 => 0u8,
        Alg::ES384 => 1,
        Alg::EdDSA => 2,
        _ => 3,
    };
    let all = JWKS.get_or_init(|| {
        let mut all = HashMap::new();
        for owner in [KeyOwner::Idp, KeyOwner::Rogue, KeyOwner::Client] {
            let k = keys_of(owner);
            let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
            let ec = |jwk: String| {
                let v: Map<String, Value> = serde_json::from_str(&jwk).expect("jwt-simple JWK");
                ["kty", "crv", "x", "y"]
                    .iter()
                    .map(|m| (m.to_string(), v.get(*m).cloned().expect("an EC JWK member")))
                    .collect::<Map<String, Value>>()
            };
            let ec256 = jwt_simple::prelude::ES256KeyPair::from_bytes(&k.ec256.to_bytes())
                .expect("P-256 key")
                .public_key()
                .to_jwk();
            let ec384 = jwt_simple::prelude::ES384KeyPair::from_bytes(&k.ec384.to_bytes())
                .expect("P-384 key")
                .public_key()
                .to_jwk();
            let obj = |v: Value| match v {
                Value::Object(m) => m,
                _ => Map::new(),
            };
            all.insert((owner, 0), ec(ec256));
            all.insert((owner, 1), ec(ec384));
            all.insert(
                (owner, 2),
                obj(json!({"kty": "OKP", "crv": "Ed25519", "x": b64(k.ed.pk.as_ref())})),
            );
            all.insert(
                (owner, 3),
                obj(json!({
                    "kty": "RSA",
                    "n": b64(&k.rsa.n().to_bytes_be()),
                    "e": b64(&k.rsa.e().to_bytes_be()),
                })),
            );
        }
        all
    });
    &all[&(owner, family(alg))]
}

pub fn sha256_b64url(bytes: &[u8]) -> String {
    use rsa::sha2::{Digest, Sha256};
    URL_SAFE_NO_PAD.encode(Sha256::digest(bytes))
}

/// RFC 7638 §3, written out here: the required members of the key type, in lexicographic
/// order, as JSON without whitespace, SHA-256, base64url.
pub fn rfc7638(jwk: &Map<String, Value>) -> Option<String> {
    let member = |k: &str| -> Option<String> { serde_json::to_string(jwk.get(k)?.as_str()?).ok() };
    let canonical = match jwk.get("kty")?.as_str()? {
        "EC" => format!(
            r#"{{"crv":{},"kty":"EC","x":{},"y":{}}}"#,
            member("crv")?,
            member("x")?,
            member("y")?
        ),
        "RSA" => format!(
            r#"{{"e":{},"kty":"RSA","n":{}}}"#,
            member("e")?,
            member("n")?
        ),
        "OKP" => format!(
            r#"{{"crv":{},"kty":"OKP","x":{}}}"#,
            member("crv")?,
            member("x")?
        ),
        _ => return None,
    };
    Some(sha256_b64url(canonical.as_bytes()))
}

/// A JWS signature (base64url) over `input`, verified here with the RustCrypto and
/// ed25519-compact APIs directly (certbound's `binding::jws` hashes and verifies its own way).
pub fn jws_verifies(alg: Alg, jwk: &Map<String, Value>, input: &[u8], signature: &str) -> bool {
    use p256::ecdsa::signature::Verifier as _;
    use rsa::sha2::{Sha256, Sha384, Sha512};
    use rsa::signature::Verifier as _;
    let Ok(sig) = URL_SAFE_NO_PAD.decode(signature) else {
        return false;
    };
    let text = |k: &str| jwk.get(k).and_then(Value::as_str);
    let bytes = |k: &str| text(k).and_then(|t| URL_SAFE_NO_PAD.decode(t).ok());
    let point = |size: usize| -> Option<Vec<u8>> {
        let (x, y) = (bytes("x")?, bytes("y")?);
        (x.len() == size && y.len() == size).then(|| [&[4u8][..], &x, &y].concat())
    };
    match alg {
        Alg::ES256 => {
            if text("kty") != Some("EC") || text("crv") != Some("P-256") {
                return false;
            }
            let Some(point) = point(32) else { return false };
            let (Ok(key), Ok(sig)) = (
                p256::ecdsa::VerifyingKey::from_sec1_bytes(&point),
                p256::ecdsa::Signature::from_slice(&sig),
            ) else {
                return false;
            };
            key.verify(input, &sig).is_ok()
        }
        Alg::ES384 => {
            if text("kty") != Some("EC") || text("crv") != Some("P-384") {
                return false;
            }
            let Some(point) = point(48) else { return false };
            let (Ok(key), Ok(sig)) = (
                p384::ecdsa::VerifyingKey::from_sec1_bytes(&point),
                p384::ecdsa::Signature::from_slice(&sig),
            ) else {
                return false;
            };
            key.verify(input, &sig).is_ok()
        }
        Alg::EdDSA => {
            if text("kty") != Some("OKP") || text("crv") != Some("Ed25519") {
                return false;
            }
            let Some(x) = bytes("x") else { return false };
            let (Ok(key), Ok(sig)) = (
                ed25519_compact::PublicKey::from_slice(&x),
                ed25519_compact::Signature::from_slice(&sig),
            ) else {
                return false;
            };
            key.verify(input, &sig).is_ok()
        }
        rsa_alg => {
            if text("kty") != Some("RSA") {
                return false;
            }
            let (Some(n), Some(e)) = (bytes("n"), bytes("e")) else {
                return false;
            };
            let Ok(key) = rsa::RsaPublicKey::new(
                rsa::BigUint::from_bytes_be(&n),
                rsa::BigUint::from_bytes_be(&e),
            ) else {
                return false;
            };
            let pkcs1 = |s: &[u8]| rsa::pkcs1v15::Signature::try_from(s).ok();
            let pss = |s: &[u8]| rsa::pss::Signature::try_from(s).ok();
            use rsa::{pkcs1v15, pss as p};
            match rsa_alg {
                Alg::RS256 => pkcs1(&sig).is_some_and(|s| {
                    pkcs1v15::VerifyingKey::<Sha256>::new(key)
                        .verify(input, &s)
                        .is_ok()
                }),
                Alg::RS384 => pkcs1(&sig).is_some_and(|s| {
                    pkcs1v15::VerifyingKey::<Sha384>::new(key)
                        .verify(input, &s)
                        .is_ok()
                }),
                Alg::RS512 => pkcs1(&sig).is_some_and(|s| {
                    pkcs1v15::VerifyingKey::<Sha512>::new(key)
                        .verify(input, &s)
                        .is_ok()
                }),
                Alg::PS256 => pss(&sig).is_some_and(|s| {
                    p::VerifyingKey::<Sha256>::new(key)
                        .verify(input, &s)
                        .is_ok()
                }),
                Alg::PS384 => pss(&sig).is_some_and(|s| {
                    p::VerifyingKey::<Sha384>::new(key)
                        .verify(input, &s)
                        .is_ok()
                }),
                _ => pss(&sig).is_some_and(|s| {
                    p::VerifyingKey::<Sha512>::new(key)
                        .verify(input, &s)
                        .is_ok()
                }),
            }
        }
    }
}

/// A JWS's header and payload as JSON objects, and its signing input and signature, decoded
/// here.
pub struct Jws {
    pub header: Map<String, Value>,
    pub payload: Map<String, Value>,
    pub input: String,
    pub signature: String,
}

pub fn split_jws(text: &str) -> Option<Jws> {
    let mut parts = text.split('.');
    let (h, p, s, None) = (parts.next()?, parts.next()?, parts.next()?, parts.next()) else {
        return None;
    };
    let object =
        |seg: &str| match serde_json::from_slice(&URL_SAFE_NO_PAD.decode(seg).ok()?).ok()? {
            Value::Object(m) => Some(m),
            _ => None,
        };
    Some(Jws {
        header: object(h)?,
        payload: object(p)?,
        input: format!("{h}.{p}"),
        signature: s.to_string(),
    })
}

/// Whether `token` (a JWS) is signed by a key of the IdP's JWKS, checked here.
pub fn idp_signed(token: &str) -> bool {
    let Some(jws) = split_jws(token) else {
        return false;
    };
    let Some(alg) = jws
        .header
        .get("alg")
        .and_then(Value::as_str)
        .and_then(Alg::from_name)
    else {
        return false;
    };
    jwks()["keys"].as_array().into_iter().flatten().any(|k| {
        k.as_object()
            .is_some_and(|k| jws_verifies(alg, k, jws.input.as_bytes(), &jws.signature))
    })
}

/// RFC 9449 §4.3 step 9-10 as read here: `htu` names the request's URL (`url`, normalised:
/// lower-case scheme and host, no default port, path at least `/`), ignoring query and
/// fragment, scheme and host compared case-insensitively.
pub fn htu_matches(htu: &str, url: &str) -> bool {
    let strip = |u: &str| u.split(['?', '#']).next().unwrap_or_default().to_string();
    let split = |u: &str| -> Option<(String, String, String)> {
        let (scheme, rest) = u.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "https" && scheme != "http" {
            return None;
        }
        let at = rest.find('/').unwrap_or(rest.len());
        let (authority, path) = rest.split_at(at);
        let mut authority = authority.to_ascii_lowercase();
        if authority.contains('@') {
            return None;
        }
        let default = if scheme == "https" { ":443" } else { ":80" };
        if authority.ends_with(default) {
            authority.truncate(authority.len() - default.len());
        }
        if authority.is_empty() {
            return None;
        }
        let path = if path.is_empty() { "/" } else { path };
        Some((scheme, authority, path.to_string()))
    };
    matches!((split(&strip(htu)), split(url)), (Some(a), Some(b)) if a == b)
}

/// What a proof must be for, and the configuration it is checked under.
#[derive(Debug, Clone)]
pub struct ProofRules<'a> {
    pub algorithms: &'a [Alg],
    pub method: &'a str,
    /// Normalised, as `extract` makes it.
    pub url: &'a str,
    pub token: &'a str,
    pub now: u64,
    pub lifetime: u64,
    pub leeway: u64,
    pub nonce_key: Option<&'a [u8]>,
}

/// RFC 9449 §4.3 checked here, independently of certbound's `binding::dpop`: a JWS whose
/// header has `typ` `dpop+jwt`, an allowed `alg` and a public `jwk` that verifies the
/// signature over exactly the first two segments; claims `jti`, `htm` (the method), `htu`
/// (the URL), `iat` within the lifetime and leeway, `ath` (the token's hash) and the nonce when
/// one is required. The key's RFC 7638 thumbprint when all hold.
pub fn proof_check(proof: &str, rules: &ProofRules<'_>) -> Result<String, &'static str> {
    let jws = split_jws(proof).ok_or("not a JWS of two JSON objects")?;
    let h = |k: &str| jws.header.get(k).and_then(Value::as_str);
    let c = |k: &str| jws.payload.get(k).and_then(Value::as_str);
    if !h("typ").is_some_and(|t| t.eq_ignore_ascii_case("dpop+jwt")) {
        return Err("typ");
    }
    let alg = h("alg")
        .and_then(Alg::from_name)
        .filter(|a| rules.algorithms.contains(a))
        .ok_or("alg")?;
    let Some(Value::Object(jwk)) = jws.header.get("jwk") else {
        return Err("jwk");
    };
    if !jws_verifies(alg, jwk, jws.input.as_bytes(), &jws.signature) {
        return Err("signature");
    }
    let jkt = rfc7638(jwk).ok_or("jwk members")?;
    if !c("jti").is_some_and(|j| !j.is_empty()) {
        return Err("jti");
    }
    if c("htm") != Some(rules.method) {
        return Err("htm");
    }
    if !c("htu").is_some_and(|u| htu_matches(u, rules.url)) {
        return Err("htu");
    }
    let iat = match jws.payload.get("iat") {
        Some(Value::Number(n)) => n.as_u64().map(u128::from).or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0)
                .map(|f| f as u128)
        }),
        _ => None,
    }
    .ok_or("iat")?;
    let (now, lifetime, leeway) = (
        u128::from(rules.now),
        u128::from(rules.lifetime),
        u128::from(rules.leeway),
    );
    if iat > now + leeway || now > iat + lifetime + leeway {
        return Err("iat window");
    }
    if c("ath") != Some(sha256_b64url(rules.token.as_bytes()).as_str()) {
        return Err("ath");
    }
    if let Some(key) = rules.nonce_key {
        let current = certbound::binding::dpop::nonce(key, rules.now);
        let previous = certbound::binding::dpop::nonce(
            key,
            rules
                .now
                .saturating_sub(certbound::binding::dpop::NONCE_STEP),
        );
        if c("nonce") != Some(current.as_str()) && c("nonce") != Some(previous.as_str()) {
            return Err("nonce");
        }
    }
    Ok(jkt)
}

/// certbound's documented limits beyond RFC 9449 (binding/dpop.rs, sigalgs.rs).
pub fn proof_within_limits(proof: &str) -> bool {
    let Some(jws) = split_jws(proof) else {
        return false;
    };
    let jti_ok = jws
        .payload
        .get("jti")
        .and_then(Value::as_str)
        .is_some_and(|j| j.len() <= 256);
    let jwk = jws.header.get("jwk").and_then(Value::as_object);
    let public = jwk.is_some_and(|k| {
        !["d", "p", "q", "dp", "dq", "qi", "k"]
            .iter()
            .any(|m| k.contains_key(*m))
    });
    let bytes = |k: &str| {
        jwk.and_then(|j| j.get(k))
            .and_then(Value::as_str)
            .and_then(|t| URL_SAFE_NO_PAD.decode(t).ok())
    };
    let rsa_ok = jwk.and_then(|k| k.get("kty")).and_then(Value::as_str) != Some("RSA")
        || (bytes("n").is_some_and(|n| {
            (256..=512).contains(&n.len()) && n[0] != 0 && (n.len() > 256 || n[0] >= 0x80)
        }) && bytes("e").as_deref() == Some(&[1, 0, 1]));
    proof.len() <= certbound::binding::dpop::MAX_PROOF_LENGTH && jti_ok && public && rsa_ok
}

/// With `CERTBOUND_FUZZ_TRACE` set, prints one line per input (`what`), to see which outcomes
/// a corpus reaches: `cargo fuzz run <target> <corpus> -- -runs=0 2>&1 | grep '^trace' | sort
/// | uniq -c`.
pub fn trace(what: impl FnOnce() -> String) {
    static ON: OnceLock<bool> = OnceLock::new();
    if *ON.get_or_init(|| std::env::var_os("CERTBOUND_FUZZ_TRACE").is_some()) {
        eprintln!("trace {}", what());
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
