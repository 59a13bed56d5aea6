//! The decision for one request, as a value: given what the request presented and a
//! read-only view of the worker (settings, keys, caches, time), the next step. The checks run
//! cheapest first: everything on the unverified token (algorithm, `typ`, `iss`, lifetime,
//! audience, the binding to what the client presented) before any key lookup, IdP call or
//! signature check; a token this worker has seen before costs none of the decoding (its facts
//! are known, `flow/known.rs`). A DPoP proof is compared with the request and the token's
//! `cnf.jkt`, and looked up among the proofs already used, before any signature; a JWT's own
//! signature comes before the proof's, so a forged token never buys a proof check. Nothing
//! here touches the host; `request` applies the step.

use std::rc::Rc;

use crate::binding::chain::plausible_intermediates;
use crate::binding::dpop::{self, Proof};
use crate::binding::{self, PopMode, Possession};
use crate::config::{
    BearerSettings, CertSource, IntrospectionSettings, KeySettings, Settings, SignedIntrospection,
};
use crate::endpoint::{CallOutcome, OutboundRequest};
use crate::flow::cache::{Store, TokenHash};
use crate::flow::extract::{ForwardedChain, Presented};
use crate::flow::keys::{KeyFetcher, Refetch};
use crate::flow::known::{Known, Signature};
use crate::flow::replay::ProofId;
use crate::flow::worker::Worker;
use crate::reply::metrics::Metric;
use crate::reply::rejection::{Rejection, Scheme};
use crate::tokens::claims::Confirmation;
use crate::tokens::facts::{Facts, Identity};
use crate::tokens::introspection::{self, Answer};
use crate::tokens::jwks::{Alg, KeyPrint, KeySet, VerifyKey};
use crate::tokens::jwt::{self, JwtRules};

