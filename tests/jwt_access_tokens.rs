//! JWT access tokens (RFC 9068) verified locally: every rule with an accept and a reject case,
//! real RSA, EC and Ed25519 keys, and tokens signed by openssl rather than jwt-simple.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use certbound::binding::certificate::Thumbprint;
use certbound::config::Settings;
use certbound::flow::cache::LocalStore;
use certbound::flow::decider::{self, Phase, Step, View};
use certbound::flow::extract::Presented;
use certbound::flow::keys::KeyFetcher;
use certbound::flow::worker::Worker;
use certbound::reply::rejection::{Rejection, Scheme};
use certbound::tokens::facts::Identity;
use certbound::tokens::jwks::KeySet;
use serde_json::{Map, Value, json};
use support::*;

/// The decider's first step for a token on a connection with `cert` (or none), with the
/// inline keys only and nothing cached.
fn step_for(settings: Settings, token: &str, cert: Option<&TestCert>) -> Step {
    let presented = Presented {
        token: token.to_string(),
        scheme: Scheme::Bearer,
        certificate: cert.map(|c| Thumbprint::from_der(&c.der).unwrap()),
        forwarded: None,
        dpop: None,
    };
    let worker = Worker::new(settings);
    let view = View {
        worker: &worker,
        keys: &KeyFetcher::default(),
        store: &LocalStore::default(),
        now: NOW,
    };
    decider::decide(&presented, None, &view, Phase::First).step
}

/// The full local decision for a token on a connection with `cert` (or none): the identity
/// header values (`sub`, `client_id` in the base config) when allowed.
fn decide_with(
    settings: &Settings,
    token: &str,
    cert: Option<&TestCert>,
) -> Result<Identity, Rejection> {
    match step_for(settings.clone(), token, cert) {
        Step::Allow(verdict) => Ok(verdict.identity),
        Step::Deny(r) => Err(r),
        other => panic!("a JWT with inline keys only: {other:?}"),
    }
}

fn decide(token: &str, cert: Option<&TestCert>) -> Result<Identity, Rejection> {
    decide_with(&settings(&base_config()), token, cert)
}

fn claims_for(cert: &TestCert) -> Map<String, Value> {
    bound_claims(&cert.x5t_openssl)
}

fn set(claims: &Map<String, Value>, key: &str, value: Value) -> Map<String, Value> {
    let mut c = claims.clone();
    if value.is_null() {
        c.remove(key);
    } else {
        c.insert(key.to_string(), value);
    }
    c
}

#[test]
fn a_bound_token_with_its_certificate_is_allowed_for_every_algorithm() {
    let cert = &pki().ec;
    for signer in ALL_SIGNERS {
        let token = mint_with(signer, &claims_for(cert), Some("at+jwt"));
        let identity = decide(&token, Some(cert)).unwrap_or_else(|r| panic!("{signer:?}: {r:?}"));
        assert_eq!(identity[0].as_deref(), Some("client-a"));
    }
}

#[test]
fn the_same_token_from_another_certificate_or_none_is_refused() {
    let p = pki();
    let token = mint(&claims_for(&p.ec));
    assert_eq!(
        decide(&token, Some(&p.other)).unwrap_err(),
        Rejection::ThumbprintMismatch
    );
    assert_eq!(
        decide(&token, Some(&p.rsa)).unwrap_err(),
        Rejection::ThumbprintMismatch
    );
    assert_eq!(
        decide(&token, None).unwrap_err(),
        Rejection::CertificateRequired
    );
}

#[test]
fn binding_works_for_rsa_and_ed25519_client_certificates_too() {
    let p = pki();
    for cert in [&p.rsa, &p.ed25519] {
        let token = mint(&claims_for(cert));
        assert!(decide(&token, Some(cert)).is_ok(), "{}", cert.name);
        assert_eq!(
            decide(&token, Some(&p.ec)).unwrap_err(),
            Rejection::ThumbprintMismatch
        );
    }
}

#[test]
fn strict_optional_and_off_binding_modes() {
    let p = pki();
    let mut unbound = claims_for(&p.ec);
    unbound.remove("cnf");
    let unbound = mint(&unbound);
    let bound = mint(&claims_for(&p.ec));
    let mode = |m: &str| settings(&with(base_config(), json!({"proof_of_possession_mtls": m})));

    // strict: cnf required and must match.
    assert_eq!(
        decide_with(&mode("strict"), &unbound, Some(&p.ec)).unwrap_err(),
        Rejection::Unbound
    );
    assert!(decide_with(&mode("strict"), &bound, Some(&p.ec)).is_ok());
    // optional: an unbound token passes, a bound one is still enforced.
    assert!(decide_with(&mode("optional"), &unbound, Some(&p.ec)).is_ok());
    assert!(decide_with(&mode("optional"), &unbound, None).is_ok());
    assert_eq!(
        decide_with(&mode("optional"), &bound, Some(&p.other)).unwrap_err(),
        Rejection::ThumbprintMismatch
    );
    assert_eq!(
        decide_with(&mode("optional"), &bound, None).unwrap_err(),
        Rejection::CertificateRequired
    );
    // off: no binding check at all.
    assert!(decide_with(&mode("off"), &bound, Some(&p.other)).is_ok());
    assert!(decide_with(&mode("off"), &unbound, None).is_ok());
}

