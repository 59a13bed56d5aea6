//! The proxy-wasm host layer (wasm builds only): implements `Host` with the non-panicking
//! calls of `calls`, and maps the SDK's callbacks onto `flow`. Nothing here decides.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, Status};

use crate::config::Settings;
use crate::endpoint::OutboundRequest;
use crate::flow::request::{Flow, RequestFilter};
use crate::flow::worker::Worker;
use crate::host::{Headers, Host, HostError, LogLevel, calls, root_is_envoy};
use crate::reply::metrics::Metric;

proxy_wasm::main! {{
    // Installs the SDK's panic hook: a bug shows in the host log before the VM aborts.
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
        Box::new(Root { id: context_id, ..Root::default() })
    });
}}

/// Metric ids by name, defined up front at configure time (or on first use).
type Metrics = Rc<RefCell<HashMap<&'static str, u32>>>;

fn define_counters(metrics: &Metrics) {
    for m in Metric::all() {
        if let Ok(id) = calls::define_counter(m.name()) {
            metrics.borrow_mut().insert(m.name(), id);
        }
    }
}

/// `Host` over the proxy-wasm ABI, for whichever context is effective.
struct AbiHost {
    metrics: Metrics,
    /// The header counts the current request's callbacks announced.
    request_headers: Cell<usize>,
    call_headers: Cell<usize>,
}

fn failed(call: &str, status: calls::Status) -> HostError {
    HostError::Failed(format!("{call} failed with status {status}"))
}

fn level(l: LogLevel) -> proxy_wasm::types::LogLevel {
    match l {
        LogLevel::Debug => proxy_wasm::types::LogLevel::Debug,
        LogLevel::Info => proxy_wasm::types::LogLevel::Info,
        LogLevel::Warn => proxy_wasm::types::LogLevel::Warn,
        LogLevel::Error => proxy_wasm::types::LogLevel::Error,
    }
}

/// Header names as strings; one that is not UTF-8 is refused (a request carrying it is a
/// 400), never a panic.
fn headers(map_type: u32, call: &str) -> Result<Headers, HostError> {
    let pairs = calls::header_pairs(map_type).map_err(|s| failed(call, s))?;
    pairs
        .into_iter()
        .map(|(k, v)| {
            String::from_utf8(k)
                .map(|k| (k, v))
                .map_err(|_| HostError::HeaderNameNotUtf8)
        })
        .collect()
}

