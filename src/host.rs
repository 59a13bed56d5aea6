//! What the filter needs from its host (Envoy or Kong's ngx_wasm_module), as a trait: the
//! wasm build implements it over the proxy-wasm ABI (`abi.rs`), tests with a fake host.
//! Also the host differences that are data rather than calls: which engine we run on and
//! where it keeps the client certificate (see docs/hosts.md).

use std::time::Duration;

use crate::cache::Store;
use crate::certificate::Thumbprint;
use crate::endpoint::OutboundRequest;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

/// The proxy-wasm calls the filter makes. Errors are strings for the log; the filter decides
/// what a failure means (always: fail closed).
pub trait Host {
    /// Seconds since the Unix epoch.
    fn now(&self) -> u64;
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;
    fn request_headers(&self) -> Vec<(String, Vec<u8>)>;
    /// Replaces every copy of the header with one value.
    fn set_request_header(&self, name: &str, value: &str);
    fn remove_request_header(&self, name: &str);
    fn send_response(&self, status: u16, headers: &[(&str, &str)], body: Option<&[u8]>);
    fn resume_request(&self);
    fn dispatch(&self, request: &OutboundRequest) -> Result<u32, String>;
    fn call_response_headers(&self) -> Vec<(String, Vec<u8>)>;
    /// The first `len` bytes of the call's response body.
    fn call_response_body(&self, len: usize) -> Vec<u8>;
    fn shared_load(&self, key: &str) -> Option<Vec<u8>>;
    /// Writes shared data whatever is there. Kong's engine compares versions on every write
    /// (no version means "only if absent"), so implementations read the version first.
    fn shared_save(&self, key: &str, value: &[u8]) -> Result<(), String>;
    fn count(&self, metric: &'static str);
    fn log(&self, level: LogLevel, message: &str);
    fn set_tick_period(&self, period: Duration);
}

/// The host's shared data as a cache store. A failed save only costs a later cache miss.
pub struct SharedStore<'a, H: Host>(pub &'a H);

impl<H: Host> Store for SharedStore<'_, H> {
    fn load(&self, key: &str) -> Option<Vec<u8>> {
        self.0.shared_load(key)
    }
    fn save(&self, key: &str, value: &[u8]) {
        if let Err(e) = self.0.shared_save(key, value) {
            self.0.log(
                LogLevel::Debug,
                &format!("introspection cache write failed: {e}"),
            );
        }
    }
}

/// The engine we run in, which decides where the client certificate is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Envoy,
    /// Kong Gateway's ngx_wasm_module: Envoy's connection properties are absent and each read
    /// of one logs an `[alert]`, so they are never read there.
    Nginx,
}

/// Tells the engines apart by a property only nginx has: `ngx.*` exposes nginx variables,
/// and `$server_port` is set on every request. Envoy answers an unknown path with NotFound.
pub fn detect_engine(host: &impl Host) -> Engine {
    if host
        .property(&["ngx", "server_port"])
        .is_some_and(|v| !v.is_empty())
    {
        Engine::Nginx
    } else {
        Engine::Envoy
    }
}

/// Envoy: ready-made hex SHA-256 of the peer certificate's DER.
pub const ENVOY_DIGEST: [&str; 2] = ["connection", "sha256_peer_certificate_digest"];
/// Envoy: the peer certificate, PEM.
pub const ENVOY_PEM: [&str; 2] = ["connection", "peer_certificate"];
/// nginx `$ssl_client_raw_cert`: the client certificate, PEM.
pub const NGINX_PEM: [&str; 2] = ["ngx", "ssl_client_raw_cert"];

/// Why no thumbprint came from the connection, for the debug log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoCertificate {
    /// The client presented none.
    Absent,
    /// The host handed us something that is not a certificate.
    Unreadable(crate::certificate::CertError),
}

/// The connection's client certificate thumbprint, from the sources of this engine in
/// order: Envoy's digest, Envoy's PEM; or nginx's PEM.
pub fn connection_thumbprint(
    host: &impl Host,
    engine: Engine,
) -> Result<Thumbprint, NoCertificate> {
    let present = |path: &[&str]| host.property(path).filter(|v| !v.trim_ascii().is_empty());
    let found = match engine {
        Engine::Envoy => present(&ENVOY_DIGEST)
            .map(|hex| Thumbprint::from_hex(&hex))
            .or_else(|| present(&ENVOY_PEM).map(|pem| Thumbprint::from_pem(&pem))),
        Engine::Nginx => present(&NGINX_PEM).map(|pem| Thumbprint::from_pem(&pem)),
    };
    match found {
        None => Err(NoCertificate::Absent),
        Some(result) => result.map_err(NoCertificate::Unreadable),
    }
}
