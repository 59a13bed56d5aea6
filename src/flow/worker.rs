//! Per-VM state shared by the root context and every request of that worker: the
//! configuration, the remote keys and every fetch of them, the caches, the engine we run on,
//! and the requests waiting for keys.
//!
//! The worker owns every JWKS fetch and its bookkeeping (`keys`): one at a time, whose
//! cool-down starts when it completes. On Envoy the root context dispatches it (on its tick,
//! which a request needing a key shortens), so a client that resets its stream can never
//! cancel a fetch nor leave it counted as in flight; waiting requests are resumed by the root
//! context acting as each of them. Kong's engine has no such acting (docs/hosts.md), but there
//! a request's call outlives the client, so the request that needs the key fetches it.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::{Rc, Weak};
use std::time::Duration;

use crate::config::{CertSource, NonceSecret, Settings};
use crate::endpoint::{CallOutcome, OutboundRequest};
use crate::flow::cache::{LocalStore, SlotCache, Store, TokenHash};
use crate::flow::decider::ProofUse;
use crate::flow::keys::{KeyFetcher, Refetch};
use crate::flow::known::{Known, KnownCertificates, KnownTokens};
use crate::flow::replay::{Claim, ProofId, ProofLedger};
use crate::flow::request::RequestCore;
use crate::host::{self, Engine, Host, HostError, LogLevel, SharedStore};
use crate::reply::metrics::Metric;
use crate::reply::rejection::{Rejection, Scheme};
use crate::reply::response::{self, LocalResponse};
use crate::tokens::introspection::{self, Answer};
use crate::tokens::jwks::{KeyPrint, KeySet, MAX_JWKS_BYTES};

/// Requests that may wait for one JWKS fetch; more get a 503 at once.
pub const MAX_WAITING: usize = 1024;

/// Introspection calls one worker may have in flight; more requests needing one get a 503.
/// Random opaque tokens (or many clients at once) cost the IdP at most this much at a time.
pub const MAX_INTROSPECTIONS: usize = 128;
/// Of those, what requests from one client address may hold at once: half, so one client
/// cannot take every place, while a busy client (the soak runs 50 connections) is not refused.
pub const MAX_INTROSPECTIONS_PER_PEER: usize = 64;

/// A request waiting for keys. Weak: a request that ends stops waiting by itself.
struct Waiter {
    context_id: u32,
    request: Weak<RequestCore>,
}

pub struct Worker {
    pub settings: Settings,
    /// The root context's id: fetches are dispatched as the root.
    root_context: Cell<Option<u32>>,
    pub(crate) keys: RefCell<KeyFetcher>,
    waiting: RefCell<Vec<Waiter>>,
    /// Introspection answers and DPoP proofs when `shared_cache` is off.
    local_shared: LocalStore,
    answer_slots: Option<SlotCache>,
    /// The DPoP proofs accepted, while they are live.
    proofs: ProofLedger,
    /// JWTs whose signature a worker verified, by token hash, naming the key (shared data
    /// only: per worker, `known` is enough).
    verified_slots: Option<SlotCache>,
    /// The tokens this worker has seen (facts, signatures checked, answers): a client reuses
    /// its token for its whole lifetime, and a signature check in wasm costs about a
    /// millisecond. Emptied when the JWKS is refreshed, so a key the IdP withdraws stops
    /// counting within one refresh interval.
    known: KnownTokens,
    /// Client certificates this worker has hashed (Kong hands over the PEM on every request).
    pub(crate) certificates: KnownCertificates,
    engine: Cell<Option<Engine>>,
    /// A request shortened the root's tick period to have a fetch started at once.
    nudged: Cell<bool>,
    /// Introspection calls this worker's requests have in flight.
    introspections: Cell<usize>,
    /// The same, by the requests' client address (`request::share_of`).
    introspections_by_peer: RefCell<HashMap<IpAddr, usize>>,
    /// Local replies, made on first use: they depend on the rejection and scheme only.
    replies: RefCell<HashMap<ReplyKey, Rc<LocalResponse>>>,
    /// The key DPoP nonces are a MAC under, and when it was last read from the store (a
    /// generated one is re-read now and then: workers that made one at once converge).
    nonce_key: RefCell<Option<(Rc<[u8]>, u64)>>,
}

