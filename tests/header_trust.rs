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
    let worker = Rc::new(Worker::new(settings(config)));
    worker.set_root_context(ROOT);
    let flow = RequestFilter::new(worker, REQUEST).on_request_headers(&host);
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
