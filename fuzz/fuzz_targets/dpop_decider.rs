//! DPoP requests through the whole decider: `Authorization: DPoP <token>` (read by
//! `credentials::credential`) with a `DPoP` proof, or the same token as `Bearer`, decided by
//! `decider::decide` with a fresh worker under a DPoP profile (DpopStrict: DPoP strict with
//! nonces, certificate binding off; DpopOptional: both optional; DpopMtls: both strict) or a
//! classic one, and an opaque token's introspection answer decided by `introspected`.
//!
//! Input, structure-aware: the profile, the scheme, the presented certificate, the token (a JWT
//! the IdP or an attacker signed, or an opaque token and the answer the IdP gives for it, each
//! with a `cnf`: the `jkt` of the client's key or another's, a certificate, both, other), and
//! the proof (`certbound_fuzz::proof`: a valid one by the client's key for the request, then
//! field changes, signatures and tampering).
//!
//! Asserted: every allowed request passes `assert_allowed_ok` on the claims the fuzzer built
//! (the JWT payload it signed, the introspection body it fed): a token with `cnf.jkt` is allowed
//! only with the DPoP scheme and a proof that passes the independent `proof_check` (signature
//! by its header's key, checked here, htm, htu, ath, iat, nonce) by the key of that thumbprint;
//! a DPoP request is allowed only with its proof checked (the verdict's proof, of that
//! thumbprint) and a token bound to that key; an allowed JWT verifies with the IdP's keys; a
//! request decided again with its proof already checked (after a wait) gets the same verdict.
//! A request with every part right (an IdP token bound as the profile requires, a proof that
//! passes the independent check within certbound's limits) is allowed.
#![no_main]

use arbitrary::Arbitrary;
use certbound::binding::PopMode;
use certbound::binding::dpop::RequestTarget;
use certbound::endpoint::CallOutcome;
use certbound::flow::decider::{self, Phase, Step};
use certbound::flow::extract::{DpopRequest, Presented};
use certbound::flow::replay::ProofId;
use certbound::reply::rejection::Scheme;
use certbound::tokens::credentials;
use certbound_fuzz::proof::{Context, Json, ProofSpec, Request, proof_alg};
use certbound_fuzz::{
    CertChoice, KeyOwner, NOW, Presentation, Profile, ProofRules, Source, assert_allowed_ok,
    assert_idp_signed, body_claims, good_claims, good_header, payload_claims, proof_check,
    proof_within_limits, public_jwk, rfc7638, signed, trace, with_view,
};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};

/// A client's DPoP key: the proof's client (`Client`) or another (`Rogue`), for an algorithm.
#[derive(Debug, Clone, Copy, Arbitrary)]
struct KeyRef {
    other: bool,
    alg: u8,
}

impl KeyRef {
    fn jkt(self) -> String {
        let owner = if self.other {
            KeyOwner::Rogue
        } else {
            KeyOwner::Client
        };
        rfc7638(public_jwk(owner, proof_alg(self.alg))).unwrap_or_default()
    }
}

#[derive(Debug, Arbitrary)]
enum Cnf {
    None,
    Jkt(KeyRef),
    JktText(String),
    X5t(CertChoice),
    Both(KeyRef, CertChoice),
    /// `jkt` plus another member.
    JktAnd(KeyRef, String, Json),
    Other(Json),
}

impl Cnf {
    fn value(&self) -> Option<Value> {
        let x5t = |c: CertChoice| {
            c.cert()
                .map_or_else(|| "AAAA".to_string(), |c| c.x5t.clone())
        };
        Some(match self {
            Cnf::None => return None,
            Cnf::Jkt(k) => json!({"jkt": k.jkt()}),
            Cnf::JktText(s) => json!({"jkt": s}),
            Cnf::X5t(c) => json!({"x5t#S256": x5t(*c)}),
            Cnf::Both(k, c) => json!({"jkt": k.jkt(), "x5t#S256": x5t(*c)}),
            Cnf::JktAnd(k, name, v) => {
                let mut m = Map::new();
                m.insert(name.clone(), v.value());
                m.insert("jkt".into(), json!(k.jkt()));
                Value::Object(m)
            }
            Cnf::Other(j) => j.value(),
        })
    }
}

