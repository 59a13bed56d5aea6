//! The decision for one request, as a value: given what the request presented and a
//! read-only view of the worker (settings, keys, caches, time), the next step. The checks run
//! cheapest first: everything on the unverified token (algorithm, `typ`, `iss`, lifetime,
//! audience, the binding to what the client presented) before any key lookup, IdP call or
//! signature check. A DPoP proof is checked against the request, the token's `cnf.jkt` and
//! the proofs already used before its own signature, and that before the token's. Nothing
//! here touches the host; `request` applies the step.

use crate::binding::dpop::{self, Proof};
use crate::binding::{self, PopMode, Possession};
use crate::config::{
    BearerSettings, IntrospectionSettings, KeySettings, Settings, SignedIntrospection,
};
use crate::endpoint::{CallOutcome, OutboundRequest};
use crate::flow::cache::{Store, TokenHash};
use crate::flow::extract::Presented;
use crate::flow::keys::{KeyFetcher, Refetch};
use crate::flow::replay::ProofId;
use crate::flow::worker::Worker;
use crate::reply::metrics::Metric;
use crate::reply::rejection::{Rejection, Scheme};
use crate::tokens::claims::Claims;
use crate::tokens::introspection::{self, Answer};
use crate::tokens::jwks::KeySet;
use crate::tokens::jwt::{self, JwtRules, UnverifiedJwt};
use crate::tokens::policy;

/// What an allowed request goes upstream with.
#[derive(Debug)]
pub struct Verdict {
    /// The token's claims: the identity headers come from them.
    pub claims: Claims,
    /// The signed introspection response (RFC 9701) the claims came in, to forward.
    pub signed_introspection: Option<String>,
    /// The request's DPoP proof, to record as used before the request goes on.
    pub proof: Option<ProofUse>,
}

/// A DPoP proof that passed every check, signature included; recording it as used (so it is
/// never accepted again) is the last step before the request goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofUse {
    pub id: ProofId,
    /// When it was checked.
    pub now: u64,
    /// Until when it could pass the `iat` check again: it is remembered that long.
    pub until: u64,
    /// Its key's RFC 7638 thumbprint, what the token's `cnf.jkt` must equal.
    pub jkt: String,
}

/// What a request keeps while it waits: the introspection answer to decide on (when there is
/// one), and its DPoP proof, already checked (its signature is never checked twice).
#[derive(Debug, Clone, Default)]
pub struct Pending {
    pub answer: Option<CallOutcome>,
    pub proof: Option<ProofUse>,
}

/// The next step for a request.
#[derive(Debug)]
pub enum Step {
    Allow(Verdict),
    Deny(Rejection),
    /// A key is not in hand: wait for the worker's JWKS fetch, then decide again with
    /// `Phase::KeysFetched` (on the introspection answer held here, when it is that answer's
    /// signature that needs the key).
    NeedKeys(Pending),
    /// Ask the IdP about the token; `introspected` decides on the answer (with the request's
    /// DPoP proof, already checked).
    Introspect(OutboundRequest, Option<ProofUse>),
}

/// What else the step asks for: counters, cache entries, log lines.
#[derive(Debug, Clone, PartialEq)]
pub enum Note {
    Count(Metric),
    /// The token's signature verified at `now`; the verdict may be reused until `until`.
    Verified {
        hash: TokenHash,
        now: u64,
        until: u64,
    },
    /// The token's signature failed at `now`: refuse it unchecked for a while.
    SignatureFailed {
        hash: TokenHash,
        now: u64,
    },
    /// An introspection answer to cache from `now` until `until`; an inactive one never
    /// evicts a live entry of another token.
    Answer {
        hash: TokenHash,
        now: u64,
        until: u64,
        payload: Vec<u8>,
        inactive: bool,
    },
    Warn(String),
}

/// A step and its notes.
#[derive(Debug)]
pub struct Decision {
    pub step: Step,
    pub notes: Vec<Note>,
}

impl Decision {
    pub(crate) fn new(step: Step) -> Decision {
        Decision {
            step,
            notes: Vec::new(),
        }
    }

    pub fn deny(rejection: Rejection) -> Decision {
        Decision::new(Step::Deny(rejection))
    }
}

/// Whether the worker has already fetched keys for this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    First,
    /// The JWKS fetch the request waited for has completed (well or not): a key still
    /// missing is unknown, never another fetch.
    KeysFetched,
}

