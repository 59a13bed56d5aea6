//! What an allowed request goes upstream with: the identity headers from the verdict (the
//! client's copies replaced), the certificate headers a proxy sent removed, the signed
//! introspection response forwarded when configured, and a DPoP request turned into a Bearer
//! one. Nothing the client wrote under a name this gateway sets or believes reaches the
//! upstream.

use crate::config::{CertSource, DpopUpstream};
use crate::flow::decider::Verdict;
use crate::flow::extract::Presented;
use crate::flow::worker::Worker;
use crate::host::{Engine, Host, HostError};
use crate::reply::rejection::Scheme;

/// Rewrites the request's headers for the upstream; any host failure is the caller's 503.
pub(crate) fn rewrite(
    host: &impl Host,
    worker: &Worker,
    verdict: &Verdict,
    presented: &Presented,
) -> Result<(), HostError> {
    let settings = &worker.settings;
    let engine = worker.engine(host)?;
    if presented.scheme == Scheme::Dpop && settings.dpop.upstream == DpopUpstream::Bearer {
        host.set_request_header("authorization", &format!("Bearer {}", presented.token))?;
        strip(host, engine, "dpop")?;
    }
    if let CertSource::Header {
        name, chain_header, ..
    } = &settings.cert_source
    {
        strip(host, engine, name)?;
        if let Some(chain) = chain_header {
            strip(host, engine, chain)?;
        }
    }
    for ((_, name), value) in settings
        .upstream_headers
        .iter()
        .zip(verdict.identity.iter())
    {
        match value {
            Some(value) => host.set_request_header(name, value)?,
            None => strip(host, engine, name)?,
        }
    }
    let forward = settings
        .introspection
        .as_ref()
        .and_then(|i| i.signed.as_ref())
        .and_then(|s| s.forward_header.as_deref());
    if let Some(name) = forward {
        match &verdict.signed_introspection {
            Some(jwt) => host.set_request_header(name, jwt)?,
            None => strip(host, engine, name)?,
        }
    }
    Ok(())
}

/// Removing a header does not stop nginx from forwarding the client's copy; overwriting
/// does. So on Kong's engine an empty value replaces it (docs/hosts.md).
fn strip(host: &impl Host, engine: Engine, name: &str) -> Result<(), HostError> {
    match engine {
        Engine::Envoy => host.remove_request_header(name),
        Engine::Nginx => host.set_request_header(name, ""),
    }
}