impl Host for AbiHost {
    fn now(&self) -> Result<u64, HostError> {
        calls::now_nanos()
            .map(|n| n / 1_000_000_000)
            .map_err(|s| failed("proxy_get_current_time_nanoseconds", s))
    }

    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
        calls::property(path).map_err(|s| failed("proxy_get_property", s))
    }

    fn request_headers(&self) -> Result<Headers, HostError> {
        headers(calls::HTTP_REQUEST_HEADERS, "proxy_get_header_map_pairs")
    }

    fn request_header_count(&self) -> usize {
        self.request_headers.get()
    }

    fn call_response_header_count(&self) -> usize {
        self.call_headers.get()
    }

    fn set_request_header(&self, name: &str, value: &str) -> Result<(), HostError> {
        calls::replace_header(calls::HTTP_REQUEST_HEADERS, name, value)
            .map_err(|s| failed("proxy_replace_header_map_value", s))
    }

    fn remove_request_header(&self, name: &str) -> Result<(), HostError> {
        calls::remove_header(calls::HTTP_REQUEST_HEADERS, name)
            .map_err(|s| failed("proxy_remove_header_map_value", s))
    }

    fn send_response(
        &self,
        status: u16,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<(), HostError> {
        calls::send_local_response(status, headers, body)
            .map_err(|s| failed("proxy_send_local_response", s))
    }

    fn resume_request(&self) -> Result<(), HostError> {
        calls::resume_request().map_err(|s| failed("proxy_continue_stream", s))
    }

    fn dispatch(&self, request: &OutboundRequest) -> Result<u32, HostError> {
        let headers: Vec<(&str, &str)> = request
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        // The SDK's call: its dispatcher must register the token (calls.rs says why).
        hostcalls::dispatch_http_call(
            &request.upstream,
            headers,
            request.body.as_deref(),
            Vec::new(),
            request.timeout,
        )
        .map_err(|s: Status| HostError::Failed(format!("proxy_http_call failed: {s:?}")))
    }

    fn set_effective_context(&self, context_id: u32) -> Result<(), HostError> {
        calls::set_effective_context(context_id)
            .map_err(|s| failed("proxy_set_effective_context", s))
    }

    fn call_response_headers(&self) -> Result<Headers, HostError> {
        // The IdP's pseudo-headers and headers; a name that is not UTF-8 fails the call.
        headers(
            calls::HTTP_CALL_RESPONSE_HEADERS,
            "proxy_get_header_map_pairs",
        )
    }

    fn call_response_body(&self, len: usize) -> Result<Vec<u8>, HostError> {
        if len == 0 {
            return Ok(Vec::new());
        }
        calls::buffer(proxy_wasm::types::BufferType::HttpCallResponseBody, len)
            .map_err(|s| failed("proxy_get_buffer_bytes", s))
    }

    fn shared_get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
        match calls::shared_data(key) {
            // A value without a version: treat as version 0, which neither host hands out.
            Ok((Some(value), cas)) => Ok(Some((value, cas.unwrap_or(0)))),
            Ok((None, _)) => Ok(None),
            Err(s) => Err(failed("proxy_get_shared_data", s)),
        }
    }

    fn shared_set(&self, key: &str, value: &[u8], version: Option<u32>) -> Result<bool, HostError> {
        match calls::set_shared_data(key, value, version.filter(|v| *v != 0)) {
            Ok(()) => Ok(true),
            Err(calls::CAS_MISMATCH) => Ok(false),
            Err(s) => Err(failed("proxy_set_shared_data", s)),
        }
    }

    fn count(&self, metric: Metric) {
        // Not defined at configure time (Kong's engine): all of them at the first count, where
        // a trap fails one request (500), never the configuration.
        if self.metrics.borrow().is_empty() {
            define_counters(&self.metrics);
        }
        let name = metric.name();
        let known = self.metrics.borrow().get(name).copied();
        let id = match known {
            Some(id) => id,
            None => match calls::define_counter(name) {
                Ok(id) => {
                    self.metrics.borrow_mut().insert(name, id);
                    id
                }
                Err(_) => return,
            },
        };
        let _ = calls::increment(id);
    }

    fn log(&self, l: LogLevel, message: &str) {
        let _ = calls::log(level(l), message);
    }

    fn set_tick_period(&self, period: Duration) -> Result<(), HostError> {
        // The SDK casts the milliseconds to u32 (wrapping): clamp them first.
        let ms = u64::try_from(period.as_millis())
            .unwrap_or(u64::MAX)
            .clamp(1, u64::from(u32::MAX));
        calls::set_tick_period(Duration::from_millis(ms))
            .map_err(|s| failed("proxy_set_tick_period_milliseconds", s))
    }
}

/// The root context: configuration, the tick and the worker's JWKS fetches.
#[derive(Default)]
struct Root {
    id: u32,
    worker: Option<Rc<Worker>>,
    /// Why the configuration was refused, where the filter stays loaded refusing requests.
    refused: Option<Rc<Refused>>,
    metrics: Metrics,
    ticking: bool,
}

/// A refused configuration on a host that keeps the filter: every request gets 503, and the
/// reason goes to the error log at most once a minute per worker.
struct Refused {
    reason: String,
    logged_at: Cell<Option<u64>>,
}

impl Refused {
    fn refuse(&self, host: &AbiHost) {
        let now = host.now().unwrap_or(0);
        if self
            .logged_at
            .get()
            .is_none_or(|at| now.saturating_sub(at) >= 60)
        {
            self.logged_at.set(Some(now));
            host.log(
                LogLevel::Error,
                &format!("refusing every request (503): {}", self.reason),
            );
        }
        let _ = host.send_response(503, &[("cache-control", "no-store")], None);
    }
}

