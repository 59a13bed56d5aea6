//! The filter's life on a host: one `Worker` per VM (configuration, keys, cache, engine),
//! the root's periodic JWKS refresh, and one `RequestFilter` per HTTP request that reads the
//! request, asks the authorizer, waits for IdP calls and applies the verdict. Generic over
//! `Host`, so all of it runs in native tests against a fake host.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use crate::authorizer::{self, Route, Signature};
use crate::cache::{LocalStore, SlotCache, Store, TokenHash};
use crate::certificate::{self, Thumbprint};
use crate::claims::Claims;
use crate::config::{CertSource, PopMode, Settings};
use crate::credentials;
use crate::endpoint::{CallOutcome, OutboundRequest};
use crate::host::{self, Engine, Host, LogLevel, NoCertificate, SharedStore};
use crate::introspection;
use crate::jwks::{KeySet, Refetch, RemoteKeys};
use crate::metrics;
use crate::rejection::Rejection;
use crate::response;

/// Largest JWKS response read from the host.
const MAX_CALL_BODY: usize = crate::jwks::MAX_JWKS_BYTES;

/// Per-VM state shared by the root context and every request context of that worker.
pub struct Worker {
    pub settings: Settings,
    keys: RefCell<RemoteKeys>,
    local_cache: LocalStore,
    slots: Option<SlotCache>,
    /// JWTs whose signature this worker has verified, until their `exp`: a client reuses its
    /// token for its whole lifetime, and a signature check in wasm costs about a millisecond.
    /// Everything else is still checked on every request. Emptied when the JWKS is refreshed,
    /// so a key the IdP withdraws stops counting within one refresh interval.
    verified: LocalStore,
    verified_slots: SlotCache,
    engine: Cell<Option<Engine>>,
    /// In-flight JWKS fetch of the root context, if any.
    root_call: Cell<Option<u32>>,
}

impl Worker {
    pub fn new(settings: Settings) -> Worker {
        let slots = settings.introspection.as_ref().map(|i| {
            // Everything that could make another configuration's answer wrong here: the IdP
            // endpoint (tenants share hosts), the client, the issuer, and the claims kept.
            let scope = format!(
                "{}://{}{}|{}|{}|{:?}|{:?}",
                i.endpoint.scheme,
                i.endpoint.authority,
                i.endpoint.path,
                i.endpoint.upstream,
                i.client_id,
                i.issuer,
                settings.upstream_headers
            );
            SlotCache::new(&scope, settings.cache_max_entries)
        });
        let verified_slots = SlotCache::new("verified-jwt", settings.cache_max_entries);
        Worker {
            settings,
            keys: RefCell::new(RemoteKeys::default()),
            local_cache: LocalStore::default(),
            slots,
            verified: LocalStore::default(),
            verified_slots,
            engine: Cell::new(None),
            root_call: Cell::new(None),
        }
    }

    /// What to log once at configure time; no secrets.
    pub fn startup_log(&self) -> Vec<String> {
        let mut lines = vec![format!("configured: {}", self.describe())];
        if self.settings.audience_required.is_empty() {
            lines.push(
                "audience_required is empty: tokens for any audience of the IdP are accepted \
                 (RFC 9068 section 4 asks resource servers to check aud)"
                    .to_string(),
            );
        }
        if !self.settings.shared_cache && self.settings.introspection.is_some() {
            lines.push(
                "shared_cache is off: introspection results are cached per worker".to_string(),
            );
        }
        lines
    }

