//! Shared test fixtures: real certificates made with `openssl`, real signing keys made with
//! jwt-simple, token minting, and a fake proxy-wasm host.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

pub mod dpop_client;
pub mod fake_host;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jwt_simple::prelude::*;
use serde_json::{Map, Value, json};

/// A fixed "now" for tokens and checks (2027-01-15), so tests do not depend on the clock.
pub const NOW: u64 = 1_800_000_000;
pub const ISSUER: &str = "https://idp.example:8443";
pub const AUDIENCE: &str = "https://api.example";

/// Runs openssl, failing the test with its stderr.
pub fn openssl(args: &[&str], dir: &Path) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A client certificate made by openssl, with openssl's own x5t#S256 of it.
#[derive(Debug, Clone)]
pub struct TestCert {
    pub name: String,
    pub pem: String,
    pub der: Vec<u8>,
    /// `openssl x509 -outform DER | openssl dgst -sha256 -binary | base64url`, no padding.
    pub x5t_openssl: String,
    /// `openssl dgst -sha256` hex of the DER, as Envoy's digest property gives it.
    pub sha256_hex: String,
}

pub struct Pki {
    pub dir: PathBuf,
    /// The CA that signed every client certificate below (EC P-256, self-signed).
    pub ca_pem: String,
    pub rsa: TestCert,
    pub ec: TestCert,
    pub ed25519: TestCert,
    /// Same key type and subject as `ec`, a different certificate: a "stolen token" client.
    pub other: TestCert,
}

/// The test CA: `ca.pem` / `ca.key` in `dir`.
fn make_ca(dir: &Path) -> String {
    openssl(
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "ca.key",
        ],
        dir,
    );
    openssl(
        &[
            "req",
            "-new",
            "-x509",
            "-key",
            "ca.key",
            "-subj",
            "/CN=certbound test CA",
            "-days",
            "3650",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-out",
            "ca.pem",
        ],
        dir,
    );
    std::fs::write(
        dir.join("client.ext"),
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    std::fs::read_to_string(dir.join("ca.pem")).unwrap()
}

/// A client certificate signed by the test CA (`make_ca` first).
fn make_cert(dir: &Path, name: &str, keygen: &[&str]) -> TestCert {
    let key = format!("{name}.key");
    let csr = format!("{name}.csr");
    let pem_path = format!("{name}.pem");
    let der_path = format!("{name}.der");
    let mut args = vec!["genpkey"];
    args.extend_from_slice(keygen);
    args.extend_from_slice(&["-out", &key]);
    openssl(&args, dir);
    let subj = format!("/CN={name}/O=certbound tests");
    openssl(
        &["req", "-new", "-key", &key, "-subj", &subj, "-out", &csr],
        dir,
    );
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "3650",
            "-extfile",
            "client.ext",
            "-out",
            &pem_path,
        ],
        dir,
    );
    openssl(
        &[
            "x509", "-in", &pem_path, "-outform", "DER", "-out", &der_path,
        ],
        dir,
    );
    let digest = openssl(&["dgst", "-sha256", "-binary", &der_path], dir);
    let hex_out = String::from_utf8(openssl(&["dgst", "-sha256", "-r", &der_path], dir)).unwrap();
    TestCert {
        name: name.to_string(),
        pem: std::fs::read_to_string(dir.join(&pem_path)).unwrap(),
        der: std::fs::read(dir.join(&der_path)).unwrap(),
        x5t_openssl: URL_SAFE_NO_PAD.encode(digest),
        sha256_hex: hex_out.split_whitespace().next().unwrap().to_string(),
    }
}

/// Certificates are made once per test binary.
pub fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        // Under target/: one folder per test binary, remade on each run.
        let exe = std::env::current_exe().unwrap();
        let name = exe.file_stem().unwrap().to_string_lossy().into_owned();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("pki-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ca_pem = make_ca(&dir);
        Pki {
            ca_pem,
            rsa: make_cert(
                &dir,
                "client-rsa",
                &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            ),
            ec: make_cert(
                &dir,
                "client-ec",
                &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            ),
            ed25519: make_cert(&dir, "client-ed25519", &["-algorithm", "ED25519"]),
            other: make_cert(
                &dir,
                "client-ec",
                &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            ),
            dir,
        }
    })
}

/// The IdP's signing keys, one per family, made once per test binary.
pub struct Keys {
    pub rsa: RS256KeyPair,
    pub ec256: ES256KeyPair,
    pub ec384: ES384KeyPair,
    pub ed: Ed25519KeyPair,
    /// An unrelated RSA key: "signed by someone else".
    pub rogue: RS256KeyPair,
}

pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        rsa: RS256KeyPair::generate(2048).unwrap().with_key_id("rsa-1"),
        ec256: ES256KeyPair::generate().with_key_id("ec-1"),
        ec384: ES384KeyPair::generate().with_key_id("ec384-1"),
        ed: Ed25519KeyPair::generate().with_key_id("ed-1"),
        rogue: RS256KeyPair::generate(2048).unwrap().with_key_id("rsa-1"),
    })
}

/// The IdP's JWKS: RSA (no `alg`, so usable for RS* and PS*), EC P-256, P-384, Ed25519.
pub fn jwks() -> Value {
    let k = keys();
    let mut rsa: Value = serde_json::from_str(&k.rsa.public_key().to_jwk()).unwrap();
    rsa.as_object_mut().unwrap().remove("alg");
    let ec: Value = serde_json::from_str(&k.ec256.public_key().to_jwk()).unwrap();
    let ec384: Value = serde_json::from_str(&k.ec384.public_key().to_jwk()).unwrap();
    let ed: Value = serde_json::from_str(&k.ed.public_key().to_jwk()).unwrap();
    json!({"keys": [rsa, ec, ec384, ed]})
}

/// Claims of a valid certificate-bound access token for `cert`.
pub fn bound_claims(x5t: &str) -> Map<String, Value> {
    json!({
        "iss": ISSUER,
        "sub": "client-a",
        "client_id": "client-a",
        "aud": AUDIENCE,
        "scope": "accounts:read accounts:write",
        "iat": NOW - 10,
        "nbf": NOW - 10,
        "exp": NOW + 300,
        "jti": "jti-1",
        "cnf": {"x5t#S256": x5t},
    })
    .as_object()
    .unwrap()
    .clone()
}

/// `alg` as the token header names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signer {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
    Rogue,
}

pub const ALL_SIGNERS: [Signer; 9] = [
    Signer::RS256,
    Signer::RS384,
    Signer::RS512,
    Signer::PS256,
    Signer::PS384,
    Signer::PS512,
    Signer::ES256,
    Signer::ES384,
    Signer::EdDSA,
];

/// `claims` as jwt-simple's claims: registered claims taken from the map, exactly as given.
fn jwt_claims(claims: &Map<String, Value>) -> JWTClaims<Map<String, Value>> {
    let mut custom = claims.clone();
    let take = |c: &mut Map<String, Value>, k: &str| {
        c.remove(k)
            .and_then(|v| v.as_u64())
            .map(UnixTimeStamp::from_secs)
    };
    let mut jwt: JWTClaims<Map<String, Value>> =
        Claims::with_custom_claims(Map::new(), Duration::from_secs(1));
    jwt.issued_at = take(&mut custom, "iat");
    jwt.expires_at = take(&mut custom, "exp");
    jwt.invalid_before = take(&mut custom, "nbf");
    jwt.issuer = custom
        .remove("iss")
        .and_then(|v| v.as_str().map(str::to_string));
    jwt.subject = custom
        .remove("sub")
        .and_then(|v| v.as_str().map(str::to_string));
    jwt.jwt_id = custom
        .remove("jti")
        .and_then(|v| v.as_str().map(str::to_string));
    jwt.audiences = match custom.remove("aud") {
        Some(Value::String(s)) => Some(Audiences::AsString(s)),
        Some(Value::Array(a)) => Some(Audiences::AsSet(
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
        )),
        _ => None,
    };
    jwt.custom = custom;
    jwt
}

/// An `at+jwt` ES256 token signed by the JWKS's EC key, with no `kid` in its header.
pub fn mint_kidless_es256(claims: &Map<String, Value>) -> String {
    let key = ES256KeyPair::from_bytes(&keys().ec256.to_bytes()).unwrap();
    let opts = HeaderOptions {
        signature_type: Some("at+jwt".into()),
        ..Default::default()
    };
    key.sign_with_options(jwt_claims(claims), &opts).unwrap()
}