/// Where a generated DPoP nonce secret is kept for every worker (shared data), and how often a
/// worker re-reads it.
const NONCE_SECRET_KEY: &str = "certbound.dpop.nonce-secret";
const NONCE_SECRET_MAGIC: &[u8] = b"cbn1";
const NONCE_SECRET_RECHECK: u64 = 60;

impl Worker {
    pub fn new(settings: Settings) -> Worker {
        let answer_slots = settings.introspection.as_ref().map(|i| {
            // Everything that could make another configuration's answer wrong here: the IdP
            // endpoint (tenants share hosts), the client, the issuer, the claims kept, and
            // whether answers must be signed (an unsigned answer cached by a route that takes
            // them must never satisfy one that requires a signed one).
            let scope = format!(
                "{}://{}{}|{}|{}|{:?}|{:?}|signed={:?}",
                i.endpoint.scheme,
                i.endpoint.authority,
                i.endpoint.path,
                i.endpoint.upstream,
                i.client_id,
                i.issuer,
                settings.upstream_headers,
                i.signed.as_ref().map(|s| s.issuer.as_str())
            );
            SlotCache::new(&scope, settings.cache_max_entries)
        });
        let proofs = ProofLedger::new(settings.dpop.replay_entries);
        let known = KnownTokens::new(settings.cache_max_entries);
        let verified_slots = (settings.shared_cache && settings.bearer.is_some()).then(|| {
            let issuer = settings.bearer.as_ref().map_or("", |b| b.issuer.as_str());
            SlotCache::new(
                &format!("verified-jwt|{issuer}"),
                settings.cache_max_entries,
            )
        });
        Worker {
            settings,
            root_context: Cell::new(None),
            keys: RefCell::new(KeyFetcher::default()),
            waiting: RefCell::new(Vec::new()),
            local_shared: LocalStore::default(),
            answer_slots,
            proofs,
            verified_slots,
            known,
            certificates: KnownCertificates::default(),
            engine: Cell::new(None),
            nudged: Cell::new(false),
            introspections: Cell::new(0),
            introspections_by_peer: RefCell::new(HashMap::new()),
            replies: RefCell::new(HashMap::new()),
            nonce_key: RefCell::new(None),
        }
    }

    /// The key DPoP nonces are made under, when nonces are on: `dpop_nonce_secret`, or without
    /// one a random secret made by the first worker that needs it and kept in `store` for the
    /// others (written only where absent; re-read every `NONCE_SECRET_RECHECK` s, so workers
    /// that made one at the same moment end with the one that stayed). `Err`: no secret can be
    /// had (no random source): nonces cannot be checked, so the request is refused.
    pub(crate) fn nonce_key(
        &self,
        store: &dyn Store,
        now: u64,
    ) -> Result<Option<Rc<[u8]>>, Rejection> {
        match &self.settings.dpop.nonce {
            None => return Ok(None),
            Some(NonceSecret::Configured(key)) => {
                let mut held = self.nonce_key.borrow_mut();
                let (k, _) = held.get_or_insert_with(|| (Rc::from(key.as_slice()), u64::MAX));
                return Ok(Some(Rc::clone(k)));
            }
            Some(NonceSecret::Generated) => {}
        }
        if let Some((k, read)) = &*self.nonce_key.borrow()
            && now.saturating_sub(*read) < NONCE_SECRET_RECHECK
        {
            return Ok(Some(Rc::clone(k)));
        }
        let stored = |bytes: Vec<u8>| -> Option<Rc<[u8]>> {
            let key = bytes.strip_prefix(NONCE_SECRET_MAGIC)?;
            (key.len() == 32).then(|| Rc::from(key))
        };
        let held = self.nonce_key.borrow().as_ref().map(|(k, _)| Rc::clone(k));
        let key = match store.load(NONCE_SECRET_KEY).and_then(stored) {
            Some(k) => k,
            None => {
                // Nothing stored (or the store cannot be read): the secret this worker holds,
                // made only when it holds none, so nonces stay good while the store is away.
                let mine = match held {
                    Some(k) => k,
                    None => {
                        let mut fresh = [0u8; 32];
                        getrandom::fill(&mut fresh).map_err(|_| Rejection::HostFailure)?;
                        Rc::from(&fresh[..])
                    }
                };
                let value = [NONCE_SECRET_MAGIC, &mine].concat();
                // Kong's engine writes it only where absent; on Envoy a worker that wrote at
                // the same moment may win: each re-reads and keeps what stayed.
                let _ = store.save_versioned(NONCE_SECRET_KEY, &value, None);
                store
                    .load(NONCE_SECRET_KEY)
                    .and_then(stored)
                    .unwrap_or(mine)
            }
        };
        *self.nonce_key.borrow_mut() = Some((Rc::clone(&key), now));
        Ok(Some(key))
    }