#[test]
fn a_cnf_this_gateway_cannot_check_is_never_taken_as_bearer() {
    let p = pki();
    let dpop = set(
        &claims_for(&p.ec),
        "cnf",
        json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}),
    );
    let optional = settings(&with(
        base_config(),
        json!({"proof_of_possession_mtls": "optional"}),
    ));
    assert_eq!(
        decide_with(&optional, &mint(&dpop), Some(&p.ec)).unwrap_err(),
        Rejection::UnsupportedConfirmation
    );
    // Strict mTLS: it lacks the certificate binding every token needs.
    assert_eq!(
        decide(&mint(&dpop), Some(&p.ec)).unwrap_err(),
        Rejection::Unbound
    );
}

#[test]
fn cnf_in_hex_or_padded_form_does_not_match() {
    let p = pki();
    for wrong in [p.ec.sha256_hex.clone(), format!("{}=", p.ec.x5t_openssl)] {
        let token = mint(&set(&claims_for(&p.ec), "cnf", json!({"x5t#S256": wrong})));
        assert_eq!(
            decide(&token, Some(&p.ec)).unwrap_err(),
            Rejection::ThumbprintMismatch
        );
    }
}

#[test]
fn signature_from_another_key_or_a_tampered_payload_is_refused() {
    let cert = &pki().ec;
    let rogue = mint_with(Signer::Rogue, &claims_for(cert), Some("at+jwt"));
    assert_eq!(
        decide(&rogue, Some(cert)).unwrap_err(),
        Rejection::BadSignature
    );

    let genuine = mint(&claims_for(cert));
    let widened = set(
        &claims_for(cert),
        "scope",
        json!("accounts:read accounts:write admin"),
    );
    assert_eq!(
        decide(&tamper(&genuine, &widened), Some(cert)).unwrap_err(),
        Rejection::BadSignature
    );
}

#[test]
fn a_forged_token_from_the_wrong_certificate_fails_on_binding_before_any_signature_check() {
    // Junk signature, claims bound to `ec`, presented with `other`: the refusal is the
    // binding, so no signature arithmetic ran for it.
    let p = pki();
    let forged = unsigned(
        json!({"alg": "RS256", "typ": "at+jwt", "kid": "rsa-1"}),
        &claims_for(&p.ec),
    );
    assert_eq!(
        decide(&forged, Some(&p.other)).unwrap_err(),
        Rejection::ThumbprintMismatch
    );
    // With the right certificate the same forgery reaches the signature check and fails there.
    assert_eq!(
        decide(&forged, Some(&p.ec)).unwrap_err(),
        Rejection::BadSignature
    );
}

#[test]
fn alg_none_hmac_and_unlisted_algorithms_are_refused() {
    let cert = &pki().ec;
    let claims = claims_for(cert);
    for alg in ["none", "HS256", "HS512", "ES256K", "RS1", ""] {
        let token = unsigned(
            json!({"alg": alg, "typ": "at+jwt", "kid": "rsa-1"}),
            &claims,
        );
        assert_eq!(
            decide(&token, Some(cert)).unwrap_err(),
            Rejection::AlgorithmNotAllowed,
            "{alg}"
        );
    }
    // The classic key-confusion attack: HMAC keyed with the RSA public key's bytes.
    let pub_pem = support::keys().rsa.public_key().to_pem().unwrap();
    let key = jwt_simple::prelude::HS256Key::from_bytes(pub_pem.as_bytes());
    use jwt_simple::prelude::MACLike;
    let hs = key
        .authenticate(jwt_simple::prelude::Claims::with_custom_claims(
            claims.clone(),
            jwt_simple::prelude::Duration::from_secs(60),
        ))
        .unwrap();
    assert_eq!(
        decide(&hs, Some(cert)).unwrap_err(),
        Rejection::AlgorithmNotAllowed
    );
    // An algorithm we support but the config does not allow.
    let es_only = settings(&with(base_config(), json!({"jwt_algorithms": ["ES256"]})));
    let rs = mint(&claims);
    assert_eq!(
        decide_with(&es_only, &rs, Some(cert)).unwrap_err(),
        Rejection::AlgorithmNotAllowed
    );
    assert!(
        decide_with(
            &es_only,
            &mint_with(Signer::ES256, &claims, Some("at+jwt")),
            Some(cert)
        )
        .is_ok()
    );
}

#[test]
fn an_rsa_key_is_not_usable_with_an_alg_its_jwk_excludes() {
    // The JWK says PS256: an RS256 token with its kid finds no key.
    let cert = &pki().ec;
    let mut jwk: Value = serde_json::from_str(&support::keys().rsa.public_key().to_jwk()).unwrap();
    jwk["alg"] = json!("PS256");
    let s = settings(&with(base_config(), json!({"jwks": {"keys": [jwk]}})));
    assert_eq!(
        decide_with(&s, &mint(&claims_for(cert)), Some(cert)).unwrap_err(),
        Rejection::UnknownKey
    );
    assert!(
        decide_with(
            &s,
            &mint_with(Signer::PS256, &claims_for(cert), Some("at+jwt")),
            Some(cert)
        )
        .is_ok()
    );
}

