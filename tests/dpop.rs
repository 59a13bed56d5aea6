//! DPoP (RFC 9449) through the whole filter on a fake Envoy or Kong host: proofs made and
//! signed by openssl, tokens by the IdP's keys, every check with an accept and a reject case,
//! replay across requests and workers, nonces, the challenges, and what goes upstream.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::rc::Rc;

use certbound::flow::request::{Flow, RequestFilter};
use certbound::flow::worker::Worker;
use certbound::reply::metrics::Metric;
use serde_json::{Map, Value, json};
use support::dpop_client::*;
use support::fake_host::{Fail, FakeHost, REQUEST, ROOT, SentResponse};
use support::*;

const URL: &str = "https://api.example/accounts";
const OPAQUE: &str = "qvUQbKLwTEw5rCDLbg3SwDt7xZh6gFqL8Hib6nrmlWd";

/// JWT and introspection, DPoP `mode`, certificate binding optional (clients without one).
fn config(mode: &str) -> Value {
    with(
        base_config(),
        json!({"proof_of_possession_dpop": mode, "proof_of_possession_mtls": "optional"}),
    )
}

fn worker(config: &Value) -> Rc<Worker> {
    let w = Rc::new(Worker::new(settings(config)));
    w.set_root_context(ROOT);
    w
}

/// Claims of an access token bound to `jkt` (and nothing else).
fn dpop_claims(jkt: &str) -> Map<String, Value> {
    let mut c = bound_claims("unused");
    c.insert("cnf".into(), json!({ "jkt": jkt }));
    c
}

fn dpop_token(key: &ProofKey) -> String {
    mint(&dpop_claims(&key.jkt))
}

/// A GET of /accounts on an Envoy host without a client certificate, with these headers.
fn envoy_request(headers: &[(&str, &str)]) -> FakeHost {
    let host = FakeHost::envoy(None, None);
    host.request("/accounts", headers);
    host
}

fn dpop_request(token: &str, proof: &str) -> FakeHost {
    envoy_request(&[("authorization", &format!("DPoP {token}")), ("dpop", proof)])
}

fn run_on(w: &Rc<Worker>, host: &FakeHost, id: u32) -> (RequestFilter, Flow) {
    let f = RequestFilter::new(Rc::clone(w), id);
    let flow = f.on_request_headers(host.as_request(id));
    (f, flow)
}

fn run(w: &Rc<Worker>, host: &FakeHost) -> Flow {
    run_on(w, host, REQUEST).1
}

/// The refusal sent, asserting there was one.
fn refused(host: &FakeHost) -> SentResponse {
    host.last_response().expect("a local reply")
}

/// The challenges of every WWW-Authenticate field, in order: a field holding several (as on
/// Kong's engine) is split before each scheme.
fn challenges(r: &SentResponse) -> Vec<String> {
    let mut out = Vec::new();
    for field in fields(r) {
        let mut rest = field.as_str();
        while let Some(at) = [", Bearer ", ", DPoP "]
            .iter()
            .filter_map(|s| rest.find(s))
            .min()
        {
            out.push(rest[..at].to_string());
            rest = &rest[at + 2..];
        }
        out.push(rest.to_string());
    }
    out
}

/// The WWW-Authenticate fields as sent.
fn fields(r: &SentResponse) -> Vec<String> {
    r.headers
        .iter()
        .filter(|(k, _)| k == "www-authenticate")
        .map(|(_, v)| v.clone())
        .collect()
}

/// Asserts a 401 whose DPoP challenge names `error` and the log names `reason`.
fn assert_dpop_error(host: &FakeHost, error: &str, reason: &str) {
    let r = refused(host);
    assert_eq!(r.status, 401, "{:?}", host.log_text());
    let dpop: Vec<String> = challenges(&r)
        .into_iter()
        .filter(|c| c.starts_with("DPoP "))
        .collect();
    assert_eq!(dpop.len(), 1, "{:?}", challenges(&r));
    assert!(
        dpop[0].contains(&format!("error=\"{error}\"")),
        "{dpop:?} lacks {error}"
    );
    assert!(
        host.log_text().contains(&format!("denied 401 {reason}")),
        "{}",
        host.log_text()
    );
}

// --- the good case, for every key type -------------------------------------------------

#[test]
fn a_valid_proof_by_the_tokens_key_is_allowed_and_goes_upstream_as_bearer() {
    for kind in [
        KeyKind::Ed25519,
        KeyKind::P256,
        KeyKind::P384,
        KeyKind::Rsa,
        KeyKind::RsaPss,
    ] {
        let key = proof_key(kind);
        let token = dpop_token(key);
        let host = dpop_request(&token, &proof(key, "GET", URL, &token, "j-1"));
        let w = worker(&config("optional"));
        assert_eq!(
            run(&w, &host),
            Flow::Continue,
            "{kind:?}: {}",
            host.log_text()
        );
        assert_eq!(
            host.header_values("authorization"),
            [format!("Bearer {token}")]
        );
        assert!(
            host.header_values("dpop").is_empty(),
            "the proof stays here"
        );
        assert_eq!(host.header_values("x-authenticated-sub"), ["client-a"]);
        assert_eq!(host.metric(Metric::DpopProofChecks), 1);
        // The same proof with its payload changed after signing: refused, for every key type.
        let good = proof(key, "GET", URL, &token, "j-2");
        let parts: Vec<&str> = good.split('.').collect();
        let other = proof_claims("GET", URL, &token, "j-3");
        let tampered = format!(
            "{}.{}.{}",
            parts[0],
            base64_url(&Value::Object(other)),
            parts[2]
        );
        let host = dpop_request(&token, &tampered);
        assert_eq!(run(&w, &host), Flow::Pause, "{kind:?}");
        assert_dpop_error(&host, "invalid_dpop_proof", "dpop_bad_signature");
    }
}