    /// The root context this worker's fetches are dispatched from.
    pub fn set_root_context(&self, context_id: u32) {
        self.root_context.set(Some(context_id));
    }

    /// What to log once at configure time, and at which level; no secrets.
    pub fn startup_log(&self) -> Vec<(LogLevel, String)> {
        let mut lines = vec![(LogLevel::Info, format!("configured: {}", self.describe()))];
        if self.settings.audience_required.is_empty() {
            lines.push((
                LogLevel::Warn,
                "audience_required is empty: tokens for any audience of the IdP are accepted \
                 (RFC 9068 section 4 asks resource servers to check aud)"
                    .to_string(),
            ));
        }
        if !self.settings.shared_cache && self.settings.introspection.is_some() {
            lines.push((
                LogLevel::Info,
                "shared_cache is off: introspection results are cached per worker".to_string(),
            ));
        }
        lines.extend(
            self.settings
                .warnings
                .iter()
                .map(|w| (LogLevel::Warn, w.clone())),
        );
        lines
    }

    /// A one-line summary for the configure log; no secrets (and no URL query strings).
    fn describe(&self) -> String {
        let s = &self.settings;
        let mut parts = vec![format!("proof_of_possession_mtls={:?}", s.pop).to_lowercase()];
        if let Some(b) = &s.bearer {
            parts.push(format!("bearer(issuer={})", b.issuer));
        }
        if let Some(k) = &s.keys {
            parts.push(format!(
                "keys(inline={}, jwks_endpoint={})",
                k.inline.len(),
                k.endpoint
                    .as_ref()
                    .map_or("none".to_string(), ToString::to_string)
            ));
        }
        if let Some(i) = &s.introspection {
            parts.push(format!(
                "introspection(endpoint={}, cache={}s, {})",
                i.endpoint,
                i.cache_ttl,
                if s.shared_cache {
                    "shared"
                } else {
                    "per worker"
                }
            ));
        }
        parts.push(match &s.cert_source {
            CertSource::Connection => "certificate from the connection".to_string(),
            CertSource::Header { name, format, .. } => {
                format!("certificate from header {name} ({format:?})")
            }
        });
        parts.join(", ")
    }

    /// Whether the root should tick: only a remote JWKS needs it.
    pub fn needs_tick(&self) -> Option<Duration> {
        self.settings
            .keys
            .as_ref()
            .and_then(|k| k.endpoint.as_ref())
            .map(|_| Duration::from_secs(1))
    }

    /// The engine, detected on the first request that can tell; a failed probe is not
    /// remembered.
    pub(crate) fn engine(&self, host: &impl Host) -> Result<Engine, HostError> {
        if let Some(e) = self.engine.get() {
            return Ok(e);
        }
        let e = host::detect_engine(host)?;
        self.engine.set(Some(e));
        Ok(e)
    }

    /// The engine if a request has told it already.
    pub(crate) fn known_engine(&self) -> Option<Engine> {
        self.engine.get()
    }

    /// Where introspection answers and DPoP proofs are kept: the host's shared data, or this
    /// worker's memory when `shared_cache` is off.
    pub(crate) fn store<'a, H: Host>(&'a self, host: &'a H) -> Box<dyn Store + 'a> {
        if self.settings.shared_cache {
            Box::new(SharedStore(host))
        } else {
            Box::new(&self.local_shared)
        }
    }

