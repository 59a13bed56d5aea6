//! Attacks on the DPoP support found by an adversarial review (of d2509db), each a test that
//! failed there and passes with its fix: a certificate-bound token passing as bearer when only
//! DPoP is checked, an attacker-sized RSA proof key, `?` or `#` in Kong's Host cutting the
//! path off `htu`, replay buckets one client could fill (and that overflowed below their
//! size), a fractional `iat`. Known and documented instead: changing
//! `dpop_replay_cache_entries` starts an empty replay cache (README).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::rc::Rc;
use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use certbound::flow::cache::LocalStore;
use certbound::flow::replay::{Claim, ProofId, ProofLedger};
use certbound::flow::request::{Flow, RequestFilter};
use certbound::flow::worker::Worker;
use certbound::reply::metrics::Metric;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use support::dpop_client::*;
use support::fake_host::{FakeHost, REQUEST, ROOT};
use support::*;

const URL: &str = "https://api.example/accounts";
const OPAQUE: &str = "qvUQbKLwTEw5rCDLbg3SwDt7xZh6gFqL8Hib6nrmlWd";

fn config(mtls: &str, dpop: &str) -> Value {
    with(
        base_config(),
        json!({"proof_of_possession_dpop": dpop, "proof_of_possession_mtls": mtls}),
    )
}

fn worker(config: &Value) -> Rc<Worker> {
    let w = Rc::new(Worker::new(settings(config)));
    w.set_root_context(ROOT);
    w
}

fn run(w: &Rc<Worker>, host: &FakeHost) -> Flow {
    RequestFilter::new(Rc::clone(w), REQUEST).on_request_headers(host.as_request(REQUEST))
}

fn dpop_claims(jkt: &str) -> Map<String, Value> {
    let mut c = bound_claims("unused");
    c.insert("cnf".into(), json!({ "jkt": jkt }));
    c.insert("exp".into(), json!(NOW + 3600));
    c
}

fn dpop_request(token: &str, proof: &str) -> FakeHost {
    let host = FakeHost::envoy(None, None);
    host.request(
        "/accounts",
        &[("authorization", &format!("DPoP {token}")), ("dpop", proof)],
    );
    host
}

/// Deterministic filler bytes (SHA-256 in counter mode).
fn bytes(seed: &str, len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0u32;
    while out.len() < len {
        out.extend_from_slice(&Sha256::digest(format!("{seed}{i}").as_bytes()));
        i += 1;
    }
    out.truncate(len);
    out
}

// ---------------------------------------------------------------------------------------
// 1. mTLS `off` + DPoP `optional`: a certificate-bound token passes as a plain bearer token.
// ---------------------------------------------------------------------------------------

#[test]
fn mtls_off_dpop_optional_lets_an_x5t_bound_token_through_as_bearer_without_a_certificate() {
    // The docs (README, raw.rs): "a token bound to a key neither setting checks is refused
    // unless both are off". binding::check refuses cnf.jkt under dpop=off, but not the mirror
    // case: cnf["x5t#S256"] under mtls=off, dpop!=off.
    let cert = &pki().ec;
    let stolen = mint(&bound_claims(&cert.x5t_openssl));
    let host = FakeHost::envoy(None, None); // no client certificate at all
    host.bearer(&stolen);
    let flow = run(&worker(&config("off", "optional")), &host);
    assert_eq!(
        flow,
        Flow::Pause,
        "a stolen certificate-bound token was accepted as a bearer token: {}",
        host.log_text()
    );
    assert!(host.log_text().contains("unsupported_confirmation"));
}

// ---------------------------------------------------------------------------------------
// 2. CPU amplification: an attacker-chosen RSA key (8192 bits, e = 2^33 - 1) in the proof,
//    no private key needed, checked before the token is known good.
// ---------------------------------------------------------------------------------------

/// A proof "by" an RSA key nobody holds: n random (odd, top bit set), the largest exponent
/// rsa 0.9 takes, and a junk signature just below n (so the modexp runs).
fn heavy_proof(token: &str, jti: &str) -> (String, String) {
    let mut n = bytes(&format!("n-{jti}"), 1024); // 8192 bits, the cap in sigalgs.rs
    n[0] |= 0x80;
    n[1023] |= 1;
    let e = ((1u64 << 33) - 1).to_be_bytes()[3..].to_vec();
    let jwk =
        json!({"kty": "RSA", "n": URL_SAFE_NO_PAD.encode(&n), "e": URL_SAFE_NO_PAD.encode(&e)});
    let jkt = thumbprint(&jwk);
    let header = json!({"typ": "dpop+jwt", "alg": "RS256", "jwk": jwk});
    let claims = proof_claims("GET", URL, token, jti);
    let mut sig = n.clone();
    sig[0] -= 1;
    let proof = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(Value::Object(claims).to_string()),
        URL_SAFE_NO_PAD.encode(&sig)
    );
    (proof, jkt)
}

