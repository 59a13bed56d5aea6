//! The filter driven through a fake host shaped like Envoy 1.40 or Kong's ngx_wasm_module,
//! with the property values and call outcomes recorded from those engines (docs/hosts.md):
//! where the certificate comes from, IdP calls and their failures, headers, cache, replies.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::rc::Rc;
use std::time::Duration;

use certbound::flow::request::{Flow, RequestFilter};
use certbound::flow::worker::Worker;
use certbound::host::LogLevel;
use certbound::reply::metrics::Metric;
use certbound::reply::rejection::MetricGroup;
use serde_json::{Value, json};
use support::fake_host::{Fail, FakeHost, REQUEST, ROOT};
use support::*;

fn worker(config: &Value) -> Rc<Worker> {
    let w = Rc::new(Worker::new(settings(config)));
    w.set_root_context(ROOT);
    w
}

/// One request through a fresh request context (id `REQUEST`).
fn run(worker: &Rc<Worker>, host: &FakeHost) -> (RequestFilter, Flow) {
    run_as(worker, host, REQUEST)
}

/// One request through a fresh request context `id`.
fn run_as(worker: &Rc<Worker>, host: &FakeHost, id: u32) -> (RequestFilter, Flow) {
    let f = RequestFilter::new(Rc::clone(worker), id);
    let flow = f.as_request_ctx(host, id);
    (f, flow)
}

trait AsRequest {
    fn as_request_ctx(&self, host: &FakeHost, id: u32) -> Flow;
}

impl AsRequest for RequestFilter {
    fn as_request_ctx(&self, host: &FakeHost, id: u32) -> Flow {
        self.on_request_headers(host.as_request(id))
    }
}

fn envoy_with(cert: &TestCert) -> FakeHost {
    FakeHost::envoy(Some(&cert.pem), Some(&cert.sha256_hex))
}

fn bound_jwt(cert: &TestCert) -> String {
    mint(&bound_claims(&cert.x5t_openssl))
}

fn active_answer(cert: &TestCert, exp: u64) -> Vec<u8> {
    json!({
        "active": true, "client_id": "client-a", "scope": "accounts:read", "aud": AUDIENCE,
        "iss": ISSUER, "exp": exp, "iat": NOW - 5, "token_type": "Bearer",
        "cnf": {"x5t#S256": cert.x5t_openssl}, "extra": "not cached"
    })
    .to_string()
    .into_bytes()
}

const OPAQUE: &str = "qvUQbKLwTEw5rCDLbg3SwDt7xZh6gFqL8Hib6nrmlWd";

// --- where the certificate comes from ---------------------------------------------------

#[test]
fn envoy_digest_property_binds_the_token() {
    let cert = &pki().ec;
    let host = FakeHost::envoy(None, Some(&cert.sha256_hex));
    host.bearer(&bound_jwt(cert));
    let (_, flow) = run(&worker(&base_config()), &host);
    assert_eq!(flow, Flow::Continue);
    assert!(host.responses.borrow().is_empty());
    assert_eq!(host.header_values("x-authenticated-sub"), vec!["client-a"]);
    assert_eq!(host.metric(Metric::Allowed), 1);
}

#[test]
fn envoy_pem_property_is_used_when_there_is_no_digest() {
    let cert = &pki().rsa;
    let host = FakeHost::envoy(Some(&cert.pem), None);
    host.bearer(&bound_jwt(cert));
    assert_eq!(run(&worker(&base_config()), &host).1, Flow::Continue);
    // And the PEM of another certificate does not pass for it.
    let host = FakeHost::envoy(Some(&pki().ec.pem), None);
    host.bearer(&bound_jwt(cert));
    assert_eq!(run(&worker(&base_config()), &host).1, Flow::Pause);
    assert_eq!(host.last_response().unwrap().status, 401);
}

#[test]
fn kong_raw_cert_binds_the_token_and_envoy_properties_are_never_read_there() {
    let cert = &pki().ed25519;
    let host = FakeHost::kong(Some(&cert.pem));
    host.bearer(&bound_jwt(cert));
    assert_eq!(run(&worker(&base_config()), &host).1, Flow::Continue);
    assert_eq!(
        host.header_values("x-authenticated-client"),
        vec!["client-a"]
    );
    // Each read of an unimplemented Envoy property logs an [alert] in nginx's error log.
    let reads = host.reads.borrow();
    assert!(
        reads.iter().all(|r| !r.starts_with("connection.")),
        "{reads:?}"
    );
}

#[test]
fn kong_with_another_certificate_or_none_is_refused() {
    let p = pki();
    for host in [FakeHost::kong(Some(&p.other.pem)), FakeHost::kong(None)] {
        host.bearer(&bound_jwt(&p.ec));
        assert_eq!(run(&worker(&base_config()), &host).1, Flow::Pause);
        let r = host.last_response().unwrap();
        assert_eq!(r.status, 401);
        assert!(
            r.header("www-authenticate")
                .unwrap()
                .contains("error=\"invalid_token\"")
        );
        assert!(
            r.body.is_some(),
            "replies from request headers carry a body on Kong too"
        );
    }
}

#[test]
fn a_stolen_token_replayed_without_a_certificate_on_envoy() {
    let host = FakeHost::envoy(None, None);
    host.bearer(&bound_jwt(&pki().ec));
    run(&worker(&base_config()), &host);
    let r = host.last_response().unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "invalid_token");
    assert_eq!(host.metric(Metric::Denied(MetricGroup::BindingFailed)), 1);
}

#[test]
fn an_unreadable_certificate_property_counts_as_no_certificate() {
    let host = FakeHost::envoy(
        Some("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
        None,
    );
    host.bearer(&bound_jwt(&pki().ec));
    run(&worker(&base_config()), &host);
    assert_eq!(host.last_response().unwrap().status, 401);
    assert!(host.log_text().contains("unusable"));
}

// --- certificate from a trusted proxy's header --------------------------------------------

fn header_config(format: &str) -> Value {
    with(
        base_config(),
        json!({"client_certificate": header_source("Client-Cert", format, &["10.0.0.0/8"])}),
    )
}

#[test]
fn header_from_a_trusted_proxy_is_believed_and_removed() {
    use base64::Engine;
    let cert = &pki().ec;
    let value = format!(
        ":{}:",
        base64::engine::general_purpose::STANDARD.encode(&cert.der)
    );
    let host = FakeHost::envoy(None, None);
    host.set_property("source.address", b"10.1.2.3:5555");
    host.request(
        "/x",
        &[
            ("authorization", &format!("Bearer {}", bound_jwt(cert))),
            ("client-cert", &value),
        ],
    );
    assert_eq!(
        run(&worker(&header_config("rfc9440")), &host).1,
        Flow::Continue
    );
    assert!(
        host.header_values("client-cert").is_empty(),
        "removed before the upstream"
    );
}

#[test]
fn header_from_an_untrusted_peer_is_ignored_and_still_removed() {
    use base64::Engine;
    let cert = &pki().ec;
    let value = format!(
        ":{}:",
        base64::engine::general_purpose::STANDARD.encode(&cert.der)
    );
    let bound = bound_jwt(cert);
    let mut unbound = bound_claims(&cert.x5t_openssl);
    unbound.remove("cnf");
    let unbound = mint(&unbound);
    let optional = with(
        header_config("rfc9440"),
        json!({"proof_of_possession_mtls": "optional"}),
    );
    // Kong's engine gives a bare IP; overwriting is how a header is dropped there.
    let send = |token: &str, config: &Value| {
        let host = FakeHost::kong(None);
        host.set_property("source.address", b"192.168.7.7");
        host.request(
            "/x",
            &[
                ("authorization", &format!("Bearer {token}")),
                ("client-cert", &value),
            ],
        );
        let flow = run(&worker(config), &host).1;
        (flow, host)
    };
    // The bound token: the header's certificate is not believed, so no certificate.
    let (flow, host) = send(&bound, &header_config("rfc9440"));
    assert_eq!(flow, Flow::Pause);
    assert_eq!(host.last_response().unwrap().status, 401);
    // An unbound token allowed in optional mode: the unbelieved header still never reaches
    // the upstream.
    let (flow, host) = send(&unbound, &optional);
    assert_eq!(flow, Flow::Continue);
    assert_eq!(host.header_values("client-cert"), vec![""]);
}

#[test]
fn a_repeated_certificate_header_is_refused() {
    use base64::Engine;
    let cert = &pki().ec;
    let value = format!(
        ":{}:",
        base64::engine::general_purpose::STANDARD.encode(&cert.der)
    );
    let host = FakeHost::envoy(None, None);
    host.set_property("source.address", b"10.1.2.3:5555");
    host.request(
        "/x",
        &[
            ("authorization", &format!("Bearer {}", bound_jwt(cert))),
            ("client-cert", &value),
            ("client-cert", &value),
        ],
    );
    run(&worker(&header_config("rfc9440")), &host);
    // On Kong a second copy would survive our overwrite and reach the upstream.
    assert_eq!(host.last_response().unwrap().status, 400);
}

#[test]
fn xfcc_header_from_envoy_in_front() {
    let cert = &pki().rsa;
    let host = FakeHost::envoy(None, None);
    host.set_property("source.address", b"10.0.0.9:1234");
    let encoded =
        percent_encoding::utf8_percent_encode(&cert.pem, percent_encoding::NON_ALPHANUMERIC);
    let xfcc = format!(
        "By=spiffe://gw;Hash={};Cert=\"{encoded}\";Subject=\"CN=client-rsa,O=certbound tests\"",
        cert.sha256_hex
    );
    host.request(
        "/x",
        &[
            ("authorization", &format!("Bearer {}", bound_jwt(cert))),
            ("x-forwarded-client-cert", &xfcc),
        ],
    );
    let cfg = with(
        base_config(),
        json!({"client_certificate": header_source("x-forwarded-client-cert", "xfcc", &["10.0.0.9"])}),
    );
    assert_eq!(run(&worker(&cfg), &host).1, Flow::Continue);
    // A hash alone cannot be checked against ca_certificates: refused.
    let host = FakeHost::envoy(None, None);
    host.set_property("source.address", b"10.0.0.9:1234");
    host.request(
        "/x",
        &[
            ("authorization", &format!("Bearer {}", bound_jwt(cert))),
            (
                "x-forwarded-client-cert",
                &format!("Hash={}", cert.sha256_hex),
            ),
        ],
    );
    assert_eq!(run(&worker(&cfg), &host).1, Flow::Pause);
    let r = host.last_response().unwrap();
    assert_eq!(r.status, 401);
    assert!(
        r.header("www-authenticate")
            .unwrap()
            .contains("not trusted")
    );
}

#[test]
fn xfcc_element_injected_through_the_attackers_san_is_refused() {
    // The attacker holds the victim's token and its own certificate from the front proxy's CA,
    // with `x,Hash=<victim>` in a URI SAN: the front Envoy writes it unescaped.
    let p = pki();
    let (victim, attacker) = (&p.rsa, &p.other);
    let host = FakeHost::envoy(None, None);
    host.set_property("source.address", b"10.0.0.9:1234");
    let xfcc = format!(
        "Hash={};Subject=\"CN=attacker\";URI=x,Hash={}",
        attacker.sha256_hex, victim.sha256_hex
    );
    host.request(
        "/x",
        &[
            ("authorization", &format!("Bearer {}", bound_jwt(victim))),
            ("x-forwarded-client-cert", &xfcc),
        ],
    );
    let cfg = with(
        base_config(),
        json!({"client_certificate": header_source("x-forwarded-client-cert", "xfcc", &["10.0.0.9"])}),
    );
    assert_eq!(run(&worker(&cfg), &host).1, Flow::Pause);
    let r = host.last_response().unwrap();
    assert_eq!(r.status, 401);
}

// --- the Authorization header and the identity headers ------------------------------------

#[test]
fn no_token_gets_a_bare_challenge() {
    let host = envoy_with(&pki().ec);
    host.request("/x", &[]);
    run(&worker(&base_config()), &host);
    let r = host.last_response().unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"api\""));
    assert_eq!(host.metric(Metric::Denied(MetricGroup::MissingToken)), 1);
}

