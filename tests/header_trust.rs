//! A certificate from a header is believed only with a path to a configured CA: root,
//! intermediate (from the header or the config), partial chains, validity, the
//! client-authentication EKU, another CA with the same names, and CRLs. A PKI made by openssl
//! `ca` (tests/support/trust_pki.sh) at test time.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use certbound::binding::certificate::Thumbprint;
use certbound::flow::request::{Flow, RequestFilter};
use certbound::flow::worker::Worker;
use serde_json::{Value, json};
use support::fake_host::{FakeHost, REQUEST, ROOT};
use support::*;

fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("trust-pki");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/trust_pki.sh");
        let out = std::process::Command::new("bash")
            .arg(script)
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
}

fn pem(name: &str) -> String {
    std::fs::read_to_string(dir().join(name)).unwrap()
}

fn der(name: &str) -> Vec<u8> {
    let pem = pem(name);
    let (_, der) = der::pem::decode_vec(pem.trim().as_bytes()).unwrap();
    der
}

/// `:base64(DER):`, RFC 9440.
fn sf(name: &str) -> String {
    format!(":{}:", STANDARD.encode(der(name)))
}

fn config(ca: &[&str], extra: Value) -> Value {
    let cas: String = ca.iter().map(|n| pem(n)).collect();
    let mut source = json!({"source": "header", "header": "client-cert", "format": "rfc9440",
        "trusted_ips": ["10.0.0.0/8"], "ca_certificates": cas});
    for (k, v) in extra.as_object().unwrap() {
        source[k] = v.clone();
    }
    with(base_config(), json!({"client_certificate": source}))
}

/// A request from the trusted proxy with `leaf` in `client-cert` (and `chain` in
/// `client-cert-chain`), carrying a token bound to that leaf. Returns the status: 200 when
/// allowed.
fn status(config: &Value, leaf: &str, chain: &[&str]) -> u16 {
    let worker = Rc::new(Worker::new(settings(config)));
    worker.set_root_context(ROOT);
    status_on(&worker, leaf, chain)
}

/// `status` on a worker of the caller's (which remembers chain verdicts).
fn status_on(worker: &Rc<Worker>, leaf: &str, chain: &[&str]) -> u16 {
    let host = FakeHost::envoy(None, None);
    host.set_property("source.address", b"10.1.2.3:5555");
    let x5t = Thumbprint::from_pem(pem(leaf).as_bytes())
        .unwrap()
        .to_x5t_s256();
    let token = mint(&bound_claims(&x5t));
    let mut headers = vec![
        ("authorization".to_string(), format!("Bearer {token}")),
        ("client-cert".to_string(), sf(leaf)),
    ];
    if !chain.is_empty() {
        let items: Vec<String> = chain.iter().map(|c| sf(c)).collect();
        headers.push(("client-cert-chain".to_string(), items.join(", ")));
    }
    let refs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    host.request("/x", &refs);
    let flow = RequestFilter::new(Rc::clone(worker), REQUEST).on_request_headers(&host);
    match flow {
        Flow::Continue => {
            assert!(host.header_values("client-cert").is_empty());
            assert!(host.header_values("client-cert-chain").is_empty());
            200
        }
        Flow::Pause => host.last_response().unwrap().status,
    }
}

#[test]
fn a_leaf_with_its_intermediate_chains_to_the_root() {
    let root = config(&["root.pem"], json!({}));
    assert_eq!(status(&root, "leaf.pem", &["inter.pem"]), 200);
    // Without the intermediate there is no path ...
    assert_eq!(status(&root, "leaf.pem", &[]), 401);
    // ... unless the configuration holds it (used as an intermediate, not as an anchor).
    let both = config(&["root.pem", "inter.pem"], json!({}));
    assert_eq!(status(&both, "leaf.pem", &[]), 200);
}

