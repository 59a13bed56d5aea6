//! A refused request's local reply: made once per worker (it depends on the rejection and the
//! scheme only; a `use_dpop_nonce` reply carries a fresh nonce), logged with its reason (never
//! the token), counted, and sent in the form each engine takes.

use std::rc::Rc;

use crate::flow::worker::Worker;
use crate::host::{Engine, Host, LogLevel};
use crate::reply::metrics::Metric;
use crate::reply::rejection::{Rejection, Scheme};
use crate::reply::response;

const WWW_AUTHENTICATE: &str = "www-authenticate";

/// Sends the reply for `rejection` to a request that used `scheme` (when it was read);
/// `paused`: the request waited (keys or an IdP call), so the reply goes from a callback
/// other than its headers'. A reply the host cannot send leaves the request paused: it never
/// goes through.
pub(crate) fn send(
    host: &impl Host,
    worker: &Worker,
    rejection: Rejection,
    scheme: Option<Scheme>,
    paused: bool,
) {
    let settings = &worker.settings;
    // A nonce for the client to retry with; without a clock or a key it cannot have one.
    let reply = match rejection {
        Rejection::UseDpopNonce => {
            let nonce = host.now().ok().and_then(|now| {
                let key = worker.nonce_key(&*worker.store(host), now).ok().flatten()?;
                Some(crate::binding::dpop::nonce(&key, now))
            });
            Rc::new(response::render(
                rejection,
                &settings.challenges(),
                scheme,
                nonce.as_deref(),
            ))
        }
        _ => worker.reply(rejection, scheme),
    };
    let level = if reply.status == 503 {
        LogLevel::Warn
    } else {
        LogLevel::Info
    };
    host.log(
        level,
        &format!("denied {} {}", reply.status, rejection.reason()),
    );
    host.count(Metric::Denied(rejection.metric_group()));
    // Kong's engine was seen aborting a worker on a local reply with a body sent from the
    // call-response path after a timed-out call; there the reply goes without a body. An
    // engine not yet known gets the reply that is safe on both.
    let envoy = worker.known_engine() == Some(Engine::Envoy);
    let body_ok = !paused || envoy;
    let mut headers: Vec<(&str, &str)> = reply
        .headers
        .iter()
        .filter(|(k, _)| body_ok || k != "content-type")
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    // Kong's engine sets each local-reply header by name, so a second WWW-Authenticate
    // replaces the first (docs/hosts.md): there the challenges go in one field, which RFC 9110
    // section 11.6.1 allows (`#challenge`).
    let merged: String;
    if !envoy
        && headers
            .iter()
            .filter(|(k, _)| *k == WWW_AUTHENTICATE)
            .count()
            > 1
    {
        merged = headers
            .iter()
            .filter(|(k, _)| *k == WWW_AUTHENTICATE)
            .map(|(_, v)| *v)
            .collect::<Vec<_>>()
            .join(", ");
        let mut first = true;
        headers.retain_mut(|(k, v)| {
            if *k != WWW_AUTHENTICATE {
                return true;
            }
            *v = merged.as_str();
            std::mem::replace(&mut first, false)
        });
    }
    if let Err(e) = host.send_response(
        reply.status,
        &headers,
        body_ok.then_some(reply.body.as_slice()),
    ) {
        host.log(LogLevel::Error, &format!("local reply failed: {e}"));
    }
}