#[test]
fn typ_is_at_jwt_unless_relaxed() {
    let cert = &pki().ec;
    let claims = claims_for(cert);
    let lenient = settings(&with(base_config(), json!({"jwt_typ_strict": false})));
    for typ in ["at+jwt", "application/at+jwt", "AT+JWT"] {
        assert!(
            decide(&mint_with(Signer::ES256, &claims, Some(typ)), Some(cert)).is_ok(),
            "{typ}"
        );
    }
    // jwt-simple writes typ "JWT" when none is given.
    let plain = mint_with(Signer::ES256, &claims, None);
    assert_eq!(
        decide(&plain, Some(cert)).unwrap_err(),
        Rejection::TypeNotAllowed
    );
    assert!(decide_with(&lenient, &plain, Some(cert)).is_ok());
    // Other JWT types (an ID token, a DPoP proof) are never access tokens.
    for typ in ["dpop+jwt", "id_token+jwt", "secevent+jwt"] {
        let t = unsigned(json!({"alg": "ES256", "typ": typ, "kid": "ec-1"}), &claims);
        assert_eq!(
            decide_with(&lenient, &t, Some(cert)).unwrap_err(),
            Rejection::TypeNotAllowed,
            "{typ}"
        );
    }
    let no_typ = unsigned(json!({"alg": "ES256", "kid": "ec-1"}), &claims);
    assert_eq!(
        decide(&no_typ, Some(cert)).unwrap_err(),
        Rejection::TypeNotAllowed
    );
}

#[test]
fn crit_header_parameters_are_refused() {
    let cert = &pki().ec;
    let t = unsigned(
        json!({"alg": "ES256", "typ": "at+jwt", "kid": "ec-1", "crit": ["exp"]}),
        &claims_for(cert),
    );
    assert_eq!(
        decide(&t, Some(cert)).unwrap_err(),
        Rejection::CriticalHeader
    );
}

#[test]
fn issuer_must_match_exactly() {
    let cert = &pki().ec;
    let c = claims_for(cert);
    for iss in [
        json!("https://idp.example:8443/"),
        json!("https://evil.example"),
        json!(null),
        json!(5),
    ] {
        let t = mint_with(Signer::ES256, &set(&c, "iss", iss.clone()), Some("at+jwt"));
        assert_eq!(
            decide(&t, Some(cert)).unwrap_err(),
            Rejection::IssuerMismatch,
            "{iss}"
        );
    }
}

#[test]
fn exp_nbf_iat_with_leeway_at_the_edges() {
    let cert = &pki().ec;
    let c = claims_for(cert);
    let leeway = 30;
    let at = |k: &str, v: u64| mint_with(Signer::ES256, &set(&c, k, json!(v)), Some("at+jwt"));
    // exp: valid through now + leeway past it, expired one second later.
    assert!(decide(&at("exp", NOW - leeway), Some(cert)).is_ok());
    assert_eq!(
        decide(&at("exp", NOW - leeway - 1), Some(cert)).unwrap_err(),
        Rejection::Expired
    );
    // nbf and iat: up to leeway in the future.
    assert!(decide(&at("nbf", NOW + leeway), Some(cert)).is_ok());
    assert_eq!(
        decide(&at("nbf", NOW + leeway + 1), Some(cert)).unwrap_err(),
        Rejection::NotYetValid
    );
    assert!(decide(&at("iat", NOW + leeway), Some(cert)).is_ok());
    assert_eq!(
        decide(&at("iat", NOW + leeway + 1), Some(cert)).unwrap_err(),
        Rejection::IssuedInFuture
    );
    // exp is required (RFC 9068 §2.2); a non-numeric time is malformed.
    let no_exp = mint_with(Signer::ES256, &set(&c, "exp", json!(null)), Some("at+jwt"));
    assert_eq!(
        decide(&no_exp, Some(cert)).unwrap_err(),
        Rejection::MissingExpiry
    );
    let text_exp = unsigned(
        json!({"alg": "ES256", "typ": "at+jwt", "kid": "ec-1"}),
        &set(&c, "exp", json!("tomorrow")),
    );
    assert_eq!(
        decide(&text_exp, Some(cert)).unwrap_err(),
        Rejection::MalformedJwt
    );
}

#[test]
fn zero_leeway_is_exact() {
    let cert = &pki().ec;
    let s = settings(&with(base_config(), json!({"leeway": 0})));
    let c = claims_for(cert);
    assert!(
        decide_with(
            &s,
            &mint_with(Signer::ES256, &set(&c, "exp", json!(NOW)), Some("at+jwt")),
            Some(cert)
        )
        .is_ok()
    );
    let expired = mint_with(
        Signer::ES256,
        &set(&c, "exp", json!(NOW - 1)),
        Some("at+jwt"),
    );
    assert_eq!(
        decide_with(&s, &expired, Some(cert)).unwrap_err(),
        Rejection::Expired
    );
}