/// What the decider may read.
pub struct View<'a> {
    pub worker: &'a Worker,
    pub keys: &'a KeyFetcher,
    /// Where introspection answers and used DPoP proofs are kept (shared data or per worker).
    pub store: &'a dyn Store,
    pub now: u64,
}

impl View<'_> {
    fn settings(&self) -> &Settings {
        &self.worker.settings
    }
}

/// How a token is validated.
enum Route<'a> {
    Jwt(&'a BearerSettings, &'a KeySettings),
    Introspect(&'a IntrospectionSettings),
}

/// A JWT (three base64url segments, JSON header with `alg`) goes to local verification when
/// `bearer` is on; everything else is introspected when `introspection` is on. With only
/// introspection enabled every token, JWT or not, is introspected.
fn route<'a>(settings: &'a Settings, token: &str) -> Result<Route<'a>, Rejection> {
    match (&settings.bearer, &settings.keys, &settings.introspection) {
        (Some(bearer), Some(keys), _) if jwt::header_of(token).is_some() => {
            Ok(Route::Jwt(bearer, keys))
        }
        (_, _, Some(intro)) => Ok(Route::Introspect(intro)),
        _ => Err(Rejection::NotAJwt),
    }
}

/// The decision for a request that presented `presented`; `proven`: its DPoP proof, when an
/// earlier pass checked it.
pub fn decide(
    presented: &Presented,
    proven: Option<&ProofUse>,
    view: &View<'_>,
    phase: Phase,
) -> Decision {
    let mut notes = Vec::new();
    let step = match route(view.settings(), &presented.token) {
        Err(r) => Step::Deny(r),
        Ok(Route::Jwt(bearer, keys)) => {
            check_jwt(presented, proven, (bearer, keys), view, phase, &mut notes)
        }
        Ok(Route::Introspect(intro)) => check_opaque(presented, intro, view, &mut notes),
    };
    Decision { step, notes }
}

/// The decision on the introspection endpoint's answer (its signature checked first, when
/// signed responses are configured).
pub fn introspected(
    presented: &Presented,
    outcome: &CallOutcome,
    proof: Option<&ProofUse>,
    view: &View<'_>,
    phase: Phase,
) -> Decision {
    let settings = view.settings();
    let Some(intro) = &settings.introspection else {
        return Decision::deny(Rejection::IntrospectionUnavailable);
    };
    let parsed = match &intro.signed {
        None => introspection::parse(outcome).map(|a| (a, None)),
        Some(signed) => match verify_signed(outcome, intro, signed, view, phase) {
            Signed::Answer(answer, jwt) => Ok((answer, Some(jwt))),
            Signed::NeedKeys => {
                return Decision::new(Step::NeedKeys(Pending {
                    answer: Some(outcome.clone()),
                    proof: proof.cloned(),
                }));
            }
            Signed::Failed(failure) => Err(failure),
        },
    };
    let (answer, jwt) = match parsed {
        Ok(parsed) => parsed,
        Err(failure) => {
            return Decision {
                step: Step::Deny(Rejection::IntrospectionUnavailable),
                notes: vec![
                    Note::Warn(failure.to_string()),
                    Note::Count(Metric::IntrospectionFailures),
                ],
            };
        }
    };
    let mut notes = Vec::new();
    let kept = introspection::cacheable(&answer, &settings.upstream_headers);
    if let Some(until) = introspection::cache_until(&kept, view.now, intro.cache_ttl) {
        notes.push(Note::Answer {
            hash: TokenHash::of(&presented.token),
            now: view.now,
            until,
            payload: introspection::encode(&kept, jwt.as_deref()),
            // Random tokens (all inactive) must not flush the answers of real clients.
            inactive: kept == Answer::Inactive,
        });
    }
    let step = finish(
        check_introspected(settings, &answer, presented, proof, view.now),
        jwt,
        proof.cloned(),
    );
    Decision { step, notes }
}

/// A signed introspection response, checked.
enum Signed {
    Answer(Answer, String),
    NeedKeys,
    Failed(introspection::Failure),
}