#[test]
fn an_unauthenticated_proof_with_an_8192_bit_rsa_key_is_refused_before_any_signature_work() {
    let w = worker(&config("optional", "optional"));
    // (a) any random opaque token: the proof is verified before the IdP is asked.
    let rounds = 10;
    let mut heavy = std::time::Duration::ZERO;
    let mut checks = 0;
    for i in 0..rounds {
        let token = format!("{OPAQUE}{i}");
        let (p, _) = heavy_proof(&token, &format!("heavy-{i}"));
        let host = dpop_request(&token, &p);
        let t = Instant::now();
        assert_eq!(run(&w, &host), Flow::Pause);
        heavy += t.elapsed();
        assert!(host.dispatched.borrow().is_empty());
        checks += host.metric(Metric::DpopProofChecks);
    }
    // For scale, the same refusal (bad signature) of a junk ES256 proof.
    let es = proof_key(KeyKind::P256);
    let mut light = std::time::Duration::ZERO;
    for i in 0..rounds {
        let token = format!("{OPAQUE}x{i}");
        let good = proof(es, "GET", URL, &token, &format!("es-{i}"));
        let (rest, sig) = good.rsplit_once('.').unwrap();
        let flipped = if sig.starts_with('A') { 'B' } else { 'A' };
        let host = dpop_request(&token, &format!("{rest}.{flipped}{}", &sig[1..]));
        let t = Instant::now();
        assert_eq!(run(&w, &host), Flow::Pause);
        light += t.elapsed();
        assert_eq!(host.metric(Metric::DpopProofChecks), 1);
    }
    let (heavy, light) = (heavy / rounds, light / rounds);
    eprintln!(
        "junk 8192-bit/e=2^33-1 RSA proof: {heavy:?} per request; junk ES256 proof: {light:?}"
    );
    assert_eq!(
        checks, 0,
        "each junk RSA proof cost a signature check ({heavy:?} each, vs {light:?} for ES256)"
    );
}

#[test]
fn a_forged_jwt_naming_the_attackers_rsa_key_costs_a_proof_check_before_its_own_signature() {
    // The token is unverified when its cnf.jkt is compared: the attacker writes its own jkt.
    let w = worker(&config("optional", "optional"));
    let (_, jkt) = heavy_proof("placeholder", "forged-1");
    let forged = unsigned(
        json!({"alg": "RS256", "typ": "at+jwt", "kid": "rsa-1"}),
        &dpop_claims(&jkt),
    );
    let (p, _) = heavy_proof(&forged, "forged-1");
    let host = dpop_request(&forged, &p);
    assert_eq!(run(&w, &host), Flow::Pause);
    assert_eq!(
        host.metric(Metric::DpopProofChecks),
        0,
        "a forged token made us verify an attacker-sized RSA proof: {}",
        host.log_text()
    );
}

// ---------------------------------------------------------------------------------------
// 3. htu: on Kong the authority is the client's `host` header, which nginx lets carry `?`
//    and `#` (ngx_http_validate_host refuses only `/`, NUL, controls, `..`): everything
//    after it, the whole path, is then cut off the URL the proof must name.
// ---------------------------------------------------------------------------------------

fn kong_request(host_header: &str, path: &str, token: &str, proof: &str) -> FakeHost {
    let host = FakeHost::kong(None);
    host.request(
        path,
        &[
            ("host", host_header),
            ("authorization", &format!("DPoP {token}")),
            ("dpop", proof),
        ],
    );
    host.headers.borrow_mut().retain(|(k, _)| k != ":authority");
    host.headers
        .borrow_mut()
        .push((":authority".into(), b"localhost:8443".to_vec()));
    host
}

#[test]
fn on_kong_a_host_header_ending_in_a_question_mark_makes_any_path_match_a_root_htu() {
    let key = proof_key(KeyKind::Ed25519);
    let token = mint(&dpop_claims(&key.jkt));
    let w = worker(&config("optional", "optional"));
    for (i, host_header) in ["api.example?", "api.example#"].into_iter().enumerate() {
        // A proof made for https://api.example/ (say, for another resource server sharing the
        // origin, or a health probe), used on /accounts/transfer.
        let root = proof(
            key,
            "GET",
            "https://api.example/",
            &token,
            &format!("root-{i}"),
        );
        let host = kong_request(host_header, "/accounts/transfer", &token, &root);
        assert_eq!(
            run(&w, &host),
            Flow::Pause,
            "Host {host_header:?}: a proof for / was accepted for /accounts/transfer"
        );
    }
}