    /// A one-line summary for the configure log; no secrets (and no URL query strings).
    fn describe(&self) -> String {
        let s = &self.settings;
        let mut parts = vec![format!("proof_of_possession_mtls={:?}", s.pop).to_lowercase()];
        if let Some(b) = &s.bearer {
            parts.push(format!(
                "bearer(issuer={}, inline_keys={}, jwks_endpoint={})",
                b.issuer,
                b.inline_keys.len(),
                b.jwks_endpoint
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

    fn engine(&self, host: &impl Host) -> Engine {
        if let Some(e) = self.engine.get() {
            return e;
        }
        let e = host::detect_engine(host);
        self.engine.set(Some(e));
        e
    }

    fn cache_store<'a, H: Host>(&'a self, host: &'a H) -> Box<dyn Store + 'a> {
        if self.settings.shared_cache {
            Box::new(SharedStore(host))
        } else {
            Box::new(&self.local_cache)
        }
    }

    fn call_timeout_secs(&self) -> u64 {
        self.settings.http_timeout.as_millis().div_ceil(1000) as u64
    }

    /// Called on every tick of the root context: starts the periodic JWKS refresh when due.
    pub fn on_tick(&self, host: &impl Host) {
        let Some(bearer) = &self.settings.bearer else {
            return;
        };
        let Some(endpoint) = &bearer.jwks_endpoint else {
            return;
        };
        let now = host.now();
        if !self.keys.borrow().refresh_due(
            now,
            bearer.refresh_interval,
            bearer.rediscovery_lifetime,
        ) {
            return;
        }
        let request = OutboundRequest::new(endpoint, "GET", self.settings.http_timeout);
        match host.dispatch(&request) {
            Ok(id) => {
                self.keys
                    .borrow_mut()
                    .fetch_started(now, self.call_timeout_secs());
                self.root_call.set(Some(id));
                host.count(metrics::JWKS_FETCHES);
            }
            Err(e) => {
                host.log(
                    LogLevel::Warn,
                    &format!("JWKS fetch could not be started: {e}"),
                );
                self.keys.borrow_mut().fetch_finished(now, None);
                host.count(metrics::JWKS_FETCH_FAILURES);
            }
        }
    }

    /// The root context's call response: only its own JWKS fetch.
    pub fn on_root_call_response(&self, host: &impl Host, call: u32, body_size: usize) {
        if self.root_call.get() != Some(call) {
            return;
        }
        self.root_call.set(None);
        self.store_jwks(host, &outcome(host, body_size));
    }

    /// Parses a JWKS response into the worker's remote keys; a failure keeps the old keys.
    fn store_jwks(&self, host: &impl Host, outcome: &CallOutcome) {
        let Some(bearer) = &self.settings.bearer else {
            return;
        };
        let now = host.now();
        let parsed = match (outcome.status, &outcome.failure) {
            (Some(200), _) => {
                KeySet::from_fetched(&outcome.body, &bearer.algorithms).map_err(|e| {
                    if e.path.is_empty() {
                        e.message
                    } else {
                        format!("{}: {}", e.path, e.message)
                    }
                })
            }
            (Some(status), _) => Err(format!("HTTP {status}")),
            (None, why) => Err(why.clone().unwrap_or_else(|| "no response".into())),
        };
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
                self.keys.borrow_mut().fetch_finished(now, Some(keys));
                self.verified.clear();
            }
            Err(why) => {
                host.log(LogLevel::Warn, &format!("JWKS fetch failed: {why}"));
                host.count(metrics::JWKS_FETCH_FAILURES);
                self.keys.borrow_mut().fetch_finished(now, None);
            }
        }
    }
}

/// The call's response; a body over the limit is cut short, which fails JSON parsing.
fn outcome(host: &impl Host, body_size: usize) -> CallOutcome {
    CallOutcome::from_parts(
        &host.call_response_headers(),
        host.call_response_body(body_size.min(MAX_CALL_BODY)),
    )
}

/// What the host callback should return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Pause,
}

/// The IdP call a request is waiting for.
#[derive(Debug)]
enum Waiting {
    Keys { call: u32 },
    Introspection { call: u32, hash: TokenHash },
}

/// One HTTP request's run through the filter.
pub struct RequestFilter {
    worker: Rc<Worker>,
    token: String,
    thumbprint: Option<Thumbprint>,
    waiting: Option<Waiting>,
}

impl RequestFilter {
    pub fn new(worker: Rc<Worker>) -> RequestFilter {
        RequestFilter {
            worker,
            token: String::new(),
            thumbprint: None,
            waiting: None,
        }
    }

    pub fn on_request_headers(&mut self, host: &impl Host) -> Flow {
        let worker = Rc::clone(&self.worker);
        let settings = &worker.settings;
        let headers = host.request_headers();
        // `request.path` carries the query on both engines; Kong's engine gives `:path` without it.
        let path = host
            .property(&["request", "path"])
            .or_else(|| {
                headers
                    .iter()
                    .find(|(k, _)| k == ":path")
                    .map(|(_, v)| v.clone())
            })
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_default();

        if reserved_header_abused(settings, &headers) {
            return self.deny(host, Rejection::DuplicateIdentityHeader, false);
        }
        self.thumbprint = self.client_thumbprint(host, &headers);
        self.token = match credentials::bearer_token(&headers, &path) {
            Ok(Some(token)) => token,
            Ok(None) => return self.deny(host, Rejection::MissingToken, false),
            Err(r) => return self.deny(host, r, false),
        };
        match authorizer::route(settings, &self.token) {
            Ok(Route::Jwt) => self.check_jwt(host, false),
            Ok(Route::Introspect) => self.check_opaque(host),
            Err(r) => self.deny(host, r, false),
        }
    }