/// RFC 9701: `typ`, one signature check with the key its `kid` names (keys as for JWT
/// access tokens), `iss` = `issuer`, `aud` = our client id, `iat` fresh.
fn verify_signed(
    outcome: &CallOutcome,
    intro: &IntrospectionSettings,
    signed: &SignedIntrospection,
    view: &View<'_>,
    phase: Phase,
) -> Signed {
    use introspection::Failure;
    let jwt_text = match introspection::signed_response(outcome) {
        Ok(jwt) => jwt,
        Err(f) => return Signed::Failed(f),
    };
    let Some(keys) = &view.settings().keys else {
        return Signed::Failed(Failure::BadSignature("no keys configured"));
    };
    let Some(header) = jwt::header_of(&jwt_text) else {
        return Signed::Failed(Failure::NotSigned);
    };
    let Some(alg) =
        crate::tokens::jwks::Alg::from_name(&header.alg).filter(|a| keys.algorithms.contains(a))
    else {
        return Signed::Failed(Failure::BadSignature("algorithm not allowed"));
    };
    let remote = view.keys.keys();
    let sets: Vec<&KeySet> = std::iter::once(&keys.inline).chain(remote).collect();
    let audience = [intro.client_id.clone()];
    let rules = JwtRules {
        issuer: &signed.issuer,
        algorithms: &keys.algorithms,
        typ_strict: false,
        audience_required: &audience,
        leeway: view.settings().leeway,
        max_age: Some(introspection::MAX_SIGNED_AGE + view.settings().leeway),
    };
    let kid = header.kid.as_deref();
    let mut candidates = sets.iter().flat_map(|set| set.candidates(kid, alg));
    let Some(key) = candidates.next() else {
        return match (&keys.endpoint, phase) {
            (Some(_), Phase::First)
                if matches!(
                    view.keys
                        .on_missing_key(view.now, keys.rediscovery_lifetime),
                    Refetch::Wait | Refetch::Fetch
                ) =>
            {
                Signed::NeedKeys
            }
            _ => Signed::Failed(Failure::BadSignature("no key for its kid")),
        };
    };
    if kid.is_none() && candidates.next().is_some() {
        return Signed::Failed(Failure::BadSignature("no kid, and several keys fit"));
    }
    match jwt::verify_signature(&jwt_text, key, &rules, view.now) {
        Ok(()) => match introspection::signed_answer(&jwt_text) {
            Ok(answer) => Signed::Answer(answer, jwt_text),
            Err(f) => Signed::Failed(f),
        },
        Err(r) => Signed::Failed(Failure::BadSignature(r.reason())),
    }
}

fn finish(
    verdict: Result<Claims, Rejection>,
    signed_introspection: Option<String>,
    proof: Option<ProofUse>,
) -> Step {
    match verdict {
        Ok(claims) => Step::Allow(Verdict {
            claims,
            signed_introspection,
            proof,
        }),
        Err(r) => Step::Deny(r),
    }
}

/// The request's DPoP proof, decoded and compared with the request (method, URL, time,
/// access token, nonce): no signature work yet. `None` for the Bearer scheme.
fn read_proof(presented: &Presented, view: &View<'_>) -> Result<Option<Proof>, Rejection> {
    let Some(request) = &presented.dpop else {
        return Ok(None);
    };
    let settings = view.settings();
    let d = &settings.dpop;
    let proof = Proof::parse(&request.proof, &d.algorithms)?;
    proof.check_claims(
        &request.target,
        &presented.token,
        view.now,
        d.lifetime,
        settings.leeway,
        d.nonce_key.as_deref(),
    )?;
    Ok(Some(proof))
}

/// The last checks on a proof whose key the token is bound to: not used before (a cheap
/// lookup), then its signature.
fn prove(proof: &Proof, view: &View<'_>, notes: &mut Vec<Note>) -> Result<ProofUse, Rejection> {
    let settings = view.settings();
    let now = view.now;
    let id = ProofId::of(&proof.jkt, proof.jti().unwrap_or_default());
    match view.worker.proof_seen(view.store, &id, now) {
        Ok(false) => {}
        Ok(true) => return Err(Rejection::DpopReplay),
        Err(e) => {
            notes.push(Note::Warn(format!("DPoP replay cache unreadable: {e}")));
            return Err(Rejection::HostFailure);
        }
    }
    notes.push(Note::Count(Metric::DpopProofChecks));
    proof.verify()?;
    // Live while its `iat` passes; a nonce (two steps) may shorten that.
    let mut until = proof
        .iat()
        .unwrap_or(now)
        .saturating_add(settings.dpop.lifetime)
        .saturating_add(settings.leeway)
        .saturating_add(1);
    if settings.dpop.nonce_key.is_some() {
        until = until.min(now.saturating_add(2 * dpop::NONCE_STEP + settings.leeway));
    }
    Ok(ProofUse {
        id,
        now,
        until,
        jkt: proof.jkt.clone(),
    })
}