#[test]
fn two_authorization_headers_are_a_bad_request() {
    let host = envoy_with(&pki().ec);
    let t = format!("Bearer {}", bound_jwt(&pki().ec));
    host.request("/x", &[("authorization", &t), ("authorization", &t)]);
    run(&worker(&base_config()), &host);
    let r = host.last_response().unwrap();
    assert_eq!(r.status, 400);
    assert!(
        r.header("www-authenticate")
            .unwrap()
            .contains("error=\"invalid_request\"")
    );
}

#[test]
fn a_query_token_is_refused_on_kong_where_path_has_no_query() {
    let cert = &pki().ec;
    let host = FakeHost::kong(Some(&cert.pem));
    host.request(
        "/x?access_token=abc",
        &[("authorization", &format!("Bearer {}", bound_jwt(cert)))],
    );
    // ngx_wasm_module's `:path` is nginx's $uri: no query string. `request.path` has it.
    host.headers.borrow_mut()[1].1 = b"/x".to_vec();
    run(&worker(&base_config()), &host);
    // A token in the header and in the query: two methods at once.
    assert_eq!(host.last_response().unwrap().status, 400);
}

#[test]
fn identity_headers_from_the_client_are_replaced_with_the_tokens_claims() {
    let cert = &pki().ec;
    let host = envoy_with(cert);
    host.request(
        "/x",
        &[
            ("authorization", &format!("Bearer {}", bound_jwt(cert))),
            ("X-Authenticated-Sub", "admin"),
        ],
    );
    assert_eq!(run(&worker(&base_config()), &host).1, Flow::Continue);
    assert_eq!(host.header_values("x-authenticated-sub"), vec!["client-a"]);
}

#[test]
fn a_repeated_identity_header_is_refused() {
    let cert = &pki().ec;
    let host = envoy_with(cert);
    host.request(
        "/x",
        &[
            ("authorization", &format!("Bearer {}", bound_jwt(cert))),
            ("x-authenticated-sub", "a"),
            ("x-authenticated-sub", "b"),
        ],
    );
    run(&worker(&base_config()), &host);
    assert_eq!(host.last_response().unwrap().status, 400);
}

#[test]
fn an_absent_claim_clears_the_header_on_both_engines() {
    let cert = &pki().ec;
    let mut claims = bound_claims(&cert.x5t_openssl);
    claims.remove("client_id");
    let token = mint(&claims);
    let envoy = envoy_with(cert);
    envoy.request(
        "/x",
        &[
            ("authorization", &format!("Bearer {token}")),
            ("x-authenticated-client", "forged"),
        ],
    );
    run(&worker(&base_config()), &envoy);
    assert!(envoy.header_values("x-authenticated-client").is_empty());
    // On Kong a removed header would still be forwarded: it is overwritten with nothing.
    let kong = FakeHost::kong(Some(&cert.pem));
    kong.request(
        "/x",
        &[
            ("authorization", &format!("Bearer {token}")),
            ("x-authenticated-client", "forged"),
        ],
    );
    run(&worker(&base_config()), &kong);
    assert_eq!(kong.header_values("x-authenticated-client"), vec![""]);
}

// --- JWKS fetched from the IdP ------------------------------------------------------------

fn remote_jwks_config() -> Value {
    with(
        base_config(),
        json!({"jwks": null, "jwks_endpoint": "https://idp.example:8443/jwks"}),
    )
}

/// The root context's part of a JWKS fetch on Envoy: its tick dispatches the fetch (a
/// request that needs keys made the tick prompt), and the response, handed to the root,
/// resumes whoever waits. Checks the call was the root's.
fn root_fetches(w: &Worker, host: &FakeHost, headers: &[(&str, &str)], body: &[u8]) {
    let before = host.dispatched.borrow().len();
    w.on_tick(host.as_root());
    assert_eq!(
        host.dispatched.borrow().len(),
        before + 1,
        "the root dispatches the fetch"
    );
    assert_eq!(host.dispatched_from.borrow().last(), Some(&ROOT));
    host.call_returns(headers, body);
    w.on_root_call_response(host.as_root(), (before + 1) as u32, body.len());
}