    /// The response to a call this request dispatched.
    pub fn on_call_response(&mut self, host: &impl Host, call: u32, body_size: usize) {
        let outcome = outcome(host, body_size);
        match self.waiting.take() {
            Some(Waiting::Keys { call: expected }) if expected == call => {
                self.worker.store_jwks(host, &outcome);
                self.check_jwt(host, true);
            }
            Some(Waiting::Introspection {
                call: expected,
                hash,
            }) if expected == call => {
                self.on_introspection(host, hash, &outcome);
            }
            other => {
                // Not the call we wait for: keep waiting for ours.
                self.waiting = other;
            }
        }
    }

    fn client_thumbprint(
        &self,
        host: &impl Host,
        headers: &[(String, Vec<u8>)],
    ) -> Option<Thumbprint> {
        match &self.worker.settings.cert_source {
            CertSource::Connection => {
                let engine = self.worker.engine(host);
                match host::connection_thumbprint(host, engine) {
                    Ok(tp) => Some(tp),
                    Err(NoCertificate::Absent) => None,
                    Err(NoCertificate::Unreadable(e)) => {
                        host.log(
                            LogLevel::Warn,
                            &format!("client certificate from the host is unusable: {e}"),
                        );
                        None
                    }
                }
            }
            CertSource::Header {
                name,
                format,
                trusted,
            } => {
                let values: Vec<&Vec<u8>> = headers
                    .iter()
                    .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v)
                    .collect();
                if values.is_empty() {
                    return None;
                }
                // Whatever happens next, the header does not travel upstream.
                self.strip_header(host, name);
                let peer = self.peer_address(host);
                if !certificate::is_trusted(peer, trusted) {
                    host.log(
                        LogLevel::Info,
                        &format!("ignoring {name} from an untrusted peer"),
                    );
                    return None;
                }
                let [value] = values.as_slice() else {
                    host.log(
                        LogLevel::Warn,
                        &format!("ignoring {name}: sent more than once"),
                    );
                    return None;
                };
                match certificate::from_header(value, *format) {
                    Ok(tp) => Some(tp),
                    Err(e) => {
                        host.log(LogLevel::Warn, &format!("ignoring {name}: {e}"));
                        None
                    }
                }
            }
        }
    }

    /// The address of the peer that connected to us. On nginx, `source.address` is
    /// `$remote_addr`, which the realip module may have rewritten from a client header;
    /// `$realip_remote_addr` is the connection's own. (On Envoy `source.address` follows
    /// X-Forwarded-For unless `use_remote_address: true`, as envoy/envoy.yaml sets it.)
    fn peer_address(&self, host: &impl Host) -> Option<std::net::IpAddr> {
        let raw = match self.worker.engine(host) {
            Engine::Nginx => host
                .property(&["ngx", "realip_remote_addr"])
                .filter(|v| !v.is_empty())
                .or_else(|| host.property(&["source", "address"])),
            Engine::Envoy => host.property(&["source", "address"]),
        };
        raw.and_then(|a| certificate::parse_source_address(&a))
    }

    /// Removing a header does not stop nginx from forwarding the client's copy; overwriting
    /// does. So on Kong's engine an empty value replaces it.
    fn strip_header(&self, host: &impl Host, name: &str) {
        match self.worker.engine(host) {
            Engine::Envoy => host.remove_request_header(name),
            Engine::Nginx => host.set_request_header(name, ""),
        }
    }

