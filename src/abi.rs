//! The proxy-wasm host layer (wasm builds only): implements `Host` with the raw hostcalls and
//! maps the SDK's callbacks onto `filter`. Host calls go through `hostcalls`, whose errors
//! (NotFound, BadArgument, ...) are handled here rather than unwrapped as the SDK's trait
//! helpers do: a panic takes the whole VM down, and with `FAIL_CLOSED` every later request on
//! that worker gets a 503. (The SDK still panics on a status no host documents for a call.)

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, MapType, MetricType, Status};

use crate::config::Settings;
use crate::endpoint::OutboundRequest;
use crate::filter::{Flow, RequestFilter, Worker};
use crate::host::{Host, LogLevel};
use crate::metrics;

proxy_wasm::main! {{
    // Installs the SDK's panic hook, so a bug shows up in the host log before the VM aborts.
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// Metric ids by name, defined on first use (or up front at configure time).
type Metrics = Rc<RefCell<HashMap<&'static str, u32>>>;

/// `Host` over the proxy-wasm ABI, for whichever context is current.
struct AbiHost {
    metrics: Metrics,
}

fn level(l: LogLevel) -> proxy_wasm::types::LogLevel {
    match l {
        LogLevel::Debug => proxy_wasm::types::LogLevel::Debug,
        LogLevel::Info => proxy_wasm::types::LogLevel::Info,
        LogLevel::Warn => proxy_wasm::types::LogLevel::Warn,
        LogLevel::Error => proxy_wasm::types::LogLevel::Error,
    }
}

fn status_text(s: Status) -> String {
    format!("{s:?}")
}

impl Host for AbiHost {
    fn now(&self) -> u64 {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs())
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        hostcalls::get_property(path.to_vec()).ok().flatten()
    }

    fn request_headers(&self) -> Vec<(String, Vec<u8>)> {
        hostcalls::get_map_bytes(MapType::HttpRequestHeaders).unwrap_or_default()
    }

    fn set_request_header(&self, name: &str, value: &str) {
        if let Err(s) = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value)) {
            self.log(
                LogLevel::Warn,
                &format!("could not set header {name}: {}", status_text(s)),
            );
        }
    }

    fn remove_request_header(&self, name: &str) {
        let _ = hostcalls::remove_map_value(MapType::HttpRequestHeaders, name);
    }

    fn send_response(&self, status: u16, headers: &[(&str, &str)], body: Option<&[u8]>) {
        if let Err(s) = hostcalls::send_http_response(u32::from(status), headers.to_vec(), body) {
            self.log(
                LogLevel::Error,
                &format!("local reply failed: {}", status_text(s)),
            );
        }
    }

    fn resume_request(&self) {
        if let Err(s) = hostcalls::resume_http_request() {
            self.log(
                LogLevel::Error,
                &format!("resume failed: {}", status_text(s)),
            );
        }
    }

    fn dispatch(&self, request: &OutboundRequest) -> Result<u32, String> {
        let headers: Vec<(&str, &str)> = request
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        hostcalls::dispatch_http_call(
            &request.upstream,
            headers,
            request.body.as_deref(),
            Vec::new(),
            request.timeout,
        )
        .map_err(|s| {
            format!(
                "dispatch to {} failed: {}",
                request.upstream,
                status_text(s)
            )
        })
    }

    fn call_response_headers(&self) -> Vec<(String, Vec<u8>)> {
        hostcalls::get_map_bytes(MapType::HttpCallResponseHeaders).unwrap_or_default()
    }

    fn call_response_body(&self, len: usize) -> Vec<u8> {
        if len == 0 {
            return Vec::new();
        }
        hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, len)
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    fn shared_load(&self, key: &str) -> Option<Vec<u8>> {
        hostcalls::get_shared_data(key)
            .ok()
            .and_then(|(value, _)| value)
    }

    fn shared_save(&self, key: &str, value: &[u8]) -> Result<(), String> {
        // Write with the version we read: Kong's engine refuses a write without one to an
        // existing key. A lost race is a cache miss later, not worth a retry loop.
        let cas = hostcalls::get_shared_data(key)
            .ok()
            .and_then(|(_, cas)| cas);
        hostcalls::set_shared_data(key, Some(value), cas).map_err(status_text)
    }

    fn count(&self, metric: &'static str) {
        let id = self.metrics.borrow().get(metric).copied();
        let id = match id {
            Some(id) => id,
            None => match hostcalls::define_metric(MetricType::Counter, metric) {
                Ok(id) => {
                    self.metrics.borrow_mut().insert(metric, id);
                    id
                }
                Err(_) => return,
            },
        };
        let _ = hostcalls::increment_metric(id, 1);
    }

    fn log(&self, l: LogLevel, message: &str) {
        let _ = hostcalls::log(level(l), message);
    }

    fn set_tick_period(&self, period: Duration) {
        let _ = hostcalls::set_tick_period(period);
    }
}

/// The root context: configuration and the periodic JWKS refresh.
#[derive(Default)]
struct Root {
    worker: Option<Rc<Worker>>,
    metrics: Metrics,
    ticking: bool,
}

impl Root {
    fn host(&self) -> AbiHost {
        AbiHost {
            metrics: Rc::clone(&self.metrics),
        }
    }
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        if let Some(worker) = &self.worker {
            worker.on_root_call_response(&self.host(), token_id, body_size);
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, size: usize) -> bool {
        let host = self.host();
        let bytes = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size)
            .ok()
            .flatten()
            .unwrap_or_default();
        let settings = match Settings::from_json(&bytes) {
            Ok(s) => s,
            Err(e) => {
                host.log(LogLevel::Error, &format!("{e}"));
                return false;
            }
        };
        let worker = Rc::new(Worker::new(settings));
        for line in worker.startup_log() {
            host.log(LogLevel::Info, &line);
        }
        for name in metrics::all() {
            host.count_define(name);
        }
        // Kong's engine traps on a second set_tick_period from the same root context.
        if !self.ticking
            && worker
                .settings
                .bearer
                .as_ref()
                .is_some_and(|b| b.jwks_endpoint.is_some())
        {
            host.set_tick_period(Duration::from_secs(1));
            self.ticking = true;
        }
        self.worker = Some(worker);
        true
    }

    fn on_tick(&mut self) {
        if let Some(worker) = &self.worker {
            worker.on_tick(&self.host());
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request {
            filter: self
                .worker
                .as_ref()
                .map(|w| RequestFilter::new(Rc::clone(w))),
            host: self.host(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

impl AbiHost {
    fn count_define(&self, metric: &'static str) {
        if self.metrics.borrow().contains_key(metric) {
            return;
        }
        if let Ok(id) = hostcalls::define_metric(MetricType::Counter, metric) {
            self.metrics.borrow_mut().insert(metric, id);
        }
    }
}

/// One HTTP request. Without a configuration (a host that kept the filter after a refused
/// one) every request is refused.
struct Request {
    filter: Option<RequestFilter>,
    host: AbiHost,
}

impl Context for Request {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        if let Some(filter) = &mut self.filter {
            filter.on_call_response(&self.host, token_id, body_size);
        }
    }
}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let Some(filter) = &mut self.filter else {
            self.host
                .log(LogLevel::Error, "not configured; refusing the request");
            self.host
                .send_response(503, &[("cache-control", "no-store")], None);
            return Action::Pause;
        };
        match filter.on_request_headers(&self.host) {
            Flow::Continue => Action::Continue,
            Flow::Pause => Action::Pause,
        }
    }
}
