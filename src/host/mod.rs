//! The host layer. `Host` is what the filter needs from its host (Envoy or Kong's
//! ngx_wasm_module): the wasm build implements it over the proxy-wasm ABI (`abi`, with the
//! raw calls in `calls`), the native tests with a fake host. Every call that can fail returns
//! its failure as a value; the flow decides what it means (always: fail closed).
//!
//! Also here: the host differences that are data rather than calls, namely which engine we
//! run on and where it keeps the client certificate (docs/hosts.md).

#[cfg(target_arch = "wasm32")]
mod abi;
#[cfg(target_arch = "wasm32")]
mod calls;
pub mod pairs;

use std::fmt;
use std::time::Duration;

use crate::binding::certificate::{CertError, Thumbprint};
use crate::endpoint::OutboundRequest;
use crate::flow::cache::Store;
use crate::flow::known::KnownCertificates;
use crate::reply::metrics::Metric;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

/// A host call that did not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostError {
    /// The host answered with a failure status; the text is for the log.
    Failed(String),
    /// The host handed over a header name that is not UTF-8.
    HeaderNameNotUtf8,
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostError::Failed(why) => f.write_str(why),
            HostError::HeaderNameNotUtf8 => f.write_str("a header name is not UTF-8"),
        }
    }
}

/// Header name/value pairs as the host lists them, repeats kept.
pub type Headers = Vec<(String, Vec<u8>)>;

/// The proxy-wasm calls the filter makes. They act on the effective context: the current
/// callback's, or the one `set_effective_context` chose.
pub trait Host {
    /// Seconds since the Unix epoch.
    fn now(&self) -> Result<u64, HostError>;
    /// A property; `Ok(None)` when the host has none at that path.
    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError>;
    fn request_headers(&self) -> Result<Headers, HostError>;
    /// How many headers (pseudo-headers not counted) the host announced with
    /// `on_http_request_headers`. Kong's engine writes past the buffer it hands over when a
    /// map is longer than it passes on, so the map is read only after this is checked.
    fn request_header_count(&self) -> usize;
    /// Replaces every copy of the header with one value.
    fn set_request_header(&self, name: &str, value: &str) -> Result<(), HostError>;
    fn remove_request_header(&self, name: &str) -> Result<(), HostError>;
    fn send_response(
        &self,
        status: u16,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<(), HostError>;
    fn resume_request(&self) -> Result<(), HostError>;
    /// Starts an HTTP call; its response goes to the effective context.
    fn dispatch(&self, request: &OutboundRequest) -> Result<u32, HostError>;
    /// Makes the following calls act for `context_id` (the root context starting a fetch for
    /// the worker, or resuming a request that waited for it).
    fn set_effective_context(&self, context_id: u32) -> Result<(), HostError>;
    fn call_response_headers(&self) -> Result<Headers, HostError>;
    /// How many headers the host announced with `on_http_call_response` (as
    /// `request_header_count`).
    fn call_response_header_count(&self) -> usize;
    /// The first `len` bytes of the call's response body.
    fn call_response_body(&self, len: usize) -> Result<Vec<u8>, HostError>;
    /// Shared data and its version; `Ok(None)` when the key is absent.
    fn shared_get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError>;
    /// Writes shared data if the key still has `version`; `Ok(false)` on a version mismatch.
    /// `None` is the host's version 0: Kong's engine takes it as "only if absent", Envoy as
    /// "whatever is there" (docs/hosts.md).
    fn shared_set(&self, key: &str, value: &[u8], version: Option<u32>) -> Result<bool, HostError>;
    fn shared_load(&self, key: &str) -> Option<Vec<u8>> {
        self.shared_get(key).ok().flatten().map(|(value, _)| value)
    }
    /// Writes shared data whatever is there: with the version just read, since Kong's engine
    /// refuses a write without one to an existing key. A lost race is a later cache miss.
    fn shared_save(&self, key: &str, value: &[u8]) -> Result<(), HostError> {
        let version = self.shared_get(key)?.map(|(_, v)| v);
        self.shared_set(key, value, version).map(|_| ())
    }
    /// Counting and logging cannot change a decision; their failures are dropped.
    fn count(&self, metric: Metric);
    fn log(&self, level: LogLevel, message: &str);
    fn set_tick_period(&self, period: Duration) -> Result<(), HostError>;
}

/// The host's shared data as a cache store. A failed save only costs a later cache miss.
pub struct SharedStore<'a, H: Host>(pub &'a H);

impl<H: Host> Store for SharedStore<'_, H> {
    fn load(&self, key: &str) -> Option<Vec<u8>> {
        self.0.shared_load(key)
    }
    fn save(&self, key: &str, value: &[u8]) {
        if let Err(e) = self.0.shared_save(key, value) {
            self.0
                .log(LogLevel::Debug, &format!("shared cache write failed: {e}"));
        }
    }
    fn load_versioned(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, String> {
        self.0.shared_get(key).map_err(|e| e.to_string())
    }
    fn save_versioned(
        &self,
        key: &str,
        value: &[u8],
        version: Option<u32>,
    ) -> Result<bool, String> {
        self.0
            .shared_set(key, value, version)
            .map_err(|e| e.to_string())
    }
}