#[test]
fn an_intermediate_alone_is_an_anchor_only_with_allow_partial_chain() {
    let inter_only = config(&["inter.pem"], json!({}));
    assert!(
        settings(&inter_only)
            .warnings
            .iter()
            .any(|w| w.contains("no trust anchor"))
    );
    assert_eq!(status(&inter_only, "leaf.pem", &[]), 401);
    let partial = config(&["inter.pem"], json!({"allow_partial_chain": true}));
    assert_eq!(status(&partial, "leaf.pem", &[]), 200);
    // A leaf of another CA with the very same names does not pass either way.
    assert_eq!(status(&partial, "foreign.pem", &[]), 401);
}

#[test]
fn validity_client_auth_and_the_issuing_ca_are_checked() {
    let root = config(&["root.pem"], json!({}));
    for (leaf, why) in [
        ("expired.pem", "expired"),
        ("notyet.pem", "not valid yet"),
        ("server.pem", "serverAuth only"),
        ("foreign.pem", "another CA with the same names"),
    ] {
        let chain = if leaf == "foreign.pem" {
            "other_inter.pem"
        } else {
            "inter.pem"
        };
        assert_eq!(status(&root, leaf, &[chain]), 401, "{why}");
    }
}

#[test]
fn a_revoked_certificate_is_refused_when_crls_are_configured() {
    let crls = json!({"crls": pem("inter.crl")});
    let checked = config(&["root.pem"], crls);
    assert_eq!(status(&checked, "revoked.pem", &["inter.pem"]), 401);
    assert_eq!(status(&checked, "leaf.pem", &["inter.pem"]), 200);
    // Without CRLs there is no revocation check.
    let unchecked = config(&["root.pem"], json!({}));
    assert_eq!(status(&unchecked, "revoked.pem", &["inter.pem"]), 200);
}

#[test]
fn a_crl_that_does_not_decode_is_warned_about_and_its_ca_refused() {
    let broken = config(
        &["root.pem"],
        json!({"crls": "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"}),
    );
    assert!(
        settings(&broken)
            .warnings
            .iter()
            .any(|w| w.contains("client_certificate.crls"))
    );
    // The leaf's issuer has no usable CRL: unknown status, refused (never let through).
    assert_eq!(status(&broken, "leaf.pem", &["inter.pem"]), 401);
}

