//! One HTTP request's run through the filter: read what it presented, ask the decider, and
//! apply the step it returns in exactly one place (`apply`): identity headers and resume on
//! Allow, the local reply on Deny, a wait on NeedKeys or Introspect. Generic over `Host`,
//! so all of it runs in native tests against a fake host.

use std::cell::Cell;
use std::net::IpAddr;
use std::rc::Rc;

use crate::config::CertSource;
use crate::endpoint::OutboundRequest;
use crate::flow::decider::{self, Decision, Note, Pending, Phase, ProofUse, Step, View};
use crate::flow::extract::{self, Presented};
use crate::flow::worker::{KeyWait, NoWait, Worker, call_outcome};
use crate::flow::{refuse, upstream};
use crate::host::{Host, HostError, LogLevel};
use crate::reply::metrics::Metric;
use crate::reply::rejection::{Rejection, Scheme};
use crate::tokens::introspection::MAX_RESPONSE_BYTES;

/// What the host callback should return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Pause,
}

/// Where the request stands.
#[derive(Debug, Default)]
enum Stage {
    /// Its headers have not been seen yet.
    #[default]
    Start,
    /// Paused until the worker's JWKS fetch completes: the root context resumes it, or (Kong)
    /// the fetch is its own call `call`. `pending`: a signed introspection answer whose key
    /// was missing, and the checked DPoP proof.
    WaitingForKeys {
        presented: Presented,
        call: Option<u32>,
        pending: Pending,
    },
    /// Paused until the introspection call `call` answers; `proof`: the request's DPoP proof,
    /// checked before the call.
    WaitingForIntrospection {
        call: u32,
        presented: Presented,
        proof: Option<ProofUse>,
        /// Whose share of the worker's introspection places it holds.
        peer: Option<IpAddr>,
    },
    /// Decided (allowed or refused), or refused before a token was read.
    Done,
}

/// The request's state, shared with the worker while it waits for keys (the worker holds
/// it weakly: a request that ends stops waiting by itself).
pub struct RequestCore {
    worker: Rc<Worker>,
    context_id: u32,
    /// A `Cell`, taken and put back, never borrowed: no callback can find it in use.
    stage: Cell<Stage>,
    /// The request was paused (it waited for keys or an IdP call): an outcome must resume it
    /// or reply from the call-response path.
    paused: Cell<bool>,
    /// The scheme the request used, once read: a refusal's error goes in its challenge.
    scheme: Cell<Option<Scheme>>,
}

/// One HTTP request. `context_id` is the host's id of the request's context: the worker
/// makes it the effective context again to resume the request after a JWKS fetch.
pub struct RequestFilter(Rc<RequestCore>);

impl RequestFilter {
    pub fn new(worker: Rc<Worker>, context_id: u32) -> RequestFilter {
        RequestFilter(Rc::new(RequestCore {
            worker,
            context_id,
            stage: Cell::new(Stage::Start),
            paused: Cell::new(false),
            scheme: Cell::new(None),
        }))
    }

    pub fn on_request_headers(&self, host: &impl Host) -> Flow {
        let core = &self.0;
        let worker = &core.worker;
        let engine = match worker.engine(host) {
            Ok(engine) => engine,
            Err(e) => {
                host.log(LogLevel::Error, &format!("the engine cannot be told: {e}"));
                return core.deny(host, Rejection::HostFailure);
            }
        };
        let presented = match extract::extract(&worker.settings, engine, host, &worker.certificates)
        {
            Ok(p) => p,
            Err(r) => return core.deny(host, r),
        };
        core.scheme.set(Some(presented.scheme));
        core.decide(host, presented, Pending::default(), Phase::First)
    }

    /// The headers a client may not send (they are set or believed here): for the host
    /// layer to keep them out of the request's trailers too.
    pub fn reserved_headers(&self) -> Vec<String> {
        self.0
            .worker
            .settings
            .reserved_headers()
            .map(str::to_string)
            .collect()
    }

