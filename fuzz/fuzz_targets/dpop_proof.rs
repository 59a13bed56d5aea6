//! Structure-aware DPoP proofs (RFC 9449): `binding::dpop::Proof::parse`, `check_claims` and
//! `verify`, and `dpop::normalize_htu`. Each input is a valid proof by a fixed-seed client key
//! (ES256, EdDSA, ES384, or RSA with one of six algorithms) for a request, then field changes
//! (`typ`, `alg`, the `jwk`: whose key, `kty`, `crv`, members dropped, added, resized, padded,
//! private; `htm`, `htu`, `iat`, `jti`, `ath`, `nonce`, extra members), a signature by that key,
//! another client's, the same key for another algorithm or junk, and tampering after signing
//! (a bit flipped, the other ECDSA signature, a field changed, other bytes for the same
//! header, padding, another alphabet, a fourth segment, any text). The configuration varies:
//! the algorithms allowed, the proof lifetime, the leeway, nonces.
//!
//! Asserted, checked here independently of certbound (`certbound_fuzz::proof_check`: the
//! signature with p256/p384/ed25519-compact/rsa directly, RFC 7638 written out): a proof
//! `parse` accepts has `typ` dpop+jwt, an allowed `alg`, a public `jwk` and `jkt` its RFC 7638
//! thumbprint; one `check_claims` accepts has the request's `htm` and `htu`, `ath` of the token,
//! `iat` in the window, a `jti`, the nonce when required; one `verify` accepts was signed by the
//! `jwk` in its header, with its `alg`, over exactly its first two segments (and by the key the
//! fuzzer signed with, never after a change); a proof that passes all three passes the
//! independent check with the same thumbprint. Conversely a proof the independent check
//! accepts, within certbound's documented limits (length, `jti` length, RSA key size and
//! exponent, no private members), passes all three. `normalize_htu` gives an http(s) URL with
//! a lower-case authority, no userinfo, query or fragment, and ignores case in scheme and host.
#![no_main]

use arbitrary::Arbitrary;
use certbound::binding::dpop::{Proof, RequestTarget, normalize_htu};
use certbound::tokens::jwks::Alg;
use certbound_fuzz::proof::{Context, ProofSpec, Request};
use certbound_fuzz::{
    NONCE_SECRET, NOW, ProofRules, htu_matches, jws_verifies, proof_check, proof_within_limits,
    rfc7638, split_jws, trace,
};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const TOKEN: &str = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU";
const DEFAULT_ALGS: [Alg; 5] = [Alg::ES256, Alg::ES384, Alg::EdDSA, Alg::PS256, Alg::RS256];

/// The DPoP settings the proof is checked under.
#[derive(Debug, Arbitrary)]
struct Config {
    /// A mask over `Alg::ALL`; `None`: the default five.
    algorithms: Option<u16>,
    lifetime: Option<u16>,
    leeway: Option<u16>,
    nonce: bool,
}

#[derive(Debug, Arbitrary)]
struct Input {
    proof: ProofSpec,
    request: Request,
    config: Config,
    /// More text for `normalize_htu`.
    url: String,
}

/// `normalize_htu`'s promises, on any text.
fn check_normalize(url: &str) {
    let Some(n) = normalize_htu(url) else {
        return;
    };
    let (scheme, rest) = n.split_once("://").expect("a normalised URL has a scheme");
    assert!(scheme == "https" || scheme == "http", "{url:?} gave {n:?}");
    let at = rest.find('/').expect("a normalised URL has a path");
    let authority = &rest[..at];
    assert!(!authority.is_empty(), "{url:?} gave {n:?}");
    assert_eq!(
        authority,
        authority.to_ascii_lowercase(),
        "{url:?} gave {n:?}"
    );
    assert!(
        !authority.contains('@'),
        "userinfo kept: {url:?} gave {n:?}"
    );
    assert!(
        !n.contains(['?', '#']),
        "query or fragment kept: {url:?} gave {n:?}"
    );
    assert!(htu_matches(url, &n), "{url:?} gave {n:?}");
    // Case-insensitive in scheme and authority.
    if let Some((s, r)) = url.split_once("://") {
        let at = r.find('/').unwrap_or(r.len());
        let upper = format!(
            "{}://{}{}",
            s.to_ascii_uppercase(),
            r[..at].to_ascii_uppercase(),
            &r[at..]
        );
        assert_eq!(
            normalize_htu(&upper).as_ref(),
            Some(&n),
            "{url:?} and {upper:?}"
        );
    }
}

