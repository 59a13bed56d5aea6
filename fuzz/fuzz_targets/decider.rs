//! The whole decider on raw input: `decider::decide` with a fixed configuration (inline JWKS
//! of real keys), a fresh worker, no remote keys, `Phase::First`.
//!
//! Input: the first byte picks the profile (bits 0-1: Strict, Optional, Off, Narrow; with bit 4
//! set DpopStrict, DpopOptional, DpopMtls) and the presented certificate (bits 2-3: none, A, B,
//! A); the rest is the token, presented as a bearer token (DPoP requests: `dpop_decider`).
//!
//! Asserted: an allowed JWT verifies (checked here) with a key of the JWKS, every allowed
//! request passes `assert_allowed_ok` on the claims of the token's payload (bindings per mode,
//! issuer, lifetime, audience, scope), only opaque tokens are introspected (never without a
//! certificate in strict mode, never as a bearer token under strict DPoP), and there is never
//! a wait for keys that nobody can fetch.
#![no_main]

use certbound::binding::PopMode;
use certbound::flow::decider::Step;
use certbound::tokens::jwt;
use certbound_fuzz::{
    CertChoice, Presentation, Profile, Source, assert_allowed_ok, assert_idp_signed, decide,
    payload_claims, token_seeds, write_seeds,
};
use libfuzzer_sys::fuzz_target;

fn seeds() -> Vec<(String, Vec<u8>)> {
    // Strict with certificate A: the valid tokens are allowed.
    let mut out: Vec<(String, Vec<u8>)> = token_seeds()
        .into_iter()
        .map(|(n, t)| {
            let mut b = vec![0b0100];
            b.extend_from_slice(t.as_bytes());
            (n, b)
        })
        .collect();
    for (name, sel, token) in [
        ("opaque-strict-a", 0b0100u8, "2YotnFZFEjr1zCsicMWpAA"),
        ("opaque-strict-none", 0b0000, "2YotnFZFEjr1zCsicMWpAA"),
        ("opaque-off", 0b0010, "mF_9.B5f-4.1JqM"),
    ] {
        let mut b = vec![sel];
        b.extend_from_slice(token.as_bytes());
        out.push((name.into(), b));
    }
    out
}

fuzz_target!(
    init: write_seeds("decider", seeds),
    |data: &[u8]| {
        let Some((&sel, rest)) = data.split_first() else { return };
        let profile = if sel & 0b1_0000 == 0 {
            Profile::from_byte(sel & 0b11)
        } else {
            Profile::DPOP[usize::from(sel & 0b11) % Profile::DPOP.len()]
        };
        let cert = [CertChoice::None, CertChoice::A, CertChoice::B, CertChoice::A]
            [usize::from(sel >> 2 & 0b11)];
        let token = String::from_utf8_lossy(rest);
        let presented = cert.thumbprint();
        let decision = decide(profile, &token, presented);
        let s = profile.settings();
        let header = jwt::header_of(&token);
        match &decision.step {
            Step::Allow(verdict) => {
                assert!(
                    s.bearer.is_some() && header.is_some(),
                    "allowed without asking anyone: {token}"
                );
                assert!(verdict.proof.is_none(), "a proof from a bearer request");
                assert_idp_signed(profile, &token);
                let claims = payload_claims(&token).expect("allowed a JWT without a payload");
                assert_allowed_ok(
                    profile,
                    Source::Jwt,
                    &claims,
                    &Presentation::bearer(presented.as_ref()),
                );
            }
            Step::Introspect(_, proof) => {
                assert!(s.introspection.is_some());
                assert!(proof.is_none(), "a proof from a bearer request");
                assert!(
                    s.bearer.is_none() || header.is_none(),
                    "a JWT sent to introspection: {token}"
                );
                assert!(
                    s.pop != PopMode::Strict || presented.is_some(),
                    "introspection asked without a certificate in strict mode"
                );
                assert!(
                    s.dpop.mode != PopMode::Strict,
                    "introspection asked for a bearer request under strict DPoP"
                );
            }
            Step::NeedKeys(_) => panic!("NeedKeys without a jwks_endpoint"),
            Step::Deny(_) => {}
        }
    }
);