/// Signs `claims` (registered claims taken from the map, exactly as given) with a real key.
pub fn mint_with(signer: Signer, claims: &Map<String, Value>, typ: Option<&str>) -> String {
    let jwt = jwt_claims(claims);
    let opts = HeaderOptions {
        signature_type: typ.map(str::to_string),
        ..Default::default()
    };
    let k = keys();
    // The one RSA key of the JWKS signs with every RSA algorithm.
    let der = k.rsa.to_der().unwrap();
    match signer {
        Signer::RS256 => k.rsa.sign_with_options(jwt, &opts),
        Signer::RS384 => RS384KeyPair::from_der(&der)
            .unwrap()
            .with_key_id("rsa-1")
            .sign_with_options(jwt, &opts),
        Signer::RS512 => RS512KeyPair::from_der(&der)
            .unwrap()
            .with_key_id("rsa-1")
            .sign_with_options(jwt, &opts),
        Signer::PS256 => PS256KeyPair::from_der(&der)
            .unwrap()
            .with_key_id("rsa-1")
            .sign_with_options(jwt, &opts),
        Signer::PS384 => PS384KeyPair::from_der(&der)
            .unwrap()
            .with_key_id("rsa-1")
            .sign_with_options(jwt, &opts),
        Signer::PS512 => PS512KeyPair::from_der(&der)
            .unwrap()
            .with_key_id("rsa-1")
            .sign_with_options(jwt, &opts),
        Signer::ES256 => k.ec256.sign_with_options(jwt, &opts),
        Signer::ES384 => k.ec384.sign_with_options(jwt, &opts),
        Signer::EdDSA => k.ed.sign_with_options(jwt, &opts),
        Signer::Rogue => k.rogue.sign_with_options(jwt, &opts),
    }
    .unwrap()
}

/// An RFC 9068 access token (`typ: at+jwt`) bound to `x5t`, signed with RS256.
pub fn mint(claims: &Map<String, Value>) -> String {
    mint_with(Signer::RS256, claims, Some("at+jwt"))
}

/// A token with an arbitrary header and payload and a junk signature: for checks that must
/// fire before any signature is looked at.
pub fn unsigned(header: Value, claims: &Map<String, Value>) -> String {
    let enc = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.{}",
        enc(&header),
        enc(&Value::Object(claims.clone())),
        URL_SAFE_NO_PAD.encode(b"not a signature")
    )
}

/// Replaces the payload of a signed token, keeping header and signature.
pub fn tamper(token: &str, claims: &Map<String, Value>) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(Value::Object(claims.clone()).to_string()),
        parts[2]
    )
}

/// The base config for tests: JWT + introspection, strict binding, inline JWKS.
pub fn base_config() -> Value {
    json!({
        "issuer": ISSUER,
        "auth_methods": ["bearer", "introspection"],
        "audience_required": [AUDIENCE],
        "scopes_required": ["accounts:read"],
        "leeway": 30,
        "jwks": jwks(),
        "introspection_endpoint": "https://idp.example:8443/token/introspection",
        "client_id": "gateway",
        "client_secret": "s3cret",
        "upstreams": {"idp.example:8443": "idp"},
        "upstream_headers_claims": ["sub", "client_id"],
        "upstream_headers_names": ["x-authenticated-sub", "x-authenticated-client"],
        "realm": "api"
    })
}

/// `base` with `changes` merged in (a `null` removes the key).
pub fn with(base: Value, changes: Value) -> Value {
    let mut out = base;
    if let (Some(o), Some(c)) = (out.as_object_mut(), changes.as_object()) {
        for (k, v) in c {
            if v.is_null() {
                o.remove(k);
            } else {
                o.insert(k.clone(), v.clone());
            }
        }
    }
    out
}

/// `client_certificate` with source header, trusting `trusted` and the test CA.
pub fn header_source(header: &str, format: &str, trusted: &[&str]) -> Value {
    json!({"source": "header", "header": header, "format": format, "trusted_ips": trusted, "ca_certificates": pki().ca_pem})
}

pub fn settings(config: &Value) -> certbound::config::Settings {
    certbound::config::Settings::from_json(config.to_string().as_bytes())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A token of exactly this header and payload JSON text (duplicate members, odd types and all),
/// signed for real: `RS256` by the JWKS's RSA key (with `openssl dgst`), `ES256` by its P-256
/// key. For holding two verification paths to the same answer on what no claims builder makes.
pub fn sign_raw(alg: &str, header: &str, payload: &str) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let signature = match alg {
        "RS256" => {
            static KEY: OnceLock<PathBuf> = OnceLock::new();
            static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let dir = pki().dir.join("sign-raw");
            let key = KEY.get_or_init(|| {
                std::fs::create_dir_all(&dir).unwrap();
                let key = dir.join("rsa.pem");
                std::fs::write(&key, keys().rsa.to_pem().unwrap()).unwrap();
                key
            });
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let data = dir.join(format!("{n}.in"));
            std::fs::write(&data, &input).unwrap();
            openssl(
                &[
                    "dgst",
                    "-sha256",
                    "-sign",
                    key.to_str().unwrap(),
                    data.to_str().unwrap(),
                ],
                &dir,
            )
        }
        "ES256" => {
            use p256::ecdsa::signature::Signer as _;
            let key = p256::ecdsa::SigningKey::from_slice(&keys().ec256.to_bytes()).unwrap();
            let sig: p256::ecdsa::Signature = key.sign(input.as_bytes());
            sig.to_bytes().to_vec()
        }
        other => panic!("sign_raw: {other}"),
    };
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}