#[test]
fn first_request_waits_for_the_roots_fetch_and_is_resumed_by_the_root() {
    let cert = &pki().ec;
    let w = worker(&remote_jwks_config());
    let host = envoy_with(cert);
    host.bearer(&bound_jwt(cert));
    let (_f, flow) = run(&w, &host);
    assert_eq!(flow, Flow::Pause);
    // The request dispatches nothing itself (a call it made would die with it); it asks the
    // root for a prompt tick.
    assert!(host.dispatched.borrow().is_empty());
    assert_eq!(*host.ticks_set.borrow(), vec![Duration::from_millis(1)]);
    let body = jwks().to_string();
    root_fetches(&w, &host, &[(":status", "200")], body.as_bytes());
    let call = host.dispatched.borrow()[0].clone();
    assert_eq!(call.upstream, "idp");
    let h = |k: &str| {
        call.headers
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(h(":method").as_deref(), Some("GET"));
    assert_eq!(h(":path").as_deref(), Some("/jwks"));
    assert_eq!(h(":authority").as_deref(), Some("idp.example:8443"));
    assert_eq!(h(":scheme").as_deref(), Some("https"));
    // The root resumed the request, acting as its context, and set the tick back.
    assert_eq!(*host.resumed_contexts.borrow(), vec![REQUEST]);
    assert!(host.responses.borrow().is_empty());
    assert_eq!(host.header_values("x-authenticated-sub"), vec!["client-a"]);
    assert_eq!(host.metric(Metric::JwksFetches), 1);
    assert_eq!(
        host.ticks_set.borrow().last(),
        Some(&Duration::from_secs(1))
    );

    // The keys stay with the worker: the next request needs no call.
    let host2 = envoy_with(cert);
    host2.bearer(&bound_jwt(cert));
    assert_eq!(run(&w, &host2).1, Flow::Continue);
    assert!(host2.dispatched.borrow().is_empty());
}

#[test]
fn requests_that_need_keys_share_one_fetch_and_each_is_resumed_as_itself() {
    let cert = &pki().ec;
    let w = worker(&remote_jwks_config());
    let host = envoy_with(cert);
    host.bearer(&bound_jwt(cert));
    let filters: Vec<RequestFilter> = (0..3)
        .map(|i| {
            let (f, flow) = run_as(&w, &host, REQUEST + i);
            assert_eq!(flow, Flow::Pause);
            f
        })
        .collect();
    assert_eq!(
        host.ticks_set.borrow().len(),
        1,
        "one prompt tick asked for"
    );
    root_fetches(
        &w,
        &host,
        &[(":status", "200")],
        jwks().to_string().as_bytes(),
    );
    assert_eq!(host.dispatched.borrow().len(), 1, "one fetch for all");
    assert_eq!(
        *host.resumed_contexts.borrow(),
        vec![REQUEST, REQUEST + 1, REQUEST + 2]
    );
    drop(filters);
}

#[test]
fn a_request_that_ends_while_waiting_costs_nothing_and_the_fetch_still_completes() {
    // The attack on a request-owned fetch: a token with a junk signature and an unknown kid,
    // bound to the sender's own certificate, passes every cheap check and needs keys; the
    // sender resets the stream. Before, the fetch died with the request but stayed counted
    // in flight and spent its cool-down: with two such requests the worker had no keys.
    let p = pki();
    let w = worker(&remote_jwks_config());
    let attacker = envoy_with(&p.other);
    let junk = unsigned(
        json!({"alg": "ES256", "typ": "at+jwt", "kid": "no-such-kid"}),
        &bound_claims(&p.other.x5t_openssl),
    );
    for i in 0..5 {
        attacker.bearer(&junk);
        let (f, flow) = run_as(&w, &attacker, 10 + i);
        assert_eq!(flow, Flow::Pause);
        drop(f); // the stream is reset: the host deletes the context
    }
    // The root's fetch goes on regardless, once, and completes.
    root_fetches(
        &w,
        &attacker,
        &[(":status", "200")],
        jwks().to_string().as_bytes(),
    );
    assert_eq!(attacker.dispatched.borrow().len(), 1);
    assert!(
        attacker.resumed_contexts.borrow().is_empty(),
        "nobody to resume"
    );
    // A legitimate client is served from the keys at once.
    let legit = envoy_with(&p.ec);
    legit.now.set(NOW + 1);
    legit.bearer(&bound_jwt(&p.ec));
    assert_eq!(run(&w, &legit).1, Flow::Continue);
    assert!(legit.dispatched.borrow().is_empty());
}

#[test]
fn on_kong_the_request_that_needs_keys_fetches_them_and_resumes_on_its_own_response() {
    // Kong's engine cannot make the root act for a request (set_effective_context does
    // nothing there), but a request's own call outlives the client (docs/hosts.md).
    let cert = &pki().ec;
    let w = worker(&remote_jwks_config());
    let host = FakeHost::kong(Some(&cert.pem));
    host.bearer(&bound_jwt(cert));
    let (f, flow) = run(&w, &host);
    assert_eq!(flow, Flow::Pause);
    assert_eq!(*host.dispatched_from.borrow(), vec![REQUEST]);
    assert!(
        host.ticks_set.borrow().is_empty(),
        "no second set_tick_period on Kong"
    );
    // A second request meanwhile cannot wait for another context's call: 503 at once.
    let other = FakeHost::kong(Some(&cert.pem));
    other.bearer(&bound_jwt(cert));
    run_as(&w, &other, REQUEST + 1);
    assert_eq!(other.last_response().unwrap().status, 503);
    assert!(other.dispatched.borrow().is_empty());
    let body = jwks().to_string();
    host.call_returns(&[(":status", "200")], body.as_bytes());
    f.on_call_response(&host, 1, body.len());
    assert_eq!(*host.resumed_contexts.borrow(), vec![REQUEST]);
    assert!(host.responses.borrow().is_empty());
}

#[test]
fn a_token_failing_cheap_checks_never_triggers_a_jwks_fetch() {
    let p = pki();
    let w = worker(&remote_jwks_config());
    let host = envoy_with(&p.other);
    host.bearer(&bound_jwt(&p.ec));
    run(&w, &host);
    assert_eq!(host.last_response().unwrap().status, 401);
    assert!(host.dispatched.borrow().is_empty());
    assert!(host.ticks_set.borrow().is_empty());
}

#[test]
fn unknown_kids_refetch_at_most_once_per_cooldown_counted_from_completion() {
    let cert = &pki().ec;
    let w = worker(&remote_jwks_config());
    let body = jwks().to_string();
    // Load the keys; the fetch completes at NOW.
    let host = envoy_with(cert);
    host.bearer(&bound_jwt(cert));
    let _f = run(&w, &host);
    root_fetches(&w, &host, &[(":status", "200")], body.as_bytes());

    let random_kid = |kid: &str| {
        unsigned(
            json!({"alg": "ES256", "typ": "at+jwt", "kid": kid}),
            &bound_claims(&cert.x5t_openssl),
        )
    };
    // The cool-down (30 s by default) counts from the last completed fetch: a flood of random
    // kids now costs the IdP nothing, and asks the root for nothing.
    for i in 0..50 {
        let h = envoy_with(cert);
        h.now.set(NOW + 5);
        h.bearer(&random_kid(&format!("kid-{i}")));
        run(&w, &h);
        assert_eq!(h.last_response().unwrap().status, 401);
        assert!(
            h.dispatched.borrow().is_empty(),
            "request {i} reached the IdP"
        );
        assert!(
            h.ticks_set.borrow().is_empty(),
            "request {i} asked for a fetch"
        );
    }
    // After the cool-down one request may have keys refetched; the unknown kid is then refused.
    let h = envoy_with(cert);
    h.now.set(NOW + 30);
    h.bearer(&random_kid("kid-x"));
    let (_f, flow) = run(&w, &h);
    assert_eq!(flow, Flow::Pause);
    root_fetches(&w, &h, &[(":status", "200")], body.as_bytes());
    let r = h.last_response().unwrap();
    assert_eq!((r.status, r.context), (401, REQUEST));
    assert!(
        r.header("www-authenticate")
            .unwrap()
            .contains("unknown key")
    );
    // And the next one within the new cool-down does not call.
    let h = envoy_with(cert);
    h.now.set(NOW + 35);
    h.bearer(&random_kid("kid-y"));
    run(&w, &h);
    assert!(h.dispatched.borrow().is_empty());
    assert!(h.ticks_set.borrow().is_empty());
}

#[test]
fn jwks_unreachable_is_503_and_body_less_from_the_call_path_on_kong() {
    let cert = &pki().ec;
    // Kong: the request's own call; no :status, :dispatch_status says why.
    let w = worker(&remote_jwks_config());
    let host = FakeHost::kong(Some(&cert.pem));
    host.bearer(&bound_jwt(cert));
    let (f, _) = run(&w, &host);
    host.call_returns(&[(":dispatch_status", "timeout")], b"");
    f.on_call_response(&host, 1, 0);
    let r = host.last_response().unwrap();
    assert_eq!((r.status, r.body.is_some()), (503, false));
    assert_eq!(host.resumed.get(), 0);
    assert_eq!(host.metric(Metric::JwksFetchFailures), 1);
    // Envoy: the root's call answers with no headers at all; the waiting request gets its
    // 503 (with a body) from the root acting as it.
    let w = worker(&remote_jwks_config());
    let host = envoy_with(cert);
    host.bearer(&bound_jwt(cert));
    let _f = run(&w, &host);
    root_fetches(&w, &host, &[], b"");
    let r = host.last_response().unwrap();
    assert_eq!(
        (r.status, r.body.is_some(), r.context),
        (503, true, REQUEST)
    );
    assert_eq!(host.resumed.get(), 0);
    assert_eq!(host.metric(Metric::JwksFetchFailures), 1);
    // Right after a failure, with no keys, a request gets 503 without another call; the
    // root retries with back-off.
    let h2 = envoy_with(cert);
    h2.bearer(&bound_jwt(cert));
    run(&w, &h2);
    assert_eq!(h2.last_response().unwrap().status, 503);
    assert!(h2.dispatched.borrow().is_empty() && h2.ticks_set.borrow().is_empty());
    let tick = FakeHost::envoy(None, None);
    tick.now.set(NOW + 1);
    w.on_tick(tick.as_root());
    assert_eq!(tick.dispatched.borrow().len(), 1, "retry 1 s later");
}

#[test]
fn a_jwks_that_is_not_json_or_not_200_keeps_the_request_out() {
    let cert = &pki().ec;
    for (status, body) in [("200", "<html>"), ("500", "{}"), ("200", "{\"keys\": 5}")] {
        let w = worker(&remote_jwks_config());
        let host = envoy_with(cert);
        host.bearer(&bound_jwt(cert));
        let _f = run(&w, &host);
        root_fetches(&w, &host, &[(":status", status)], body.as_bytes());
        assert_eq!(host.last_response().unwrap().status, 503, "{status} {body}");
        assert_eq!(host.resumed.get(), 0);
    }
}

#[test]
fn the_root_tick_refreshes_the_jwks_periodically_and_keeps_old_keys_on_failure() {
    let cert = &pki().ec;
    let w = worker(&remote_jwks_config());
    let host = FakeHost::envoy(None, None);
    w.on_tick(host.as_root());
    assert_eq!(
        host.dispatched.borrow().len(),
        1,
        "no keys yet: fetch at the first tick"
    );
    w.on_tick(host.as_root());
    assert_eq!(
        host.dispatched.borrow().len(),
        1,
        "one fetch in flight at a time"
    );
    let body = jwks().to_string();
    host.call_returns(&[(":status", "200")], body.as_bytes());
    w.on_root_call_response(host.as_root(), 1, body.len());

    host.now.set(NOW + 599);
    w.on_tick(host.as_root());
    assert_eq!(host.dispatched.borrow().len(), 1);
    host.now.set(NOW + 600);
    w.on_tick(host.as_root());
    assert_eq!(
        host.dispatched.borrow().len(),
        2,
        "refresh after jwks_refresh_interval"
    );
    host.call_returns(&[(":status", "503")], b"");
    w.on_root_call_response(host.as_root(), 2, 0);

    let req = envoy_with(cert);
    req.now.set(NOW + 601);
    let mut claims = bound_claims(&cert.x5t_openssl);
    claims.insert("exp".into(), json!(NOW + 900));
    req.bearer(&mint(&claims));
    assert_eq!(
        run(&w, &req).1,
        Flow::Continue,
        "a failed refresh keeps the keys we had"
    );
}

#[test]
fn a_root_call_response_for_another_call_is_ignored() {
    let w = worker(&remote_jwks_config());
    let host = FakeHost::envoy(None, None);
    w.on_tick(host.as_root());
    host.call_returns(&[(":status", "200")], b"{\"keys\":[]}");
    w.on_root_call_response(host.as_root(), 99, 11);
    assert_eq!(host.metric(Metric::JwksFetchFailures), 0);
    assert!(host.log_text().is_empty() || !host.log_text().contains("JWKS refreshed"));
}

// --- introspection ------------------------------------------------------------------------

fn introspect_once(
    w: &Rc<Worker>,
    host: &FakeHost,
    answer_headers: &[(&str, &str)],
    answer: &[u8],
) -> RequestFilter {
    host.bearer(OPAQUE);
    let before = host.dispatched.borrow().len();
    let (f, flow) = run(w, host);
    assert_eq!(flow, Flow::Pause);
    assert_eq!(host.dispatched.borrow().len(), before + 1);
    host.call_returns(answer_headers, answer);
    f.on_call_response(host, (before + 1) as u32, answer.len());
    f
}

#[test]
fn introspection_request_is_a_form_post_with_basic_client_auth() {
    let cert = &pki().ec;
    let w = worker(&with(
        base_config(),
        json!({"client_id": "gate way", "client_secret": "p:ss&word"}),
    ));
    let host = envoy_with(cert);
    introspect_once(
        &w,
        &host,
        &[(":status", "200")],
        &active_answer(cert, NOW + 60),
    );
    let call = host.dispatched.borrow()[0].clone();
    let h = |k: &str| {
        call.headers
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(call.upstream, "idp");
    assert_eq!(h(":method").as_deref(), Some("POST"));
    assert_eq!(h(":path").as_deref(), Some("/token/introspection"));
    assert_eq!(
        h("content-type").as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    // RFC 6749 §2.3.1: id and secret are form-encoded before base64.
    use base64::Engine;
    let expected = base64::engine::general_purpose::STANDARD.encode("gate+way:p%3Ass%26word");
    assert_eq!(h("authorization"), Some(format!("Basic {expected}")));
    let body = String::from_utf8(call.body.unwrap()).unwrap();
    assert_eq!(body, format!("token={OPAQUE}&token_type_hint=access_token"));
    assert_eq!(host.resumed.get(), 1);
}

#[test]
fn introspection_with_client_secret_post_puts_credentials_in_the_body() {
    let cert = &pki().ec;
    let w = worker(&with(
        base_config(),
        json!({"client_auth": "client_secret_post"}),
    ));
    let host = envoy_with(cert);
    introspect_once(
        &w,
        &host,
        &[(":status", "200")],
        &active_answer(cert, NOW + 60),
    );
    let call = host.dispatched.borrow()[0].clone();
    assert!(call.headers.iter().all(|(k, _)| k != "authorization"));
    let body = String::from_utf8(call.body.unwrap()).unwrap();
    assert!(
        body.ends_with("&client_id=gateway&client_secret=s3cret"),
        "{body}"
    );
}

#[test]
fn an_active_bound_answer_lets_the_request_through_with_its_claims() {
    let cert = &pki().ec;
    let host = envoy_with(cert);
    introspect_once(
        &worker(&base_config()),
        &host,
        &[(":status", "200")],
        &active_answer(cert, NOW + 60),
    );
    assert_eq!(host.resumed.get(), 1);
    assert!(host.responses.borrow().is_empty());
    assert_eq!(
        host.header_values("x-authenticated-client"),
        vec!["client-a"]
    );
    assert!(
        host.header_values("x-authenticated-sub").is_empty(),
        "no sub in the answer"
    );
    assert_eq!(host.metric(Metric::IntrospectionCalls), 1);
}

#[test]
fn an_active_answer_for_another_certificate_or_unbound_is_refused() {
    let p = pki();
    let host = envoy_with(&p.other);
    introspect_once(
        &worker(&base_config()),
        &host,
        &[(":status", "200")],
        &active_answer(&p.ec, NOW + 60),
    );
    assert_eq!(host.last_response().unwrap().status, 401);
    assert_eq!(host.resumed.get(), 0);

    let unbound =
        json!({"active": true, "scope": "accounts:read", "aud": AUDIENCE, "exp": NOW + 60})
            .to_string();
    let host = envoy_with(&p.ec);
    introspect_once(
        &worker(&base_config()),
        &host,
        &[(":status", "200")],
        unbound.as_bytes(),
    );
    assert_eq!(host.last_response().unwrap().status, 401);
    let host = envoy_with(&p.ec);
    let optional = worker(&with(
        base_config(),
        json!({"proof_of_possession_mtls": "optional"}),
    ));
    introspect_once(&optional, &host, &[(":status", "200")], unbound.as_bytes());
    assert_eq!(host.resumed.get(), 1);
}

#[test]
fn inactive_answers_and_mismatched_issuer_scope_or_audience_are_refused() {
    let cert = &pki().ec;
    let mk = |patch: Value| {
        let mut v: Value = serde_json::from_slice(&active_answer(cert, NOW + 60)).unwrap();
        for (k, val) in patch.as_object().unwrap() {
            v[k] = val.clone();
        }
        v.to_string().into_bytes()
    };
    let cases = [
        (br#"{"active":false}"#.to_vec(), 401),
        (mk(json!({"iss": "https://evil.example"})), 401),
        (mk(json!({"aud": "https://other.example"})), 401),
        (mk(json!({"exp": NOW - 100})), 401),
        (mk(json!({"scope": "other"})), 403),
    ];
    for (answer, status) in cases {
        let host = envoy_with(cert);
        introspect_once(
            &worker(&base_config()),
            &host,
            &[(":status", "200")],
            &answer,
        );
        let r = host.last_response().unwrap();
        assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&answer));
        assert_eq!(host.resumed.get(), 0);
    }
}

#[test]
fn idp_errors_never_let_the_request_through() {
    let cert = &pki().ec;
    type Answer<'a> = (Vec<(&'a str, &'a str)>, &'a [u8]);
    let cases: Vec<Answer> = vec![
        (vec![(":status", "500")], b"{\"active\":true}"),
        (vec![(":status", "401")], b"{\"error\":\"invalid_client\"}"),
        (vec![(":status", "200")], b"not json"),
        (vec![(":status", "200")], b"{\"active\":\"true\"}"),
        (vec![(":status", "200")], b"[true]"),
        (vec![], b""),
        (vec![(":dispatch_status", "tls handshake failure")], b""),
    ];
    for (headers, body) in cases {
        let host = envoy_with(cert);
        introspect_once(&worker(&base_config()), &host, &headers, body);
        let r = host.last_response().unwrap();
        assert_eq!(
            r.status,
            503,
            "{headers:?} {}",
            String::from_utf8_lossy(body)
        );
        assert_eq!(r.json()["error"], "temporarily_unavailable");
        assert_eq!(host.resumed.get(), 0);
        assert_eq!(host.metric(Metric::IntrospectionFailures), 1);
    }
}

#[test]
fn kong_timeout_from_the_call_path_replies_503_without_a_body() {
    let cert = &pki().ec;
    let host = FakeHost::kong(Some(&cert.pem));
    introspect_once(
        &worker(&base_config()),
        &host,
        &[(":dispatch_status", "timeout")],
        b"",
    );
    let r = host.last_response().unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(r.body, None);
    assert!(host.log_text().contains("timeout"));
}

#[test]
fn a_dispatch_that_cannot_start_is_503() {
    let cert = &pki().ec;
    let host = envoy_with(cert);
    *host.dispatch_error.borrow_mut() = Some("BadArgument".into());
    host.bearer(OPAQUE);
    assert_eq!(run(&worker(&base_config()), &host).1, Flow::Pause);
    assert_eq!(host.last_response().unwrap().status, 503);
}

#[test]
fn a_call_response_for_another_call_leaves_the_request_waiting() {
    let cert = &pki().ec;
    let host = envoy_with(cert);
    host.bearer(OPAQUE);
    let (f, _) = run(&worker(&base_config()), &host);
    host.call_returns(&[(":status", "200")], &active_answer(cert, NOW + 60));
    f.on_call_response(&host, 42, 10);
    assert_eq!(host.resumed.get(), 0);
    assert!(host.responses.borrow().is_empty());
    f.on_call_response(&host, 1, active_answer(cert, NOW + 60).len());
    assert_eq!(host.resumed.get(), 1);
}

// --- the introspection cache --------------------------------------------------------------

#[test]
fn a_cached_answer_is_rechecked_against_each_requests_certificate() {
    let p = pki();
    let w = worker(&with(base_config(), json!({"cache_introspection": 60})));
    let host = envoy_with(&p.ec);
    introspect_once(
        &w,
        &host,
        &[(":status", "200")],
        &active_answer(&p.ec, NOW + 300),
    );

    // Same token, same certificate: served from the cache.
    let again = envoy_with(&p.ec);
    again.shared.replace(host.shared.borrow().clone());
    again.bearer(OPAQUE);
    assert_eq!(run(&w, &again).1, Flow::Continue);
    assert!(again.dispatched.borrow().is_empty());
    assert_eq!(again.metric(Metric::IntrospectionCacheHits), 1);

    // Same token replayed from another certificate: the cached answer does not help it.
    let thief = envoy_with(&p.other);
    thief.shared.replace(host.shared.borrow().clone());
    thief.bearer(OPAQUE);
    run(&w, &thief);
    assert_eq!(thief.last_response().unwrap().status, 401);
    assert!(thief.dispatched.borrow().is_empty());
}

#[test]
fn the_cache_holds_only_a_hash_of_the_token_and_no_unneeded_claims() {
    let cert = &pki().ec;
    let host = envoy_with(cert);
    introspect_once(
        &worker(&base_config()),
        &host,
        &[(":status", "200")],
        &active_answer(cert, NOW + 300),
    );
    let shared = host.shared.borrow();
    assert_eq!(shared.len(), 1);
    for (k, (v, _)) in shared.iter() {
        let text = format!("{k}{}", String::from_utf8_lossy(v));
        assert!(!text.contains(OPAQUE));
        assert!(
            !text.contains("not cached"),
            "claims nobody reads are dropped"
        );
    }
}

#[test]
fn cached_answers_expire_with_the_token() {
    let cert = &pki().ec;
    let w = worker(&with(
        base_config(),
        json!({"cache_introspection": 600, "leeway": 0}),
    ));
    let host = envoy_with(cert);
    introspect_once(
        &w,
        &host,
        &[(":status", "200")],
        &active_answer(cert, NOW + 10),
    );
    let later = envoy_with(cert);
    later.shared.replace(host.shared.borrow().clone());
    later.now.set(NOW + 11);
    later.bearer(OPAQUE);
    run(&w, &later);
    assert_eq!(
        later.dispatched.borrow().len(),
        1,
        "entry gone at the token's exp, not after 600 s"
    );
}

#[test]
fn inactive_answers_are_cached_too() {
    let cert = &pki().ec;
    let w = worker(&base_config());
    let host = envoy_with(cert);
    introspect_once(&w, &host, &[(":status", "200")], br#"{"active":false}"#);
    let again = envoy_with(cert);
    again.shared.replace(host.shared.borrow().clone());
    again.bearer(OPAQUE);
    run(&w, &again);
    assert_eq!(again.last_response().unwrap().status, 401);
    assert!(again.dispatched.borrow().is_empty());
}

#[test]
fn failures_are_not_cached() {
    let cert = &pki().ec;
    let w = worker(&base_config());
    let host = envoy_with(cert);
    introspect_once(&w, &host, &[(":status", "500")], b"");
    assert!(host.shared.borrow().is_empty());
}

#[test]
fn with_shared_cache_off_no_shared_data_is_touched() {
    // Kong's engine traps on shared data without an shm_kv zone.
    let cert = &pki().ec;
    let w = worker(&with(base_config(), json!({"shared_cache": false})));
    assert!(startup_text(&w).contains("per worker"));
    let host = FakeHost::kong(Some(&cert.pem));
    introspect_once(
        &w,
        &host,
        &[(":status", "200")],
        &active_answer(cert, NOW + 300),
    );
    let again = FakeHost::kong(Some(&cert.pem));
    again.bearer(OPAQUE);
    assert_eq!(run(&w, &again).1, Flow::Continue);
    assert!(
        again.dispatched.borrow().is_empty(),
        "served from the worker's own cache"
    );
    assert_eq!(host.shared_calls.get() + again.shared_calls.get(), 0);
}

#[test]
fn cache_introspection_zero_asks_every_time() {
    let cert = &pki().ec;
    let w = worker(&with(base_config(), json!({"cache_introspection": 0})));
    let host = envoy_with(cert);
    introspect_once(
        &w,
        &host,
        &[(":status", "200")],
        &active_answer(cert, NOW + 300),
    );
    introspect_once(
        &w,
        &host,
        &[(":status", "200")],
        &active_answer(cert, NOW + 300),
    );
    assert_eq!(host.dispatched.borrow().len(), 2);
    assert!(host.shared.borrow().is_empty());
}

// --- logs ---------------------------------------------------------------------------------

#[test]
fn logs_carry_reasons_but_never_tokens_secrets_or_thumbprints() {
    let p = pki();
    let jwt = bound_jwt(&p.ec);
    let w = worker(&base_config());
    let all_logs = {
        let mut text = startup_text(&w);
        for host in [
            envoy_with(&p.other),
            FakeHost::kong(None),
            envoy_with(&p.ec),
        ] {
            host.bearer(&jwt);
            run(&w, &host);
            text.push_str(&host.log_text());
        }
        let host = envoy_with(&p.other);
        introspect_once(
            &w,
            &host,
            &[(":status", "200")],
            &active_answer(&p.ec, NOW + 60),
        );
        text.push_str(&host.log_text());
        text
    };
    assert!(all_logs.contains("thumbprint_mismatch"), "{all_logs}");
    assert!(all_logs.contains("certificate_required"));
    for secret in [
        jwt.as_str(),
        OPAQUE,
        "s3cret",
        p.ec.x5t_openssl.as_str(),
        p.other.x5t_openssl.as_str(),
    ] {
        assert!(!all_logs.contains(secret), "log leaks {secret}");
    }
    // And the token's signature segment alone does not appear either.
    let sig = jwt.rsplit('.').next().unwrap();
    assert!(!all_logs.contains(sig));
}

// --- the cache of verified JWT signatures ------------------------------------------------

#[test]
fn a_verified_jwt_skips_the_signature_next_time_but_nothing_else() {
    let p = pki();
    let w = worker(&base_config());
    let token = bound_jwt(&p.ec);
    let first = envoy_with(&p.ec);
    first.bearer(&token);
    assert_eq!(run(&w, &first).1, Flow::Continue);
    assert_eq!(first.metric(Metric::JwtCacheHits), 0);

    let again = envoy_with(&p.ec);
    again.bearer(&token);
    assert_eq!(run(&w, &again).1, Flow::Continue);
    assert_eq!(again.metric(Metric::JwtCacheHits), 1);
    assert_eq!(again.header_values("x-authenticated-sub"), vec!["client-a"]);

    // The binding, lifetime and audience are still checked on every request.
    let thief = envoy_with(&p.other);
    thief.bearer(&token);
    run(&w, &thief);
    assert_eq!(thief.last_response().unwrap().status, 401);
    let late = envoy_with(&p.ec);
    late.now.set(NOW + 300 + 31);
    late.bearer(&token);
    run(&w, &late);
    assert_eq!(late.last_response().unwrap().status, 401);
}

#[test]
fn a_tampered_copy_of_a_verified_jwt_is_not_a_cache_hit() {
    let p = pki();
    let w = worker(&base_config());
    let token = bound_jwt(&p.ec);
    let first = envoy_with(&p.ec);
    first.bearer(&token);
    run(&w, &first);
    let mut widened = bound_claims(&p.ec.x5t_openssl);
    widened.insert("sub".into(), json!("admin"));
    let forged = tamper(&token, &widened);
    let h = envoy_with(&p.ec);
    h.bearer(&forged);
    run(&w, &h);
    assert_eq!(h.last_response().unwrap().status, 401);
    assert_eq!(h.metric(Metric::JwtCacheHits), 0);
}

#[test]
fn a_jwks_refresh_forgets_verified_signatures() {
    let cert = &pki().ec;
    let w = worker(&remote_jwks_config());
    let body = jwks().to_string();
    let host = envoy_with(cert);
    host.bearer(&bound_jwt(cert));
    let _f = run(&w, &host);
    root_fetches(&w, &host, &[(":status", "200")], body.as_bytes());
    assert_eq!(host.resumed.get(), 1);

    // The IdP rotated: the refresh brings only a new key, and empties the cache, so the token
    // is checked again.
    let tick = FakeHost::envoy(None, None);
    tick.now.set(NOW + 600);
    w.on_tick(tick.as_root());
    let rotated = rotated_jwks();
    tick.call_returns(&[(":status", "200")], rotated.as_bytes());
    w.on_root_call_response(&tick, 1, rotated.len());
    let after = envoy_with(cert);
    after.now.set(NOW + 100);
    after.bearer(&bound_jwt(cert));
    run(&w, &after);
    assert_eq!(after.metric(Metric::JwtCacheHits), 0);
    assert_eq!(
        after.last_response().unwrap().status,
        401,
        "unknown key now"
    );
}

/// A JWKS with one key the tokens of these tests were not signed with.
fn rotated_jwks() -> String {
    let mut rogue: Value = serde_json::from_str(&keys().rogue.public_key().to_jwk()).unwrap();
    rogue["kid"] = json!("rsa-2");
    json!({"keys": [rogue]}).to_string()
}

#[test]
fn a_jwks_without_a_usable_key_is_a_failed_fetch_and_the_keys_stay() {
    // Soak finding: `{"keys": []}` (or only keys that cannot be read) replaced the keys in hand.
    let cert = &pki().ec;
    let w = worker(&remote_jwks_config());
    let host = envoy_with(cert);
    host.bearer(&bound_jwt(cert));
    let _f = run(&w, &host);
    let body = jwks().to_string();
    root_fetches(&w, &host, &[(":status", "200")], body.as_bytes());
    for (later, junk) in [
        (600, &br#"{"keys":[]}"#[..]),
        (1800, br#"{"keys":[{"kty":"oct","k":"AAAA"}]}"#),
    ] {
        let tick = FakeHost::envoy(None, None);
        tick.now.set(NOW + later);
        w.on_tick(tick.as_root());
        let call = tick.dispatched.borrow().len() as u32;
        assert_eq!(call, 1, "the periodic refresh");
        tick.call_returns(&[(":status", "200")], junk);
        w.on_root_call_response(&tick, call, junk.len());
        assert_eq!(tick.metric(Metric::JwksFetchFailures), 1);
        let after = envoy_with(cert);
        after.bearer(&bound_jwt(cert));
        assert_eq!(run(&w, &after).1, Flow::Continue, "{}", after.log_text());
    }
}

#[test]
fn an_idp_answer_over_the_size_limit_is_a_failed_call_not_its_first_bytes() {
    // Soak finding: a body cut at the limit was judged on its first bytes.
    let cert = &pki().ec;
    let w = worker(&base_config());
    let host = envoy_with(cert);
    host.bearer(OPAQUE);
    let (f, _) = run(&w, &host);
    let mut body = active_answer(cert, NOW + 60);
    let limit = certbound::tokens::introspection::MAX_RESPONSE_BYTES;
    body.resize(limit, b' ');
    body.extend_from_slice(b"junk");
    host.call_returns(&[(":status", "200")], &body);
    f.on_call_response(&host, 1, body.len());
    assert_eq!(host.last_response().unwrap().status, 503);
    assert_eq!(host.metric(Metric::IntrospectionFailures), 1);
    // Just at the limit, the same answer is taken.
    let host = envoy_with(cert);
    host.bearer(OPAQUE);
    let (f, _) = run(&w, &host);
    let mut body = active_answer(cert, NOW + 60);
    body.resize(limit, b' ');
    host.call_returns(&[(":status", "200")], &body);
    f.on_call_response(&host, 1, body.len());
    assert_eq!(host.resumed.get(), 1, "{}", host.log_text());
}

// --- Kong's engine: configuration and IdP calls -------------------------------------------

/// The config as Kong hands it over: its Lua JSON encoder escapes `/` and turns empty arrays
/// into `{}`; no `upstreams` map (the URL's host:port is dialled).
const KONG_ENCODED_CONFIG: &str = r#"{"auth_methods":["bearer","introspection"],"issuer":"https:\/\/idp.example:8443","audience_required":{},"scopes_required":["accounts:read"],"jwks_endpoint":"https:\/\/idp.example:8443\/jwks","introspection_endpoint":"https:\/\/idp.example:8443\/token\/introspection","client_id":"gateway","client_secret":"s3cret","upstream_headers_claims":{},"upstream_headers_names":{},"shared_cache":false}"#;

#[test]
fn kong_dispatches_to_host_port_with_https_scheme_and_the_host_name_as_authority() {
    let cert = &pki().ec;
    let w = Rc::new(Worker::new(
        certbound::config::Settings::from_json(KONG_ENCODED_CONFIG.as_bytes()).unwrap(),
    ));
    let host = FakeHost::kong(Some(&cert.pem));
    host.bearer(OPAQUE);
    let (f, flow) = run(&w, &host);
    assert_eq!(flow, Flow::Pause);
    let call = host.dispatched.borrow()[0].clone();
    let h = |k: &str| {
        call.headers
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    };
    // Kong's engine wants IP/host:port as upstream and the name in :authority (Host and SNI).
    assert_eq!(call.upstream, "idp.example:8443");
    assert_eq!(h(":authority").as_deref(), Some("idp.example:8443"));
    assert_eq!(h(":scheme").as_deref(), Some("https"));
    assert_eq!(h(":path").as_deref(), Some("/token/introspection"));
    assert_eq!(call.timeout.as_millis(), 2000);
    // The answer comes back with Kong's :dispatch_status "ok" next to :status.
    let answer = active_answer(cert, NOW + 60);
    host.call_returns(&[(":status", "200"), (":dispatch_status", "ok")], &answer);
    f.on_call_response(&host, 1, answer.len());
    assert_eq!(host.resumed.get(), 1);
    assert_eq!(
        host.shared_calls.get(),
        0,
        "shared_cache false: no shared data on Kong"
    );
}

#[test]
fn kong_broken_connection_or_tls_failure_on_jwks_is_503() {
    let cert = &pki().ec;
    for why in [
        "broken connection",
        "tls handshake failure",
        "resolver failure",
    ] {
        let w = worker(&remote_jwks_config());
        let host = FakeHost::kong(Some(&cert.pem));
        host.bearer(&bound_jwt(cert));
        let (f, _) = run(&w, &host);
        host.call_returns(&[(":dispatch_status", why)], b"");
        f.on_call_response(&host, 1, 0);
        let r = host.last_response().unwrap();
        assert_eq!(r.status, 503, "{why}");
        assert_eq!(r.body, None);
        assert!(host.log_text().contains(why));
    }
}

// --- hardening: look-alike headers, peers behind realip, IdP amplification, cache scope ---

#[test]
fn an_underscore_look_alike_of_an_identity_header_is_refused() {
    // CGI/WSGI/Rack/PHP upstreams read x_authenticated_sub as x-authenticated-sub.
    let cert = &pki().ec;
    let host = envoy_with(cert);
    host.request(
        "/x",
        &[
            ("authorization", &format!("Bearer {}", bound_jwt(cert))),
            ("x_authenticated_sub", "admin"),
        ],
    );
    run(&worker(&base_config()), &host);
    assert_eq!(host.last_response().unwrap().status, 400);
    // Headers that merely contain underscores are fine.
    let ok = envoy_with(cert);
    ok.request(
        "/x",
        &[
            ("authorization", &format!("Bearer {}", bound_jwt(cert))),
            ("x_trace_id", "1"),
        ],
    );
    assert_eq!(run(&worker(&base_config()), &ok).1, Flow::Continue);
}

#[test]
fn on_kong_the_trusted_peer_is_the_connection_not_the_realip_address() {
    use base64::Engine;
    let cert = &pki().ec;
    let value = format!(
        ":{}:",
        base64::engine::general_purpose::STANDARD.encode(&cert.der)
    );
    let request = |host: &FakeHost| {
        host.request(
            "/x",
            &[
                ("authorization", &format!("Bearer {}", bound_jwt(cert))),
                ("client-cert", &value),
            ],
        );
    };
    // realip rewrote $remote_addr to a trusted-looking address taken from a client header.
    let spoofed = FakeHost::kong(None);
    spoofed.set_property("source.address", b"10.0.0.7");
    spoofed.set_property("ngx.realip_remote_addr", b"203.0.113.9");
    request(&spoofed);
    run(&worker(&header_config("rfc9440")), &spoofed);
    assert_eq!(spoofed.last_response().unwrap().status, 401);
    // The proxy's own connection is trusted.
    let proxy = FakeHost::kong(None);
    proxy.set_property("source.address", b"203.0.113.9");
    proxy.set_property("ngx.realip_remote_addr", b"10.0.0.7");
    request(&proxy);
    assert_eq!(
        run(&worker(&header_config("rfc9440")), &proxy).1,
        Flow::Continue
    );
}

#[test]
fn strict_mode_refuses_an_opaque_token_without_a_certificate_before_asking_the_idp() {
    let host = FakeHost::envoy(None, None);
    host.bearer(OPAQUE);
    run(&worker(&base_config()), &host);
    assert_eq!(host.last_response().unwrap().status, 401);
    assert!(host.dispatched.borrow().is_empty());
    // In optional mode an unbound token may still be fine: the IdP is asked.
    let host = FakeHost::envoy(None, None);
    host.bearer(OPAQUE);
    run(
        &worker(&with(
            base_config(),
            json!({"proof_of_possession_mtls": "optional"}),
        )),
        &host,
    );
    assert_eq!(host.dispatched.borrow().len(), 1);
}

#[test]
fn refresh_tokens_described_by_the_idp_are_not_access_tokens() {
    let cert = &pki().ec;
    let mut answer: Value = serde_json::from_slice(&active_answer(cert, NOW + 60)).unwrap();
    answer["token_type"] = json!("refresh_token");
    let host = envoy_with(cert);
    introspect_once(
        &worker(&base_config()),
        &host,
        &[(":status", "200")],
        answer.to_string().as_bytes(),
    );
    let r = host.last_response().unwrap();
    assert_eq!(r.status, 401);
    assert!(
        r.header("www-authenticate")
            .unwrap()
            .contains("not an access token")
    );
}

#[test]
fn inactive_answers_never_evict_a_live_answer_from_the_cache() {
    let cert = &pki().ec;
    // One slot: every token collides.
    let w = worker(&with(base_config(), json!({"cache_max_entries": 1})));
    let host = envoy_with(cert);
    introspect_once(
        &w,
        &host,
        &[(":status", "200")],
        &active_answer(cert, NOW + 300),
    );
    let shared = host.shared.borrow().clone();
    // A flood of random tokens, all inactive.
    let junk = envoy_with(cert);
    junk.shared.replace(shared);
    junk.request("/x", &[("authorization", "Bearer random-junk-token")]);
    let (f, _) = run(&w, &junk);
    junk.call_returns(&[(":status", "200")], br#"{"active":false}"#);
    f.on_call_response(&junk, 1, 16);
    assert_eq!(junk.last_response().unwrap().status, 401);
    // The real client's answer is still served from the cache.
    let again = envoy_with(cert);
    again.shared.replace(junk.shared.borrow().clone());
    again.bearer(OPAQUE);
    assert_eq!(run(&w, &again).1, Flow::Continue);
    assert!(again.dispatched.borrow().is_empty());
}

#[test]
fn two_tenants_on_one_idp_host_do_not_share_cached_answers() {
    let cert = &pki().ec;
    let tenant = |realm: &str| {
        worker(&with(
            base_config(),
            json!({"introspection_endpoint": format!("https://idp.example:8443/realms/{realm}/introspect")}),
        ))
    };
    let (a, b) = (tenant("a"), tenant("b"));
    let host = envoy_with(cert);
    introspect_once(
        &a,
        &host,
        &[(":status", "200")],
        &active_answer(cert, NOW + 300),
    );
    let other = envoy_with(cert);
    other.shared.replace(host.shared.borrow().clone());
    other.bearer(OPAQUE);
    assert_eq!(run(&b, &other).1, Flow::Pause);
    assert_eq!(
        other.dispatched.borrow().len(),
        1,
        "realm b asks its own endpoint"
    );
}

#[test]
fn a_fetched_jwks_with_an_unreadable_key_still_serves_the_others() {
    let cert = &pki().ec;
    let w = worker(&remote_jwks_config());
    let mut set = jwks();
    set["keys"].as_array_mut().unwrap().insert(
        0,
        json!({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}),
    );
    let body = set.to_string();
    let host = envoy_with(cert);
    host.bearer(&bound_jwt(cert));
    let _f = run(&w, &host);
    root_fetches(&w, &host, &[(":status", "200")], body.as_bytes());
    assert_eq!(host.resumed.get(), 1);
    assert!(host.log_text().contains("skipped 1 keys"));
}

#[test]
fn an_empty_audience_list_is_warned_about_at_start() {
    let w = worker(&with(base_config(), json!({"audience_required": []})));
    assert!(
        w.startup_log()
            .iter()
            .any(|(level, l)| *level == LogLevel::Warn && l.contains("audience_required is empty"))
    );
    assert!(!startup_text(&worker(&base_config())).contains("audience"));
}

fn startup_text(w: &Worker) -> String {
    w.startup_log()
        .into_iter()
        .map(|(_, l)| l)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_very_wide_trusted_range_is_warned_about_at_start() {
    let wide = worker(&with(
        header_config("rfc9440"),
        json!({"client_certificate": header_source("client-cert", "rfc9440", &["10.0.0.0/8", "10.0.0.0/4"])}),
    ));
    let warnings: Vec<String> = wide
        .startup_log()
        .into_iter()
        .filter(|(level, _)| *level == LogLevel::Warn)
        .map(|(_, l)| l)
        .collect();
    assert!(
        warnings
            .iter()
            .any(|l| l.contains("client_certificate.trusted_ips[1] (10.0.0.0/4) is very wide")),
        "{warnings:?}"
    );
    assert!(!warnings.iter().any(|l| l.contains("trusted_ips[0]")));
}

#[test]
fn a_body_less_reply_on_kong_claims_no_content_type() {
    let cert = &pki().ec;
    let host = FakeHost::kong(Some(&cert.pem));
    introspect_once(
        &worker(&base_config()),
        &host,
        &[(":dispatch_status", "timeout")],
        b"",
    );
    let r = host.last_response().unwrap();
    assert_eq!(r.body, None);
    assert_eq!(r.header("content-type"), None);
}

// --- the host boundary fails closed ------------------------------------------------------

#[test]
fn every_host_failure_on_the_request_path_is_a_503_never_a_pass() {
    let cert = &pki().ec;
    for fail in [
        Fail::Clock,
        Fail::RequestHeaders,
        Fail::Property,
        Fail::HeaderWrites,
    ] {
        let host = envoy_with(cert);
        host.bearer(&bound_jwt(cert));
        host.fail(fail);
        let flow = run(&worker(&base_config()), &host).1;
        assert_eq!(flow, Flow::Pause, "{fail:?}");
        let r = host.last_response().unwrap();
        assert_eq!(r.status, 503, "{fail:?}");
        assert_eq!(host.metric(Metric::Denied(MetricGroup::HostFailure)), 1);
        assert_eq!(host.metric(Metric::Allowed), 0, "{fail:?}");
    }
    // The accept side: the same request with a host that answers.
    let host = envoy_with(cert);
    host.bearer(&bound_jwt(cert));
    assert_eq!(run(&worker(&base_config()), &host).1, Flow::Continue);
}

#[test]
fn an_identity_header_that_cannot_be_removed_on_kong_is_a_503() {
    // The client's forged identity header would otherwise survive on an allowed request.
    let cert = &pki().ec;
    let mut claims = bound_claims(&cert.x5t_openssl);
    claims.remove("client_id");
    let kong = FakeHost::kong(Some(&cert.pem));
    kong.request(
        "/x",
        &[
            ("authorization", &format!("Bearer {}", mint(&claims))),
            ("x-authenticated-client", "forged"),
        ],
    );
    kong.fail(Fail::HeaderWrites);
    assert_eq!(run(&worker(&base_config()), &kong).1, Flow::Pause);
    assert_eq!(kong.last_response().unwrap().status, 503);
}

#[test]
fn a_header_name_that_is_not_utf8_is_a_bad_request_not_a_panic() {
    let cert = &pki().ec;
    let host = envoy_with(cert);
    host.bearer(&bound_jwt(cert));
    host.fail(Fail::HeaderNameNotUtf8);
    assert_eq!(run(&worker(&base_config()), &host).1, Flow::Pause);
    let r = host.last_response().unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "invalid_request");
}

#[test]
fn a_reply_or_resume_the_host_refuses_leaves_the_request_paused() {
    let p = pki();
    // The local reply fails: the filter still answers Pause, never Continue.
    let host = envoy_with(&p.other);
    host.bearer(&bound_jwt(&p.ec));
    host.fail(Fail::LocalReply);
    assert_eq!(run(&worker(&base_config()), &host).1, Flow::Pause);
    assert!(host.log_text().contains("local reply failed"));
    // A resume the host refuses after an introspection call: logged, nothing else.
    let host = envoy_with(&p.ec);
    host.fail(Fail::Resume);
    introspect_once(
        &worker(&base_config()),
        &host,
        &[(":status", "200")],
        &active_answer(&p.ec, NOW + 60),
    );
    assert_eq!(host.resumed.get(), 0);
    assert!(host.log_text().contains("resume failed"));
}

#[test]
fn on_envoy_a_request_that_cannot_ask_the_root_for_a_fetch_is_a_503() {
    let cert = &pki().ec;
    let w = worker(&remote_jwks_config());
    let host = envoy_with(cert);
    host.bearer(&bound_jwt(cert));
    host.fail(Fail::TickPeriod);
    assert_eq!(run(&w, &host).1, Flow::Pause);
    assert_eq!(host.last_response().unwrap().status, 503);
}

#[test]
fn the_waiting_list_is_bounded() {
    let cert = &pki().ec;
    let w = worker(&remote_jwks_config());
    let host = envoy_with(cert);
    host.bearer(&bound_jwt(cert));
    let max = certbound::flow::worker::MAX_WAITING as u32;
    let waiting: Vec<RequestFilter> = (0..max)
        .map(|i| {
            let (f, flow) = run_as(&w, &host, 100 + i);
            assert_eq!(flow, Flow::Pause);
            f
        })
        .collect();
    assert!(host.responses.borrow().is_empty());
    run_as(&w, &host, 100 + max);
    assert_eq!(host.last_response().unwrap().status, 503);
    drop(waiting);
}

// --- bounded work for forged tokens, cache lifetimes per reader ---------------------------

#[test]
fn a_forged_token_bound_to_the_senders_own_certificate_costs_one_signature_check() {
    // The forger binds the token to its own certificate: every cheap check passes.
    let p = pki();
    let w = worker(&base_config());
    let forged = tamper(&bound_jwt(&p.other), &{
        let mut c = bound_claims(&p.other.x5t_openssl);
        c.insert("sub".into(), json!("admin"));
        c
    });
    for i in 0..5 {
        let host = envoy_with(&p.other);
        host.now.set(NOW + i);
        host.bearer(&forged);
        run(&w, &host);
        let r = host.last_response().unwrap();
        assert_eq!(r.status, 401);
        assert_eq!(
            host.metric(Metric::SignatureChecks),
            u64::from(i == 0),
            "request {i}"
        );
    }
    // Remembered for a minute, then checked again (once).
    let host = envoy_with(&p.other);
    host.now
        .set(NOW + certbound::flow::known::FAILED_SIGNATURE_MEMORY);
    host.bearer(&forged);
    run(&w, &host);
    assert_eq!(host.metric(Metric::SignatureChecks), 1);
    // The accept side: the genuine token verifies once, then comes from the verified cache.
    let genuine = bound_jwt(&p.other);
    for i in 0..3 {
        let host = envoy_with(&p.other);
        host.bearer(&genuine);
        assert_eq!(run(&w, &host).1, Flow::Continue);
        assert_eq!(host.metric(Metric::SignatureChecks), u64::from(i == 0));
    }
}

#[test]
fn a_kidless_token_is_checked_only_when_exactly_one_key_fits() {
    let cert = &pki().ec;
    let jwk = |k: &jwt_simple::prelude::ES256KeyPair, kid: &str| {
        let mut v: Value = serde_json::from_str(&k.public_key().to_jwk()).unwrap();
        v["kid"] = json!(kid);
        v
    };
    let other = jwt_simple::prelude::ES256KeyPair::generate();
    let two_keys = with(
        base_config(),
        json!({"jwks": {"keys": [jwk(&keys().ec256, "ec-1"), jwk(&other, "ec-2")]}}),
    );
    let kidless = mint_kidless_es256(&bound_claims(&cert.x5t_openssl));
    // Two ES256 keys and no kid: no signature check at all.
    let host = envoy_with(cert);
    host.bearer(&kidless);
    run(&worker(&two_keys), &host);
    let r = host.last_response().unwrap();
    assert_eq!(r.status, 401);
    assert!(
        r.header("www-authenticate")
            .unwrap()
            .contains("names no key")
    );
    assert_eq!(host.metric(Metric::SignatureChecks), 0);
    // One ES256 key: the kid-less token is checked against it, and passes.
    let one_key = with(
        base_config(),
        json!({"jwks": {"keys": [jwk(&keys().ec256, "ec-1")]}}),
    );
    let host = envoy_with(cert);
    host.bearer(&kidless);
    assert_eq!(run(&worker(&one_key), &host).1, Flow::Continue);
    assert_eq!(host.metric(Metric::SignatureChecks), 1);
}

#[test]
fn a_route_caching_briefly_never_takes_an_answer_another_route_cached_for_long() {
    // Two routes, same IdP and client, one store: the 5 s route must not serve an answer the
    // one-hour route wrote 10 s ago (a revoked token would keep working there).
    let cert = &pki().ec;
    let long = worker(&with(base_config(), json!({"cache_introspection": 3600})));
    let short = worker(&with(base_config(), json!({"cache_introspection": 5})));
    let host = envoy_with(cert);
    introspect_once(
        &long,
        &host,
        &[(":status", "200")],
        &active_answer(cert, NOW + 7200),
    );
    assert_eq!(host.last_response(), None);
    // 3 s later the short route may use it: within its own lifetime.
    host.now.set(NOW + 3);
    host.bearer(OPAQUE);
    let before = host.dispatched.borrow().len();
    assert_eq!(run(&short, &host).1, Flow::Continue);
    assert_eq!(host.dispatched.borrow().len(), before);
    // 10 s later it must ask the IdP again; the long route still uses its entry.
    host.now.set(NOW + 10);
    host.bearer(OPAQUE);
    assert_eq!(run(&short, &host).1, Flow::Pause);
    assert_eq!(host.dispatched.borrow().len(), before + 1);
    host.bearer(OPAQUE);
    assert_eq!(run(&long, &host).1, Flow::Continue);
    assert_eq!(host.dispatched.borrow().len(), before + 1);
}

#[test]
fn rfc6750_no_credentials_or_an_unsupported_method_gets_the_bare_challenge() {
    // RFC 6750 §3.1: a request that lacks any authentication information, or uses an
    // unsupported method, gets 401 and no error code; two methods at once is invalid_request.
    let cert = &pki().ec;
    let token = bound_jwt(cert);
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, u16);
    let cases: [Case; 5] = [
        ("/x", vec![], 401),
        ("/x?access_token=abc", vec![], 401),
        (
            "/x",
            vec![("authorization", "Basic dXNlcjpwdw==".to_string())],
            401,
        ),
        (
            "/x",
            vec![("authorization", "Digest username=\"u\"".to_string())],
            401,
        ),
        (
            "/x?access_token=abc",
            vec![("authorization", format!("Bearer {token}"))],
            400,
        ),
    ];
    for (path, headers, status) in cases {
        let host = envoy_with(cert);
        let refs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        host.request(path, &refs);
        run(&worker(&base_config()), &host);
        let r = host.last_response().unwrap();
        assert_eq!(r.status, status, "{path} {headers:?}");
        let challenge = r.header("www-authenticate").unwrap();
        if status == 401 {
            assert_eq!(challenge, "Bearer realm=\"api\"", "{path} {headers:?}");
        } else {
            assert!(
                challenge.contains("error=\"invalid_request\""),
                "{challenge}"
            );
        }
    }
}

// --- signed introspection responses (RFC 9701) --------------------------------------------

fn signed_config() -> Value {
    with(
        base_config(),
        json!({"introspection_jwt": true, "upstream_introspection_jwt_header": "X-Introspection-JWT"}),
    )
}

/// A signed introspection response: `token_introspection` from `active_answer`, signed by
/// the IdP's EC key (ec-1), for audience "gateway" (base_config's client_id).
fn signed_answer(cert: &TestCert, change: Value, signer: Signer) -> Vec<u8> {
    let inner: Value = serde_json::from_slice(&active_answer(cert, NOW + 300)).unwrap();
    let mut claims =
        json!({"iss": ISSUER, "aud": "gateway", "iat": NOW - 2, "token_introspection": inner});
    for (k, v) in change.as_object().unwrap() {
        claims[k] = v.clone();
    }
    let typ = claims["typ"]
        .as_str()
        .unwrap_or("token-introspection+jwt")
        .to_string();
    claims.as_object_mut().unwrap().remove("typ");
    mint_with(signer, claims.as_object().unwrap(), Some(&typ)).into_bytes()
}

#[test]
fn a_signed_introspection_response_is_verified_used_and_forwarded() {
    let cert = &pki().ec;
    let w = worker(&signed_config());
    let host = envoy_with(cert);
    let answer = signed_answer(cert, json!({}), Signer::ES256);
    introspect_once(&w, &host, &[(":status", "200")], &answer);
    let call = host.dispatched.borrow()[0].clone();
    assert!(
        call.headers
            .iter()
            .any(|(k, v)| k == "accept" && v == "application/token-introspection+jwt")
    );
    assert_eq!(host.resumed.get(), 1, "{:?}", host.last_response());
    assert_eq!(
        host.header_values("x-authenticated-client"),
        vec!["client-a"]
    );
    let forwarded = String::from_utf8(answer.clone()).unwrap();
    assert_eq!(
        host.header_values("x-introspection-jwt"),
        vec![forwarded.clone()]
    );
    // A cache hit forwards the same signed response; a client's copy never survives.
    let again = envoy_with(cert);
    again.request(
        "/accounts",
        &[
            ("authorization", &format!("Bearer {OPAQUE}")),
            ("x-introspection-jwt", "forged"),
        ],
    );
    again.shared.replace(host.shared.borrow().clone());
    assert_eq!(run(&w, &again).1, Flow::Continue);
    assert!(again.dispatched.borrow().is_empty());
    assert_eq!(again.header_values("x-introspection-jwt"), vec![forwarded]);
}

#[test]
fn a_signed_introspection_response_that_does_not_verify_is_a_503() {
    let cert = &pki().ec;
    let cases: [(&str, Vec<u8>); 6] = [
        ("unsigned JSON", active_answer(cert, NOW + 300)),
        ("another key", signed_answer(cert, json!({}), Signer::Rogue)),
        (
            "another audience",
            signed_answer(cert, json!({"aud": "someone-else"}), Signer::ES256),
        ),
        (
            "another issuer",
            signed_answer(cert, json!({"iss": "https://evil.example"}), Signer::ES256),
        ),
        (
            "stale",
            signed_answer(cert, json!({"iat": NOW - 600}), Signer::ES256),
        ),
        (
            "wrong typ",
            signed_answer(cert, json!({"typ": "at+jwt"}), Signer::ES256),
        ),
    ];
    for (what, answer) in cases {
        let host = envoy_with(cert);
        introspect_once(
            &worker(&signed_config()),
            &host,
            &[(":status", "200")],
            &answer,
        );
        let r = host
            .last_response()
            .unwrap_or_else(|| panic!("{what}: allowed"));
        assert_eq!(r.status, 503, "{what}");
        assert_eq!(host.resumed.get(), 0, "{what}");
        assert!(
            host.header_values("x-introspection-jwt").is_empty(),
            "{what}"
        );
    }
    // An inactive token, signed: 401.
    let host = envoy_with(cert);
    let inactive = mint_with(
        Signer::ES256,
        json!({"iss": ISSUER, "aud": "gateway", "iat": NOW, "token_introspection": {"active": false}})
            .as_object()
            .unwrap(),
        Some("token-introspection+jwt"),
    );
    introspect_once(
        &worker(&signed_config()),
        &host,
        &[(":status", "200")],
        inactive.as_bytes(),
    );
    assert_eq!(host.last_response().unwrap().status, 401);
}

#[test]
fn a_signed_response_whose_key_is_not_yet_fetched_waits_for_the_roots_fetch() {
    let cert = &pki().ec;
    let w = worker(&with(
        signed_config(),
        json!({"auth_methods": ["introspection"], "jwks": null, "jwks_endpoint": "https://idp.example:8443/jwks"}),
    ));
    let host = envoy_with(cert);
    let answer = signed_answer(cert, json!({}), Signer::ES256);
    // The request context lives on while it waits.
    let _request = introspect_once(&w, &host, &[(":status", "200")], &answer);
    assert!(host.responses.borrow().is_empty(), "waits for the keys");
    assert_eq!(host.resumed.get(), 0);
    root_fetches(
        &w,
        &host,
        &[(":status", "200")],
        jwks().to_string().as_bytes(),
    );
    assert_eq!(
        *host.resumed_contexts.borrow(),
        vec![REQUEST],
        "{:?}\n{}",
        host.last_response(),
        host.log_text()
    );
    assert_eq!(
        host.header_values("x-authenticated-client"),
        vec!["client-a"]
    );
}

#[test]
fn a_signature_verified_on_one_worker_is_not_checked_again_on_another() {
    let cert = &pki().ec;
    let token = bound_jwt(cert);
    let host = envoy_with(cert);
    let (one, two) = (worker(&base_config()), worker(&base_config()));
    host.bearer(&token);
    assert_eq!(run(&one, &host).1, Flow::Continue);
    assert_eq!(host.metric(Metric::SignatureChecks), 1);
    host.bearer(&token);
    assert_eq!(run(&two, &host).1, Flow::Continue);
    assert_eq!(
        host.metric(Metric::SignatureChecks),
        1,
        "one verification per gateway"
    );
    assert_eq!(host.metric(Metric::JwtSharedHits), 1);
    // A tampered copy shares nothing (the whole token is hashed).
    let mut widened = bound_claims(&cert.x5t_openssl);
    widened.insert("scope".into(), json!("accounts:read admin"));
    host.bearer(&tamper(&token, &widened));
    assert_eq!(run(&worker(&base_config()), &host).1, Flow::Pause);
    assert_eq!(host.metric(Metric::JwtSharedHits), 1);
}

#[test]
fn a_shared_verdict_counts_only_for_the_key_that_gave_it() {
    // Another worker verified the token with a key this worker does not hold under that kid
    // (a rotation in between): this worker checks the signature itself, and refuses.
    let cert = &pki().ec;
    let token = bound_jwt(cert);
    let host = envoy_with(cert);
    host.bearer(&token);
    assert_eq!(run(&worker(&base_config()), &host).1, Flow::Continue);
    let mut rogue: Value = serde_json::from_str(&keys().rogue.public_key().to_jwk()).unwrap();
    rogue["kid"] = json!("rsa-1");
    let rotated = with(base_config(), json!({"jwks": {"keys": [rogue]}}));
    host.bearer(&token);
    assert_eq!(run(&worker(&rotated), &host).1, Flow::Pause);
    assert_eq!(host.metric(Metric::JwtSharedHits), 0);
    assert_eq!(host.metric(Metric::SignatureChecks), 2);
}

#[test]
fn without_shared_cache_each_worker_verifies_for_itself_and_writes_no_shared_data() {
    let cert = &pki().ec;
    let token = bound_jwt(cert);
    let config = with(base_config(), json!({"shared_cache": false}));
    let host = FakeHost::kong(Some(&cert.pem));
    for _ in 0..2 {
        host.bearer(&token);
        assert_eq!(run(&worker(&config), &host).1, Flow::Continue);
    }
    assert_eq!(host.metric(Metric::SignatureChecks), 2);
    assert_eq!(host.shared_calls.get(), 0, "Kong without shm_kv would trap");
}

#[test]
fn only_envoy_shows_itself_in_the_root_context() {
    use certbound::host::root_is_envoy;
    // What on_configure decides by (a refused config fails Envoy's load, and closes the route
    // anywhere else; counters are defined up front on Envoy only): Envoy refuses a context id
    // that does not exist and answers NotFound for ngx.*.
    let envoy = FakeHost::envoy(None, None);
    assert!(root_is_envoy(envoy.as_root()));
    // Kong's engine takes any context id; ngx.* is never read from its root context (an
    // [error] line there).
    let kong = FakeHost::kong(None);
    assert!(!root_is_envoy(kong.as_root()));
    assert!(kong.reads.borrow().is_empty(), "{:?}", kong.reads.borrow());
    // A host that refuses the id but fails the read cannot be told: not Envoy.
    let failing = FakeHost::envoy(None, None);
    failing.fail(Fail::Property);
    assert!(!root_is_envoy(failing.as_root()));
}

#[test]
fn property_paths_are_read_as_each_engine_reads_them() {
    use certbound::host::Host;
    // The fake hosts decode paths as the engines do: a trailing empty part (the bytes a
    // trailing NUL gives, the regression of 0c1a61f) is another name on Kong's engine and
    // tolerated by Envoy; a dotted part is not a path on Envoy.
    let kong = FakeHost::kong(Some(&pki().ec.pem));
    assert!(kong.property(&["ngx", "server_port"]).unwrap().is_some());
    assert_eq!(kong.property(&["ngx", "server_port", ""]).unwrap(), None);
    assert!(kong.property(&["ngx.server_port"]).unwrap().is_some());
    let envoy = FakeHost::envoy(Some(&pki().ec.pem), None);
    assert!(envoy.property(&["source", "address"]).unwrap().is_some());
    assert_eq!(envoy.property(&["source.address"]).unwrap(), None);
    assert!(
        envoy
            .property(&["source", "address", ""])
            .unwrap()
            .is_some()
    );
}

#[test]
fn a_route_that_needs_signed_answers_never_takes_an_unsigned_one_from_the_shared_cache() {
    // Two routes on one gateway, the same IdP and client: one takes plain answers, the
    // other requires signed ones (RFC 9701). They share the host's shared data.
    let cert = &pki().ec;
    let plain = worker(&base_config());
    let host = envoy_with(cert);
    introspect_once(
        &plain,
        &host,
        &[(":status", "200")],
        &active_answer(cert, NOW + 300),
    );
    assert_eq!(host.resumed.get(), 1);
    // The signed route asks the IdP itself instead of taking the cached plain answer ...
    let signed = worker(&signed_config());
    let second = envoy_with(cert);
    second.bearer(OPAQUE);
    second.shared.replace(host.shared.borrow().clone());
    assert_eq!(run(&signed, &second).1, Flow::Pause);
    assert_eq!(
        second.dispatched.borrow().len(),
        1,
        "a plain answer satisfied a signed route"
    );
    // ... while another worker of the plain route takes it from the shared cache.
    let third = envoy_with(cert);
    third.bearer(OPAQUE);
    third.shared.replace(host.shared.borrow().clone());
    assert_eq!(run(&worker(&base_config()), &third).1, Flow::Continue);
    assert!(third.dispatched.borrow().is_empty());
}

#[test]
fn with_error_descriptions_off_a_forger_learns_only_that_the_token_is_not_valid() {
    // An unsigned token whose audience is wrong, and one bound to another certificate: with
    // the details on, each says which check failed; off, both say the same; the error code,
    // the log reason and the counters stay.
    let cert = &pki().ec;
    let other_aud = unsigned(json!({"alg": "ES256", "typ": "at+jwt", "kid": "ec-1"}), &{
        let mut c = bound_claims(&cert.x5t_openssl);
        c.insert("aud".into(), json!("https://elsewhere"));
        c
    });
    let elsewhere = mint(&bound_claims(&pki().rsa.x5t_openssl));
    let answer = |config: &Value, token: &str| {
        let host = envoy_with(cert);
        host.bearer(token);
        run(&worker(config), &host);
        let r = host.last_response().unwrap();
        (
            r.header("www-authenticate").unwrap().to_string(),
            r.json(),
            host.log_text(),
        )
    };
    let quiet = with(base_config(), json!({"expose_error_descriptions": false}));
    for token in [&other_aud, &elsewhere] {
        let (www, body, _) = answer(&base_config(), token);
        assert!(
            !www.contains("not valid here")
                && body["error_description"] != "the access token is not valid here",
            "{www}"
        );
        let (www, body, log) = answer(&quiet, token);
        assert!(
            www.contains(
                r#"error="invalid_token", error_description="the access token is not valid here""#
            ),
            "{www}"
        );
        assert_eq!(body["error"], "invalid_token");
        assert_eq!(
            body["error_description"],
            "the access token is not valid here"
        );
        assert!(
            log.contains("audience_mismatch") || log.contains("thumbprint_mismatch"),
            "{log}"
        );
    }
    // What is no token's secret keeps its words: a malformed request, a missing scope.
    let host = envoy_with(cert);
    host.request("/x", &[("authorization", "Bearer ")]);
    run(&worker(&quiet), &host);
    assert_eq!(
        host.last_response().unwrap().json()["error"],
        "invalid_request"
    );
    assert_ne!(
        host.last_response().unwrap().json()["error_description"],
        "the access token is not valid here"
    );
}

#[test]
fn what_cannot_be_an_access_token_is_refused_without_an_idp_call() {
    use base64::Engine;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let cert = &pki().ec;
    let w = worker(&base_config());
    // JOSE-shaped but no JWS we can read: `alg` not a string, two or four segments.
    for token in [
        format!("{}.{}.c2ln", b64(&json!({"alg": 1})), b64(&json!({}))),
        format!("{}.{}", b64(&json!({"alg": "ES256"})), b64(&json!({}))),
        format!("{}.e30.c2ln.eHg", b64(&json!({"alg": "ES256"}))),
        format!("{}.e30.c2ln", b64(&json!({"typ": "JWT"}))),
    ] {
        let host = envoy_with(cert);
        host.bearer(&token);
        assert_eq!(run(&w, &host).1, Flow::Pause);
        assert!(host.dispatched.borrow().is_empty(), "{token}: an IdP call");
        assert!(
            host.log_text().contains("malformed_jwt"),
            "{token}: {}",
            host.log_text()
        );
    }
    // A JWE (five segments, `enc`) only the IdP can open, and an opaque token: introspected.
    let jwe = format!(
        "{}.a.b.c.d",
        b64(&json!({"alg": "RSA-OAEP", "enc": "A256GCM"}))
    );
    for token in [jwe.as_str(), OPAQUE] {
        let host = envoy_with(cert);
        host.bearer(token);
        assert_eq!(run(&w, &host).1, Flow::Pause);
        assert_eq!(host.dispatched.borrow().len(), 1, "{token}: no IdP call");
    }
}