    /// Whether a live DPoP proof with this id was accepted already.
    pub(crate) fn proof_seen(
        &self,
        store: &dyn Store,
        id: &ProofId,
        now: u64,
    ) -> Result<bool, String> {
        self.proofs.seen(store, id, now)
    }

    /// Records the request's DPoP proof as used, the moment before the request goes on: a
    /// copy sent at the same time, on any worker sharing the cache, finds it recorded. On
    /// failure, the refusal.
    pub(crate) fn record_proof(
        &self,
        host: &impl Host,
        proof: Option<&ProofUse>,
    ) -> Result<(), Rejection> {
        let Some(proof) = proof else {
            return Ok(());
        };
        let store = self.store(host);
        match self.claim_proof(store.as_ref(), &proof.id, proof.now, proof.until) {
            Claim::Fresh => Ok(()),
            Claim::Replayed => Err(Rejection::DpopReplay),
            Claim::Full => {
                host.log(
                    LogLevel::Warn,
                    "the DPoP replay cache is full: raise dpop_replay_cache_entries",
                );
                Err(Rejection::DpopReplayCacheFull)
            }
            Claim::Unavailable(e) => {
                host.log(
                    LogLevel::Error,
                    &format!("the DPoP replay cache cannot be written: {e}"),
                );
                Err(Rejection::HostFailure)
            }
        }
    }

    /// Records a DPoP proof as used, unless it was already.
    pub(crate) fn claim_proof(
        &self,
        store: &dyn Store,
        id: &ProofId,
        now: u64,
        until: u64,
    ) -> Claim {
        self.proofs.claim(store, id, now, until)
    }

    /// The local reply for `rejection` to a request that used `scheme`.
    pub(crate) fn reply(&self, rejection: Rejection, scheme: Option<Scheme>) -> Rc<LocalResponse> {
        let key = (rejection, scheme);
        if let Some(reply) = self.replies.borrow().get(&key) {
            return Rc::clone(reply);
        }
        let reply = Rc::new(response::render(
            rejection,
            &self.settings.challenges(),
            scheme,
            None,
        ));
        self.replies.borrow_mut().insert(key, Rc::clone(&reply));
        reply
    }

    /// Whether verified JWT signatures are shared with the other workers.
    pub(crate) fn shares_verdicts(&self) -> bool {
        self.verified_slots.is_some()
    }

    /// Whether another worker verified this token's signature with the key `print` names.
    pub(crate) fn verified_elsewhere(
        &self,
        store: &dyn Store,
        hash: &TokenHash,
        print: &KeyPrint,
        now: u64,
    ) -> bool {
        self.verified_slots
            .as_ref()
            .and_then(|slots| slots.get(store, hash, now, u64::MAX))
            .is_some_and(|p| p == print)
    }

    pub(crate) fn share_verified(
        &self,
        store: &dyn Store,
        hash: &TokenHash,
        print: &KeyPrint,
        now: u64,
        until: u64,
    ) {
        if let Some(slots) = &self.verified_slots {
            slots.put(store, hash, now, until, print);
        }
    }

    /// What this worker knows about the token.
    pub(crate) fn known(&self, token: &str) -> Option<Rc<Known>> {
        self.known.get(token)
    }

    pub(crate) fn learn(&self, token: &str, known: Rc<Known>) {
        self.known.put(token, known);
    }

    /// Tokens known (for tests of the bounds).
    pub fn known_tokens(&self) -> usize {
        self.known.len()
    }

    /// A cached introspection answer for the token, if one is live and was written within
    /// this configuration's own `cache_introspection`, and until when it may be used.
    pub(crate) fn cached_answer(
        &self,
        store: &dyn Store,
        hash: &TokenHash,
        now: u64,
    ) -> Option<(Answer, Option<String>, u64)> {
        let ttl = self.settings.introspection.as_ref()?.cache_ttl;
        let (payload, until) = self
            .answer_slots
            .as_ref()?
            .get_until(store, hash, now, ttl)?;
        let (answer, jwt) = introspection::decode(&payload)?;
        Some((answer, jwt, until))
    }