/// What an allowed request goes upstream with.
#[derive(Debug)]
pub struct Verdict {
    /// The identity header values, in `Settings::upstream_headers` order.
    pub identity: Identity,
    /// The signed introspection response (RFC 9701) the claims came in, to forward.
    pub signed_introspection: Option<Rc<str>>,
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
    /// What the worker now knows about the request's token (facts read, a signature checked,
    /// an answer cached).
    Learned(Rc<Known>),
    /// The token's signature verified with the key `print` names: shared with the other
    /// workers (shared data) until `until`, so a token costs one verification per gateway.
    Verified {
        hash: TokenHash,
        print: KeyPrint,
        now: u64,
        until: u64,
    },
    /// An introspection answer to cache in the store from `now` until `until`; an inactive
    /// one never evicts a live entry of another token.
    Answer {
        hash: TokenHash,
        now: u64,
        until: u64,
        payload: Vec<u8>,
        inactive: bool,
    },
    Info(String),
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
/// introspection enabled every token, JWT or not, is introspected. A token seen before goes
/// where it went then (the same configuration routes it the same way).
fn route<'a>(
    settings: &'a Settings,
    token: &str,
    known: Option<&Known>,
) -> Result<Route<'a>, Rejection> {
    let looks_like_jwt = || match known {
        Some(Known::Jwt { .. }) => true,
        Some(Known::Answer { .. }) => false,
        None => jwt::header_of(token).is_some(),
    };
    match (&settings.bearer, &settings.keys, &settings.introspection) {
        (Some(bearer), Some(keys), _) if looks_like_jwt() => Ok(Route::Jwt(bearer, keys)),
        // What starts as a JOSE object but is neither a JWS we can read nor a JWE (which only
        // the IdP can open) is no access token at all: refused without an IdP call.
        (_, _, Some(_)) if known.is_none() && jwt::is_broken_jose(token) => {
            Err(Rejection::MalformedJwt)
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
    let known = view.worker.known(&presented.token);
    let step = match route(view.settings(), &presented.token, known.as_deref()) {
        Err(r) => Step::Deny(r),
        Ok(Route::Jwt(bearer, keys)) => {
            let request = JwtRequest {
                presented,
                proven,
                bearer,
                keys,
                known,
            };
            check_jwt(&request, view, phase, &mut notes).unwrap_or_else(Step::Deny)
        }
        Ok(Route::Introspect(intro)) => {
            check_opaque(presented, intro, known, view, &mut notes).unwrap_or_else(Step::Deny)
        }
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
    let signed: Option<Rc<str>> = jwt.map(Rc::from);
    let facts = answer_facts(settings, &answer);
    let kept = introspection::cacheable(&answer, &settings.upstream_headers);
    if let Some(until) = introspection::cache_until(&kept, view.now, intro.cache_ttl) {
        notes.push(Note::Answer {
            hash: TokenHash::of(&presented.token),
            now: view.now,
            until,
            payload: introspection::encode(&kept, signed.as_deref()),
            // Random tokens (all inactive) must not flush the answers of real clients.
            inactive: kept == Answer::Inactive,
        });
        notes.push(Note::Learned(Rc::new(Known::Answer {
            facts: facts.clone(),
            until,
            signed: signed.clone(),
        })));
    }
    let step = answer_verdict(
        view,
        facts.as_ref(),
        presented,
        proof.map(|p| p.jkt.as_str()),
        &mut notes,
    )
    .map(|identity| allow(identity, signed, proof.cloned()))
    .unwrap_or_else(Step::Deny);
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
    let key = match choose_key(&sets, header.kid.as_deref(), alg) {
        KeyChoice::Key(key, _) => key,
        KeyChoice::NotIdentified => {
            return Signed::Failed(Failure::BadSignature("no kid, and several keys fit"));
        }
        KeyChoice::NoKey => {
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
        }
    };
    match jwt::verify_signature(&jwt_text, key, &rules, view.now) {
        Ok(()) => match introspection::signed_answer(&jwt_text) {
            Ok(answer) => Signed::Answer(answer, jwt_text),
            Err(f) => Signed::Failed(f),
        },
        Err(r) => Signed::Failed(Failure::BadSignature(r.reason())),
    }
}

fn allow(identity: Identity, signed: Option<Rc<str>>, proof: Option<ProofUse>) -> Step {
    Step::Allow(Verdict {
        identity,
        signed_introspection: signed,
        proof,
    })
}

fn read_proof(presented: &Presented, view: &View<'_>) -> Result<Option<Proof>, Rejection> {
    let Some(request) = &presented.dpop else {
        return Ok(None);
    };
    let settings = view.settings();
    let d = &settings.dpop;
    let proof = Proof::parse(&request.proof, &d.algorithms)?;
    let nonce_key = view.worker.nonce_key(view.store, view.now)?;
    proof.check_claims(
        &request.target,
        &presented.token,
        view.now,
        d.lifetime,
        settings.leeway,
        nonce_key.as_deref(),
    )?;
    Ok(Some(proof))
}

/// The cheap part of a proof's last checks: not used before.
fn unused(proof: &Proof, view: &View<'_>, notes: &mut Vec<Note>) -> Result<ProofId, Rejection> {
    let id = ProofId::of(&proof.jkt, proof.jti().unwrap_or_default());
    match view.worker.proof_seen(view.store, &id, view.now) {
        Ok(false) => Ok(id),
        Ok(true) => Err(Rejection::DpopReplay),
        Err(e) => {
            notes.push(Note::Warn(format!("DPoP replay cache unreadable: {e}")));
            Err(Rejection::HostFailure)
        }
    }
}

/// The proof's signature, last: it is then ready to be recorded as used.
fn verify_proof(
    proof: &Proof,
    id: ProofId,
    view: &View<'_>,
    notes: &mut Vec<Note>,
) -> Result<ProofUse, Rejection> {
    let settings = view.settings();
    let now = view.now;
    notes.push(Note::Count(Metric::DpopProofChecks));
    proof.verify()?;
    // Live while its `iat` passes; a nonce (two steps) may shorten that.
    let mut until = proof
        .iat()
        .unwrap_or(now)
        .saturating_add(settings.dpop.lifetime)
        .saturating_add(settings.leeway)
        .saturating_add(1);
    if settings.dpop.nonce.is_some() {
        until = until.min(now.saturating_add(2 * dpop::NONCE_STEP + settings.leeway));
    }
    Ok(ProofUse {
        id,
        now,
        until,
        jkt: proof.jkt.clone(),
    })
}

/// A certificate from a header binds a token only with a path to a configured CA. Checked
/// here, once the token's `cnf` names that very certificate, so a chain sent with any other
/// token costs nothing; the worker remembers the verdict by leaf and chain.
fn check_forwarded(
    view: &View<'_>,
    presented: &Presented,
    cnf: &Confirmation,
    notes: &mut Vec<Note>,
) -> Result<(), Rejection> {
    let (Some(forwarded), Some(_)) = (&presented.forwarded, &cnf.x5t_s256) else {
        return Ok(());
    };
    forwarded_path(view, forwarded, notes)
}

/// The path of a certificate from a header to a configured CA, remembered by the worker.
fn forwarded_path(
    view: &View<'_>,
    forwarded: &ForwardedChain,
    notes: &mut Vec<Note>,
) -> Result<(), Rejection> {
    let CertSource::Header { name, trust, .. } = &view.settings().cert_source else {
        return Err(Rejection::CertificateNotTrusted);
    };
    let (leaf, now) = (&forwarded.leaf, view.now);
    let offered = plausible_intermediates(leaf, &forwarded.chain);
    view.worker
        .certificates
        .chain_verdict(leaf, &offered, now, || {
            trust.verify_offered(leaf, &offered, now)
        })
        .map_err(|e| {
            notes.push(Note::Info(format!("{name} refused: {e}")));
            Rejection::CertificateNotTrusted
        })
}

/// The signature of a proof already read and found unused.
fn verify_read(
    read: Option<(Proof, ProofId)>,
    view: &View<'_>,
    notes: &mut Vec<Note>,
) -> Result<Option<ProofUse>, Rejection> {
    read.map(|(p, id)| verify_proof(&p, id, view, notes))
        .transpose()
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

/// A request with a JWT, and what the worker knows of that token.
struct JwtRequest<'a> {
    presented: &'a Presented,
    proven: Option<&'a ProofUse>,
    bearer: &'a BearerSettings,
    keys: &'a KeySettings,
    known: Option<Rc<Known>>,
}

/// What a JWT says that holds whatever the time or the request: its header and the checks on
/// its claims that do not depend on them (`iss`, `aud`), read out into facts.
fn read_jwt(request: &JwtRequest<'_>, settings: &Settings) -> Result<Rc<Known>, Rejection> {
    let rules = jwt_rules(settings, request.bearer, request.keys);
    let unverified = jwt::inspect(&request.presented.token, &rules)?;
    let facts = Facts::of(
        &unverified.claims,
        &settings.scopes_required,
        &settings.upstream_headers,
        Rejection::MalformedJwt,
    )?;
    Ok(Rc::new(Known::Jwt {
        facts,
        alg: unverified.alg,
        kid: unverified.header.kid,
        signature: Signature::Unchecked,
    }))
}

fn check_jwt(
    request: &JwtRequest<'_>,
    view: &View<'_>,
    phase: Phase,
    notes: &mut Vec<Note>,
) -> Result<Step, Rejection> {
    let settings = view.settings();
    let now = view.now;
    let presented = request.presented;
    let proof = match request.proven {
        Some(_) => None,
        None => read_proof(presented, view)?,
    };
    // What the token says: known from an earlier request, or read now (and remembered, so a
    // stolen or forged token sent again costs a lookup).
    let entry = match &request.known {
        Some(known) if matches!(**known, Known::Jwt { .. }) => Rc::clone(known),
        _ => {
            let read = read_jwt(request, settings)?;
            notes.push(Note::Learned(Rc::clone(&read)));
            read
        }
    };
    let Known::Jwt {
        facts,
        alg,
        kid,
        signature,
    } = &*entry
    else {
        return Err(Rejection::MalformedJwt);
    };
    // Every check that needs no key: the time, then the binding (a DPoP proof's key is known
    // without its signature) and the proofs already used.
    facts.lifetime.check(now, settings.leeway, true)?;
    let jkt = request
        .proven
        .map(|p| p.jkt.as_str())
        .or(proof.as_ref().map(|p| p.jkt.as_str()));
    binding::check(
        settings.pop,
        settings.dpop.mode,
        &facts.cnf,
        &possession(presented, jkt),
    )?;
    let proof_id = proof.as_ref().map(|p| unused(p, view, notes)).transpose()?;
    // The token's signature: known, or checked now with one key.
    match signature {
        Signature::Verified => notes.push(Note::Count(Metric::JwtCacheHits)),
        s if Known::signature_failed_recently(*s, now) => return Err(Rejection::BadSignature),
        _ => {
            let keys = request.keys;
            let remote = view.keys.keys();
            let sets: Vec<&KeySet> = std::iter::once(&keys.inline).chain(remote).collect();
            let learned = |signature| {
                Note::Learned(Rc::new(Known::Jwt {
                    facts: facts.clone(),
                    alg: *alg,
                    kid: kid.clone(),
                    signature,
                }))
            };
            match choose_key(&sets, kid.as_deref(), *alg) {
                KeyChoice::Key(key, print) => {
                    let exp = facts.lifetime.exp.unwrap_or(now);
                    let rules = jwt_rules(settings, request.bearer, keys);
                    check_signature(&presented.token, (key, print), &rules, exp, view, notes)
                        .inspect_err(|r| {
                            if *r == Rejection::BadSignature {
                                notes.push(learned(Signature::Failed(now)));
                            }
                        })?;
                    notes.push(learned(Signature::Verified));
                }
                KeyChoice::NotIdentified => return Err(Rejection::KeyNotIdentified),
                KeyChoice::NoKey => {
                    return match (&keys.endpoint, phase) {
                        (None, _) => Err(Rejection::UnknownKey),
                        (Some(_), Phase::KeysFetched) => Err(if remote.is_some() {
                            Rejection::UnknownKey
                        } else {
                            Rejection::KeysUnavailable
                        }),
                        (Some(_), Phase::First) => {
                            match view.keys.on_missing_key(now, keys.rediscovery_lifetime) {
                                // The proof is read again after the keys: not checked yet.
                                Refetch::Wait | Refetch::Fetch => Ok(Step::NeedKeys(Pending {
                                    answer: None,
                                    proof: request.proven.cloned(),
                                })),
                                Refetch::UnknownKey => Err(Rejection::UnknownKey),
                                Refetch::Unavailable => Err(Rejection::KeysUnavailable),
                            }
                        }
                    };
                }
            }
        }
    }
    // A certificate from a header: its path, once the token is the IdP's (a forged token is
    // refused by its signature, remembered a minute, before any chain is built).
    check_forwarded(view, presented, &facts.cnf, notes)?;
    // Then the proof's signature, and the scopes.
    let proof_use = match (proof, proof_id) {
        (Some(p), Some(id)) => Some(verify_proof(&p, id, view, notes)?),
        _ => request.proven.cloned(),
    };
    facts.check_scopes()?;
    Ok(allow(facts.identity.clone(), None, proof_use))
}

/// The key a token's signature is checked with.
enum KeyChoice<'k> {
    Key(&'k VerifyKey, KeyPrint),
    /// No `kid`, and more than one key of its algorithm.
    NotIdentified,
    /// No key with this `kid` and algorithm in any key set we hold.
    NoKey,
}

/// One key per token: with a `kid`, the first key of that name and algorithm (inline keys
/// first, then the fetched ones); without one, only when exactly one key fits, or a forger
/// could make every key of the algorithm be tried.
fn choose_key<'k>(keysets: &[&'k KeySet], kid: Option<&'k str>, alg: Alg) -> KeyChoice<'k> {
    let mut candidates = keysets
        .iter()
        .flat_map(|set| set.candidates_with_print(kid, alg));
    match (candidates.next(), kid) {
        (None, _) => KeyChoice::NoKey,
        (Some(_), None) if candidates.next().is_some() => KeyChoice::NotIdentified,
        (Some((key, print)), _) => KeyChoice::Key(key, print),
    }
}

/// The signature, with that key: verified by another worker with the same key (shared data),
/// or checked here and shared. A key that verifies but fails jwt-simple's re-check of time or
/// audience on the verified payload gives that rejection.
fn check_signature(
    token: &str,
    (key, print): (&VerifyKey, KeyPrint),
    rules: &JwtRules<'_>,
    exp: u64,
    view: &View<'_>,
    notes: &mut Vec<Note>,
) -> Result<(), Rejection> {
    let now = view.now;
    let hash = view.worker.shares_verdicts().then(|| TokenHash::of(token));
    if let Some(hash) = &hash
        && view
            .worker
            .verified_elsewhere(view.store, hash, &print, now)
    {
        notes.push(Note::Count(Metric::JwtSharedHits));
        return Ok(());
    }
    notes.push(Note::Count(Metric::SignatureChecks));
    jwt::verify_signature(token, key, rules, now)?;
    if let Some(hash) = hash {
        notes.push(Note::Verified {
            hash,
            print,
            now,
            until: exp.saturating_add(rules.leeway),
        });
    }
    Ok(())
}

/// What an introspection answer says that holds whatever the time or the request: active, an
/// access token, the issuer and audience; then its facts.
fn answer_facts(settings: &Settings, answer: &Answer) -> Result<Facts, Rejection> {
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
        crate::tokens::policy::check_issuer(claims, issuer, false)?;
    }
    crate::tokens::policy::check_audience(claims, &settings.audience_required)?;
    Facts::of(
        claims,
        &settings.scopes_required,
        &settings.upstream_headers,
        Rejection::Inactive,
    )
}