/// The engine we run in, which decides where the client certificate is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Envoy,
    /// Kong Gateway's ngx_wasm_module: Envoy's connection properties are absent and each read
    /// of one logs an `[alert]`, so they are never read there (docs/hosts.md).
    Nginx,
}

/// Tells the engines apart by a property only nginx has: `ngx.*` exposes nginx variables,
/// and `$server_port` exists on every request (empty on a unix-socket listener, which is
/// still nginx). Envoy answers an unknown path with NotFound. A host that fails to answer
/// decides nothing: the caller must not guess (guessing Envoy on Kong would remove headers
/// where only overwriting works, and act for requests from the root context).
pub fn detect_engine(host: &impl Host) -> Result<Engine, HostError> {
    Ok(match host.property(&["ngx", "server_port"])? {
        Some(_) => Engine::Nginx,
        None => Engine::Envoy,
    })
}

/// Whether the root context runs on Envoy, told without a request: Envoy refuses a context id
/// that does not exist (BadArgument) and answers NotFound for `ngx.*`. Kong's engine takes any
/// id (its `proxy_set_effective_context` does nothing), and is never asked for `ngx.*` here,
/// which would log an error line there ("cannot get ngx properties outside of a request").
/// Only this positive evidence counts as Envoy: what it decides must fail closed elsewhere.
pub fn root_is_envoy(host: &impl Host) -> bool {
    host.set_effective_context(NO_SUCH_CONTEXT).is_err()
        && matches!(host.property(&["ngx", "server_port"]), Ok(None))
}

/// A context id no host hands out (ids count up from 1).
pub const NO_SUCH_CONTEXT: u32 = u32::MAX;

/// ngx_wasm_module hands a filter at most this many header pairs (pseudo-headers first) and
/// forwards the rest unseen; for a longer map it reports a buffer size smaller than what it
/// writes into it (ngx_http_wasm_util.c `max_pairs`, docs/hosts.md). So a map that may not fit
/// is never read there.
pub const NGINX_MAX_HEADER_PAIRS: usize = 100;
/// The pseudo-headers Kong's engine puts before the request headers (`:path`, `:method`,
/// `:scheme`, `:authority`) and before a call response's (`:status`, `:dispatch_status`).
pub const NGINX_REQUEST_PSEUDO_HEADERS: usize = 4;
pub const NGINX_CALL_PSEUDO_HEADERS: usize = 2;

/// Whether Kong's engine can hand over a map of `count` headers plus `pseudo` pseudo-headers
/// whole: one that reaches the cap is refused unread.
pub fn nginx_map_fits(count: usize, pseudo: usize) -> bool {
    count.saturating_add(pseudo) < NGINX_MAX_HEADER_PAIRS
}

/// Envoy: ready-made hex SHA-256 of the peer certificate's DER.
pub const ENVOY_DIGEST: [&str; 2] = ["connection", "sha256_peer_certificate_digest"];
/// Envoy: the peer certificate, PEM.
pub const ENVOY_PEM: [&str; 2] = ["connection", "peer_certificate"];
/// nginx `$ssl_client_raw_cert`: the client certificate, PEM.
pub const NGINX_PEM: [&str; 2] = ["ngx", "ssl_client_raw_cert"];

/// Why no thumbprint came from the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoCertificate {
    /// The client presented none.
    Absent,
    /// The host handed us something that is not a certificate.
    Unreadable(CertError),
    /// The host failed to answer.
    Host(HostError),
}

/// The connection's client certificate thumbprint, from the sources of this engine in
/// order: Envoy's digest, Envoy's PEM; or nginx's PEM.
pub fn connection_thumbprint(
    host: &impl Host,
    engine: Engine,
    known: &KnownCertificates,
) -> Result<Thumbprint, NoCertificate> {
    let present = |path: &[&str]| -> Result<Option<Vec<u8>>, NoCertificate> {
        Ok(host
            .property(path)
            .map_err(NoCertificate::Host)?
            .filter(|v| !v.trim_ascii().is_empty()))
    };
    let found = match engine {
        Engine::Envoy => match present(&ENVOY_DIGEST)? {
            Some(hex) => Some(Thumbprint::from_hex(&hex)),
            None => present(&ENVOY_PEM)?.map(|pem| known.thumbprint_of_pem(&pem)),
        },
        Engine::Nginx => present(&NGINX_PEM)?.map(|pem| known.thumbprint_of_pem(&pem)),
    };
    match found {
        None => Err(NoCertificate::Absent),
        Some(result) => result.map_err(NoCertificate::Unreadable),
    }
}
