//! The cost of one request's decision in the filter's own code, natively: the whole request
//! path (`RequestFilter::on_request_headers`: read the request, decide, apply) against the fake
//! host of the tests, for each case `make bench` measures in Envoy. Wall-clock with criterion
//! (`cargo bench --bench decision`), or instructions with callgrind, which repeat exactly on a
//! noisy machine (`make callgrind`):
//!
//!     CERTBOUND_BENCH=<case>:<iterations> valgrind --tool=callgrind --collect-atstart=no \
//!         --toggle-collect='*measured*' target/release/deps/decision-*
//!
//! runs one case that many times without criterion. The `host` case is the fake host's own
//! share (setting up the request), to subtract.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;
use std::rc::Rc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use certbound::flow::request::{Flow, RequestFilter};
use certbound::flow::worker::Worker;
use criterion::{Criterion, criterion_group};
use p256::ecdsa::signature::Signer as _;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::fake_host::{FakeHost, REQUEST, ROOT};
use support::*;

const OPAQUE: &str = "qvUQbKLwTEw5rCDLbg3SwDt7xZh6gFqL8Hib6nrmlWd";
const URL: &str = "https://api.example/accounts";

/// What one case sends: a request per iteration, on one worker kept across iterations.
struct Case {
    settings: certbound::config::Settings,
    worker: Rc<Worker>,
    host: FakeHost,
    /// Per-iteration Authorization and DPoP values (one entry: the same every time).
    requests: Vec<(String, Option<String>)>,
    next: usize,
    expect: Flow,
}

impl Case {
    fn new(
        config: &Value,
        host: FakeHost,
        requests: Vec<(String, Option<String>)>,
        expect: Flow,
    ) -> Case {
        let settings = settings(config);
        let worker = Rc::new(Worker::new(settings.clone()));
        worker.set_root_context(ROOT);
        Case {
            settings,
            worker,
            host,
            requests,
            next: 0,
            expect,
        }
    }

    /// Sets up the next request on the fake host.
    fn prepare(&mut self) {
        let (authorization, dpop) = &self.requests[self.next % self.requests.len()];
        self.next += 1;
        match dpop {
            None => self
                .host
                .request("/accounts", &[("authorization", authorization.as_str())]),
            Some(proof) => self.host.request(
                "/accounts",
                &[
                    ("authorization", authorization.as_str()),
                    ("dpop", proof.as_str()),
                ],
            ),
        }
        self.host.responses.borrow_mut().clear();
        self.host.logs.borrow_mut().clear();
    }

    /// One request through the filter.
    fn run(&mut self) -> Flow {
        self.prepare();
        let filter = RequestFilter::new(Rc::clone(&self.worker), REQUEST);
        filter.on_request_headers(self.host.as_request(REQUEST))
    }

    /// Runs it once and checks the outcome (and warms the worker's caches).
    fn checked(mut self) -> Case {
        let flow = self.run();
        assert_eq!(flow, self.expect, "{}", self.host.log_text());
        self
    }
}

fn bound_es256(cert: &TestCert, jti: &str, extra_cnf: Option<(&str, &str)>) -> String {
    let mut claims = bound_claims(&cert.x5t_openssl);
    claims.insert("jti".into(), json!(jti));
    if let Some((k, v)) = extra_cnf {
        claims["cnf"][k] = json!(v);
    }
    mint_with(Signer::ES256, &claims, Some("at+jwt"))
}

fn bearer(token: &str) -> (String, Option<String>) {
    (format!("Bearer {token}"), None)
}

/// How many distinct tokens a "cold" case cycles through (each new to the worker: the
/// worker's caches are emptied when the cycle starts again, see `cold`).
const COLD_TOKENS: usize = 64;

/// A DPoP key for proofs made here with p256 (the filter verifies them with its own code).
struct DpopKey {
    key: p256::ecdsa::SigningKey,
    jwk: Value,
    jkt: String,
}

fn dpop_key() -> DpopKey {
    let key = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
    let point = key.verifying_key().to_sec1_point(false);
    let bytes = point.as_bytes();
    let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
    let jwk =
        json!({"kty": "EC", "crv": "P-256", "x": b64(&bytes[1..33]), "y": b64(&bytes[33..65])});
    let jkt = support::dpop_client::thumbprint(&jwk);
    DpopKey { key, jwk, jkt }
}

fn proof(k: &DpopKey, token: &str, jti: &str) -> String {
    let enc = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": k.jwk});
    let claims = json!({"jti": jti, "htm": "GET", "htu": URL, "iat": NOW,
        "ath": URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()))});
    let input = format!("{}.{}", enc(&header), enc(&claims));
    let sig: p256::ecdsa::Signature = k.key.sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
}

fn config() -> Value {
    with(base_config(), json!({"cache_introspection": 3600}))
}