#[test]
fn audience_any_of_the_required() {
    let cert = &pki().ec;
    let c = claims_for(cert);
    let two = settings(&with(
        base_config(),
        json!({"audience_required": ["https://other.example", AUDIENCE]}),
    ));
    let aud = |v: Value| mint_with(Signer::ES256, &set(&c, "aud", v), Some("at+jwt"));
    assert!(decide_with(&two, &aud(json!(AUDIENCE)), Some(cert)).is_ok());
    assert!(decide_with(&two, &aud(json!(["x", AUDIENCE])), Some(cert)).is_ok());
    assert_eq!(
        decide(&aud(json!("https://other.example")), Some(cert)).unwrap_err(),
        Rejection::AudienceMismatch
    );
    assert_eq!(
        decide(&aud(json!(["a", "b"])), Some(cert)).unwrap_err(),
        Rejection::AudienceMismatch
    );
    assert_eq!(
        decide(&aud(json!(null)), Some(cert)).unwrap_err(),
        Rejection::AudienceMismatch
    );
    // No audience_required: any audience passes.
    let any = settings(&with(base_config(), json!({"audience_required": []})));
    assert!(decide_with(&any, &aud(json!("https://other.example")), Some(cert)).is_ok());
}

#[test]
fn scopes_all_of_the_required_from_scope_or_scp() {
    let cert = &pki().ec;
    let c = claims_for(cert);
    let need_two = settings(&with(
        base_config(),
        json!({"scopes_required": ["accounts:read", "accounts:write"]}),
    ));
    let scoped = |k: &str, v: Value| {
        let mut m = set(&c, "scope", json!(null));
        m.insert(k.to_string(), v);
        mint_with(Signer::ES256, &m, Some("at+jwt"))
    };
    assert!(
        decide_with(
            &need_two,
            &scoped("scope", json!("accounts:write accounts:read")),
            Some(cert)
        )
        .is_ok()
    );
    assert!(
        decide_with(
            &need_two,
            &scoped("scp", json!(["accounts:read", "accounts:write"])),
            Some(cert)
        )
        .is_ok()
    );
    assert_eq!(
        decide_with(
            &need_two,
            &scoped("scope", json!("accounts:read")),
            Some(cert)
        )
        .unwrap_err(),
        Rejection::InsufficientScope
    );
    assert_eq!(
        decide(&scoped("scope", json!("accounts:readonly")), Some(cert)).unwrap_err(),
        Rejection::InsufficientScope
    );
    assert_eq!(
        decide(&scoped("other", json!(1)), Some(cert)).unwrap_err(),
        Rejection::InsufficientScope
    );
}

#[test]
fn an_insufficient_scope_is_reported_only_for_an_authentic_token() {
    // A forged token lacking the scope fails on its signature, never with 403.
    let cert = &pki().ec;
    let c = set(&claims_for(cert), "scope", json!("other"));
    let forged = unsigned(json!({"alg": "ES256", "typ": "at+jwt", "kid": "ec-1"}), &c);
    assert_eq!(
        decide(&forged, Some(cert)).unwrap_err(),
        Rejection::BadSignature
    );
}

#[test]
fn unknown_kid_and_kidless_tokens() {
    let cert = &pki().ec;
    let c = claims_for(cert);
    let t = unsigned(json!({"alg": "ES256", "typ": "at+jwt", "kid": "nope"}), &c);
    assert_eq!(decide(&t, Some(cert)).unwrap_err(), Rejection::UnknownKey);
    // Without a kid every key of the algorithm is tried.
    let k = &support::keys().ec256;
    let kidless = jwt_simple::prelude::ES256KeyPair::from_bytes(&k.to_bytes()).unwrap();
    use jwt_simple::prelude::ECDSAP256KeyPairLike;
    let mut jwt = jwt_simple::prelude::Claims::with_custom_claims(
        Map::new(),
        jwt_simple::prelude::Duration::from_secs(1),
    );
    jwt.custom = c.clone();
    jwt.issuer = Some(ISSUER.into());
    jwt.audiences = Some(jwt_simple::prelude::Audiences::AsString(AUDIENCE.into()));
    jwt.issued_at = Some(jwt_simple::prelude::UnixTimeStamp::from_secs(NOW));
    jwt.expires_at = Some(jwt_simple::prelude::UnixTimeStamp::from_secs(NOW + 60));
    jwt.invalid_before = None;
    for key in ["iss", "aud", "iat", "exp", "nbf"] {
        jwt.custom.remove(key);
    }
    let opts = jwt_simple::prelude::HeaderOptions {
        signature_type: Some("at+jwt".into()),
        ..Default::default()
    };
    let token = kidless.sign_with_options(jwt, &opts).unwrap();
    assert!(decide(&token, Some(cert)).is_ok());
}

#[test]
fn malformed_jwts_are_invalid_tokens() {
    let cert = &pki().ec;
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","typ":"at+jwt","kid":"ec-1"}"#);
    for payload in ["", "bm90IGpzb24", "WzFd", "!!!"] {
        let t = format!("{header}.{payload}.c2ln");
        assert_eq!(
            decide(&t, Some(cert)).unwrap_err(),
            Rejection::MalformedJwt,
            "{payload}"
        );
    }
    let empty_sig = format!(
        "{header}.{}.",
        URL_SAFE_NO_PAD.encode(Value::Object(claims_for(cert)).to_string())
    );
    assert_eq!(
        decide(&empty_sig, Some(cert)).unwrap_err(),
        Rejection::MalformedJwt
    );
}