#[test]
fn dpop_upstream_dpop_forwards_scheme_and_proof_untouched() {
    let key = proof_key(KeyKind::Ed25519);
    let token = dpop_token(key);
    let p = proof(key, "GET", URL, &token, "j-1");
    let host = dpop_request(&token, &p);
    let w = worker(&with(config("optional"), json!({"dpop_upstream": "dpop"})));
    assert_eq!(run(&w, &host), Flow::Continue);
    assert_eq!(
        host.header_values("authorization"),
        [format!("DPoP {token}")]
    );
    assert_eq!(host.header_values("dpop"), [p]);
}

#[test]
fn the_query_is_not_part_of_htu_and_host_and_scheme_compare_case_insensitively() {
    let key = proof_key(KeyKind::Ed25519);
    let token = dpop_token(key);
    let host = FakeHost::envoy(None, None);
    host.request(
        "/accounts?page=2",
        &[
            ("authorization", &format!("DPoP {token}")),
            (
                "dpop",
                &proof(
                    key,
                    "GET",
                    "HTTPS://API.example:443/accounts",
                    &token,
                    "j-q",
                ),
            ),
        ],
    );
    assert_eq!(run(&worker(&config("optional")), &host), Flow::Continue);
}

// --- replay -----------------------------------------------------------------------------

#[test]
fn a_replayed_proof_is_refused_without_any_signature_work() {
    let key = proof_key(KeyKind::P256);
    let token = dpop_token(key);
    let p = proof(key, "GET", URL, &token, "j-replay");
    let w = worker(&config("optional"));
    let first = dpop_request(&token, &p);
    assert_eq!(run(&w, &first), Flow::Continue);
    // The same proof again, on the same worker and sharing its host's shared data.
    let again = dpop_request(&token, &p);
    *again.shared.borrow_mut() = first.shared.borrow().clone();
    assert_eq!(run(&w, &again), Flow::Pause);
    assert_dpop_error(&again, "invalid_dpop_proof", "dpop_proof_replayed");
    assert_eq!(again.metric(Metric::DpopProofChecks), 0);
    assert_eq!(again.metric(Metric::SignatureChecks), 0);
    // A fresh proof with the same token is fine.
    let fresh = dpop_request(&token, &proof(key, "GET", URL, &token, "j-next"));
    *fresh.shared.borrow_mut() = first.shared.borrow().clone();
    assert_eq!(run(&w, &fresh), Flow::Continue);
}

#[test]
fn a_proof_used_on_one_worker_is_refused_on_another_through_shared_data() {
    let key = proof_key(KeyKind::Ed25519);
    let token = dpop_token(key);
    let p = proof(key, "GET", URL, &token, "j-across");
    let host = dpop_request(&token, &p);
    let (one, two) = (worker(&config("optional")), worker(&config("optional")));
    assert_eq!(run(&one, &host), Flow::Continue);
    host.request(
        "/accounts",
        &[("authorization", &format!("DPoP {token}")), ("dpop", &p)],
    );
    assert_eq!(run(&two, &host), Flow::Pause);
    assert_dpop_error(&host, "invalid_dpop_proof", "dpop_proof_replayed");
}

#[test]
fn on_kong_the_replay_cache_is_shared_too() {
    let key = proof_key(KeyKind::Ed25519);
    let token = dpop_token(key);
    let p = proof(key, "GET", URL, &token, "j-kong");
    let host = FakeHost::kong(None);
    let send = |h: &FakeHost| {
        h.request(
            "/accounts",
            &[
                ("host", "api.example"),
                ("authorization", &format!("DPoP {token}")),
                ("dpop", &p),
            ],
        );
        // Kong's `:authority` is nginx's server name and port, not the client's.
        h.headers.borrow_mut().retain(|(k, _)| k != ":authority");
        h.headers
            .borrow_mut()
            .push((":authority".into(), b"localhost:8443".to_vec()));
    };
    send(&host);
    let w = worker(&config("optional"));
    assert_eq!(run(&w, &host), Flow::Continue, "{}", host.log_text());
    // Overwritten, not removed: nginx would forward a removed header anyway.
    assert_eq!(host.header_values("dpop"), [""]);
    send(&host);
    assert_eq!(run(&worker(&config("optional")), &host), Flow::Pause);
    assert_dpop_error(&host, "invalid_dpop_proof", "dpop_proof_replayed");
}