    /// The response to a call this request dispatched: its introspection call, or (Kong)
    /// the worker's JWKS fetch.
    pub fn on_call_response(&self, host: &impl Host, call: u32, body_size: usize) {
        let core = &self.0;
        let stage = core.stage.take();
        match stage {
            Stage::WaitingForIntrospection {
                call: ours,
                presented,
                proof,
                peer,
            } if ours == call => {
                core.worker.introspection_ended(peer);
                let outcome = call_outcome(host, body_size, MAX_RESPONSE_BYTES);
                let pending = Pending {
                    answer: Some(outcome),
                    proof,
                };
                core.decide(host, presented, pending, Phase::First);
            }
            Stage::WaitingForKeys {
                presented,
                call: Some(ours),
                pending,
            } if ours == call => {
                core.worker.on_fetch_response(host, call, body_size);
                core.decide(host, presented, pending, Phase::KeysFetched);
            }
            // Not the call we wait for: keep waiting for ours.
            other => core.stage.set(other),
        }
    }
}

fn clock_failure(host: &impl Host, e: &HostError) -> Decision {
    host.log(LogLevel::Error, &format!("the clock cannot be read: {e}"));
    Decision::deny(Rejection::HostFailure)
}

impl Drop for RequestCore {
    /// A request that ends while its introspection call is out (a reset stream on Envoy,
    /// whose answer then never comes) gives its place back.
    fn drop(&mut self) {
        if let Stage::WaitingForIntrospection { peer, .. } = self.stage.get_mut() {
            self.worker.introspection_ended(*peer);
        }
    }
}

impl RequestCore {
    /// Decides with the worker's current state, on what the request presented or on the
    /// introspection answer it got, and applies the step.
    fn decide(
        self: &Rc<Self>,
        host: &impl Host,
        presented: Presented,
        pending: Pending,
        phase: Phase,
    ) -> Flow {
        let proof = pending.proof.as_ref();
        let decision = self.with_view(host, |view| match &pending.answer {
            None => decider::decide(&presented, proof, view, phase),
            Some(outcome) => decider::introspected(&presented, outcome, proof, view, phase),
        });
        self.apply(host, decision, presented)
    }

