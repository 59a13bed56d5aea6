//! Attacks an adversarial review of the request flow found (each failed before its fix), kept
//! as regression tests. Kong's engine is modelled with the facts docs/hosts.md records (and
//! ngx_wasm_module's source), on top of the shared fake host:
//! - the request header map handed to a filter is cut to 100 pairs (`max_pairs =
//!   NGX_HTTP_WASM_MAX_REQ_HEADERS`, pseudo-headers first; the engine only logs "marshalled map
//!   truncated to 100 elements"), while nginx still forwards every header;
//! - "Removing a request header does not stop nginx's proxy_pass from forwarding the client's
//!   copy";
//! - "A client that sends the header twice still gets its second copy through" an overwrite.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use certbound::endpoint::OutboundRequest;
use certbound::flow::request::{Flow, RequestFilter};
use certbound::flow::worker::{MAX_WAITING, Worker};
use certbound::host::{Headers, Host, HostError, LogLevel};
use certbound::reply::metrics::Metric;
use serde_json::{Value, json};
use support::fake_host::{Fail, FakeHost, REQUEST, ROOT};
use support::*;

/// ngx_wasm_module's `NGX_HTTP_WASM_MAX_REQ_HEADERS`.
const NGX_MAX_PAIRS: usize = 100;

/// Kong's engine as docs/hosts.md describes it, over the shared fake host.
struct Ngx {
    inner: FakeHost,
    /// Property paths whose next read fails (a host answering InternalFailure once).
    fail_once: RefCell<Vec<String>>,
}

impl Ngx {
    fn new(inner: FakeHost) -> Ngx {
        assert!(inner.kong.get());
        Ngx {
            inner,
            fail_once: RefCell::new(Vec::new()),
        }
    }
}

impl Host for Ngx {
    fn now(&self) -> Result<u64, HostError> {
        self.inner.now()
    }
    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
        let dotted = path.join(".");
        let mut once = self.fail_once.borrow_mut();
        if let Some(i) = once.iter().position(|p| *p == dotted) {
            once.remove(i);
            return Err(HostError::Failed(format!(
                "{dotted}: InternalFailure (test)"
            )));
        }
        drop(once);
        self.inner.property(path)
    }
    fn request_header_count(&self) -> usize {
        self.inner.request_header_count()
    }
    fn call_response_header_count(&self) -> usize {
        self.inner.call_response_header_count()
    }
    fn request_headers(&self) -> Result<Headers, HostError> {
        let mut all = self.inner.request_headers()?;
        all.truncate(NGX_MAX_PAIRS);
        Ok(all)
    }
    fn set_request_header(&self, name: &str, value: &str) -> Result<(), HostError> {
        // The first copy is overwritten; a second copy still reaches the upstream.
        let mut h = self.inner.headers.borrow_mut();
        match h.iter_mut().find(|(k, _)| k.eq_ignore_ascii_case(name)) {
            Some(first) => first.1 = value.as_bytes().to_vec(),
            None => h.push((name.to_string(), value.as_bytes().to_vec())),
        }
        Ok(())
    }
    fn remove_request_header(&self, _name: &str) -> Result<(), HostError> {
        // Accepted, and the client's copy is forwarded anyway.
        Ok(())
    }
    fn send_response(
        &self,
        status: u16,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<(), HostError> {
        self.inner.send_response(status, headers, body)
    }
    fn resume_request(&self) -> Result<(), HostError> {
        self.inner.resume_request()
    }
    fn dispatch(&self, request: &OutboundRequest) -> Result<u32, HostError> {
        self.inner.dispatch(request)
    }
    fn set_effective_context(&self, context_id: u32) -> Result<(), HostError> {
        self.inner.set_effective_context(context_id)
    }
    fn call_response_headers(&self) -> Result<Headers, HostError> {
        self.inner.call_response_headers()
    }
    fn call_response_body(&self, len: usize) -> Result<Vec<u8>, HostError> {
        self.inner.call_response_body(len)
    }
    fn shared_get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
        self.inner.shared_get(key)
    }
    fn shared_set(&self, key: &str, value: &[u8], version: Option<u32>) -> Result<bool, HostError> {
        self.inner.shared_set(key, value, version)
    }
    fn count(&self, metric: Metric) {
        self.inner.count(metric)
    }
    fn log(&self, level: LogLevel, message: &str) {
        self.inner.log(level, message)
    }
    fn set_tick_period(&self, period: Duration) -> Result<(), HostError> {
        self.inner.set_tick_period(period)
    }
}