/// The claims other than `cnf` changed (`None`: all right).
#[derive(Debug, Arbitrary)]
struct ClaimsSpec {
    /// `exp` seconds from now; `None`: 300.
    exp: Option<i32>,
    scope: bool,
    audience: bool,
    issuer: bool,
    extra: Vec<(String, Json)>,
}

impl ClaimsSpec {
    fn right(&self) -> bool {
        self.exp.is_none_or(|e| e > 30)
            && self.scope
            && self.audience
            && self.issuer
            && self.extra.is_empty()
    }

    fn apply(this: &Option<ClaimsSpec>, c: &mut Map<String, Value>, cnf: Option<Value>) {
        match cnf {
            Some(v) => c.insert("cnf".into(), v),
            None => c.remove("cnf"),
        };
        let Some(this) = this else {
            return;
        };
        this.edit(c);
    }

    fn edit(&self, c: &mut Map<String, Value>) {
        for (k, v) in &self.extra {
            c.insert(k.clone(), v.value());
        }
        c.insert(
            "exp".into(),
            json!(NOW as i64 + i64::from(self.exp.unwrap_or(300))),
        );
        if !self.scope {
            c.insert("scope".into(), json!("accounts:write"));
        }
        if !self.audience {
            c.insert("aud".into(), json!("https://other.example"));
        }
        if !self.issuer {
            c.insert("iss".into(), json!("https://other-idp.example"));
        }
    }
}