#[test]
fn xfcc_chain_carries_the_intermediate() {
    let host = FakeHost::envoy(None, None);
    host.set_property("source.address", b"10.1.2.3:5555");
    let enc = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let leaf = Thumbprint::from_pem(pem("leaf.pem").as_bytes()).unwrap();
    let hex: String = {
        use sha2::Digest;
        sha2::Sha256::digest(der("leaf.pem"))
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let xfcc = format!(
        "Hash={hex};Cert=\"{}\";Chain=\"{}\";Subject=\"CN=leaf\"",
        enc(&pem("leaf.pem")),
        enc(&(pem("leaf.pem") + &pem("inter.pem")))
    );
    let token = mint(&bound_claims(&leaf.to_x5t_s256()));
    host.request(
        "/x",
        &[
            ("authorization", &format!("Bearer {token}")),
            ("x-forwarded-client-cert", &xfcc),
        ],
    );
    let mut cfg = config(&["root.pem"], json!({}));
    cfg["client_certificate"]["header"] = json!("x-forwarded-client-cert");
    cfg["client_certificate"]["format"] = json!("xfcc");
    let worker = Rc::new(Worker::new(settings(&cfg)));
    worker.set_root_context(ROOT);
    assert_eq!(
        RequestFilter::new(worker, REQUEST).on_request_headers(&host),
        Flow::Continue
    );
}

#[test]
fn decoy_cas_in_a_forwarded_chain_never_reach_path_building() {
    use certbound::binding::chain::{MAX_FORWARDED_INTERMEDIATES, plausible_intermediates};
    let decoys: Vec<Vec<u8>> = (1..=10).map(|i| der(&format!("decoy{i}.pem"))).collect();
    let inter = der("inter.pem");
    let leaf = der("leaf.pem");
    // Ten CAs named like the intermediate, each with its own key (so another key identifier):
    // none is offered; the real intermediate is, wherever it stands.
    let mut forwarded = decoys.clone();
    forwarded.push(inter.clone());
    assert_eq!(
        plausible_intermediates(&leaf, &forwarded),
        vec![inter.as_slice()]
    );
    // Duplicates once, the leaf itself (not a CA) never.
    let forwarded = vec![inter.clone(), inter.clone(), leaf.clone()];
    assert_eq!(
        plausible_intermediates(&leaf, &forwarded),
        vec![inter.as_slice()]
    );
    // Decoys that copy the key identifier too: at most two per issuer, in the header's order.
    let copies = [der("skidecoy1.pem"), der("skidecoy2.pem")];
    let late = vec![copies[0].clone(), copies[1].clone(), inter.clone()];
    assert_eq!(plausible_intermediates(&leaf, &late).len(), 2);
    assert!(!plausible_intermediates(&leaf, &late).contains(&inter.as_slice()));
    let early = vec![inter.clone(), copies[0].clone(), copies[1].clone()];
    assert_eq!(plausible_intermediates(&leaf, &early)[0], inter.as_slice());
    // Whatever the header holds, path building sees a bounded set.
    let mut many = decoys;
    many.extend(std::iter::repeat_n(copies[0].clone(), 50));
    many.extend(copies.iter().cloned());
    assert!(plausible_intermediates(&leaf, &many).len() <= MAX_FORWARDED_INTERMEDIATES);

    // End to end: the honest chain behind ten decoys is allowed with the two signature checks
    // of its path (leaf by intermediate, intermediate by root), decoys alone are refused with
    // none, and a sender that puts copied decoys first only refuses itself.
    use certbound::sigalgs::path_signature_checks;
    let root = config(&["root.pem"], json!({}));
    let mut names: Vec<String> = (1..=10).map(|i| format!("decoy{i}.pem")).collect();
    names.push("inter.pem".into());
    let chain: Vec<&str> = names.iter().map(String::as_str).collect();
    let before = path_signature_checks();
    assert_eq!(status(&root, "leaf.pem", &chain), 200);
    assert_eq!(path_signature_checks() - before, 2);
    let before = path_signature_checks();
    assert_eq!(status(&root, "leaf.pem", &chain[..10]), 401);
    assert_eq!(path_signature_checks() - before, 0);
    assert_eq!(
        status(
            &root,
            "leaf.pem",
            &["skidecoy1.pem", "skidecoy2.pem", "inter.pem"]
        ),
        401
    );
    assert_eq!(
        status(
            &root,
            "leaf.pem",
            &["inter.pem", "skidecoy1.pem", "skidecoy2.pem"]
        ),
        200
    );
}

#[test]
fn a_chain_verdict_is_remembered_so_the_next_request_checks_no_signature() {
    use certbound::sigalgs::path_signature_checks;
    let worker = Rc::new(Worker::new(settings(&config(&["root.pem"], json!({})))));
    worker.set_root_context(ROOT);
    let before = path_signature_checks();
    assert_eq!(status_on(&worker, "leaf.pem", &["inter.pem"]), 200);
    let first = path_signature_checks() - before;
    assert_eq!(first, 2);
    for _ in 0..5 {
        assert_eq!(status_on(&worker, "leaf.pem", &["inter.pem"]), 200);
    }
    assert_eq!(
        path_signature_checks() - before,
        first,
        "a remembered chain is checked again"
    );
    // A refusal is remembered as well; another chain is its own entry.
    let before = path_signature_checks();
    assert_eq!(status_on(&worker, "foreign.pem", &["other_inter.pem"]), 401);
    let refused = path_signature_checks() - before;
    assert_eq!(status_on(&worker, "foreign.pem", &["other_inter.pem"]), 401);
    assert_eq!(path_signature_checks() - before, refused);
    assert_eq!(status_on(&worker, "expired.pem", &["inter.pem"]), 401);
    assert_eq!(status_on(&worker, "leaf.pem", &["inter.pem"]), 200);
}

#[test]
fn a_forwarded_chain_is_checked_only_for_a_token_bound_to_its_leaf() {
    use certbound::sigalgs::path_signature_checks;
    // A sender with any token it likes and a chain of decoys: the token is bound to another
    // certificate, so the chain is never built (the refusal is the thumbprint's).
    let mut names: Vec<String> = (1..=10).map(|i| format!("decoy{i}.pem")).collect();
    names.push("inter.pem".into());
    let items: Vec<String> = names.iter().map(|n| sf(n)).collect();
    let request = |token: &str, worker: &Rc<Worker>| {
        let host = FakeHost::envoy(None, None);
        host.set_property("source.address", b"10.1.2.3:5555");
        host.request(
            "/x",
            &[
                ("authorization", &format!("Bearer {token}")),
                ("client-cert", &sf("leaf.pem")),
                ("client-cert-chain", &items.join(", ")),
            ],
        );
        let flow = RequestFilter::new(Rc::clone(worker), REQUEST).on_request_headers(&host);
        (flow, host)
    };
    let worker = Rc::new(Worker::new(settings(&config(&["root.pem"], json!({})))));
    worker.set_root_context(ROOT);
    let other = Thumbprint::from_pem(pem("server.pem").as_bytes())
        .unwrap()
        .to_x5t_s256();
    let before = path_signature_checks();
    let (flow, host) = request(&mint(&bound_claims(&other)), &worker);
    assert_eq!(flow, Flow::Pause);
    assert!(
        host.log_text().contains("thumbprint_mismatch"),
        "{}",
        host.log_text()
    );
    assert_eq!(
        path_signature_checks() - before,
        0,
        "a chain was built for a token bound elsewhere"
    );
    // Bound to the leaf but not the IdP's (a payload changed under its signature): refused
    // by the signature, before any chain is built, and again for free.
    let mine_forged = tamper(
        &mint(&bound_claims(&other)),
        &bound_claims(
            &Thumbprint::from_pem(pem("leaf.pem").as_bytes())
                .unwrap()
                .to_x5t_s256(),
        ),
    );
    for _ in 0..3 {
        let (flow, host) = request(&mine_forged, &worker);
        assert_eq!(flow, Flow::Pause);
        assert!(
            host.log_text().contains("bad_signature"),
            "{}",
            host.log_text()
        );
    }
    assert_eq!(
        path_signature_checks() - before,
        0,
        "a chain was built for a forged token"
    );
    // Bound to the leaf: the chain is checked, then allowed.
    let mine = Thumbprint::from_pem(pem("leaf.pem").as_bytes())
        .unwrap()
        .to_x5t_s256();
    let (flow, host) = request(&mint(&bound_claims(&mine)), &worker);
    assert_eq!(flow, Flow::Continue, "{}", host.log_text());
    assert_eq!(path_signature_checks() - before, 2);
}

/// The SHA-256 of a PEM certificate of the test PKI, hex (as openssl prints it, with colons).
fn fingerprint(name: &str) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(der(name));
    d.iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A request carrying `leaf` in `client-cert` and a token bound to it, on a connection whose
/// own client certificate is `proxy` (its hex digest, as Envoy hands it over), from `peer`.
fn status_via(config: &Value, peer: &str, proxy: Option<&str>) -> u16 {
    use sha2::{Digest, Sha256};
    let hex = proxy.map(|p| {
        Sha256::digest(der(p))
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    });
    let host = FakeHost::envoy(None, hex.as_deref());
    host.set_property("source.address", peer.as_bytes());
    let x5t = Thumbprint::from_pem(pem("leaf.pem").as_bytes())
        .unwrap()
        .to_x5t_s256();
    let token = mint(&bound_claims(&x5t));
    host.request(
        "/x",
        &[
            ("authorization", &format!("Bearer {token}")),
            ("client-cert", &sf("leaf.pem")),
            ("client-cert-chain", &sf("inter.pem")),
        ],
    );
    let worker = Rc::new(Worker::new(settings(config)));
    worker.set_root_context(ROOT);
    match RequestFilter::new(worker, REQUEST).on_request_headers(&host) {
        Flow::Continue => 200,
        Flow::Pause => host.last_response().unwrap().status,
    }
}

#[test]
fn a_proxy_told_by_its_own_certificate_is_believed_whatever_its_address() {
    // RFC 9440 §4: the TLS-terminating proxy authenticates with its client certificate (here
    // server.pem's key pair plays the proxy). No address can stand in for it.
    let certs_only = {
        let mut c = config(
            &["root.pem"],
            json!({"trusted_proxy_certificates": [fingerprint("server.pem")]}),
        );
        c["client_certificate"]
            .as_object_mut()
            .unwrap()
            .remove("trusted_ips");
        c
    };
    assert_eq!(
        status_via(&certs_only, "203.0.113.9:443", Some("server.pem")),
        200
    );
    assert_eq!(
        status_via(&certs_only, "10.1.2.3:443", Some("expired.pem")),
        401,
        "another certificate"
    );
    assert_eq!(
        status_via(&certs_only, "10.1.2.3:443", None),
        401,
        "no certificate"
    );
    // Both given: both must hold.
    let both = config(
        &["root.pem"],
        json!({"trusted_proxy_certificates": [fingerprint("server.pem")]}),
    );
    assert_eq!(status_via(&both, "10.1.2.3:443", Some("server.pem")), 200);
    assert_eq!(
        status_via(&both, "203.0.113.9:443", Some("server.pem")),
        401,
        "address outside trusted_ips"
    );
    assert_eq!(
        status_via(&both, "10.1.2.3:443", None),
        401,
        "no proxy certificate"
    );
}

#[test]
fn in_strict_mode_an_untrusted_header_certificate_never_costs_an_idp_call() {
    // An opaque token with a certificate from another CA in the header: the certificate is
    // refused before the token is introspected.
    let cfg = with(
        config(&["root.pem"], json!({})),
        json!({"auth_methods": ["introspection"]}),
    );
    let host = FakeHost::envoy(None, None);
    host.set_property("source.address", b"10.1.2.3:5555");
    host.request(
        "/x",
        &[
            (
                "authorization",
                "Bearer an-opaque-token-xxxxxxxxxxxxxxxxxxxxxxxxx",
            ),
            ("client-cert", &sf("foreign.pem")),
            ("client-cert-chain", &sf("other_inter.pem")),
        ],
    );
    let worker = Rc::new(Worker::new(settings(&cfg)));
    worker.set_root_context(ROOT);
    assert_eq!(
        RequestFilter::new(Rc::clone(&worker), REQUEST).on_request_headers(&host),
        Flow::Pause
    );
    assert!(
        host.dispatched.borrow().is_empty(),
        "an IdP call for an untrusted certificate"
    );
    assert_eq!(host.last_response().unwrap().status, 401);
    // The honest certificate: introspected.
    let host = FakeHost::envoy(None, None);
    host.set_property("source.address", b"10.1.2.3:5555");
    host.request(
        "/x",
        &[
            (
                "authorization",
                "Bearer an-opaque-token-xxxxxxxxxxxxxxxxxxxxxxxxx",
            ),
            ("client-cert", &sf("leaf.pem")),
            ("client-cert-chain", &sf("inter.pem")),
        ],
    );
    assert_eq!(
        RequestFilter::new(worker, REQUEST).on_request_headers(&host),
        Flow::Pause
    );
    assert_eq!(host.dispatched.borrow().len(), 1);
}