fn worker(config: &Value) -> Rc<Worker> {
    let w = Rc::new(Worker::new(settings(config)));
    w.set_root_context(ROOT);
    w
}

fn remote_jwks_config() -> Value {
    with(
        base_config(),
        json!({"jwks": null, "jwks_endpoint": "https://idp.example:8443/jwks"}),
    )
}

fn bound_jwt(cert: &TestCert) -> String {
    mint(&bound_claims(&cert.x5t_openssl))
}

fn filler(n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| (format!("x-filler-{i}"), "1".to_string()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 1. Kong: a forged identity header past the engine's 100-pair cut survives an allowed request.
// ---------------------------------------------------------------------------------------------

#[test]
fn kong_identity_headers_hidden_past_the_100_pair_cut_never_reach_the_upstream() {
    let cert = &pki().ec;
    let ngx = Ngx::new(FakeHost::kong(Some(&cert.pem)));
    let token = format!("Bearer {}", bound_jwt(cert));
    // :method, :path, :authority, authorization, 96 fillers = the 100 pairs the filter sees;
    // the two forged copies come after them.
    let mut headers: Vec<(String, String)> = vec![("authorization".into(), token)];
    headers.extend(filler(96));
    headers.push(("x-authenticated-sub".into(), "admin".into()));
    headers.push(("x-authenticated-sub".into(), "admin".into()));
    let refs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    ngx.inner.request("/accounts", &refs);

    let f = RequestFilter::new(worker(&base_config()), REQUEST);
    let flow = f.on_request_headers(&ngx);
    // Either the request is refused (its header list may be cut: the reserved-header checks
    // cannot have seen all of it), or nothing the client wrote under the name goes upstream.
    if flow == Flow::Continue {
        assert_eq!(
            ngx.inner.header_values("x-authenticated-sub"),
            vec!["client-a"],
            "the attacker's identity header reached the upstream of an allowed request"
        );
    }
}

#[test]
fn kong_certificate_headers_hidden_past_the_100_pair_cut_never_reach_the_upstream() {
    use base64::Engine;
    let cert = &pki().ec;
    let victim = &pki().rsa;
    let forged = format!(
        ":{}:",
        base64::engine::general_purpose::STANDARD.encode(&victim.der)
    );
    // The filter trusts Client-Cert from 10/8 only and this client is not a trusted proxy;
    // optional mode, and the client's own token is unbound, so the request is allowed.
    let ngx = Ngx::new(FakeHost::kong(None));
    ngx.inner.set_property("source.address", b"203.0.113.9");
    let cfg = with(
        base_config(),
        json!({"proof_of_possession_mtls": "optional",
               "client_certificate": header_source("client-cert", "rfc9440", &["10.0.0.0/8"])}),
    );
    let mut claims = bound_claims(&cert.x5t_openssl);
    claims.remove("cnf");
    let mut headers: Vec<(String, String)> =
        vec![("authorization".into(), format!("Bearer {}", mint(&claims)))];
    headers.extend(filler(96));
    headers.push(("client-cert".into(), forged.clone()));
    headers.push(("client-cert".into(), forged.clone()));
    let refs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    ngx.inner.request("/accounts", &refs);

    let f = RequestFilter::new(worker(&cfg), REQUEST);
    if f.on_request_headers(&ngx) == Flow::Continue {
        assert!(
            !ngx.inner.header_values("client-cert").contains(&forged),
            "a client-written certificate header reached the upstream of an allowed request"
        );
    }
}

#[test]
fn kong_a_stolen_token_never_passes_by_a_cert_header_hidden_past_the_100_pair_cut() {
    // A trusted TLS-terminating proxy that appends its certificate header (HAProxy's
    // `http-request add-header`) without dropping the client's: the filter's "sent more than
    // once" rule is the only defence, and it cannot see past the engine's cut.
    use base64::Engine;
    let p = pki();
    let (victim, attacker) = (&p.rsa, &p.other);
    let b64 = |der: &[u8]| {
        format!(
            ":{}:",
            base64::engine::general_purpose::STANDARD.encode(der)
        )
    };
    let ngx = Ngx::new(FakeHost::kong(None));
    ngx.inner.set_property("source.address", b"10.0.0.5");
    let cfg = with(
        base_config(),
        json!({"client_certificate": header_source("client-cert", "rfc9440", &["10.0.0.0/8"])}),
    );
    let mut headers: Vec<(String, String)> = vec![
        (
            "authorization".into(),
            format!("Bearer {}", bound_jwt(victim)),
        ),
        ("client-cert".into(), b64(&victim.der)), // written by the attacker
    ];
    headers.extend(filler(95));
    headers.push(("client-cert".into(), b64(&attacker.der))); // appended by the proxy
    let refs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    ngx.inner.request("/accounts", &refs);

    let flow = RequestFilter::new(worker(&cfg), REQUEST).on_request_headers(&ngx);
    assert_eq!(
        flow,
        Flow::Pause,
        "the victim's token passed for a client holding only its own certificate"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. One failed `ngx.server_port` read makes the worker treat Kong's engine as Envoy for good.
// ---------------------------------------------------------------------------------------------

fn optional_config() -> Value {
    with(
        base_config(),
        json!({"proof_of_possession_mtls": "optional"}),
    )
}

#[test]
fn a_failed_engine_probe_is_a_503_not_envoy_for_good() {
    let cert = &pki().ec;
    let w = worker(&optional_config());
    let mut claims = bound_claims(&cert.x5t_openssl);
    claims.remove("cnf");
    claims.remove("client_id");
    let token = format!("Bearer {}", mint(&claims));

    // The worker's first request: the engine's property read fails once (InternalFailure).
    let first = Ngx::new(FakeHost::kong(Some(&cert.pem)));
    first.fail_once.borrow_mut().push("ngx.server_port".into());
    first
        .inner
        .request("/accounts", &[("authorization", token.as_str())]);
    let _ = RequestFilter::new(Rc::clone(&w), REQUEST).on_request_headers(&first);

    // Any later request on that worker: the absent claim's header is "removed", which on
    // Kong's engine forwards the client's copy (docs/hosts.md).
    let later = Ngx::new(FakeHost::kong(Some(&cert.pem)));
    later.inner.request(
        "/accounts",
        &[
            ("authorization", token.as_str()),
            ("x-authenticated-client", "forged-admin"),
        ],
    );
    let flow = RequestFilter::new(Rc::clone(&w), REQUEST + 1).on_request_headers(&later);
    assert_eq!(flow, Flow::Continue);
    assert_ne!(
        later.inner.header_values("x-authenticated-client"),
        vec!["forged-admin"],
        "the forged identity header reached the upstream of an allowed request"
    );
    assert!(
        later
            .inner
            .reads
            .borrow()
            .iter()
            .all(|r| !r.starts_with("connection.")),
        "Envoy-only properties read on Kong's engine: {:?}",
        later.inner.reads.borrow()
    );
}

#[test]
fn an_nginx_listener_on_a_unix_socket_is_still_nginx() {
    // nginx's $server_port is "" on an AF_UNIX listener (ngx_inet_get_port returns 0), e.g.
    // plain nginx + ngx_wasm_module behind a local TLS terminator: detect_engine says Envoy.
    let cert = &pki().ec;
    let mut claims = bound_claims(&cert.x5t_openssl);
    claims.remove("cnf");
    claims.remove("client_id");
    let ngx = Ngx::new(FakeHost::kong(Some(&cert.pem)));
    ngx.inner.set_property("ngx.server_port", b"");
    ngx.inner.request(
        "/accounts",
        &[
            ("authorization", &format!("Bearer {}", mint(&claims))),
            ("x-authenticated-client", "forged-admin"),
        ],
    );
    let flow = RequestFilter::new(worker(&optional_config()), REQUEST).on_request_headers(&ngx);
    assert_eq!(flow, Flow::Continue);
    assert_ne!(
        ngx.inner.header_values("x-authenticated-client"),
        vec!["forged-admin"],
        "the forged identity header reached the upstream of an allowed request"
    );
}

#[test]
fn a_failed_engine_probe_never_makes_the_root_act_for_a_request_on_kong() {
    // docs/hosts.md: on Kong's engine "in a root callback the request pointer is NULL, so
    // continue/local reply would read through it".
    let cert = &pki().ec;
    let w = worker(&with(
        remote_jwks_config(),
        json!({"proof_of_possession_mtls": "optional"}),
    ));
    let mut claims = bound_claims(&cert.x5t_openssl);
    claims.remove("cnf");
    let ngx = Ngx::new(FakeHost::kong(Some(&cert.pem)));
    ngx.fail_once.borrow_mut().push("ngx.server_port".into());
    ngx.inner.bearer(&mint(&claims));
    let f = RequestFilter::new(Rc::clone(&w), REQUEST);
    let _ = f.on_request_headers(&ngx);

    // The root's tick and its call response.
    ngx.inner.effective.set(ROOT);
    w.on_tick(&ngx);
    let body = jwks().to_string();
    ngx.inner
        .call_returns(&[(":status", "200")], body.as_bytes());
    ngx.inner.effective.set(ROOT);
    let calls = ngx.inner.dispatched.borrow().len() as u32;
    w.on_root_call_response(&ngx, calls, body.len());

    let resumed = ngx.inner.resumed_contexts.borrow().clone();
    let replied: Vec<u32> = ngx
        .inner
        .responses
        .borrow()
        .iter()
        .map(|r| r.context)
        .collect();
    assert!(
        !resumed.contains(&ROOT) && !replied.contains(&ROOT),
        "the root continued/replied with no request behind it on Kong's engine \
         (resumed as {resumed:?}, replied as {replied:?})"
    );
    drop(f);
}

// ---------------------------------------------------------------------------------------------
// 3. Requests that ended while waiting for keys still fill the waiting list.
// ---------------------------------------------------------------------------------------------

/// The IdP's JWKS before a rotation: no EC P-256 key yet.
fn jwks_without_ec256() -> Value {
    let mut set = jwks();
    set["keys"]
        .as_array_mut()
        .unwrap()
        .retain(|k| k["crv"] != "P-256");
    set
}

#[test]
fn reset_streams_do_not_fill_the_waiting_list() {
    let p = pki();
    let w = worker(&remote_jwks_config());
    // Keys loaded at NOW, before the IdP published ec-1.
    let boot = FakeHost::envoy(None, None);
    w.on_tick(boot.as_root());
    let old = jwks_without_ec256().to_string();
    boot.call_returns(&[(":status", "200")], old.as_bytes());
    w.on_root_call_response(boot.as_root(), 1, old.len());

    // After the cool-down the attacker (its own certificate, junk tokens with unknown kids)
    // makes the worker want a fetch, then fills the waiting list and resets every stream.
    let attacker = FakeHost::envoy(Some(&p.other.pem), Some(&p.other.sha256_hex));
    attacker.now.set(NOW + 31);
    for i in 0..MAX_WAITING as u32 {
        let junk = unsigned(
            json!({"alg": "ES256", "typ": "at+jwt", "kid": format!("junk-{i}")}),
            &bound_claims(&p.other.x5t_openssl),
        );
        attacker.bearer(&junk);
        let f = RequestFilter::new(Rc::clone(&w), 100 + i);
        assert_eq!(
            f.on_request_headers(attacker.as_request(100 + i)),
            Flow::Pause
        );
        drop(f); // reset: the host deletes the context
    }

    // A legitimate client whose token names the IdP's new key, before the root's tick.
    let legit = FakeHost::envoy(Some(&p.ec.pem), Some(&p.ec.sha256_hex));
    legit.now.set(NOW + 31);
    let mut claims = bound_claims(&p.ec.x5t_openssl);
    claims.insert("exp".into(), json!(NOW + 600));
    legit.bearer(&mint_with(Signer::ES256, &claims, Some("at+jwt")));
    let f = RequestFilter::new(Rc::clone(&w), 5000);
    let flow = f.on_request_headers(legit.as_request(5000));
    assert_eq!(
        (flow, legit.last_response().map(|r| r.status)),
        (Flow::Pause, None),
        "nobody waits, yet the legitimate request was refused: {:?}",
        legit.log_text()
    );
}

// ---------------------------------------------------------------------------------------------
// 4. A tick that comes late fails the fetch it should start.
// ---------------------------------------------------------------------------------------------

#[test]
fn a_late_tick_starts_the_wanted_fetch_instead_of_failing_it_and_cooling_down() {
    let p = pki();
    let w = worker(&remote_jwks_config());
    let boot = FakeHost::envoy(None, None);
    w.on_tick(boot.as_root());
    let old = jwks_without_ec256().to_string();
    boot.call_returns(&[(":status", "200")], old.as_bytes());
    w.on_root_call_response(boot.as_root(), 1, old.len());

    // After the cool-down, a legitimate token naming the IdP's new key asks for a fetch.
    let legit = FakeHost::envoy(Some(&p.ec.pem), Some(&p.ec.sha256_hex));
    legit.now.set(NOW + 40);
    let mut claims = bound_claims(&p.ec.x5t_openssl);
    claims.insert("exp".into(), json!(NOW + 600));
    legit.bearer(&mint_with(Signer::ES256, &claims, Some("at+jwt")));
    let f = RequestFilter::new(Rc::clone(&w), REQUEST);
    assert_eq!(f.on_request_headers(legit.as_request(REQUEST)), Flow::Pause);

    // The root's tick comes, 3 s late (a busy worker thread).
    legit.now.set(NOW + 43);
    w.on_tick(legit.as_root());
    assert_eq!(
        legit.dispatched.borrow().len(),
        1,
        "the tick came and did not start the fetch it was asked for; the waiter got {:?}",
        legit.last_response().map(|r| r.status)
    );
    drop(f);
}

// ---------------------------------------------------------------------------------------------
// 5. Introspection: concurrent requests with one token each cost an IdP call.
// ---------------------------------------------------------------------------------------------

#[test]
fn introspection_calls_in_flight_are_bounded_per_worker() {
    // Concurrent requests (one token or many random ones) each need a call; a worker keeps at
    // most MAX_INTROSPECTIONS in flight and refuses the rest with 503. Calls are not
    // coalesced per token: the answer, once cached, serves everyone.
    use certbound::flow::worker::MAX_INTROSPECTIONS;
    let cert = &pki().ec;
    let w = worker(&base_config());
    let host = FakeHost::envoy(Some(&cert.pem), Some(&cert.sha256_hex));
    let calls = Cell::new(0);
    let filters: Vec<RequestFilter> = (0..MAX_INTROSPECTIONS as u32 + 20)
        .map(|i| {
            // Many clients (each peer's share is bounded too: the next test).
            host.set_property(
                "source.address",
                format!("10.0.{}.{}:443", i / 200, i % 200).as_bytes(),
            );
            host.bearer(&format!("opaque-token-number-{i:04}-xxxxxxxxxxxxxxxx"));
            let f = RequestFilter::new(Rc::clone(&w), 10 + i);
            let _ = f.on_request_headers(host.as_request(10 + i));
            calls.set(host.dispatched.borrow().len());
            f
        })
        .collect();
    assert_eq!(calls.get(), MAX_INTROSPECTIONS);
    assert_eq!(host.responses.borrow().len(), 20);
    assert!(host.responses.borrow().iter().all(|r| r.status == 503));
    // Requests that end while waiting give their place back.
    drop(filters);
    host.bearer("opaque-token-after-the-flood-xxxxxxxxxxxxx");
    let f = RequestFilter::new(Rc::clone(&w), 9999);
    assert_eq!(f.on_request_headers(host.as_request(9999)), Flow::Pause);
    assert_eq!(host.dispatched.borrow().len(), MAX_INTROSPECTIONS + 1);
}

// ---------------------------------------------------------------------------------------------
// 6. The shared introspection cache ignores each configuration's own cache lifetime.
// ---------------------------------------------------------------------------------------------

#[test]
fn a_route_with_a_short_cache_ttl_refuses_answers_another_route_cached_for_an_hour() {
    let cert = &pki().ec;
    let token = "qvUQbKLwTEw5rCDLbg3SwDt7xZh6gFqL8Hib6nrmlWd";
    let answer = json!({
        "active": true, "client_id": "client-a", "scope": "accounts:read", "aud": AUDIENCE,
        "iss": ISSUER, "exp": NOW + 7200, "iat": NOW - 5,
        "cnf": {"x5t#S256": cert.x5t_openssl}
    })
    .to_string();
    // Route A caches for an hour; route B (same IdP, client and claims) wants revocations
    // to bite within a minute.
    let a = worker(&with(base_config(), json!({"cache_introspection": 3600})));
    let b = worker(&with(base_config(), json!({"cache_introspection": 60})));
    let host = FakeHost::envoy(Some(&cert.pem), Some(&cert.sha256_hex));
    host.bearer(token);
    let f = RequestFilter::new(a, REQUEST);
    assert_eq!(f.on_request_headers(&host), Flow::Pause);
    host.call_returns(&[(":status", "200")], answer.as_bytes());
    f.on_call_response(&host, 1, answer.len());
    assert_eq!(host.resumed.get(), 1);

    // Ten minutes later the token has been revoked; route B should have asked the IdP again.
    host.now.set(NOW + 600);
    let g = RequestFilter::new(b, REQUEST + 1);
    let flow = g.on_request_headers(host.as_request(REQUEST + 1));
    assert_eq!(
        (flow, host.dispatched.borrow().len()),
        (Flow::Pause, 2),
        "route B (60 s TTL) accepted a 10-minute-old answer cached by route A"
    );
}

// ---------------------------------------------------------------------------------------------
// Kong: for a map longer than it hands over, the engine reports a buffer smaller than what it
// writes into it (ngx_http_wasm_util.c, `max_pairs`): such a map is refused unread.
// ---------------------------------------------------------------------------------------------

#[test]
fn kong_a_header_map_the_engine_cannot_hand_over_is_never_read() {
    let cert = &pki().ec;
    let token = format!("Bearer {}", bound_jwt(cert));
    let run = |announced: usize| {
        let host = FakeHost::kong(Some(&cert.pem));
        let mut headers: Vec<(String, String)> = vec![("authorization".into(), token.clone())];
        headers.extend(filler(announced - 1));
        let refs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        host.request("/accounts", &refs);
        assert_eq!(host.request_header_count(), announced);
        // What the engine hands over for such a list is cut short: reading it is the fault.
        host.fail(Fail::RequestHeaders);
        let f = RequestFilter::new(worker(&base_config()), REQUEST);
        (f.on_request_headers(&host), host)
    };
    // 96 headers + 4 pseudo-headers reach the cap: refused before the map is read.
    let (flow, host) = run(96);
    assert_eq!(flow, Flow::Pause);
    assert!(
        host.log_text().contains("too_many_headers"),
        "{}",
        host.log_text()
    );
    assert_eq!(host.last_response().map(|r| r.status), Some(400));
    // 95 fit: the map is read (here the read fails, which is a host failure, not a refusal
    // by count).
    let (_, host) = run(95);
    assert!(
        !host.log_text().contains("too_many_headers"),
        "{}",
        host.log_text()
    );
}

#[test]
fn one_peer_cannot_take_every_introspection_place() {
    // Tokenless traffic (random opaque tokens, each an IdP call; with DPoP each with a proof
    // by its own key) from one client fills at most its share; a legitimate client elsewhere
    // still gets its token introspected.
    use certbound::flow::worker::MAX_INTROSPECTIONS_PER_PEER;
    let cert = &pki().ec;
    let w = worker(&base_config());
    let host = FakeHost::envoy(Some(&cert.pem), Some(&cert.sha256_hex));
    host.set_property("source.address", b"203.0.113.7:5555");
    let flood: Vec<RequestFilter> = (0..MAX_INTROSPECTIONS_PER_PEER as u32 + 10)
        .map(|i| {
            host.bearer(&format!("random-opaque-token-{i:04}-xxxxxxxxxxxxxxxx"));
            let f = RequestFilter::new(Rc::clone(&w), 10 + i);
            let _ = f.on_request_headers(host.as_request(10 + i));
            f
        })
        .collect();
    assert_eq!(host.dispatched.borrow().len(), MAX_INTROSPECTIONS_PER_PEER);
    assert_eq!(host.responses.borrow().len(), 10);
    assert!(host.responses.borrow().iter().all(|r| r.status == 503));
    // Another client, while the flood holds its places.
    host.set_property("source.address", b"198.51.100.2:443");
    host.bearer("a-legitimate-opaque-token-xxxxxxxxxxxxxxxxx");
    let legit = RequestFilter::new(Rc::clone(&w), 5000);
    assert_eq!(legit.on_request_headers(host.as_request(5000)), Flow::Pause);
    assert_eq!(
        host.dispatched.borrow().len(),
        MAX_INTROSPECTIONS_PER_PEER + 1
    );
    assert_eq!(
        host.responses.borrow().len(),
        10,
        "the legitimate client was refused"
    );
    // The flood's places come back when its requests end.
    drop(flood);
    host.set_property("source.address", b"203.0.113.7:5555");
    host.bearer("random-opaque-token-after-xxxxxxxxxxxxxxxxx");
    let again = RequestFilter::new(Rc::clone(&w), 6000);
    assert_eq!(again.on_request_headers(host.as_request(6000)), Flow::Pause);
    assert_eq!(
        host.dispatched.borrow().len(),
        MAX_INTROSPECTIONS_PER_PEER + 2
    );
}

#[test]
fn an_ipv6_client_has_one_share_for_its_whole_64() {
    // One host holds a whole /64: rotating addresses inside it buys no more places.
    use certbound::flow::worker::MAX_INTROSPECTIONS_PER_PEER;
    let cert = &pki().ec;
    let w = worker(&base_config());
    let host = FakeHost::envoy(Some(&cert.pem), Some(&cert.sha256_hex));
    let _held: Vec<RequestFilter> = (0..MAX_INTROSPECTIONS_PER_PEER as u32 + 4)
        .map(|i| {
            host.set_property(
                "source.address",
                format!("[2001:db8:1:2::{:x}]:443", i + 1).as_bytes(),
            );
            host.bearer(&format!("random-opaque-token-{i:04}-xxxxxxxxxxxxxxxx"));
            let f = RequestFilter::new(Rc::clone(&w), 10 + i);
            let _ = f.on_request_headers(host.as_request(10 + i));
            f
        })
        .collect();
    assert_eq!(host.dispatched.borrow().len(), MAX_INTROSPECTIONS_PER_PEER);
    // Another /64 is another client.
    host.set_property("source.address", b"[2001:db8:1:3::1]:443");
    host.bearer("a-legitimate-opaque-token-xxxxxxxxxxxxxxxxx");
    let f = RequestFilter::new(Rc::clone(&w), 5000);
    assert_eq!(f.on_request_headers(host.as_request(5000)), Flow::Pause);
    assert_eq!(
        host.dispatched.borrow().len(),
        MAX_INTROSPECTIONS_PER_PEER + 1
    );
}