#[derive(Debug, Arbitrary)]
enum TokenSpec {
    Jwt {
        alg: u8,
        rogue: bool,
        claims: Option<ClaimsSpec>,
    },
    Opaque {
        which: u8,
        active: bool,
        claims: Option<ClaimsSpec>,
        /// The body as text instead.
        raw: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
enum SchemeChoice {
    Dpop,
    Bearer,
    /// `dpop`, lower case.
    DpopLower,
}

#[derive(Debug, Arbitrary)]
struct Input {
    profile: u8,
    scheme: SchemeChoice,
    certificate: CertChoice,
    /// `None`: bound as the profile requires, to the proof's own key (and the certificate
    /// presented, when certificate binding is on).
    cnf: Option<Cnf>,
    token: TokenSpec,
    proof: ProofSpec,
    request: Request,
}

const OPAQUE: [&str; 3] = [
    "2YotnFZFEjr1zCsicMWpAA",
    "mF_9.B5f-4.1JqM",
    "qvUQbKLwTEw5rCDLbg3SwDt7xZh6gFqL8Hib6nrmlWd",
];

fn profile(i: u8) -> Profile {
    [
        Profile::DpopStrict,
        Profile::DpopOptional,
        Profile::DpopMtls,
        Profile::DpopStrict,
        Profile::DpopOptional,
        Profile::DpopMtls,
        Profile::Optional,
        Profile::Strict,
    ][usize::from(i % 8)]
}

/// The token's `cnf`.
fn cnf(input: &Input, profile: Profile) -> Option<Value> {
    match &input.cnf {
        Some(c) => c.value(),
        None => {
            let own = KeyRef {
                other: false,
                alg: input.proof.alg,
            };
            let mut m = Map::new();
            m.insert("jkt".into(), json!(own.jkt()));
            if let Some(c) = input.certificate.cert()
                && profile.mtls() != PopMode::Off
            {
                m.insert("x5t#S256".into(), json!(c.x5t));
            }
            Some(Value::Object(m))
        }
    }
}

/// The token, and the introspection body for it (opaque tokens).
fn token(input: &Input, profile: Profile) -> (String, Option<Vec<u8>>) {
    match &input.token {
        TokenSpec::Jwt { alg, rogue, claims } => {
            let alg = proof_alg(*alg);
            let mut c = good_claims(CertChoice::None);
            ClaimsSpec::apply(claims, &mut c, cnf(input, profile));
            let owner = if *rogue {
                KeyOwner::Rogue
            } else {
                KeyOwner::Idp
            };
            (
                signed(alg, owner, &good_header(alg), &Value::Object(c)),
                None,
            )
        }
        TokenSpec::Opaque {
            which,
            active,
            claims,
            raw,
        } => {
            let body = match raw {
                Some(text) => text.clone().into_bytes(),
                None => {
                    let mut c = good_claims(CertChoice::None);
                    ClaimsSpec::apply(claims, &mut c, cnf(input, profile));
                    c.insert("active".into(), json!(active));
                    Value::Object(c).to_string().into_bytes()
                }
            };
            (
                OPAQUE[usize::from(*which) % OPAQUE.len()].to_string(),
                Some(body),
            )
        }
    }
}

fuzz_target!(|input: Input| {
    let profile = profile(input.profile);
    let s = profile.settings();
    let (token, body) = token(&input, profile);
    let word = match input.scheme {
        SchemeChoice::Dpop => "DPoP",
        SchemeChoice::Bearer => "Bearer",
        SchemeChoice::DpopLower => "dpop",
    };
    let headers = [(
        "authorization".to_string(),
        format!("{word} {token}").into_bytes(),
    )];
    let dpop_on = s.dpop.mode != PopMode::Off;
    if token.len() > credentials::MAX_TOKEN_LENGTH {
        return;
    }
    let credential = match credentials::credential(&headers, "/accounts", dpop_on) {
        Ok(Some(c)) => c,
        // The DPoP scheme where DPoP is off: refused as unsupported.
        other => {
            assert!(
                !dpop_on && input.scheme != SchemeChoice::Bearer && other.is_err(),
                "{word} {token} read as {other:?}"
            );
            return;
        }
    };
    assert_eq!(credential.token, token);
    let (method, url) = (input.request.method(), input.request.url());
    let nonce_key = match &s.dpop.nonce {
        Some(certbound::config::NonceSecret::Configured(k)) => Some(k.as_slice()),
        _ => None,
    };
    let built = input.proof.build(&Context {
        method,
        url,
        token: &token,
        now: NOW,
        nonce_key,
    });
    let presented = Presented {
        token: token.clone(),
        scheme: credential.scheme,
        certificate: input.certificate.thumbprint(),
        forwarded: None,
        dpop: (credential.scheme == Scheme::Dpop).then(|| DpopRequest {
            proof: built.proof.clone(),
            target: RequestTarget {
                method: method.to_string(),
                url: url.to_string(),
            },
        }),
    };
    let rules = ProofRules {
        algorithms: &s.dpop.algorithms,
        method,
        url,
        token: &token,
        now: NOW,
        lifetime: s.dpop.lifetime,
        leeway: s.leeway,
        nonce_key,
    };
    // The proof's key, when the proof passes the independent check.
    let proof_jkt = presented
        .dpop
        .as_ref()
        .and_then(|d| proof_check(&d.proof, &rules).ok());
    let presentation = Presentation {
        certificate: presented.certificate.as_ref(),
        scheme: presented.scheme,
        proof_jkt: proof_jkt.as_deref(),
    };
    let check_proof_use = |proof: Option<&decider::ProofUse>| match presented.scheme {
        Scheme::Dpop => {
            let p = proof.expect("a DPoP request went on without its proof checked");
            assert_eq!(
                Some(&p.jkt),
                proof_jkt.as_ref(),
                "the proof checked is not one the independent check accepts: {}",
                built.proof
            );
            let jti = certbound_fuzz::split_jws(&built.proof)
                .and_then(|j| {
                    j.payload
                        .get("jti")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .unwrap_or_default();
            assert_eq!(p.id, ProofId::of(&p.jkt, &jti), "the proof's replay id");
            assert_eq!(p.now, NOW);
            assert!(p.until > NOW, "a proof remembered until {}", p.until);
        }
        Scheme::Bearer => assert!(proof.is_none(), "a proof from a bearer request"),
    };

    let allowed = with_view(profile, |view| {
        let decision = decider::decide(&presented, None, view, Phase::First);
        match &decision.step {
            Step::Allow(verdict) => {
                assert!(body.is_none(), "an opaque token allowed without its answer");
                assert_idp_signed(profile, &token);
                let claims = payload_claims(&token).expect("allowed a JWT without a payload");
                assert_allowed_ok(profile, Source::Jwt, &claims, &presentation);
                check_proof_use(verdict.proof.as_ref());
                // Decided again with the proof already checked (as after a wait for keys).
                if let Some(p) = &verdict.proof {
                    let again = decider::decide(&presented, Some(p), view, Phase::KeysFetched);
                    assert!(
                        matches!(&again.step, Step::Allow(v) if v.proof.as_ref() == Some(p)),
                        "decided again with its proof checked: {:?}",
                        again.step
                    );
                }
                true
            }
            Step::Introspect(_, proof) => {
                let body = body.as_ref().expect("a JWT sent to introspection");
                check_proof_use(proof.as_ref());
                let outcome = CallOutcome {
                    status: Some(200),
                    body: body.clone(),
                    failure: None,
                };
                let answered =
                    decider::introspected(&presented, &outcome, proof.as_ref(), view, Phase::First);
                match &answered.step {
                    Step::Allow(verdict) => {
                        let claims = body_claims(body).expect("allowed a body that is no object");
                        assert_allowed_ok(profile, Source::Introspection, &claims, &presentation);
                        assert_eq!(verdict.proof.as_ref(), proof.as_ref(), "the proof changed");
                        true
                    }
                    Step::Deny(_) => false,
                    other => panic!("introspected gave {other:?}"),
                }
            }
            Step::NeedKeys(_) => panic!("NeedKeys without a jwks_endpoint"),
            Step::Deny(_) => false,
        }
    });

    trace(|| {
        format!(
            "{profile:?} {:?} {} allowed {allowed} proof {:?}",
            presented.scheme,
            if body.is_some() { "opaque" } else { "jwt" },
            proof_jkt.is_some()
        )
    });
    // Every part right: allowed.
    let bound_right = |key: &KeyRef| proof_jkt.as_deref() == Some(key.jkt().as_str());
    let cert_right = |c: CertChoice| c != CertChoice::None && c == input.certificate;
    let binding_right = match (&input.cnf, s.pop) {
        (None, PopMode::Strict) => {
            input.certificate != CertChoice::None
                && bound_right(&KeyRef {
                    other: false,
                    alg: input.proof.alg,
                })
        }
        (None, _) => bound_right(&KeyRef {
            other: false,
            alg: input.proof.alg,
        }),
        (Some(Cnf::Jkt(k)), PopMode::Off | PopMode::Optional) => bound_right(k),
        (Some(Cnf::Both(k, c)), PopMode::Strict | PopMode::Optional) => {
            bound_right(k) && cert_right(*c)
        }
        _ => false,
    };
    let token_right = match &input.token {
        TokenSpec::Jwt { alg, rogue, claims } => {
            !rogue
                && claims.as_ref().is_none_or(ClaimsSpec::right)
                && profile.algorithms().contains(&proof_alg(*alg))
        }
        TokenSpec::Opaque {
            active,
            claims,
            raw,
            ..
        } => *active && raw.is_none() && claims.as_ref().is_none_or(ClaimsSpec::right),
    };
    let all_right = presented.scheme == Scheme::Dpop
        && proof_jkt.is_some()
        && proof_within_limits(&built.proof)
        && binding_right
        && token_right;
    if all_right {
        assert!(
            allowed,
            "a request with every part right was refused: {input:#?}"
        );
    }
});