#[test]
fn two_copies_of_a_proof_in_flight_at_once_are_accepted_once() {
    // Both copies pass the early lookup while their introspection calls are out; the first
    // answer records the proof, the second finds it recorded.
    let key = proof_key(KeyKind::Ed25519);
    let p = proof(key, "GET", URL, OPAQUE, "j-twin");
    let host = dpop_request(OPAQUE, &p);
    let w = worker(&with(config("optional"), json!({"cache_introspection": 0})));
    let (first, flow) = run_on(&w, &host, REQUEST);
    assert_eq!(flow, Flow::Pause);
    let (second, flow) = run_on(&w, &host, REQUEST + 1);
    assert_eq!(flow, Flow::Pause);
    assert_eq!(host.dispatched.borrow().len(), 2);
    let answer = json!({"active": true, "client_id": "client-a", "scope": "accounts:read",
        "aud": AUDIENCE, "iss": ISSUER, "exp": NOW + 60, "cnf": {"jkt": key.jkt}})
    .to_string();
    host.call_returns(&[(":status", "200")], answer.as_bytes());
    first.on_call_response(host.as_request(REQUEST), 1, answer.len());
    assert_eq!(host.resumed.get(), 1);
    second.on_call_response(host.as_request(REQUEST + 1), 2, answer.len());
    assert_eq!(host.resumed.get(), 1, "the second copy never goes through");
    assert_dpop_error(&host, "invalid_dpop_proof", "dpop_proof_replayed");
}

#[test]
fn a_full_replay_cache_refuses_new_proofs_with_503_and_forgets_none() {
    let key = proof_key(KeyKind::Ed25519);
    let token = mint(&{
        let mut c = dpop_claims(&key.jkt);
        c.insert("exp".into(), json!(NOW + 3600));
        c
    });
    // 16 entries: a single bucket of 16.
    let w = worker(&with(
        config("optional"),
        json!({"dpop_replay_cache_entries": 16}),
    ));
    let host = FakeHost::envoy(None, None);
    let send = |jti: &str| {
        host.request(
            "/accounts",
            &[
                ("authorization", &format!("DPoP {token}")),
                ("dpop", &proof(key, "GET", URL, &token, jti)),
            ],
        );
        run(&w, &host)
    };
    for i in 0..16 {
        assert_eq!(send(&format!("j-{i}")), Flow::Continue);
    }
    assert_eq!(send("j-16"), Flow::Pause);
    assert_eq!(refused(&host).status, 503);
    assert!(host.log_text().contains("dpop_replay_cache_entries"));
    // Later, when the first proofs could no longer pass their `iat` check, there is room.
    host.now.set(NOW + 300 + 30 + 1);
    let late = |jti: &str| {
        let mut c = proof_claims("GET", URL, &token, jti);
        c.insert("iat".into(), json!(NOW + 331));
        sign(key, &header_for(key), &c)
    };
    host.request(
        "/accounts",
        &[
            ("authorization", &format!("DPoP {token}")),
            ("dpop", &late("j-17")),
        ],
    );
    assert_eq!(run(&w, &host), Flow::Continue, "{}", host.log_text());
}

#[test]
fn a_replay_cache_that_cannot_be_read_is_a_503() {
    let key = proof_key(KeyKind::Ed25519);
    let token = dpop_token(key);
    let host = dpop_request(&token, &proof(key, "GET", URL, &token, "j-1"));
    host.fail(Fail::SharedData);
    assert_eq!(run(&worker(&config("optional")), &host), Flow::Pause);
    assert_eq!(refused(&host).status, 503);
}

// --- the proof against the request ----------------------------------------------------

#[test]
fn a_proof_for_another_method_or_url_is_refused() {
    let key = proof_key(KeyKind::Ed25519);
    let token = dpop_token(key);
    let w = worker(&config("optional"));
    let cases = [
        ("POST", URL, "dpop_htm_mismatch"),
        ("get", URL, "dpop_htm_mismatch"),
        ("GET", "https://api.example/other", "dpop_htu_mismatch"),
        ("GET", "https://evil.example/accounts", "dpop_htu_mismatch"),
        ("GET", "http://api.example/accounts", "dpop_htu_mismatch"),
        (
            "GET",
            "https://api.example:8443/accounts",
            "dpop_htu_mismatch",
        ),
        ("GET", "https://api.example/accounts/", "dpop_htu_mismatch"),
    ];
    for (i, (method, url, reason)) in cases.into_iter().enumerate() {
        let host = dpop_request(&token, &proof(key, method, url, &token, &format!("j-{i}")));
        assert_eq!(run(&w, &host), Flow::Pause, "{method} {url}");
        assert_dpop_error(&host, "invalid_dpop_proof", reason);
    }
}

#[test]
fn dpop_external_url_is_what_htu_must_name_behind_a_proxy() {
    let key = proof_key(KeyKind::Ed25519);
    let token = dpop_token(key);
    let public = "https://public.example/accounts";
    let behind = worker(&with(
        config("optional"),
        json!({"dpop_external_url": "https://Public.example:443"}),
    ));
    let host = dpop_request(&token, &proof(key, "GET", public, &token, "j-ext"));
    assert_eq!(run(&behind, &host), Flow::Continue, "{}", host.log_text());
    // Without it, the request's own authority is expected.
    let host = dpop_request(&token, &proof(key, "GET", public, &token, "j-ext2"));
    assert_eq!(run(&worker(&config("optional")), &host), Flow::Pause);
    assert_dpop_error(&host, "invalid_dpop_proof", "dpop_htu_mismatch");
}