#[test]
fn bearer_only_refuses_opaque_tokens_and_introspection_only_takes_jwts_too() {
    let bearer_only = || {
        settings(&with(
            base_config(),
            json!({"auth_methods": ["bearer"], "introspection_endpoint": null, "client_id": null, "client_secret": null}),
        ))
    };
    let cert = Some(&pki().ec);
    assert!(matches!(
        step_for(bearer_only(), "opaque-token-value", cert),
        Step::Deny(Rejection::NotAJwt)
    ));
    let both = || settings(&base_config());
    assert!(matches!(
        step_for(both(), "opaque-token-value", cert),
        Step::Introspect(..)
    ));
    let jwt = mint(&claims_for(&pki().ec));
    assert!(matches!(step_for(both(), &jwt, cert), Step::Allow(_)));
    let intro_only = settings(&with(
        base_config(),
        json!({"auth_methods": ["introspection"], "jwks": null}),
    ));
    assert!(matches!(
        step_for(intro_only, &jwt, cert),
        Step::Introspect(..)
    ));
}

/// Signs `header.payload` with openssl, so the verifier is checked against an independent
/// implementation, not only against the library that also signs in the other tests.
fn openssl_jwt(alg: &str, sign_args: &[&str], claims: &Map<String, Value>) -> String {
    let dir = &pki().dir;
    let enc = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let input = format!(
        "{}.{}",
        enc(json!({"alg": alg, "typ": "at+jwt", "kid": "openssl-1"})),
        enc(Value::Object(claims.clone()))
    );
    let input_file = dir.join(format!("input-{alg}"));
    std::fs::write(&input_file, &input).unwrap();
    let input_path = input_file.to_string_lossy().into_owned();
    // "INPUT" in the arguments stands for the signing-input file.
    let args: Vec<&str> = sign_args
        .iter()
        .map(|a| {
            if *a == "INPUT" {
                input_path.as_str()
            } else {
                a
            }
        })
        .collect();
    let sig = openssl(&args, dir);
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

#[test]
fn tokens_signed_by_openssl_verify() {
    let dir = &pki().dir;
    openssl(
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "idp-rsa.key",
        ],
        dir,
    );
    openssl(
        &["genpkey", "-algorithm", "ED25519", "-out", "idp-ed.key"],
        dir,
    );
    let rsa_pub =
        String::from_utf8(openssl(&["pkey", "-in", "idp-rsa.key", "-pubout"], dir)).unwrap();
    let ed_pub_der = openssl(
        &["pkey", "-in", "idp-ed.key", "-pubout", "-outform", "DER"],
        dir,
    );
    // The last 32 bytes of an Ed25519 SubjectPublicKeyInfo are the key.
    let ed_x = URL_SAFE_NO_PAD.encode(&ed_pub_der[ed_pub_der.len() - 32..]);
    let rsa_jwk: Value = serde_json::from_str(
        &jwt_simple::prelude::RS256PublicKey::from_pem(&rsa_pub)
            .unwrap()
            .to_jwk(),
    )
    .unwrap();
    let mut rsa_jwk = rsa_jwk.as_object().unwrap().clone();
    rsa_jwk.remove("alg");
    rsa_jwk.insert("kid".into(), json!("openssl-1"));
    let ed_jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": ed_x, "kid": "openssl-1"});
    let s = settings(&with(
        base_config(),
        json!({"jwks": {"keys": [rsa_jwk, ed_jwk]}}),
    ));

    let cert = &pki().ec;
    let claims = claims_for(cert);
    let rsa_key = dir.join("idp-rsa.key").to_string_lossy().into_owned();
    let ed_key = dir.join("idp-ed.key").to_string_lossy().into_owned();
    let rs256 = openssl_jwt(
        "RS256",
        &["dgst", "-sha256", "-sign", &rsa_key, "INPUT"],
        &claims,
    );
    let pss = [
        "dgst",
        "-sha256",
        "-sigopt",
        "rsa_padding_mode:pss",
        "-sigopt",
        "rsa_pss_saltlen:32",
        "-sign",
        &rsa_key,
        "INPUT",
    ];
    let ps256 = openssl_jwt("PS256", &pss, &claims);
    let eddsa = openssl_jwt(
        "EdDSA",
        &[
            "pkeyutl", "-sign", "-rawin", "-inkey", &ed_key, "-in", "INPUT",
        ],
        &claims,
    );
    for (name, token) in [("RS256", &rs256), ("PS256", &ps256), ("EdDSA", &eddsa)] {
        assert!(
            decide_with(&s, token, Some(cert)).is_ok(),
            "{name}: {:?}",
            decide_with(&s, token, Some(cert))
        );
        assert_eq!(
            decide_with(&s, token, Some(&pki().other)).unwrap_err(),
            Rejection::ThumbprintMismatch,
            "{name}"
        );
    }
    // A one-bit change in an openssl signature fails.
    let mut bad = eddsa.clone().into_bytes();
    let last = bad.len() - 2;
    bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
    assert_eq!(
        decide_with(&s, &String::from_utf8(bad).unwrap(), Some(cert)).unwrap_err(),
        Rejection::BadSignature
    );
}