fuzz_target!(|input: Input| {
    let c = &input.config;
    let algorithms: Vec<Alg> = match c.algorithms {
        None => DEFAULT_ALGS.to_vec(),
        Some(mask) => Alg::ALL
            .into_iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, a)| a)
            .collect(),
    };
    let lifetime = c.lifetime.map_or(300, |l| 1 + u64::from(l) % 3_600);
    let leeway = c.leeway.map_or(60, |l| u64::from(l) % 601);
    let nonce_key = c.nonce.then_some(NONCE_SECRET.as_bytes());
    let (method, url) = (input.request.method(), input.request.url());
    assert_eq!(
        normalize_htu(url).as_deref(),
        Some(url),
        "a request URL not normalised"
    );

    let built = input.proof.build(&Context {
        method,
        url,
        token: TOKEN,
        now: NOW,
        nonce_key,
    });
    for u in built.htus.iter().chain([&input.url]) {
        check_normalize(u);
    }
    let proof = &built.proof;
    let rules = ProofRules {
        algorithms: &algorithms,
        method,
        url,
        token: TOKEN,
        now: NOW,
        lifetime,
        leeway,
        nonce_key,
    };
    let independent = proof_check(proof, &rules);
    let target = RequestTarget {
        method: method.to_string(),
        url: url.to_string(),
    };

    let parsed = Proof::parse(proof, &algorithms);
    let mut accepted = false;
    if let Ok(p) = &parsed {
        let jws = split_jws(proof).expect("parse accepted a proof that is no JWS of two objects");
        let h = |k: &str| jws.header.get(k).and_then(Value::as_str);
        assert!(
            h("typ").is_some_and(|t| t.eq_ignore_ascii_case("dpop+jwt")),
            "typ {:?} accepted",
            jws.header.get("typ")
        );
        let alg = h("alg").and_then(Alg::from_name);
        assert!(
            alg.is_some_and(|a| algorithms.contains(&a)),
            "alg {:?} accepted with {algorithms:?}",
            jws.header.get("alg")
        );
        let alg = alg.expect("checked");
        let jwk = jws
            .header
            .get("jwk")
            .and_then(Value::as_object)
            .expect("a proof without a jwk object accepted");
        assert!(
            !["d", "p", "q", "dp", "dq", "qi", "k"]
                .iter()
                .any(|m| jwk.contains_key(*m)),
            "a private key accepted: {jwk:?}"
        );
        assert_eq!(
            Some(&p.jkt),
            rfc7638(jwk).as_ref(),
            "jkt is not the RFC 7638 thumbprint of {jwk:?}"
        );
        assert_eq!(p.jti(), jws.payload.get("jti").and_then(Value::as_str));

        let claims = p.check_claims(&target, TOKEN, NOW, lifetime, leeway, nonce_key);
        if claims.is_ok() {
            let c = |k: &str| jws.payload.get(k).and_then(Value::as_str);
            assert_eq!(c("htm"), Some(method), "htm");
            assert!(
                c("htu").is_some_and(|u| htu_matches(u, url)),
                "htu {:?}",
                c("htu")
            );
            assert_eq!(
                c("ath").map(str::to_string),
                Some(certbound_fuzz::sha256_b64url(TOKEN.as_bytes())),
                "ath"
            );
            assert!(c("jti").is_some_and(|j| !j.is_empty()), "jti");
            let iat = p.iat().expect("claims accepted without iat");
            assert!(
                iat <= NOW + leeway && NOW <= iat + lifetime + leeway,
                "iat {iat} accepted at {NOW} (lifetime {lifetime}, leeway {leeway})"
            );
            if let Some(key) = nonce_key {
                let n = c("nonce");
                assert!(
                    n.is_some_and(|n| certbound::binding::dpop::nonce_valid(key, n, NOW)),
                    "nonce {n:?}"
                );
            }
        }
        let verified = p.verify();
        if verified.is_ok() {
            assert!(
                jws_verifies(alg, jwk, jws.input.as_bytes(), &jws.signature),
                "verify accepted a signature that does not verify here: {proof}"
            );
            assert!(
                built.genuine,
                "verify accepted a proof its header's key did not sign as it is: {input:#?}\n{proof}"
            );
            assert_eq!(
                Some(&p.jkt),
                built.signer_jkt.as_ref(),
                "the signer's thumbprint"
            );
        }
        if claims.is_ok() && verified.is_ok() {
            accepted = true;
            assert_eq!(
                independent.as_ref(),
                Ok(&p.jkt),
                "accepted a proof the independent check refuses: {input:#?}\n{proof}"
            );
        }
    }
    trace(|| {
        format!(
            "parse {:?} claims/verify {:?} independent {:?} genuine {}",
            parsed.as_ref().err(),
            parsed.as_ref().ok().map(|p| (
                p.check_claims(&target, TOKEN, NOW, lifetime, leeway, nonce_key)
                    .err(),
                p.verify().err()
            )),
            independent.as_ref().err(),
            built.genuine
        )
    });
    if independent.is_ok() && proof_within_limits(proof) {
        assert!(
            accepted,
            "refused a valid proof: parse {:?}, claims/verify {:?}\n{input:#?}\n{proof}",
            parsed.as_ref().err(),
            parsed.as_ref().ok().map(|p| (
                p.check_claims(&target, TOKEN, NOW, lifetime, leeway, nonce_key),
                p.verify()
            ))
        );
    }
});