    pub(crate) fn remember_answer(
        &self,
        store: &dyn Store,
        hash: &TokenHash,
        until: u64,
        payload: &[u8],
        inactive: bool,
        now: u64,
    ) {
        let Some(slots) = &self.answer_slots else {
            return;
        };
        if inactive {
            slots.put_if_free(store, hash, now, until, payload);
        } else {
            slots.put(store, hash, now, until, payload);
        }
    }

    /// Takes a place for an introspection call for a request from `peer`; `false` when the
    /// worker has too many in flight, or that peer its share (`MAX_INTROSPECTIONS_PER_PEER`):
    /// one client sending tokens nobody issued, each an IdP call, cannot take every place.
    /// `None`: a request without a share of its own (behind a trusted proxy, an address that
    /// cannot be read): only the worker's bound applies.
    pub(crate) fn introspection_started(&self, peer: Option<IpAddr>) -> bool {
        let n = self.introspections.get();
        if n >= MAX_INTROSPECTIONS {
            return false;
        }
        if let Some(peer) = peer {
            let mut by_peer = self.introspections_by_peer.borrow_mut();
            let mine = by_peer.entry(peer).or_insert(0);
            if *mine >= MAX_INTROSPECTIONS_PER_PEER {
                return false;
            }
            *mine += 1;
        }
        self.introspections.set(n + 1);
        true
    }