    fn check_jwt(&mut self, host: &impl Host, resumed: bool) -> Flow {
        let worker = Rc::clone(&self.worker);
        let settings = &worker.settings;
        let Some(bearer) = &settings.bearer else {
            return self.deny(host, Rejection::NotAJwt, resumed);
        };
        let now = host.now();
        let unverified = match authorizer::precheck_jwt(
            settings,
            bearer,
            &self.token,
            self.thumbprint.as_ref(),
            now,
        ) {
            Ok(u) => u,
            Err(r) => return self.deny(host, r, resumed),
        };
        let (kid, alg) = (unverified.header.kid.clone(), unverified.alg);
        let hash = TokenHash::of(&self.token);
        if worker
            .verified_slots
            .get(&worker.verified, &hash, now)
            .is_some()
        {
            host.count(metrics::JWT_CACHE_HITS);
            return self.finish(
                host,
                authorizer::accept_verified(settings, unverified.claims),
                resumed,
            );
        }
        let exp = unverified.claims.time("exp").ok().flatten().unwrap_or(now);
        let verdict = {
            let remote = worker.keys.borrow();
            let mut sets = vec![&bearer.inline_keys];
            sets.extend(remote.keys());
            authorizer::verify_jwt(settings, bearer, &self.token, unverified, &sets, now)
        };
        if let Signature::Valid(_) = verdict {
            worker.verified_slots.put(
                &worker.verified,
                &hash,
                exp.saturating_add(settings.leeway),
                &[],
            );
        }
        match verdict {
            Signature::Valid(claims) => self.allow(host, &claims, resumed),
            Signature::Invalid(r) => self.deny(host, r, resumed),
            Signature::NoKey => {
                let Some(endpoint) = &bearer.jwks_endpoint else {
                    return self.deny(host, Rejection::UnknownKey, resumed);
                };
                if resumed {
                    // We just fetched: the key really is unknown.
                    return self.deny(
                        host,
                        if worker.keys.borrow().keys().is_some() {
                            Rejection::UnknownKey
                        } else {
                            Rejection::KeysUnavailable
                        },
                        resumed,
                    );
                }
                let decision = worker
                    .keys
                    .borrow()
                    .on_missing_key(now, bearer.rediscovery_lifetime);
                match decision {
                    Refetch::UnknownKey => self.deny(host, Rejection::UnknownKey, resumed),
                    Refetch::Unavailable => self.deny(host, Rejection::KeysUnavailable, resumed),
                    Refetch::Fetch => {
                        let request = OutboundRequest::new(endpoint, "GET", settings.http_timeout);
                        host.log(
                            LogLevel::Debug,
                            &format!(
                                "fetching JWKS for kid {:?} ({})",
                                kid.as_deref().unwrap_or("none"),
                                alg.name()
                            ),
                        );
                        match host.dispatch(&request) {
                            Ok(call) => {
                                worker
                                    .keys
                                    .borrow_mut()
                                    .fetch_started(now, worker.call_timeout_secs());
                                host.count(metrics::JWKS_FETCHES);
                                self.waiting = Some(Waiting::Keys { call });
                                Flow::Pause
                            }
                            Err(e) => {
                                host.log(
                                    LogLevel::Warn,
                                    &format!("JWKS fetch could not be started: {e}"),
                                );
                                host.count(metrics::JWKS_FETCH_FAILURES);
                                worker.keys.borrow_mut().fetch_finished(now, None);
                                self.deny(host, Rejection::KeysUnavailable, resumed)
                            }
                        }
                    }
                }
            }
        }
    }

    fn check_opaque(&mut self, host: &impl Host) -> Flow {
        let worker = Rc::clone(&self.worker);
        let settings = &worker.settings;
        let (Some(intro), Some(slots)) = (&settings.introspection, &worker.slots) else {
            return self.deny(host, Rejection::NotAJwt, false);
        };
        // In strict mode no token passes without a certificate: refuse before asking the IdP.
        if settings.pop == PopMode::Strict && self.thumbprint.is_none() {
            return self.deny(host, Rejection::CertificateRequired, false);
        }
        let now = host.now();
        let hash = TokenHash::of(&self.token);
        if intro.cache_ttl > 0 {
            let store = worker.cache_store(host);
            if let Some(answer) = slots
                .get(store.as_ref(), &hash, now)
                .and_then(|p| introspection::decode(&p))
            {
                host.count(metrics::INTROSPECTION_CACHE_HITS);
                return self.finish(
                    host,
                    authorizer::check_introspected(
                        settings,
                        &answer,
                        self.thumbprint.as_ref(),
                        now,
                    ),
                    false,
                );
            }
        }
        let request = introspection::request(intro, &self.token, settings.http_timeout);
        match host.dispatch(&request) {
            Ok(call) => {
                host.count(metrics::INTROSPECTION_CALLS);
                self.waiting = Some(Waiting::Introspection { call, hash });
                Flow::Pause
            }
            Err(e) => {
                host.log(
                    LogLevel::Warn,
                    &format!("introspection call could not be started: {e}"),
                );
                host.count(metrics::INTROSPECTION_FAILURES);
                self.deny(host, Rejection::IntrospectionUnavailable, false)
            }
        }
    }