// ---------------------------------------------------------------------------------------
// 4. Replay cache: fixed buckets of 16 under an unkeyed hash.
// ---------------------------------------------------------------------------------------

/// The bucket ProofLedger puts a proof in (replay.rs: first 4 bytes of SHA-256(jkt "." jti)).
fn bucket(jkt: &str, jti: &str, buckets: u32) -> u32 {
    let d = Sha256::digest(format!("{jkt}.{jti}").as_bytes());
    u32::from_be_bytes([d[0], d[1], d[2], d[3]]) % buckets
}

#[test]
fn one_client_with_16_requests_gets_other_clients_proofs_refused_with_503() {
    // 1024 entries = 64 buckets. The attacker is a legit client with its own DPoP token; it
    // grinds jtis (about 64 hashes each) into one bucket and fills it with 16 allowed
    // requests. Every other client's proof that lands there gets 503 for the next
    // lifetime + 2 x leeway (iat may be leeway in the future).
    let w = worker(&with(
        config("optional", "optional"),
        json!({"dpop_replay_cache_entries": 1024}),
    ));
    let (attacker, victim) = (proof_key(KeyKind::P256), proof_key(KeyKind::Ed25519));
    let (a_token, v_token) = (
        mint(&dpop_claims(&attacker.jkt)),
        mint(&dpop_claims(&victim.jkt)),
    );
    let target = bucket(&victim.jkt, "victim-1", 64);
    let jtis: Vec<String> = (0..)
        .map(|i| format!("a-{i}"))
        .filter(|j| bucket(&attacker.jkt, j, 64) == target)
        .take(16)
        .collect();
    let host = FakeHost::envoy(None, None);
    for jti in &jtis {
        let mut c = proof_claims("GET", URL, &a_token, jti);
        c.insert("iat".into(), json!(NOW + 30)); // + leeway: lives lifetime + 2 x leeway
        let p = sign(attacker, &header_for(attacker), &c);
        host.request(
            "/accounts",
            &[("authorization", &format!("DPoP {a_token}")), ("dpop", &p)],
        );
        assert_eq!(run(&w, &host), Flow::Continue, "{}", host.log_text());
    }
    let p = proof(victim, "GET", URL, &v_token, "victim-1");
    host.request(
        "/accounts",
        &[("authorization", &format!("DPoP {v_token}")), ("dpop", &p)],
    );
    let flow = run(&w, &host);
    assert_eq!(
        flow,
        Flow::Continue,
        "the victim got {:?}",
        host.last_response().map(|r| r.status)
    );
}

#[test]
fn the_replay_cache_refuses_legit_proofs_well_below_its_configured_size() {
    // README: "Size dpop_replay_cache_entries above the peak DPoP requests per second x
    // (lifetime + leeway)". With fixed 16-entry buckets, random proofs overflow buckets long
    // before that: at 75% of the default 131072, ~1% of new proofs already get 503; at 100%,
    // ~10%.
    let capacity = 131_072u32;
    let ledger = ProofLedger::new(capacity);
    let store = LocalStore::default();
    let mut report = Vec::new();
    let mut full = 0u32;
    let mut n = 0u32;
    for load in [50u32, 75, 100] {
        while n < capacity / 100 * load {
            let id = ProofId::of("jkt-of-some-client", &format!("jti-{n}"));
            if ledger.claim(&store, &id, 0, 1_000) == Claim::Full {
                full += 1;
            }
            n += 1;
        }
        report.push(format!("{load}%: {full} of {n} refused"));
    }
    eprintln!("{}", report.join("; "));
    let at_75 = report[1].clone();
    assert!(
        report[1].starts_with("75%: 0 "),
        "legit proofs refused at 75% of the configured capacity: {at_75}"
    );
}

// ---------------------------------------------------------------------------------------
// 5. Interop (low): RFC 9449's iat is a NumericDate (RFC 7519: may be non-integer); the
//    access token path accepts fractions (claims.rs `time`), the proof path refuses them.
// ---------------------------------------------------------------------------------------

#[test]
fn a_proof_with_a_fractional_iat_is_accepted_like_a_token_with_one() {
    let key = proof_key(KeyKind::Ed25519);
    let token = mint(&dpop_claims(&key.jkt));
    let mut c = proof_claims("GET", URL, &token, "frac");
    c.insert("iat".into(), json!(NOW as f64 + 0.25));
    let host = dpop_request(&token, &sign(key, &header_for(key), &c));
    assert_eq!(
        run(&worker(&config("optional", "optional")), &host),
        Flow::Continue,
        "{}",
        host.log_text()
    );
}
