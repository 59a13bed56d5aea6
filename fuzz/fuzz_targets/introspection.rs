//! Introspection responses: `introspection::parse` (HTTP 200 with this body), `decode` (the
//! cache payload), the cache round trip, and the decider's `introspected` on the answer.
//! Input: the response body.
//!
//! Asserted: parse and decode agree; an active answer is a JSON object with `"active": true`;
//! what is cached decodes to itself and is never kept past `exp` or the TTL; every allowed
//! request passes `assert_allowed_ok`.
#![no_main]

use certbound::endpoint::CallOutcome;
use certbound::flow::cache::LocalStore;
use certbound::flow::decider::{self, Note, Step, View};
use certbound::flow::extract::Presented;
use certbound::flow::keys::KeyFetcher;
use certbound::flow::worker::Worker;
use certbound::tokens::introspection::{self, Answer};
use certbound_fuzz::{CertChoice, NOW, Profile, Source, assert_allowed_ok, json_close};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let outcome = CallOutcome {
        status: Some(200),
        body: data.to_vec(),
        failure: None,
    };
    let parsed = introspection::parse(&outcome);
    assert_eq!(parsed.as_ref().ok(), introspection::decode(data).as_ref());
    if let Ok(Answer::Active(claims)) = &parsed {
        assert_eq!(claims.get("active"), Some(&Value::Bool(true)));
    }
    let forwarded = vec![("sub".to_string(), "x-sub".to_string())];
    if let Ok(answer) = &parsed {
        let kept = introspection::cacheable(answer, &forwarded);
        let back = introspection::decode(&introspection::encode(&kept));
        // KNOWN FINDING (tests/fuzz_findings.rs): serde_json without `float_roundtrip`
        // may read a float it wrote back one ULP off, so floats are compared within 2 ULP;
        // compare exactly (`Some(&kept)`) once that is fixed.
        let same = match (&back, &kept) {
            (Some(Answer::Active(b)), Answer::Active(k)) => {
                json_close(&Value::Object(b.0.clone()), &Value::Object(k.0.clone()))
            }
            (b, k) => b.as_ref() == Some(k),
        };
        assert!(
            same,
            "a cached answer reads back differently: {back:?} != {kept:?}"
        );
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
    ] {
        let worker = Worker::new(profile.settings().clone());
        let keys = KeyFetcher::default();
        let answers = LocalStore::default();
        let view = View {
            worker: &worker,
            keys: &keys,
            answers: &answers,
            now: NOW,
        };
        let presented = Presented {
            token: "opaque-token".into(),
            certificate: cert.thumbprint(),
        };
        let decision = decider::introspected(&presented, &outcome, &view);
        match &decision.step {
            Step::Allow(claims) => assert_allowed_ok(
                profile,
                Source::Introspection,
                claims,
                presented.certificate.as_ref(),
            ),
            Step::Deny(_) => {}
            other => panic!("introspected gave {other:?}"),
        }
        for note in &decision.notes {
            if let Note::Answer { until, .. } = note {
                assert!(*until > NOW, "an answer cached already expired");
                assert!(profile != Profile::Off, "cached with cache_introspection 0");
            }
        }
    }
});
