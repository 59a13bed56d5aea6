//! Forwarded certificate chains, structure-aware: the input picks a leaf and a chain from a
//! PKI made with openssl at start-up (tests/support/trust_pki.sh: a root, its intermediate,
//! leaves, another CA with the same names, ten decoy CAs named like the intermediate with
//! keys of their own, two that copy its key identifier), up to 32 entries in any order with
//! repeats, sometimes with one byte of one certificate changed.
//!
//! Asserted, on every input: the intermediates offered to path building are some of those
//! given, distinct, at most `MAX_FORWARDED_INTERMEDIATES`; path validation checks at most 16
//! signatures (bounded work whatever the header holds); a leaf of the other CA never
//! validates; and the honest leaf validates whenever the real intermediate is among those
//! offered (decoys never cost a client its honest path).
#![no_main]

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use certbound::binding::chain::{MAX_FORWARDED_INTERMEDIATES, TrustStore, plausible_intermediates};
use certbound::sigalgs::path_signature_checks;
use libfuzzer_sys::fuzz_target;

/// Within every certificate's validity (2025-01-01 .. 2049-12-31 in trust_pki.sh).
const NOW: u64 = 1_800_000_000;
const NAMES: [&str; 17] = [
    "leaf", "inter", "root", "other_inter", "foreign", "expired", "server", "decoy1", "decoy2",
    "decoy3", "decoy4", "decoy5", "decoy6", "decoy7", "skidecoy1", "skidecoy2", "decoy10",
];

struct Pki {
    der: Vec<Vec<u8>>,
    store: TrustStore,
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let top = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let dir = std::env::temp_dir().join(format!("certbound-fuzz-chain-{}", std::process::id()));
        let ok = Command::new("bash")
            .arg(top.join("tests/support/trust_pki.sh"))
            .arg(&dir)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "tests/support/trust_pki.sh failed (openssl needed)");
        let pem = |n: &str| std::fs::read_to_string(dir.join(format!("{n}.pem"))).expect("pem");
        let der = NAMES
            .iter()
            .map(|n| der::pem::decode_vec(pem(n).trim().as_bytes()).expect("der").1)
            .collect();
        let mut warnings = Vec::new();
        let store = TrustStore::new(&pem("root"), None, false, &mut warnings);
        Pki { der, store }
    })
}

fuzz_target!(|data: &[u8]| {
    let pki = pki();
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    // The leaf: the honest one, the other CA's, an expired one, or a CA posing as a leaf.
    let leaf_index = [0usize, 4, 5, 1][usize::from(first % 4)];
    let mut leaf = pki.der[leaf_index].clone();
    let mut chain: Vec<Vec<u8>> = rest
        .iter()
        .take(32)
        .map(|b| pki.der[usize::from(*b) % NAMES.len()].clone())
        .collect();
    // The high bits of the first byte: sometimes flip a byte of the leaf or of one entry.
    let tamper = first >> 2;
    if tamper >= 48 {
        let target = if tamper % 2 == 0 { Some(&mut leaf) } else { chain.first_mut() };
        if let Some(cert) = target {
            let at = usize::from(tamper) * 7 % cert.len().max(1);
            if let Some(b) = cert.get_mut(at) {
                *b ^= 0x41;
            }
        }
    }
    let offered = plausible_intermediates(&leaf, &chain);
    assert!(offered.len() <= MAX_FORWARDED_INTERMEDIATES, "{} offered", offered.len());
    for (i, o) in offered.iter().enumerate() {
        assert!(chain.iter().any(|c| c.as_slice() == *o), "an intermediate not given");
        assert!(!offered[..i].contains(o), "an intermediate offered twice");
    }
    let before = path_signature_checks();
    let verdict = pki.store.verify(&leaf, &chain, NOW);
    let checks = path_signature_checks() - before;
    assert!(checks <= 16, "{checks} signature checks for one chain");
    if leaf_index == 4 {
        assert!(verdict.is_err(), "a leaf of the other CA validated");
    }
    let honest = leaf == pki.der[0];
    if honest && offered.contains(&pki.der[1].as_slice()) {
        assert!(verdict.is_ok(), "the honest chain was refused: {verdict:?}");
    }
});