    /// Runs `decide` with a view of the worker as it is now; a clock that cannot be read is a
    /// 503.
    fn with_view(&self, host: &impl Host, decide: impl FnOnce(&View<'_>) -> Decision) -> Decision {
        let worker = &self.worker;
        match host.now() {
            Ok(now) => {
                let store = worker.store(host);
                let keys = worker.keys.borrow();
                decide(&View {
                    worker,
                    keys: &keys,
                    store: store.as_ref(),
                    now,
                })
            }
            Err(e) => clock_failure(host, &e),
        }
    }

    /// The worker's JWKS fetch completed: decide again, as the effective context.
    pub(crate) fn on_keys(self: &Rc<Self>, host: &impl Host) {
        match self.stage.take() {
            Stage::WaitingForKeys {
                presented,
                call: None,
                pending,
            } => {
                self.decide(host, presented, pending, Phase::KeysFetched);
            }
            other => self.stage.set(other),
        }
    }

    /// Applies a decision: the one place where steps take effect.
    fn apply(self: &Rc<Self>, host: &impl Host, decision: Decision, presented: Presented) -> Flow {
        let worker = &self.worker;
        for note in decision.notes {
            match note {
                Note::Count(metric) => host.count(metric),
                Note::Learned(known) => worker.learn(&presented.token, known),
                Note::Verified {
                    hash,
                    print,
                    now,
                    until,
                } => {
                    let store = worker.store(host);
                    worker.share_verified(store.as_ref(), &hash, &print, now, until);
                }
                Note::Answer {
                    hash,
                    now,
                    until,
                    payload,
                    inactive,
                } => {
                    let store = worker.store(host);
                    worker.remember_answer(store.as_ref(), &hash, until, &payload, inactive, now);
                }
                Note::Info(message) => host.log(LogLevel::Info, &message),
                Note::Warn(message) => host.log(LogLevel::Warn, &message),
            }
        }
        match decision.step {
            Step::Allow(verdict) => {
                match worker
                    .record_proof(host, verdict.proof.as_ref())
                    .and_then(|()| {
                        upstream::rewrite(host, worker, &verdict, &presented).map_err(|e| {
                            host.log(
                                LogLevel::Error,
                                &format!("identity headers could not be set: {e}"),
                            );
                            Rejection::HostFailure
                        })
                    }) {
                    Ok(()) => {
                        host.count(Metric::Allowed);
                        self.stage.set(Stage::Done);
                        if self.paused.get()
                            && let Err(e) = host.resume_request()
                        {
                            // Still paused: the request never goes through.
                            host.log(LogLevel::Error, &format!("resume failed: {e}"));
                        }
                        Flow::Continue
                    }
                    Err(rejection) => self.deny(host, rejection),
                }
            }
            Step::Deny(rejection) => self.deny(host, rejection),
            Step::NeedKeys(pending) => {
                let Ok(now) = host.now() else {
                    return self.deny(host, Rejection::HostFailure);
                };
                match worker.await_keys(host, self, self.context_id, now) {
                    Ok(wait) => {
                        let call = match wait {
                            KeyWait::Root => None,
                            KeyWait::OwnCall(call) => Some(call),
                        };
                        self.stage.set(Stage::WaitingForKeys {
                            presented,
                            call,
                            pending,
                        });
                        self.pause()
                    }
                    // No fetch may start: decide as if one had completed (unknown key, or 503).
                    Err(NoWait::NoFetch) => {
                        self.decide(host, presented, pending, Phase::KeysFetched)
                    }
                    Err(NoWait::Unavailable) => self.deny(host, Rejection::KeysUnavailable),
                }
            }
            Step::Introspect(request, proof) => {
                // Places are shared per client address: clients that send tokens nobody
                // issued (each costs an IdP call) cannot take every place from the others.
                let peer = Self::share_of(host, worker);
                if !worker.introspection_started(peer) {
                    host.log(LogLevel::Warn, "too many introspection calls in flight");
                    return self.deny(host, Rejection::IntrospectionUnavailable);
                }
                self.introspect(host, &request, presented, proof, peer)
            }
        }
    }

    /// Whose share of the introspection places a request uses: its peer's address, an IPv6 one
    /// by its /64 (one host holds a whole /64). None, with no share of its own but the worker's
    /// bound, where the peer is no client: behind a trusted proxy (a header source, where every
    /// client would share the proxy's address) or when the address cannot be read.
    fn share_of(host: &impl Host, worker: &Worker) -> Option<IpAddr> {
        if matches!(worker.settings.cert_source, CertSource::Header { .. }) {
            return None;
        }
        let engine = worker.known_engine()?;
        match crate::flow::extract::peer_address(host, engine)
            .ok()
            .flatten()?
        {
            IpAddr::V6(v6) => {
                let [a, b, c, d, ..] = v6.segments();
                Some(IpAddr::V6(std::net::Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0)))
            }
            v4 => Some(v4),
        }
    }

    /// Dispatches the introspection call the decider asked for, in the place `peer` took.
    fn introspect(
        &self,
        host: &impl Host,
        request: &OutboundRequest,
        presented: Presented,
        proof: Option<ProofUse>,
        peer: Option<IpAddr>,
    ) -> Flow {
        match host.dispatch(request) {
            Ok(call) => {
                host.count(Metric::IntrospectionCalls);
                self.stage.set(Stage::WaitingForIntrospection {
                    call,
                    presented,
                    proof,
                    peer,
                });
                self.pause()
            }
            Err(e) => {
                self.worker.introspection_ended(peer);
                host.log(
                    LogLevel::Warn,
                    &format!("introspection call could not be started: {e}"),
                );
                host.count(Metric::IntrospectionFailures);
                self.deny(host, Rejection::IntrospectionUnavailable)
            }
        }
    }

    fn pause(&self) -> Flow {
        self.paused.set(true);
        Flow::Pause
    }

    fn deny(&self, host: &impl Host, rejection: Rejection) -> Flow {
        self.stage.set(Stage::Done);
        refuse::send(
            host,
            &self.worker,
            rejection,
            self.scheme.get(),
            self.paused.get(),
        );
        Flow::Pause
    }
}
