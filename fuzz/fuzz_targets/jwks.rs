//! JWKS documents: `KeySet::from_fetched` (an IdP's response) and `KeySet::from_jwks` (the
//! inline configuration). Input: the document.
//!
//! Asserted: a document the configuration accepts without a problem is fetched identically (no
//! key skipped, as many keys); no key set exceeds what `MAX_KEYS` JWKs can yield.
#![no_main]

use certbound::tokens::jwks::{Alg, KeySet, MAX_JWKS_BYTES, MAX_KEYS};
use certbound_fuzz::{jwks, write_seeds};
use libfuzzer_sys::fuzz_target;
use serde_json::json;

fn seeds() -> Vec<(String, Vec<u8>)> {
    let set = jwks().clone();
    let mut with_alg = set.clone();
    with_alg["keys"][0]["alg"] = json!("PS256");
    let mut with_enc = set.clone();
    with_enc["keys"][1]["use"] = json!("enc");
    let mut with_x5c = set.clone();
    with_x5c["keys"][2]["x5c"] = json!(["MIIB"]);
    [
        ("jwks", set),
        ("rsa-alg", with_alg),
        ("use-enc", with_enc),
        ("x5c", with_x5c),
    ]
    .into_iter()
    .map(|(n, v)| {
        (
            n.to_string(),
            serde_json::to_vec_pretty(&v).unwrap_or_default(),
        )
    })
    .collect()
}

fuzz_target!(
    init: write_seeds("jwks", seeds),
    |data: &[u8]| {
        // The allowed algorithms vary with the input, without a byte of it set aside.
        let mask = data.iter().fold(0u16, |a, b| a.rotate_left(3) ^ u16::from(*b));
        let allowed: Vec<Alg> = Alg::ALL
            .into_iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0 || mask == 0)
            .map(|(_, a)| a)
            .collect();
        for algs in [&Alg::ALL[..], &allowed[..]] {
            let fetched = KeySet::from_fetched(data, algs);
            if let Ok((set, _)) = &fetched {
                assert!(set.len() <= MAX_KEYS * 6, "{} keys", set.len());
                for a in Alg::ALL {
                    if !algs.contains(&a) {
                        assert!(!set.has_candidate(None, a), "a key for {a:?}, not allowed");
                    }
                }
            }
            let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
                continue;
            };
            let (inline, problems) = KeySet::from_jwks(&value, algs);
            assert!(inline.len() <= MAX_KEYS * 6, "{} keys", inline.len());
            if problems.is_empty() {
                assert!(data.len() <= MAX_JWKS_BYTES || fetched.is_err());
                if data.len() <= MAX_JWKS_BYTES {
                    let (set, skipped) = fetched.expect("configuration accepts, fetch refuses");
                    assert_eq!(skipped, 0, "configuration accepts a key the fetch skips");
                    assert_eq!(set.len(), inline.len());
                }
            }
        }
    }
);