/// The cases, by name; each checked once before it is measured.
fn case(name: &str) -> Case {
    let cert = &pki().ec;
    let envoy = || FakeHost::envoy(Some(&cert.pem), Some(&cert.sha256_hex));
    let warm = bound_es256(cert, "warm", None);
    match name {
        // The fake host setting up a request and the filter refusing it at once (no token):
        // the floor under every other case.
        "host" => Case::new(
            &config(),
            envoy(),
            vec![("Basic x".into(), None)],
            Flow::Pause,
        ),
        "warm" => Case::new(&config(), envoy(), vec![bearer(&warm)], Flow::Continue),
        "forged" => Case::new(
            &config(),
            envoy(),
            vec![bearer(&bound_es256(&pki().other, "forged", None))],
            Flow::Pause,
        ),
        "bad_signature" => {
            let (head, sig) = warm.rsplit_once('.').unwrap();
            let flipped = if sig.starts_with('A') { "B" } else { "A" };
            let broken = format!("{head}.{flipped}{}", &sig[1..]);
            Case::new(&config(), envoy(), vec![bearer(&broken)], Flow::Pause)
        }
        "introspection_hit" => {
            let host = envoy();
            let w = Rc::new(Worker::new(settings(&config())));
            w.set_root_context(ROOT);
            host.bearer(OPAQUE);
            let f = RequestFilter::new(Rc::clone(&w), REQUEST);
            assert_eq!(f.on_request_headers(host.as_request(REQUEST)), Flow::Pause);
            let answer = json!({"active": true, "client_id": "client-a", "scope": "accounts:read",
                "aud": AUDIENCE, "iss": ISSUER, "exp": NOW + 3600, "iat": NOW,
                "cnf": {"x5t#S256": cert.x5t_openssl}})
            .to_string();
            host.call_returns(&[(":status", "200")], answer.as_bytes());
            f.on_call_response(&host, 1, answer.len());
            assert_eq!(host.resumed.get(), 1);
            Case {
                settings: settings(&config()),
                worker: w,
                host,
                requests: vec![bearer(OPAQUE)],
                next: 0,
                expect: Flow::Continue,
            }
        }
        "cold_es256" | "cold_rs256" => {
            let signer = if name == "cold_es256" {
                Signer::ES256
            } else {
                Signer::RS256
            };
            let tokens = (0..COLD_TOKENS)
                .map(|i| {
                    let mut claims = bound_claims(&cert.x5t_openssl);
                    claims.insert("jti".into(), json!(format!("cold-{i}")));
                    bearer(&mint_with(signer, &claims, Some("at+jwt")))
                })
                .collect();
            Case::new(&config(), envoy(), tokens, Flow::Continue)
        }
        "dpop" => {
            let k = dpop_key();
            let token = bound_es256(cert, "dpop", Some(("jkt", &k.jkt)));
            // Far more proofs than any run uses: each is accepted once.
            let proofs = (0..20_000)
                .map(|i| {
                    (
                        format!("DPoP {token}"),
                        Some(proof(&k, &token, &format!("p-{i}"))),
                    )
                })
                .collect();
            let config = with(config(), json!({"proof_of_possession_dpop": "optional"}));
            Case::new(&config, envoy(), proofs, Flow::Continue)
        }
        other => panic!("no case {other}"),
    }
}

const CASES: [&str; 8] = [
    "host",
    "warm",
    "forged",
    "bad_signature",
    "introspection_hit",
    "cold_es256",
    "cold_rs256",
    "dpop",
];

/// A cold case must find every token new: start a fresh worker each time the tokens cycle.
fn is_cold(name: &str) -> bool {
    name.starts_with("cold")
}

fn step(c: &mut Case, name: &str) -> Flow {
    if is_cold(name) && c.next % c.requests.len() == 0 {
        // Nothing known of the tokens: neither here nor in shared data (verdicts of "other
        // workers").
        c.worker = Rc::new(Worker::new(c.settings.clone()));
        c.worker.set_root_context(ROOT);
        c.host.shared.borrow_mut().clear();
    }
    c.run()
}

/// The loop callgrind counts (`--toggle-collect=*measured*`): setup (keys, PKI, tokens) is not.
#[inline(never)]
fn measured(c: &mut Case, name: &str, n: usize) {
    for _ in 0..n {
        black_box(step(c, name));
    }
}

fn decisions(cr: &mut Criterion) {
    for name in CASES {
        let mut c = case(name).checked();
        cr.bench_function(name, |b| b.iter(|| black_box(step(&mut c, name))));
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default();
    targets = decisions
}

fn main() {
    // `CERTBOUND_BENCH=case:n`: exactly n requests of one case, for callgrind.
    if let Ok(spec) = std::env::var("CERTBOUND_BENCH") {
        let (name, n) = spec.split_once(':').expect("case:iterations");
        let n: usize = n.parse().expect("a number of iterations");
        let mut c = case(name).checked();
        measured(&mut c, name, n);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