/// The checks on an introspection answer for this request, with its certificate and DPoP
/// proof: a cached answer is re-checked on every request, so a token replayed from another
/// connection or without its key fails here even on a cache hit.
fn answer_verdict(
    view: &View<'_>,
    facts: Result<&Facts, &Rejection>,
    presented: &Presented,
    proof_jkt: Option<&str>,
    notes: &mut Vec<Note>,
) -> Result<Identity, Rejection> {
    let settings = view.settings();
    let facts = facts.map_err(|r| *r)?;
    facts.lifetime.check(view.now, settings.leeway, false)?;
    binding::check(
        settings.pop,
        settings.dpop.mode,
        &facts.cnf,
        &possession(presented, proof_jkt),
    )?;
    check_forwarded(view, presented, &facts.cnf, notes)?;
    facts.check_scopes()?;
    Ok(facts.identity.clone())
}

fn check_opaque(
    presented: &Presented,
    intro: &IntrospectionSettings,
    known: Option<Rc<Known>>,
    view: &View<'_>,
    notes: &mut Vec<Note>,
) -> Result<Step, Rejection> {
    let settings = view.settings();
    let now = view.now;
    // What strict modes refuse whatever the token says: refuse before asking the IdP.
    if settings.pop == PopMode::Strict && presented.certificate.is_none() {
        return Err(Rejection::CertificateRequired);
    }
    // In strict mode every token needs the certificate: one from a header that has no path to
    // a configured CA is refused before the IdP is asked.
    if let (PopMode::Strict, Some(forwarded)) = (settings.pop, &presented.forwarded) {
        forwarded_path(view, forwarded, notes)?;
    }
    if settings.dpop.mode == PopMode::Strict && presented.scheme != Scheme::Dpop {
        return Err(Rejection::DpopRequired);
    }
    // The proof's cheap checks and its use first; its signature only once the token could let
    // the request through: on a cache hit after the answer's `cnf.jkt` is the proof's key (a
    // thief's own proof with a stolen token costs no signature check), else before the IdP
    // is asked (a bad proof never costs an IdP call).
    let read = match read_proof(presented, view)? {
        Some(p) => {
            let id = unused(&p, view, notes)?;
            Some((p, id))
        }
        None => None,
    };
    let read_jkt = read.as_ref().map(|(p, _)| p.jkt.as_str());
    if intro.cache_ttl > 0 {
        // This worker's copy of the answer, then the shared one.
        if let Some(Known::Answer {
            facts,
            until,
            signed,
        }) = known.as_deref()
            && now < *until
        {
            notes.push(Note::Count(Metric::IntrospectionCacheHits));
            let identity = answer_verdict(view, facts.as_ref(), presented, read_jkt, notes)?;
            let proof = verify_read(read, view, notes)?;
            return Ok(allow(identity, signed.clone(), proof));
        }
        let hash = TokenHash::of(&presented.token);
        if let Some((answer, jwt, until)) = view.worker.cached_answer(view.store, &hash, now) {
            notes.push(Note::Count(Metric::IntrospectionCacheHits));
            let facts = answer_facts(settings, &answer);
            let signed: Option<Rc<str>> = jwt.map(Rc::from);
            notes.push(Note::Learned(Rc::new(Known::Answer {
                facts: facts.clone(),
                until,
                signed: signed.clone(),
            })));
            let identity = answer_verdict(view, facts.as_ref(), presented, read_jkt, notes)?;
            let proof = verify_read(read, view, notes)?;
            return Ok(allow(identity, signed, proof));
        }
    }
    let proof = verify_read(read, view, notes)?;
    Ok(Step::Introspect(
        introspection::request(intro, &presented.token, settings.http_timeout),
        proof,
    ))
}