    fn on_introspection(&mut self, host: &impl Host, hash: TokenHash, outcome: &CallOutcome) {
        let worker = Rc::clone(&self.worker);
        let settings = &worker.settings;
        let answer = match introspection::parse(outcome) {
            Ok(answer) => answer,
            Err(failure) => {
                host.log(LogLevel::Warn, &format!("{failure}"));
                host.count(metrics::INTROSPECTION_FAILURES);
                self.deny(host, Rejection::IntrospectionUnavailable, true);
                return;
            }
        };
        let now = host.now();
        if let (Some(intro), Some(slots)) = (&settings.introspection, &worker.slots) {
            let kept = introspection::cacheable(&answer, &settings.upstream_headers);
            if let Some(until) = introspection::cache_until(&kept, now, intro.cache_ttl) {
                let store = worker.cache_store(host);
                let payload = introspection::encode(&kept);
                // Random tokens (all inactive) must not flush the answers of real clients.
                if kept == introspection::Answer::Inactive {
                    slots.put_if_free(store.as_ref(), &hash, until, &payload, now);
                } else {
                    slots.put(store.as_ref(), &hash, until, &payload);
                }
            }
        }
        self.finish(
            host,
            authorizer::check_introspected(settings, &answer, self.thumbprint.as_ref(), now),
            true,
        );
    }

    fn finish(
        &mut self,
        host: &impl Host,
        verdict: Result<Claims, Rejection>,
        resumed: bool,
    ) -> Flow {
        match verdict {
            Ok(claims) => self.allow(host, &claims, resumed),
            Err(r) => self.deny(host, r, resumed),
        }
    }

    /// Sets the identity headers from the claims (replacing whatever the client sent) and
    /// lets the request through.
    fn allow(&mut self, host: &impl Host, claims: &Claims, resumed: bool) -> Flow {
        for (claim, name) in &self.worker.settings.upstream_headers {
            match claims.header_value(claim) {
                Some(value) => host.set_request_header(name, &value),
                None => self.strip_header(host, name),
            }
        }
        host.count(metrics::ALLOWED);
        self.token.clear();
        if resumed {
            host.resume_request();
        }
        Flow::Continue
    }

    fn deny(&mut self, host: &impl Host, rejection: Rejection, resumed: bool) -> Flow {
        let settings = &self.worker.settings;
        let reply = response::render(rejection, &settings.realm, &settings.scopes_required);
        let level = if rejection.status() == 503 {
            LogLevel::Warn
        } else {
            LogLevel::Info
        };
        host.log(
            level,
            &format!("denied {} {}", reply.status, rejection.reason()),
        );
        host.count(metrics::denied(rejection));
        // Kong's engine was seen aborting a worker on a local reply with a body sent from the
        // call-response path after a timed-out call; there the reply goes without a body.
        let body_ok = !(resumed && self.worker.engine(host) == Engine::Nginx);
        let headers: Vec<(&str, &str)> = reply
            .headers
            .iter()
            .filter(|(k, _)| body_ok || k != "content-type")
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        host.send_response(
            reply.status,
            &headers,
            body_ok.then_some(reply.body.as_slice()),
        );
        self.token.clear();
        Flow::Pause
    }
}

/// Headers this gateway sets or reads as trusted must reach it at most once, and not as a
/// look-alike: on Kong a second copy survives our overwrite and reaches the upstream, and many
/// upstream frameworks (CGI, WSGI, Rack, PHP) read `x_authenticated_sub` as
/// `x-authenticated-sub`, which Envoy forwards by default.
fn reserved_header_abused(settings: &Settings, headers: &[(String, Vec<u8>)]) -> bool {
    let cert_header = match &settings.cert_source {
        CertSource::Header { name, .. } => Some(name.as_str()),
        CertSource::Connection => None,
    };
    let reserved = settings
        .upstream_headers
        .iter()
        .map(|(_, n)| n.as_str())
        .chain(cert_header);
    reserved.into_iter().any(|name| {
        let same = headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .count();
        let look_alike = headers
            .iter()
            .any(|(k, _)| k.contains('_') && k.replace('_', "-").eq_ignore_ascii_case(name));
        same > 1 || look_alike
    })
}