/// What the request presented to prove possession.
fn possession<'a>(presented: &'a Presented, proof_jkt: Option<&'a str>) -> Possession<'a> {
    Possession {
        certificate: presented.certificate.as_ref(),
        scheme: presented.scheme,
        proof_jkt,
    }
}

fn jwt_rules<'a>(
    settings: &'a Settings,
    bearer: &'a BearerSettings,
    keys: &'a KeySettings,
) -> JwtRules<'a> {
    JwtRules {
        issuer: &bearer.issuer,
        algorithms: &keys.algorithms,
        typ_strict: bearer.typ_strict,
        audience_required: &settings.audience_required,
        leeway: settings.leeway,
        max_age: None,
    }
}

fn check_jwt(
    presented: &Presented,
    proven: Option<&ProofUse>,
    (bearer, keys): (&BearerSettings, &KeySettings),
    view: &View<'_>,
    phase: Phase,
    notes: &mut Vec<Note>,
) -> Step {
    let settings = view.settings();
    let now = view.now;
    // Every check that needs no key, then the binding (a DPoP proof's key is known without
    // its signature): only a token that passes them all is worth a key lookup (which may cost
    // an IdP call) and a signature check; only a proof by the token's key is worth checking.
    let checked = (|| {
        let proof = match proven {
            Some(_) => None,
            None => read_proof(presented, view)?,
        };
        let unverified = jwt::inspect(&presented.token, &jwt_rules(settings, bearer, keys), now)?;
        let jkt = proven
            .map(|p| p.jkt.as_str())
            .or(proof.as_ref().map(|p| p.jkt.as_str()));
        binding::check(
            settings.pop,
            settings.dpop.mode,
            &unverified.claims,
            &possession(presented, jkt),
        )?;
        let proof = match proof {
            Some(p) => Some(prove(&p, view, notes)?),
            None => proven.cloned(),
        };
        Ok((unverified, proof))
    })();
    let (unverified, proof) = match checked {
        Ok(checked) => checked,
        Err(r) => return Step::Deny(r),
    };
    let hash = TokenHash::of(&presented.token);
    if view.worker.signature_verified(&hash, now) {
        notes.push(Note::Count(Metric::JwtCacheHits));
        return finish(accept_verified(settings, unverified.claims), None, proof);
    }
    if view.worker.signature_failed(&hash, now) {
        return Step::Deny(Rejection::BadSignature);
    }
    let exp = unverified.claims.time("exp").ok().flatten().unwrap_or(now);
    let remote = view.keys.keys();
    let sets: Vec<&KeySet> = std::iter::once(&keys.inline).chain(remote).collect();
    let rules = jwt_rules(settings, bearer, keys);
    let signature = verify(&rules, &presented.token, unverified, &sets, now);
    if !matches!(
        signature,
        Signature::NoKey | Signature::Invalid(Rejection::KeyNotIdentified)
    ) {
        notes.push(Note::Count(Metric::SignatureChecks));
    }
    match signature {
        Signature::Valid(claims) => {
            notes.push(Note::Verified {
                hash,
                now,
                until: exp.saturating_add(settings.leeway),
            });
            finish(accept_verified(settings, claims), None, proof)
        }
        Signature::Invalid(r) => {
            if r == Rejection::BadSignature {
                notes.push(Note::SignatureFailed { hash, now });
            }
            Step::Deny(r)
        }
        Signature::NoKey => match (&keys.endpoint, phase) {
            (None, _) => Step::Deny(Rejection::UnknownKey),
            (Some(_), Phase::KeysFetched) => Step::Deny(if remote.is_some() {
                Rejection::UnknownKey
            } else {
                Rejection::KeysUnavailable
            }),
            (Some(_), Phase::First) => {
                match view.keys.on_missing_key(now, keys.rediscovery_lifetime) {
                    Refetch::Wait | Refetch::Fetch => Step::NeedKeys(Pending {
                        answer: None,
                        proof,
                    }),
                    Refetch::UnknownKey => Step::Deny(Rejection::UnknownKey),
                    Refetch::Unavailable => Step::Deny(Rejection::KeysUnavailable),
                }
            }
        },
    }
}

