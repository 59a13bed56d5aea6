//! Introspection responses: `introspection::parse` (HTTP 200 with this body), `decode` (the
//! cache payload), the cache round trip, and the decider's `introspected` on the answer.
//! Input: the response body.
//!
//! Asserted: parse and decode agree; an active answer is a JSON object with `"active": true`;
//! what is cached decodes to itself exactly (with or without the signed response) and is never
//! kept past `exp` or the TTL; every allowed request passes `assert_allowed_ok` on the claims
//! of the body fed.
#![no_main]

use certbound::endpoint::CallOutcome;
use certbound::flow::decider::{self, Note, Phase, Step};
use certbound::flow::extract::Presented;
use certbound::reply::rejection::Scheme;
use certbound::tokens::introspection::{self, Answer};
use certbound_fuzz::{
    CertChoice, NOW, Presentation, Profile, Source, assert_allowed_ok, body_claims, with_view,
};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let outcome = CallOutcome {
        status: Some(200),
        body: data.to_vec(),
        failure: None,
    };
    let parsed = introspection::parse(&outcome);
    assert_eq!(
        parsed.as_ref().ok(),
        introspection::decode(data).as_ref().map(|(a, _)| a)
    );
    if let Ok(Answer::Active(claims)) = &parsed {
        assert_eq!(claims.get("active"), Some(&Value::Bool(true)));
    }
    let forwarded = vec![(Some("sub".to_string()), "x-sub".to_string())];
    if let Ok(answer) = &parsed {
        let kept = introspection::cacheable(answer, &forwarded);
        for signed in [None, Some("h.p.s")] {
            let back = introspection::decode(&introspection::encode(&kept, signed));
            assert_eq!(
                back,
                Some((kept.clone(), signed.map(str::to_string))),
                "a cached answer reads back differently"
            );
        }
        if let Some(until) = introspection::cache_until(&kept, NOW, 60) {
            assert!(NOW < until && until <= NOW + 60, "cached until {until}");
            if let Answer::Active(c) = &kept
                && let Ok(Some(exp)) = c.time("exp")
            {
                assert!(until <= exp, "cached past exp");
            }
        }
    }
    for (profile, cert) in [
        (Profile::Strict, CertChoice::A),
        (Profile::Optional, CertChoice::None),
        (Profile::Off, CertChoice::B),
        (Profile::DpopOptional, CertChoice::A),
    ] {
        let presented = Presented {
            token: "opaque-token".into(),
            scheme: Scheme::Bearer,
            certificate: cert.thumbprint(),
            forwarded: None,
            dpop: None,
        };
        let decision = with_view(profile, |view| {
            decider::introspected(&presented, &outcome, None, view, Phase::First)
        });
        match &decision.step {
            Step::Allow(verdict) => {
                assert!(verdict.proof.is_none(), "a proof from a bearer request");
                assert!(
                    verdict.signed_introspection.is_none(),
                    "signed, not asked for"
                );
                let claims = body_claims(data).expect("allowed a body that is no JSON object");
                assert_allowed_ok(
                    profile,
                    Source::Introspection,
                    &claims,
                    &Presentation::bearer(presented.certificate.as_ref()),
                );
            }
            Step::Deny(_) => {}
            other => panic!("introspected gave {other:?}"),
        }
        for note in &decision.notes {
            if let Note::Answer { until, payload, .. } = note {
                assert!(*until > NOW, "an answer cached already expired");
                assert!(profile != Profile::Off, "cached with cache_introspection 0");
                let answer = parsed
                    .as_ref()
                    .expect("cached an answer that does not parse");
                let kept = introspection::cacheable(answer, &[]);
                let cached = introspection::decode(payload).map(|(a, _)| a);
                // Only the identity headers' claims differ (the profile forwards sub and
                // client_id).
                assert!(
                    matches!((&cached, &kept), (Some(Answer::Active(c)), Answer::Active(k))
                        if k.0.iter().all(|(n, v)| c.get(n) == Some(v)))
                        || cached.as_ref() == Some(&kept),
                    "cached {cached:?} for {kept:?}"
                );
            }
        }
    }
});