#[test]
fn jwks_parsing_keeps_signature_keys_and_reports_broken_ones() {
    use certbound::tokens::jwks::Alg;
    let ok = |v: &Value, algs: &[Alg]| {
        let (set, problems) = KeySet::from_jwks(v, algs);
        assert!(problems.is_empty(), "{problems:?}");
        set
    };
    let jwks = support::jwks();
    let set = ok(&jwks, &Alg::ALL);
    // RSA without alg serves six algorithms; EC P-256, P-384 and Ed25519 one each.
    assert_eq!(set.len(), 9);
    assert!(set.has_candidate(Some("rsa-1"), Alg::PS512));
    assert!(!set.has_candidate(Some("rsa-1"), Alg::ES256));
    assert_eq!(ok(&jwks, &[Alg::ES256]).len(), 1);

    let mut with_enc = jwks.clone();
    with_enc["keys"]
        .as_array_mut()
        .unwrap()
        .push(json!({"kty": "RSA", "use": "enc", "n": "x", "e": "AQAB"}));
    with_enc["keys"]
        .as_array_mut()
        .unwrap()
        .push(json!({"kty": "oct", "k": "c2VjcmV0"}));
    assert_eq!(
        ok(&with_enc, &Alg::ALL).len(),
        9,
        "encryption and symmetric keys skipped"
    );

    // A key that does not decode is left out and reported; the others still load.
    let mut broken = jwks.clone();
    broken["keys"].as_array_mut().unwrap().insert(
        0,
        json!({"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA", "kid": "bad"}),
    );
    let (set, problems) = KeySet::from_jwks(&broken, &Alg::ALL);
    assert_eq!(set.len(), 9);
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].path, ".keys[0]");
    let (set, problems) = KeySet::from_jwks(&json!({"nokeys": []}), &Alg::ALL);
    assert!(set.is_empty() && problems.len() == 1);
    assert!(
        ok(&json!({"keys": {}}), &Alg::ALL).is_empty(),
        "Kong's {{}} for []"
    );
    // A JWK carrying a long x5c chain still loads (extras are dropped before jwt-simple's size limit).
    let mut big = jwks.clone();
    big["keys"][1]["x5c"] = json!(["A".repeat(9000)]);
    assert_eq!(ok(&big, &Alg::ALL).len(), 9);
}

/// RSA signatures are checked by `sigalgs` (rsa 0.10) and the registered claims re-checked by
/// our own code; EC and Ed25519 keys go through jwt-simple. Both must give the same answer for
/// every combination of claims and rules.
#[test]
fn rsa_keys_and_jwt_simple_keys_agree_on_every_registered_claim_outcome() {
    use certbound::tokens::jwks::Alg;
    use certbound::tokens::jwt::{JwtRules, verify_signature};
    let (set, problems) = KeySet::from_jwks(&jwks(), &Alg::ALL);
    assert!(problems.is_empty(), "{problems:?}");
    let key = |alg: Alg| set.candidates(None, alg).next().unwrap().clone();
    // Each side of, and exactly on, a 30 s leeway and a 60 s max_age.
    let times = [
        None,
        Some(NOW - 61),
        Some(NOW - 60),
        Some(NOW - 31),
        Some(NOW - 30),
        Some(NOW + 29),
        Some(NOW + 30),
        Some(NOW + 31),
    ];
    let mut cases = 0;
    for iat in times {
        for nbf in [None, Some(NOW + 29), Some(NOW + 30), Some(NOW + 31)] {
            for exp in times {
                for (iss, aud) in [
                    (Some(ISSUER), Some(json!(AUDIENCE))),
                    (None, Some(json!(AUDIENCE))),
                    (Some("https://other"), Some(json!(AUDIENCE))),
                    (Some(ISSUER), None),
                    (Some(ISSUER), Some(json!(["x", AUDIENCE]))),
                    (Some(ISSUER), Some(json!(["x", "y"]))),
                ] {
                    let mut claims = Map::new();
                    let mut put = |k: &str, v: Option<Value>| {
                        if let Some(v) = v {
                            claims.insert(k.into(), v);
                        }
                    };
                    put("iat", iat.map(Value::from));
                    put("nbf", nbf.map(Value::from));
                    put("exp", exp.map(Value::from));
                    put("iss", iss.map(Value::from));
                    put("aud", aud);
                    let rsa = mint_with(Signer::PS256, &claims, Some("at+jwt"));
                    let ec = mint_with(Signer::ES256, &claims, Some("at+jwt"));
                    for leeway in [0, 30] {
                        for max_age in [None, Some(60)] {
                            for audience in [vec![], vec![AUDIENCE.to_string()]] {
                                let rules = JwtRules {
                                    issuer: ISSUER,
                                    algorithms: &Alg::ALL,
                                    typ_strict: true,
                                    audience_required: &audience,
                                    leeway,
                                    max_age,
                                };
                                let ours = verify_signature(&rsa, &key(Alg::PS256), &rules, NOW);
                                let theirs = verify_signature(&ec, &key(Alg::ES256), &rules, NOW);
                                assert_eq!(
                                    ours, theirs,
                                    "claims {claims:?}, leeway {leeway}, max_age {max_age:?}, aud {audience:?}"
                                );
                                cases += 1;
                            }
                        }
                    }
                }
            }
        }
    }
    assert_eq!(cases, 8 * 4 * 8 * 6 * 8);
}