#[test]
fn stale_future_and_missing_claims_are_refused() {
    let key = proof_key(KeyKind::Ed25519);
    let token = dpop_token(key);
    let w = worker(&config("optional"));
    let change = |name: &str, value: Value| {
        let mut c = proof_claims("GET", URL, &token, &format!("j-{name}-{value}"));
        if value.is_null() {
            c.remove(name);
        } else {
            c.insert(name.into(), value);
        }
        sign(key, &header_for(key), &c)
    };
    // Lifetime 300 s, leeway 30 s.
    let cases = [
        (change("iat", json!(NOW - 331)), "dpop_proof_stale"),
        (change("iat", json!(NOW + 31)), "dpop_proof_stale"),
        (change("iat", Value::Null), "dpop_proof_malformed"),
        (change("iat", json!("1800000000")), "dpop_proof_malformed"),
        (change("jti", Value::Null), "dpop_proof_malformed"),
        (change("jti", json!("")), "dpop_proof_malformed"),
        (change("ath", Value::Null), "dpop_ath_mismatch"),
        (
            change("ath", json!(ath("another-token"))),
            "dpop_ath_mismatch",
        ),
        (change("htm", Value::Null), "dpop_htm_mismatch"),
        (change("htu", Value::Null), "dpop_htu_mismatch"),
    ];
    for (p, reason) in cases {
        let host = dpop_request(&token, &p);
        assert_eq!(run(&w, &host), Flow::Pause, "{reason}");
        assert_dpop_error(&host, "invalid_dpop_proof", reason);
    }
    // At the edges of the window it passes.
    for iat in [NOW - 330, NOW + 30] {
        let host = dpop_request(&token, &change("iat", json!(iat)));
        assert_eq!(run(&w, &host), Flow::Continue, "iat {iat}");
    }
}

#[test]
fn malformed_proofs_and_headers_are_refused() {
    let key = proof_key(KeyKind::Ed25519);
    let token = dpop_token(key);
    let claims = proof_claims("GET", URL, &token, "j-m");
    let w = worker(&config("optional"));
    let mut private = key.jwk.clone();
    private["d"] = json!("AAAA");
    let hs = json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": {"kty": "oct", "k": "AAAA"}});
    let cases: Vec<(String, &str)> = vec![
        (
            sign(
                key,
                &json!({"typ": "JWT", "alg": "EdDSA", "jwk": key.jwk}),
                &claims,
            ),
            "dpop_proof_malformed",
        ),
        (
            sign(key, &json!({"alg": "EdDSA", "jwk": key.jwk}), &claims),
            "dpop_proof_malformed",
        ),
        (
            sign(key, &json!({"typ": "dpop+jwt", "alg": "EdDSA"}), &claims),
            "dpop_proof_malformed",
        ),
        (
            sign(
                key,
                &json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": private}),
                &claims,
            ),
            "dpop_proof_malformed",
        ),
        (sign(key, &hs, &claims), "dpop_algorithm_not_allowed"),
        (
            format!(
                "{}.{}.",
                base64_url(&json!({"typ": "dpop+jwt", "alg": "none", "jwk": key.jwk})),
                base64_url(&Value::Object(claims.clone()))
            ),
            "dpop_proof_malformed",
        ),
        ("not-a-jwt".into(), "dpop_proof_malformed"),
        (format!("{}.x", "a".repeat(9000)), "dpop_proof_malformed"),
    ];
    for (p, reason) in cases {
        let host = dpop_request(&token, &p);
        assert_eq!(run(&w, &host), Flow::Pause, "{reason}");
        assert_dpop_error(&host, "invalid_dpop_proof", reason);
        assert_eq!(host.metric(Metric::DpopProofChecks), 0, "{reason}");
    }
    // No DPoP header, or two.
    let good = proof(key, "GET", URL, &token, "j-two");
    for headers in [
        vec![("authorization", format!("DPoP {token}"))],
        vec![
            ("authorization", format!("DPoP {token}")),
            ("dpop", good.clone()),
            ("DPoP", good.clone()),
        ],
    ] {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let host = envoy_request(&h);
        assert_eq!(run(&w, &host), Flow::Pause);
        assert_dpop_error(&host, "invalid_dpop_proof", "dpop_proof_missing");
    }
}