/// The outcome of looking for a key and checking the signature.
enum Signature {
    Valid(Claims),
    Invalid(Rejection),
    /// No key with this `kid` and algorithm in any key set we hold.
    NoKey,
}

/// One signature check per token: with a `kid`, against the first key of that name and
/// algorithm (inline keys first, then the fetched ones); without one, only when exactly one
/// key fits, or a forger could make every key of the algorithm be tried. A key that verifies
/// but fails jwt-simple's re-check of time or audience on the verified payload gives that
/// rejection.
fn verify(
    rules: &JwtRules<'_>,
    token: &str,
    unverified: UnverifiedJwt,
    keysets: &[&KeySet],
    now: u64,
) -> Signature {
    let kid = unverified.header.kid.as_deref();
    let mut candidates = keysets
        .iter()
        .flat_map(|set| set.candidates(kid, unverified.alg));
    let Some(key) = candidates.next() else {
        return Signature::NoKey;
    };
    if kid.is_none() && candidates.next().is_some() {
        return Signature::Invalid(Rejection::KeyNotIdentified);
    }
    match jwt::verify_signature(token, key, rules, now) {
        Ok(()) => Signature::Valid(unverified.claims),
        Err(r) => Signature::Invalid(r),
    }
}

/// The last check on a token whose signature is known good (now, or from the cache of
/// verified tokens): the required scopes.
fn accept_verified(settings: &Settings, claims: Claims) -> Result<Claims, Rejection> {
    policy::check_scopes(&claims, &settings.scopes_required).map(|()| claims)
}

fn check_opaque(
    presented: &Presented,
    intro: &IntrospectionSettings,
    view: &View<'_>,
    notes: &mut Vec<Note>,
) -> Step {
    let settings = view.settings();
    // What strict modes refuse whatever the token says: refuse before asking the IdP.
    if settings.pop == PopMode::Strict && presented.certificate.is_none() {
        return Step::Deny(Rejection::CertificateRequired);
    }
    if settings.dpop.mode == PopMode::Strict && presented.scheme != Scheme::Dpop {
        return Step::Deny(Rejection::DpopRequired);
    }
    // The proof is checked in full before the token is looked up: its `cnf.jkt` is compared
    // with the proof's key once the answer is in.
    let proof = match read_proof(presented, view)
        .and_then(|p| p.map(|p| prove(&p, view, notes)).transpose())
    {
        Ok(proof) => proof,
        Err(r) => return Step::Deny(r),
    };
    if intro.cache_ttl > 0 {
        let hash = TokenHash::of(&presented.token);
        if let Some((answer, jwt)) = view.worker.cached_answer(view.store, &hash, view.now) {
            notes.push(Note::Count(Metric::IntrospectionCacheHits));
            return finish(
                check_introspected(settings, &answer, presented, proof.as_ref(), view.now),
                jwt,
                proof,
            );
        }
    }
    Step::Introspect(
        introspection::request(intro, &presented.token, settings.http_timeout),
        proof,
    )
}

/// The checks on an introspection answer, with the current request's certificate and DPoP
/// proof: a cached answer is re-checked on every request, so a token replayed from another
/// connection or without its key fails here even on a cache hit.
fn check_introspected(
    settings: &Settings,
    answer: &Answer,
    presented: &Presented,
    proof: Option<&ProofUse>,
    now: u64,
) -> Result<Claims, Rejection> {
    let claims = match answer {
        Answer::Inactive => return Err(Rejection::Inactive),
        Answer::Active(claims) => claims,
    };
    // The hint says access_token, but an IdP may still find and describe a refresh token.
    if claims
        .str("token_type")
        .is_some_and(|t| t.to_ascii_lowercase().contains("refresh_token"))
    {
        return Err(Rejection::NotAnAccessToken);
    }
    if let Some(issuer) = settings
        .introspection
        .as_ref()
        .and_then(|i| i.issuer.as_deref())
    {
        policy::check_issuer(claims, issuer, false)?;
    }
    policy::check_lifetime(claims, now, settings.leeway, false, Rejection::Inactive)?;
    policy::check_audience(claims, &settings.audience_required)?;
    let jkt = proof.map(|p| p.jkt.as_str());
    binding::check(
        settings.pop,
        settings.dpop.mode,
        claims,
        &possession(presented, jkt),
    )?;
    policy::check_scopes(claims, &settings.scopes_required)?;
    Ok(claims.clone())
}