    /// Gives the place back: the answer came, or the request that waited for it ended.
    pub(crate) fn introspection_ended(&self, peer: Option<IpAddr>) {
        self.introspections
            .set(self.introspections.get().saturating_sub(1));
        let Some(peer) = peer else { return };
        let mut by_peer = self.introspections_by_peer.borrow_mut();
        if let Some(n) = by_peer.get_mut(&peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                by_peer.remove(&peer);
            }
        }
    }

    fn call_timeout_secs(&self) -> u64 {
        self.settings.http_timeout.as_millis().div_ceil(1000) as u64
    }

    // ---- the JWKS fetch, owned by the worker --------------------------------------------

    /// Starts a JWKS fetch from the current context: the root's own (Envoy and the tick),
    /// or, on Kong's engine, the request that needs the keys.
    fn start_fetch(&self, host: &impl Host, now: u64) -> Result<u32, String> {
        let endpoint = self
            .settings
            .keys
            .as_ref()
            .and_then(|k| k.endpoint.as_ref())
            .ok_or_else(|| "no jwks_endpoint".to_string())?;
        let request = OutboundRequest::new(endpoint, "GET", self.settings.http_timeout);
        let call = host
            .dispatch(&request)
            .map_err(|e| format!("dispatch to {endpoint} failed: {e}"))?;
        self.keys
            .borrow_mut()
            .started(call, now, self.call_timeout_secs());
        host.count(Metric::JwksFetches);
        Ok(call)
    }

    fn fetch_failed_to_start(&self, host: &impl Host, now: u64, why: &str) {
        host.log(
            LogLevel::Warn,
            &format!("JWKS fetch could not be started: {why}"),
        );
        host.count(Metric::JwksFetchFailures);
        self.fetch_done(host, now, None);
    }

    /// Called on every tick of the root context: starts the fetch a request asked for, the
    /// periodic refresh or a retry when due, and gives up on a fetch whose response never
    /// came.
    pub fn on_tick(&self, host: &impl Host) {
        let Some(keys) = &self.settings.keys else {
            return;
        };
        if self.nudged.replace(false) {
            // Back to the normal period after a request asked for a prompt tick (Envoy only:
            // Kong's engine traps on a second set_tick_period, and is never nudged).
            if let Some(period) = self.needs_tick() {
                let _ = host.set_tick_period(period);
            }
        }
        let Ok(now) = host.now() else {
            return;
        };
        if self.keys.borrow().overdue(now) {
            host.log(LogLevel::Warn, "JWKS fetch got no response in time");
            host.count(Metric::JwksFetchFailures);
            self.fetch_done(host, now, None);
        }
        let due =
            self.keys
                .borrow()
                .refresh_due(now, keys.refresh_interval, keys.rediscovery_lifetime);
        if due && let Err(e) = self.start_fetch(host, now) {
            self.fetch_failed_to_start(host, now, &e);
        }
    }

    /// A request needs a key the worker does not have. On Envoy it waits for the root
    /// context's fetch (asking for a prompt tick when none is in flight) and is resumed by
    /// the root; a call dispatched from the request could not outlive it, because the SDK
    /// routes a call's response to the context that dispatched it. On Kong's engine the root
    /// cannot resume a request (its `set_effective_context` does nothing), but a request's own
    /// call completes even when the client goes away: there the request fetches. `Err`: it
    /// cannot wait (no fetch may start now, too many wait already); refuse it at once.
    pub(crate) fn await_keys(
        &self,
        host: &impl Host,
        request: &Rc<RequestCore>,
        context_id: u32,
        now: u64,
    ) -> Result<KeyWait, NoWait> {
        let cooldown = self
            .settings
            .keys
            .as_ref()
            .map_or(0, |k| k.rediscovery_lifetime);
        let decision = self.keys.borrow().on_missing_key(now, cooldown);
        let engine = self.engine(host).map_err(|_| NoWait::Unavailable)?;
        match (engine, decision) {
            (_, Refetch::UnknownKey | Refetch::Unavailable) => Err(NoWait::NoFetch),
            (Engine::Nginx, Refetch::Fetch) => match self.start_fetch(host, now) {
                Ok(call) => Ok(KeyWait::OwnCall(call)),
                Err(e) => {
                    self.fetch_failed_to_start(host, now, &e);
                    Err(NoWait::NoFetch)
                }
            },
            // Another context's fetch: nothing on Kong's engine can resume us after it.
            (Engine::Nginx, Refetch::Wait) => Err(NoWait::Unavailable),
            (Engine::Envoy, decision) => {
                // Requests that ended while waiting hold no place.
                self.waiting
                    .borrow_mut()
                    .retain(|w| w.request.strong_count() > 0);
                if self.waiting.borrow().len() >= MAX_WAITING {
                    host.log(LogLevel::Warn, "too many requests wait for the JWKS");
                    return Err(NoWait::Unavailable);
                }
                if decision == Refetch::Fetch {
                    if let Err(e) = host.set_tick_period(NUDGE) {
                        host.log(
                            LogLevel::Warn,
                            &format!("cannot ask the root context for a JWKS fetch: {e}"),
                        );
                        return Err(NoWait::Unavailable);
                    }
                    self.nudged.set(true);
                    self.keys.borrow_mut().want(now);
                }
                self.waiting.borrow_mut().push(Waiter {
                    context_id,
                    request: Rc::downgrade(request),
                });
                Ok(KeyWait::Root)
            }
        }
    }

    /// The response to the worker's JWKS fetch, in the root context or (Kong) in the request
    /// that dispatched it. `false` if `call` is not the fetch in flight.
    pub(crate) fn on_fetch_response(&self, host: &impl Host, call: u32, body_size: usize) -> bool {
        if !self.keys.borrow().is_ours(call) {
            return false;
        }
        let Ok(now) = host.now() else {
            host.log(LogLevel::Error, "JWKS response: the clock cannot be read");
            self.fetch_done(host, 0, None);
            return true;
        };
        let outcome = call_outcome(host, body_size, MAX_JWKS_BYTES);
        let keys = self.parse_jwks(host, &outcome);
        self.fetch_done(host, now, keys);
        true
    }

    /// The root context's call response.
    pub fn on_root_call_response(&self, host: &impl Host, call: u32, body_size: usize) {
        self.on_fetch_response(host, call, body_size);
    }

    /// Parses a JWKS response; `None` (logged and counted) when it is unusable.
    fn parse_jwks(&self, host: &impl Host, outcome: &CallOutcome) -> Option<KeySet> {
        let keys = self.settings.keys.as_ref()?;
        let parsed = match (outcome.status, &outcome.failure) {
            (Some(200), _) => KeySet::from_fetched(&outcome.body, &keys.algorithms).map_err(|e| {
                if e.path.is_empty() {
                    e.message
                } else {
                    format!("{}: {}", e.path, e.message)
                }
            }),
            (Some(status), _) => Err(format!("HTTP {status}")),
            (None, why) => Err(why.clone().unwrap_or_else(|| "no response".into())),
        };
        // A JWKS without a single usable key is a failed fetch: the keys in hand stay.
        let parsed = parsed.and_then(|(keys, skipped)| {
            if keys.is_empty() {
                Err(format!(
                    "no usable signing key ({skipped} could not be read)"
                ))
            } else {
                Ok((keys, skipped))
            }
        });
        match parsed {
            Ok((keys, skipped)) => {
                host.log(
                    LogLevel::Info,
                    &format!("JWKS refreshed, {} usable keys", keys.len()),
                );
                if skipped > 0 {
                    host.log(
                        LogLevel::Warn,
                        &format!("JWKS: skipped {skipped} keys that could not be read"),
                    );
                }
                Some(keys)
            }
            Err(why) => {
                host.log(LogLevel::Warn, &format!("JWKS fetch failed: {why}"));
                host.count(Metric::JwksFetchFailures);
                None
            }
        }
    }

    /// Records the fetch's result, then resumes every request that waited for it, each as
    /// the effective context (Envoy: the root context may act for a paused request).
    fn fetch_done(&self, host: &impl Host, now: u64, keys: Option<KeySet>) {
        if keys.is_some() {
            // Signatures were checked with the old keys.
            self.known.clear();
        }
        self.keys.borrow_mut().finished(now, keys);
        let waiting = std::mem::take(&mut *self.waiting.borrow_mut());
        if waiting.is_empty() {
            return;
        }
        for waiter in waiting {
            let Some(request) = waiter.request.upgrade() else {
                continue; // it ended while waiting
            };
            if let Err(e) = host.set_effective_context(waiter.context_id) {
                host.log(
                    LogLevel::Warn,
                    &format!("cannot resume a request that waited for the JWKS: {e}"),
                );
                continue;
            }
            request.on_keys(host);
        }
        if let Some(root) = self.root_context.get() {
            let _ = host.set_effective_context(root);
        }
    }
}