/// What no claims builder makes (odd member types, duplicates, `crit`, `typ`s, oversized
/// headers, claims of the wrong type) gets the same answer from the RSA path as from
/// jwt-simple's: each header and payload signed for real, RS256 against ES256.
#[test]
fn rsa_keys_and_jwt_simple_keys_agree_on_malformed_headers_and_claims() {
    use certbound::tokens::jwks::Alg;
    use certbound::tokens::jwt::{JwtRules, verify_signature};
    let (set, _) = KeySet::from_jwks(&jwks(), &Alg::ALL);
    let key = |alg: Alg| set.candidates(None, alg).next().unwrap().clone();
    let audience = [AUDIENCE.to_string()];
    let rules = JwtRules {
        issuer: ISSUER,
        algorithms: &Alg::ALL,
        typ_strict: false,
        audience_required: &audience,
        leeway: 30,
        max_age: None,
    };
    let long = "a".repeat(7000);
    let headers: Vec<String> = vec![
        r#""typ":"at+jwt""#.into(),
        String::new(),
        r#""typ":"JWT""#.into(),
        r#""typ":"application/jwt""#.into(),
        r#""typ":"dpop+jwt""#.into(),
        r#""typ":5"#.into(),
        r#""crit":[]"#.into(),
        r#""crit":["exp"]"#.into(),
        r#""crit":"exp""#.into(),
        r#""kid":5"#.into(),
        r#""cty":["x"]"#.into(),
        r#""jwk":{"kty":"EC"}"#.into(),
        r#""x5c":"not a list""#.into(),
        r#""salt":"!!""#.into(),
        r#""salt":"c2FsdA""#.into(),
        r#""typ":"at+jwt","typ":"JWT""#.into(),
        format!(r#""pad":"{long}""#),
    ];
    let base = format!(
        r#""iss":"{ISSUER}","aud":"{AUDIENCE}","iat":{iat},"exp":{exp}"#,
        iat = NOW - 10,
        exp = NOW + 300
    );
    let payloads: Vec<String> = vec![
        base.clone(),
        format!(r#"{base},"sub":5"#),
        format!(r#"{base},"jti":null"#),
        format!(r#"{base},"jti":["x"]"#),
        format!(r#"{base},"nonce":{{}}"#),
        format!(r#""iss":5,"aud":"{AUDIENCE}","exp":{}"#, NOW + 300),
        format!(r#""iss":"{ISSUER}","aud":null,"exp":{}"#, NOW + 300),
        format!(r#""iss":"{ISSUER}","aud":["x",5],"exp":{}"#, NOW + 300),
        format!(r#""iss":"{ISSUER}","aud":{{}},"exp":{}"#, NOW + 300),
        format!(r#"{base},"exp":{}"#, NOW - 100),
        format!(r#"{base},"iss":"https://other""#),
        format!(
            r#""iss":"{ISSUER}","aud":"{AUDIENCE}","exp":"{}""#,
            NOW + 300
        ),
        format!(
            r#""iss":"{ISSUER}","aud":"{AUDIENCE}","exp":{}.5"#,
            NOW + 300
        ),
        format!(r#"{base},"nbf":{}"#, NOW + 100),
        format!(r#"{base},"cnf":{{"x5t#S256":"abc"}},"scope":"a b""#),
    ];
    let mut cases = 0;
    for h in &headers {
        for p in &payloads {
            let join = |alg: &str| {
                let header = if h.is_empty() {
                    format!(r#"{{"alg":"{alg}"}}"#)
                } else {
                    format!(r#"{{"alg":"{alg}",{h}}}"#)
                };
                sign_raw(alg, &header, &format!("{{{p}}}"))
            };
            let ours = verify_signature(&join("RS256"), &key(Alg::RS256), &rules, NOW);
            let theirs = verify_signature(&join("ES256"), &key(Alg::ES256), &rules, NOW);
            assert_eq!(ours, theirs, "header {{{h:.80}}}, payload {{{p}}}");
            cases += 1;
        }
    }
    assert_eq!(cases, headers.len() * payloads.len());
}

/// RSA verification moved to rsa 0.10, but which RSA JWKs are usable stayed jwt-simple's
/// call: 2048 to 4096 bits, `e` = 65537, no EC members, `key_ops` that allow verifying.
#[test]
fn rsa_jwks_are_taken_exactly_when_jwt_simple_takes_them() {
    use certbound::tokens::jwks::Alg;
    use jwt_simple::prelude::RS256PublicKey;
    let real = jwks()["keys"][0].clone();
    let n = URL_SAFE_NO_PAD.decode(real["n"].as_str().unwrap()).unwrap();
    let with = |k: &str, v: Value| {
        let mut jwk = real.clone();
        jwk[k] = v;
        jwk
    };
    let mut big = vec![0xc5u8; 4100 / 8 + 1];
    *big.last_mut().unwrap() = 0x01;
    let variants = [
        ("the IdP's key", real.clone()),
        ("e = 3", with("e", json!("Aw"))),
        ("e = 65537 with a leading zero", with("e", json!("AAEAAQ"))),
        (
            "n with one leading zero",
            with(
                "n",
                json!(URL_SAFE_NO_PAD.encode([&[0u8][..], &n].concat())),
            ),
        ),
        (
            "n with two leading zeros",
            with(
                "n",
                json!(URL_SAFE_NO_PAD.encode([&[0u8, 0][..], &n].concat())),
            ),
        ),
        (
            "a 4104-bit modulus",
            with("n", json!(URL_SAFE_NO_PAD.encode(&big))),
        ),
        ("key_ops sign", with("key_ops", json!(["sign"]))),
        ("key_ops verify", with("key_ops", json!(["verify"]))),
        ("an EC member", with("crv", json!("P-256"))),
        ("alg RS256", with("alg", json!("RS256"))),
    ];
    let mut taken = 0;
    for (what, jwk) in variants {
        let text = jwk.to_string();
        let theirs = RS256PublicKey::from_jwk(&text).is_ok();
        let (set, _) = KeySet::from_jwks(&json!({"keys": [jwk]}), &[Alg::RS256]);
        assert_eq!(!set.is_empty(), theirs, "{what}");
        taken += usize::from(theirs);
    }
    // Both sides of the rule are exercised.
    assert!((1..10).contains(&taken), "{taken}");
}

/// The RSA path refuses what jwt-simple's did: a signature by another key, a token whose
/// header names another algorithm than the key's, a tampered payload, a key under 2048 bits.
#[test]
fn rsa_signatures_are_checked_by_scheme_key_and_bytes() {
    use certbound::tokens::jwks::Alg;
    use certbound::tokens::jwt::{JwtRules, verify_signature};
    let (set, _) = KeySet::from_jwks(&jwks(), &Alg::ALL);
    let rules = JwtRules {
        issuer: ISSUER,
        algorithms: &Alg::ALL,
        typ_strict: true,
        audience_required: &[],
        leeway: 0,
        max_age: None,
    };
    let claims = bound_claims("x");
    // The six RSA signers.
    for signer in ALL_SIGNERS.into_iter().take(6) {
        let alg = Alg::from_name(&format!("{signer:?}")).unwrap();
        assert!(alg.rsa_scheme().is_some(), "{signer:?}");
        let key = set.candidates(None, alg).next().unwrap();
        let token = mint_with(signer, &claims, Some("at+jwt"));
        assert_eq!(
            verify_signature(&token, key, &rules, NOW),
            Ok(()),
            "{signer:?}"
        );
        for other in Alg::RSA.into_iter().filter(|a| *a != alg) {
            let other_key = set.candidates(None, other).next().unwrap();
            assert_eq!(
                verify_signature(&token, other_key, &rules, NOW),
                Err(Rejection::BadSignature),
                "{signer:?} token, {other:?} key"
            );
        }
        let mut changed = claims.clone();
        changed.insert("sub".into(), json!("admin"));
        assert_eq!(
            verify_signature(&tamper(&token, &changed), key, &rules, NOW),
            Err(Rejection::BadSignature)
        );
    }
    let rogue = mint_with(Signer::Rogue, &claims, Some("at+jwt"));
    let key = set.candidates(None, Alg::RS256).next().unwrap();
    assert_eq!(
        verify_signature(&rogue, key, &rules, NOW),
        Err(Rejection::BadSignature)
    );

    // A 1024-bit odd modulus: well formed, too small.
    let mut n = vec![0xc5u8; 128];
    n[127] = 0x01;
    let jwk = json!({"kty": "RSA", "kid": "small", "n": URL_SAFE_NO_PAD.encode(&n), "e": "AQAB"});
    let (set, problems) = KeySet::from_jwks(&json!({"keys": [jwk]}), &Alg::ALL);
    assert!(set.is_empty());
    assert!(
        problems[0].message.contains("not a valid RS256 public key"),
        "{problems:?}"
    );
}

#[test]
fn a_claim_named_twice_is_refused_by_its_own_name_before_the_signature() {
    // RFC 7519 §4: claim names are unique. A payload naming sub, jti or iat twice is refused
    // as such (it used to read as "the token signature is invalid", the signature being fine),
    // with no key looked up.
    let cert = &pki().ec;
    let base = serde_json::to_string(&claims_for(cert)).unwrap();
    let inner = base.trim_start_matches('{').trim_end_matches('}');
    let header = r#"{"alg":"ES256","typ":"at+jwt","kid":"ec-1"}"#;
    for extra in [
        r#""sub":"admin""#,
        r#""jti":"jti-2""#,
        &format!(r#""iat":{}"#, NOW - 5),
    ] {
        let token = sign_raw("ES256", header, &format!("{{{inner},{extra}}}"));
        assert_eq!(
            decide(&token, Some(cert)),
            Err(Rejection::DuplicateClaim),
            "{extra}"
        );
    }
    // The same claims once each, signed the same way: allowed.
    let token = sign_raw("ES256", header, &base);
    assert!(decide(&token, Some(cert)).is_ok());
}