impl Root {
    fn host(&self) -> AbiHost {
        AbiHost {
            metrics: Rc::clone(&self.metrics),
            request_headers: Cell::new(0),
            call_headers: Cell::new(0),
        }
    }
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        if let Some(worker) = &self.worker {
            let host = self.host();
            host.call_headers.set(headers);
            worker.on_root_call_response(&host, token_id, body_size);
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, size: usize) -> bool {
        let host = self.host();
        let envoy = root_is_envoy(&host);
        let bytes = calls::buffer(proxy_wasm::types::BufferType::PluginConfiguration, size)
            .unwrap_or_default();
        let settings = match Settings::from_json(&bytes) {
            Ok(s) => s,
            Err(e) => {
                host.log(LogLevel::Error, &format!("{e}"));
                // Envoy refuses the configuration at load time (the listener or the update
                // does not take it). Anywhere else the filter stays loaded and answers every
                // request 503: on Kong's engine `false` makes the worker exit for good, and
                // Kong drops the filter and proxies the route unprotected (docs/hosts.md).
                if envoy {
                    return false;
                }
                self.worker = None;
                self.refused = Some(Rc::new(Refused {
                    reason: e.to_string(),
                    logged_at: Cell::new(None),
                }));
                return true;
            }
        };
        self.refused = None;
        // Counters defined up front show at zero in Envoy's /stats. Not on Kong's engine, which
        // traps a define it refuses (a long filter name, a full metrics zone): a trap here is
        // a refused configuration, which Kong answers by proxying the route without the
        // filter. There they are defined at the first count, in a request (`count`).
        if envoy {
            define_counters(&self.metrics);
        }
        let worker = Rc::new(Worker::new(settings));
        worker.set_root_context(self.id);
        for (level, line) in worker.startup_log() {
            host.log(level, &line);
        }
        // Kong's engine traps on a second set_tick_period from the same root context.
        if !self.ticking
            && let Some(period) = worker.needs_tick()
        {
            match host.set_tick_period(period) {
                Ok(()) => self.ticking = true,
                Err(e) => host.log(LogLevel::Warn, &format!("no tick, no JWKS refresh: {e}")),
            }
        }
        self.worker = Some(worker);
        true
    }

    fn on_tick(&mut self) {
        if let Some(worker) = &self.worker {
            worker.on_tick(&self.host());
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request {
            filter: self
                .worker
                .as_ref()
                .map(|w| RequestFilter::new(Rc::clone(w), context_id)),
            refused: self.refused.clone(),
            host: self.host(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// One HTTP request. Without a configuration (a host that kept the filter after a refused
/// one) every request is refused.
struct Request {
    filter: Option<RequestFilter>,
    refused: Option<Rc<Refused>>,
    host: AbiHost,
}

impl Context for Request {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        if let Some(filter) = &self.filter {
            self.host.call_headers.set(headers);
            filter.on_call_response(&self.host, token_id, body_size);
        }
    }
}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, headers: usize, _end_of_stream: bool) -> Action {
        self.host.request_headers.set(headers);
        let Some(filter) = &self.filter else {
            match &self.refused {
                Some(refused) => refused.refuse(&self.host),
                None => {
                    self.host
                        .log(LogLevel::Error, "not configured; refusing the request");
                    let _ = self
                        .host
                        .send_response(503, &[("cache-control", "no-store")], None);
                }
            }
            return Action::Pause;
        };
        match filter.on_request_headers(&self.host) {
            Flow::Continue => Action::Continue,
            Flow::Pause => Action::Pause,
        }
    }

    /// Request trailers (Envoy; Kong's engine has none): a header this gateway sets or
    /// believes must not arrive there instead, where some upstreams merge trailers in.
    fn on_http_request_trailers(&mut self, _trailers: usize) -> Action {
        if let Some(filter) = &self.filter {
            for name in filter.reserved_headers() {
                if let Err(s) = calls::remove_header(calls::HTTP_REQUEST_TRAILERS, &name) {
                    self.host.log(
                        LogLevel::Warn,
                        &format!("could not remove trailer {name}: status {s}"),
                    );
                }
            }
        }
        Action::Continue
    }
}