/// What a local reply depends on: the rejection and the scheme the request used.
type ReplyKey = (Rejection, Option<Scheme>);

/// Why a request cannot wait for keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoWait {
    /// No fetch may start now (cool-down, back-off): decide as if one had completed.
    NoFetch,
    /// The worker cannot take the request now (too many wait, a host failure): 503.
    Unavailable,
}

/// How a request waits for keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyWait {
    /// The root context resumes it when the worker's fetch completes.
    Root,
    /// Its own call `0` is the worker's fetch (Kong's engine).
    OwnCall(u32),
}

/// The tick period asked for when a request needs a fetch: the root's next tick comes at
/// once and starts it.
const NUDGE: Duration = Duration::from_millis(1);

/// The call's response. A body over `limit` is a failed call, never judged on its first
/// bytes (a valid answer, then junk past the limit, is not a valid answer); a host that
/// cannot hand it over counts as a call without a response.
pub(crate) fn call_outcome(host: &impl Host, body_size: usize, limit: usize) -> CallOutcome {
    if body_size > limit {
        return CallOutcome {
            status: None,
            body: Vec::new(),
            failure: Some(format!("response body of {body_size} bytes, over {limit}")),
        };
    }
    // Kong's engine cannot hand over a long map intact (it writes past the buffer): an IdP
    // answer with that many headers is a failed call on both hosts, and is never read.
    let count = host.call_response_header_count();
    if !crate::host::nginx_map_fits(count, crate::host::NGINX_CALL_PSEUDO_HEADERS) {
        return CallOutcome {
            status: None,
            body: Vec::new(),
            failure: Some(format!("response with {count} headers, too many to read")),
        };
    }
    let read = || -> Result<CallOutcome, HostError> {
        let headers = host.call_response_headers()?;
        let body = host.call_response_body(body_size.min(limit))?;
        Ok(CallOutcome::from_parts(&headers, body))
    };
    read().unwrap_or_else(|e| CallOutcome {
        status: None,
        body: Vec::new(),
        failure: Some(format!("the host could not hand over the response: {e}")),
    })
}