fn base64_url(v: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

#[test]
fn an_algorithm_outside_dpop_algorithms_is_refused() {
    let key = proof_key(KeyKind::Rsa);
    let token = dpop_token(key);
    let w = worker(&with(
        config("optional"),
        json!({"dpop_algorithms": ["ES256", "EdDSA"]}),
    ));
    let host = dpop_request(&token, &proof(key, "GET", URL, &token, "j-rsa"));
    assert_eq!(run(&w, &host), Flow::Pause);
    assert_dpop_error(&host, "invalid_dpop_proof", "dpop_algorithm_not_allowed");
    assert!(
        challenges(&refused(&host))
            .iter()
            .any(|c| c.contains("algs=\"ES256 EdDSA\""))
    );
}

// --- the proof against the token --------------------------------------------------------

#[test]
fn a_proof_by_another_key_costs_no_signature_check_of_proof_or_token() {
    let (mine, thief) = (
        proof_key(KeyKind::Ed25519),
        proof_key(KeyKind::OtherEd25519),
    );
    let token = dpop_token(mine);
    // The thief's own, well-made proof for the stolen token.
    let host = dpop_request(&token, &proof(thief, "GET", URL, &token, "j-thief"));
    assert_eq!(run(&worker(&config("optional")), &host), Flow::Pause);
    assert_dpop_error(&host, "invalid_token", "dpop_key_mismatch");
    assert_eq!(host.metric(Metric::DpopProofChecks), 0);
    assert_eq!(host.metric(Metric::SignatureChecks), 0);
}

#[test]
fn a_proof_carrying_the_tokens_key_but_signed_by_another_is_refused() {
    let (mine, thief) = (
        proof_key(KeyKind::Ed25519),
        proof_key(KeyKind::OtherEd25519),
    );
    let token = dpop_token(mine);
    let forged = sign(
        thief,
        &header_for(mine),
        &proof_claims("GET", URL, &token, "j-forged"),
    );
    let host = dpop_request(&token, &forged);
    assert_eq!(run(&worker(&config("optional")), &host), Flow::Pause);
    assert_dpop_error(&host, "invalid_dpop_proof", "dpop_bad_signature");
    // The token's own signature comes first (a forged token never buys a proof check).
    assert_eq!(host.metric(Metric::SignatureChecks), 1);
    assert_eq!(host.metric(Metric::DpopProofChecks), 1);
}

#[test]
fn a_forged_token_naming_the_attackers_key_never_buys_a_proof_check() {
    // The attacker writes its own jkt into an unsigned token and signs a good proof.
    let thief = proof_key(KeyKind::OtherEd25519);
    let forged = unsigned(
        json!({"alg": "RS256", "typ": "at+jwt", "kid": "rsa-1"}),
        &dpop_claims(&thief.jkt),
    );
    let host = dpop_request(&forged, &proof(thief, "GET", URL, &forged, "j-forged-jwt"));
    assert_eq!(run(&worker(&config("optional")), &host), Flow::Pause);
    assert!(
        host.log_text().contains("bad_signature"),
        "{}",
        host.log_text()
    );
    assert_eq!(host.metric(Metric::SignatureChecks), 1);
    assert_eq!(host.metric(Metric::DpopProofChecks), 0);
}

#[test]
fn a_dpop_bound_token_sent_as_bearer_is_a_downgrade() {
    let key = proof_key(KeyKind::Ed25519);
    let token = dpop_token(key);
    let host = envoy_request(&[("authorization", &format!("Bearer {token}"))]);
    assert_eq!(run(&worker(&config("optional")), &host), Flow::Pause);
    let r = refused(&host);
    assert_eq!(r.status, 401);
    let c = challenges(&r);
    assert_eq!(c.len(), 2, "both schemes are offered: {c:?}");
    assert_eq!(c[0], "Bearer realm=\"api\"");
    assert!(
        c[1].starts_with(
            "DPoP realm=\"api\", algs=\"ES256 ES384 EdDSA PS256 RS256\", error=\"invalid_token\""
        ),
        "{c:?}"
    );
    assert!(host.log_text().contains("dpop_downgrade"));
}

#[test]
fn on_kong_both_challenges_arrive_in_one_field() {
    // Kong's engine keeps only the last local-reply header of a name (the fake host does the
    // same): the challenges go in one field there, in the order they go on Envoy.
    let key = proof_key(KeyKind::Ed25519);
    let token = dpop_token(key);
    let host = FakeHost::kong(None);
    host.request(
        "/accounts",
        &[("authorization", &format!("Bearer {token}"))],
    );
    assert_eq!(run(&worker(&config("optional")), &host), Flow::Pause);
    let r = refused(&host);
    let f = fields(&r);
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(
        f[0].starts_with(
            "Bearer realm=\"api\", DPoP realm=\"api\", algs=\"ES256 ES384 EdDSA PS256 RS256\", error=\"invalid_token\""
        ),
        "{f:?}"
    );
    assert_eq!(challenges(&r).len(), 2);
    // One challenge alone is sent as it is.
    let host = FakeHost::kong(None);
    host.request("/accounts", &[]);
    assert_eq!(run(&worker(&config("strict")), &host), Flow::Pause);
    let f = fields(&refused(&host));
    assert!(
        f.len() == 1 && f[0].starts_with("DPoP realm=\"api\""),
        "{f:?}"
    );
}

#[test]
fn the_dpop_scheme_needs_a_dpop_bound_token() {
    let key = proof_key(KeyKind::Ed25519);
    let bearer_token = mint(&{
        let mut c = bound_claims("x");
        c.remove("cnf");
        c
    });
    let host = dpop_request(
        &bearer_token,
        &proof(key, "GET", URL, &bearer_token, "j-nb"),
    );
    assert_eq!(run(&worker(&config("optional")), &host), Flow::Pause);
    assert_dpop_error(&host, "invalid_token", "token_not_dpop_bound");
}

#[test]
fn modes_strict_optional_off() {
    let key = proof_key(KeyKind::Ed25519);
    let token = dpop_token(key);
    let cert = &pki().ec;
    let unbound = mint(&{
        let mut c = bound_claims("x");
        c.remove("cnf");
        c
    });
    // strict: a Bearer request never passes, and only DPoP is offered.
    let host = envoy_request(&[("authorization", &format!("Bearer {unbound}"))]);
    assert_eq!(run(&worker(&config("strict")), &host), Flow::Pause);
    let r = refused(&host);
    assert_eq!(challenges(&r).len(), 1);
    assert!(challenges(&r)[0].starts_with("DPoP "));
    assert!(host.log_text().contains("dpop_required"));
    let host = dpop_request(&token, &proof(key, "GET", URL, &token, "j-s"));
    assert_eq!(run(&worker(&config("strict")), &host), Flow::Continue);
    // optional: an unbound token passes as Bearer (mTLS optional too).
    let host = envoy_request(&[("authorization", &format!("Bearer {unbound}"))]);
    assert_eq!(run(&worker(&config("optional")), &host), Flow::Continue);
    // off: the DPoP scheme is not taken, and a jkt-bound token is refused as Bearer.
    let host = dpop_request(&token, &proof(key, "GET", URL, &token, "j-o"));
    assert_eq!(run(&worker(&config("off")), &host), Flow::Pause);
    let r = refused(&host);
    assert_eq!(challenges(&r), ["Bearer realm=\"api\""]);
    let host = envoy_request(&[("authorization", &format!("Bearer {token}"))]);
    assert_eq!(run(&worker(&config("off")), &host), Flow::Pause);
    assert!(host.log_text().contains("unsupported_confirmation"));
    // off, with mTLS strict as by default: certificate-bound Bearer tokens as before.
    let host = FakeHost::envoy(Some(&cert.pem), Some(&cert.sha256_hex));
    host.bearer(&mint(&bound_claims(&cert.x5t_openssl)));
    assert_eq!(run(&worker(&base_config()), &host), Flow::Continue);
}

#[test]
fn a_token_bound_both_ways_needs_both_the_certificate_and_the_proof() {
    let key = proof_key(KeyKind::Ed25519);
    let cert = &pki().ec;
    let mut claims = bound_claims(&cert.x5t_openssl);
    claims.insert(
        "cnf".into(),
        json!({"x5t#S256": cert.x5t_openssl, "jkt": key.jkt}),
    );
    let token = mint(&claims);
    let both = with(
        base_config(),
        json!({"proof_of_possession_dpop": "optional"}),
    );
    let headers = |p: &str| {
        vec![
            ("authorization".to_string(), format!("DPoP {token}")),
            ("dpop".to_string(), p.to_string()),
        ]
    };
    let send = |host: &FakeHost, jti: &str| {
        let h = headers(&proof(key, "GET", URL, &token, jti));
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        host.request("/accounts", &h);
        run(&worker(&both), host)
    };
    let with_cert = FakeHost::envoy(Some(&cert.pem), Some(&cert.sha256_hex));
    assert_eq!(send(&with_cert, "j-b1"), Flow::Continue);
    let other_cert = FakeHost::envoy(Some(&pki().other.pem), Some(&pki().other.sha256_hex));
    assert_eq!(send(&other_cert, "j-b2"), Flow::Pause);
    assert!(other_cert.log_text().contains("thumbprint_mismatch"));
    let no_cert = FakeHost::envoy(None, None);
    assert_eq!(send(&no_cert, "j-b3"), Flow::Pause);
    assert!(no_cert.log_text().contains("certificate_required"));
    // The certificate without the proof: a downgrade.
    with_cert.bearer(&token);
    assert_eq!(run(&worker(&both), &with_cert), Flow::Pause);
    assert!(with_cert.log_text().contains("dpop_downgrade"));
}

// --- opaque tokens ------------------------------------------------------------------------

fn introspection_answer(jkt: &str) -> String {
    json!({"active": true, "client_id": "client-a", "scope": "accounts:read", "sub": "client-a",
        "aud": AUDIENCE, "iss": ISSUER, "exp": NOW + 60, "token_type": "DPoP",
        "cnf": {"jkt": jkt}})
    .to_string()
}

#[test]
fn an_opaque_dpop_token_is_introspected_and_its_jkt_checked_on_every_cache_hit() {
    let (mine, thief) = (proof_key(KeyKind::P256), proof_key(KeyKind::OtherEd25519));
    let w = worker(&config("optional"));
    let host = dpop_request(OPAQUE, &proof(mine, "GET", URL, OPAQUE, "j-o1"));
    let (f, flow) = run_on(&w, &host, REQUEST);
    assert_eq!(flow, Flow::Pause);
    let answer = introspection_answer(&mine.jkt);
    host.call_returns(&[(":status", "200")], answer.as_bytes());
    f.on_call_response(&host, 1, answer.len());
    assert_eq!(host.resumed.get(), 1, "{}", host.log_text());
    assert_eq!(
        host.header_values("authorization"),
        [format!("Bearer {OPAQUE}")]
    );
    // From the cache, with a new proof by the same key: no second call.
    let host2 = dpop_request(OPAQUE, &proof(mine, "GET", URL, OPAQUE, "j-o2"));
    *host2.shared.borrow_mut() = host.shared.borrow().clone();
    assert_eq!(run(&w, &host2), Flow::Continue);
    assert!(host2.dispatched.borrow().is_empty());
    assert_eq!(
        host2.metric(Metric::DpopProofChecks),
        1,
        "the owner's proof is checked"
    );
    // A thief with its own key: refused from the cache too, before its proof's signature is
    // checked (the cached cnf.jkt is not its key).
    let host3 = dpop_request(OPAQUE, &proof(thief, "GET", URL, OPAQUE, "j-o3"));
    *host3.shared.borrow_mut() = host.shared.borrow().clone();
    assert_eq!(run(&w, &host3), Flow::Pause);
    assert_dpop_error(&host3, "invalid_token", "dpop_key_mismatch");
    assert_eq!(
        host3.metric(Metric::DpopProofChecks),
        0,
        "a thief's proof cost a signature check"
    );
    // The same from another worker, through the shared cache alone.
    let host5 = dpop_request(OPAQUE, &proof(thief, "GET", URL, OPAQUE, "j-o5"));
    *host5.shared.borrow_mut() = host.shared.borrow().clone();
    assert_eq!(run(&worker(&config("optional")), &host5), Flow::Pause);
    assert_dpop_error(&host5, "invalid_token", "dpop_key_mismatch");
    assert_eq!(host5.metric(Metric::DpopProofChecks), 0);
    // And as Bearer: a downgrade.
    let host4 = envoy_request(&[("authorization", &format!("Bearer {OPAQUE}"))]);
    *host4.shared.borrow_mut() = host.shared.borrow().clone();
    assert_eq!(run(&w, &host4), Flow::Pause);
    assert!(host4.log_text().contains("dpop_downgrade"));
}

#[test]
fn a_bad_proof_with_an_opaque_token_never_reaches_the_idp() {
    let key = proof_key(KeyKind::Ed25519);
    let host = dpop_request(OPAQUE, &proof(key, "POST", URL, OPAQUE, "j-x"));
    assert_eq!(run(&worker(&config("optional")), &host), Flow::Pause);
    assert!(host.dispatched.borrow().is_empty());
    assert_dpop_error(&host, "invalid_dpop_proof", "dpop_htm_mismatch");
}

// --- nonces -------------------------------------------------------------------------------

#[test]
fn with_nonces_a_proof_must_carry_a_current_one() {
    let key = proof_key(KeyKind::Ed25519);
    let token = dpop_token(key);
    let w = worker(&with(
        config("optional"),
        json!({"dpop_use_nonce": true, "dpop_nonce_secret": "0123456789abcdef0123456789abcdef"}),
    ));
    // No nonce: 401 use_dpop_nonce with a nonce to use.
    let host = dpop_request(&token, &proof(key, "GET", URL, &token, "j-n1"));
    assert_eq!(run(&w, &host), Flow::Pause);
    assert_dpop_error(&host, "use_dpop_nonce", "use_dpop_nonce");
    let nonce = refused(&host).header("dpop-nonce").unwrap().to_string();
    assert!(nonce.len() >= 22, "{nonce}");
    let with_nonce = |jti: &str, nonce: &str, now: u64| {
        let mut c = proof_claims("GET", URL, &token, jti);
        c.insert("nonce".into(), json!(nonce));
        c.insert("iat".into(), json!(now));
        let host = dpop_request(&token, &sign(key, &header_for(key), &c));
        host.now.set(now);
        host
    };
    // With it: allowed, now and in the next minute.
    let ok = with_nonce("j-n2", &nonce, NOW);
    assert_eq!(run(&w, &ok), Flow::Continue, "{}", ok.log_text());
    let later = with_nonce("j-n3", &nonce, NOW + 60);
    assert_eq!(run(&w, &later), Flow::Continue);
    // Two steps on, it is stale: a fresh one comes with the refusal.
    let stale = with_nonce("j-n4", &nonce, NOW + 180);
    assert_eq!(run(&w, &stale), Flow::Pause);
    assert_dpop_error(&stale, "use_dpop_nonce", "use_dpop_nonce");
    assert_ne!(refused(&stale).header("dpop-nonce").unwrap(), nonce);
    // A nonce made under another secret never passes.
    let other = worker(&with(
        config("optional"),
        json!({"dpop_use_nonce": true, "dpop_nonce_secret": "another secret of 32 characters!"}),
    ));
    let foreign = with_nonce("j-n5", &nonce, NOW);
    assert_eq!(run(&other, &foreign), Flow::Pause);
    assert_dpop_error(&foreign, "use_dpop_nonce", "use_dpop_nonce");
}

#[test]
fn the_nonce_secret_is_never_logged_nor_echoed() {
    let secret = "0123456789abcdef0123456789abcdef-secret";
    let key = proof_key(KeyKind::Ed25519);
    let token = dpop_token(key);
    let w = worker(&with(
        config("optional"),
        json!({"dpop_use_nonce": true, "dpop_nonce_secret": secret}),
    ));
    for (level, line) in w.startup_log() {
        assert!(!line.contains(secret), "{level:?} {line}");
    }
    let host = dpop_request(&token, &proof(key, "GET", URL, &token, "j-1"));
    run(&w, &host);
    let r = refused(&host);
    assert!(!host.log_text().contains(secret));
    assert!(!format!("{r:?}").contains(secret));
    assert!(!host.log_text().contains(&token), "no token in logs");
}

#[test]
fn a_request_that_waits_for_keys_has_its_proof_checked_once() {
    let key = proof_key(KeyKind::P256);
    let token = dpop_token(key);
    let config = with(
        config("optional"),
        json!({"jwks": null, "jwks_endpoint": "https://idp.example:8443/jwks"}),
    );
    let w = worker(&config);
    let host = dpop_request(&token, &proof(key, "GET", URL, &token, "j-wait"));
    let (_f, flow) = run_on(&w, &host, REQUEST);
    assert_eq!(flow, Flow::Pause);
    // The token's signature comes first: the proof waits for the keys too, and is checked
    // once, after them.
    assert_eq!(host.metric(Metric::DpopProofChecks), 0);
    // The root fetches the keys and resumes the request, which is allowed without a second
    // check of its proof.
    w.on_tick(host.as_root());
    let body = jwks().to_string();
    host.call_returns(&[(":status", "200")], body.as_bytes());
    w.on_root_call_response(host.as_root(), 1, body.len());
    assert_eq!(host.resumed.get(), 1, "{}", host.log_text());
    assert_eq!(host.metric(Metric::DpopProofChecks), 1);
    assert_eq!(
        host.header_values("authorization"),
        [format!("Bearer {token}")]
    );
}

#[test]
fn with_allowed_origins_a_host_the_client_wrote_for_another_server_matches_no_proof() {
    // RFC 9449 §4.3: htu is the URL the request went to. Without a configured origin it is
    // taken from the request's own authority, which a client writes; with an allow-list the
    // authority must be one of the gateway's names.
    let key = proof_key(KeyKind::Ed25519);
    let token = dpop_token(key);
    let w = worker(&with(
        config("optional"),
        json!({"dpop_allowed_origins": ["https://api.example", "https://api2.example"]}),
    ));
    let send = |authority: &str, htu: &str, jti: &str| {
        let host = FakeHost::envoy(None, None);
        host.request(
            "/accounts",
            &[
                ("authorization", &format!("DPoP {token}")),
                ("dpop", &proof(key, "GET", htu, &token, jti)),
            ],
        );
        host.headers
            .borrow_mut()
            .iter_mut()
            .filter(|(k, _)| k == ":authority")
            .for_each(|(_, v)| *v = authority.as_bytes().to_vec());
        let flow = run(&w, &host);
        (flow, host)
    };
    assert_eq!(send("api.example", URL, "j-o1").0, Flow::Continue);
    assert_eq!(
        send("API2.example:443", "https://api2.example/accounts", "j-o2").0,
        Flow::Continue
    );
    // A proof captured at another resource server, sent with that server's host.
    let (flow, host) = send("other.example", "https://other.example/accounts", "j-o3");
    assert_eq!(flow, Flow::Pause);
    assert_dpop_error(&host, "invalid_dpop_proof", "dpop_htu_mismatch");
}

#[test]
fn nonces_without_a_secret_use_a_random_one_shared_by_the_workers() {
    // Kong parity: dpop_use_nonce alone just works on one gateway. The first worker that
    // needs a nonce makes a secret and keeps it in shared data; the others use it.
    let key = proof_key(KeyKind::Ed25519);
    let token = dpop_token(key);
    let cfg = with(config("optional"), json!({"dpop_use_nonce": true}));
    let s = settings(&cfg);
    assert!(
        s.warnings
            .iter()
            .any(|w| w.contains("dpop_use_nonce without dpop_nonce_secret")),
        "{:?}",
        s.warnings
    );
    let one = worker(&cfg);
    let host = dpop_request(&token, &proof(key, "GET", URL, &token, "j-r1"));
    assert_eq!(run(&one, &host), Flow::Pause);
    assert_dpop_error(&host, "use_dpop_nonce", "use_dpop_nonce");
    let nonce = refused(&host).header("dpop-nonce").unwrap().to_string();
    let with_nonce = |jti: &str| {
        let mut c = proof_claims("GET", URL, &token, jti);
        c.insert("nonce".into(), json!(nonce));
        let h = dpop_request(&token, &sign(key, &header_for(key), &c));
        *h.shared.borrow_mut() = host.shared.borrow().clone();
        h
    };
    // Another worker, on the same shared data: the nonce passes.
    let other = worker(&cfg);
    let ok = with_nonce("j-r2");
    assert_eq!(run(&other, &ok), Flow::Continue, "{}", ok.log_text());
    // Another gateway (its own shared data, so its own secret): it does not.
    let elsewhere = with_nonce("j-r3");
    elsewhere.shared.borrow_mut().clear();
    assert_eq!(run(&worker(&cfg), &elsewhere), Flow::Pause);
    assert_dpop_error(&elsewhere, "use_dpop_nonce", "use_dpop_nonce");
    // The secret is never a nonce, nor in the log.
    let stored = host
        .shared
        .borrow()
        .get("certbound.dpop.nonce-secret")
        .map(|(v, _)| v.clone())
        .unwrap();
    assert_eq!(stored.len(), 36);
    let hex: String = stored[4..].iter().map(|b| format!("{b:02x}")).collect();
    assert!(!host.log_text().contains(&hex) && !ok.log_text().contains(&hex));
    assert!(!nonce.contains(&hex));
}
