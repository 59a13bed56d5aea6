//! A fake proxy-wasm host that records what the filter does, shaped after Envoy 1.40 or
//! Kong's ngx_wasm_module with the values docs/hosts.md records from those engines.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::Duration;

use certbound::endpoint::OutboundRequest;
use certbound::host::{Headers, Host, HostError, LogLevel};
use certbound::reply::metrics::Metric;

/// The root context's id in these tests; request contexts are 2 and up.
pub const ROOT: u32 = 1;
/// The request context `run` creates.
pub const REQUEST: u32 = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentResponse {
    /// The effective context the reply was sent for.
    pub context: u32,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

impl SentResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(self.body.as_deref().unwrap_or_default()).unwrap()
    }
}

/// Host calls a test can make fail, as a real host may.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fail {
    Clock,
    Property,
    RequestHeaders,
    HeaderNameNotUtf8,
    HeaderWrites,
    LocalReply,
    Resume,
    TickPeriod,
    SharedData,
}

#[derive(Default)]
pub struct FakeHost {
    pub now: Cell<u64>,
    /// Kong's engine: `set_effective_context` does nothing (docs/hosts.md).
    pub kong: Cell<bool>,
    /// The context host calls act for: the current callback's, or what
    /// `set_effective_context` chose.
    pub effective: Cell<u32>,
    pub failing: RefCell<Vec<Fail>>,
    pub properties: RefCell<HashMap<String, Vec<u8>>>,
    pub headers: RefCell<Vec<(String, Vec<u8>)>>,
    pub responses: RefCell<Vec<SentResponse>>,
    pub resumed: Cell<u32>,
    /// The effective context of each resume.
    pub resumed_contexts: RefCell<Vec<u32>>,
    pub dispatched: RefCell<Vec<OutboundRequest>>,
    /// The effective context of each dispatch (its response goes there).
    pub dispatched_from: RefCell<Vec<u32>>,
    /// `Err` makes every dispatch fail (Envoy: unknown cluster; Kong: bad upstream).
    pub dispatch_error: RefCell<Option<String>>,
    pub call_headers: RefCell<Vec<(String, Vec<u8>)>>,
    pub call_body: RefCell<Vec<u8>>,
    pub shared: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    /// The last version handed out (both engines number writes process-wide).
    pub next_cas: Cell<u32>,
    /// Kong's engine without an `shm_kv` zone traps on shared data: count any use.
    pub shared_calls: Cell<u32>,
    pub metrics: RefCell<HashMap<&'static str, u64>>,
    pub logs: RefCell<Vec<(LogLevel, String)>>,
    pub tick: Cell<Option<Duration>>,
    /// Every tick period set, in order.
    pub ticks_set: RefCell<Vec<Duration>>,
    /// Every property path read, dotted.
    pub reads: RefCell<Vec<String>>,
    /// The header count `on_http_request_headers` announces, when a test makes it differ
    /// from the headers (Kong's engine announces every header, then hands over at most 100).
    pub announced_request_headers: Cell<Option<usize>>,
}

impl FakeHost {
    /// Envoy 1.40 with a client certificate: hex digest and PEM properties, `ip:port` source.
    pub fn envoy(cert_pem: Option<&str>, cert_hex: Option<&str>) -> FakeHost {
        let h = FakeHost {
            now: Cell::new(super::NOW),
            effective: Cell::new(REQUEST),
            ..Default::default()
        };
        if let Some(hex) = cert_hex {
            h.set_property("connection.sha256_peer_certificate_digest", hex.as_bytes());
        }
        if let Some(pem) = cert_pem {
            h.set_property("connection.peer_certificate", pem.as_bytes());
        }
        h.set_property("source.address", b"127.0.0.1:45976");
        h
    }

    /// Kong's engine: nginx variables under `ngx.*` as UTF-8 strings, bare-IP source address,
    /// and none of Envoy's certificate properties.
    pub fn kong(cert_pem: Option<&str>) -> FakeHost {
        let h = FakeHost {
            now: Cell::new(super::NOW),
            effective: Cell::new(REQUEST),
            kong: Cell::new(true),
            ..Default::default()
        };
        h.set_property("ngx.server_port", b"8443");
        h.set_property("source.address", b"127.0.0.1");
        h.set_property(
            "connection.mtls",
            if cert_pem.is_some() {
                b"true"
            } else {
                b"false"
            },
        );
        match cert_pem {
            Some(pem) => {
                h.set_property("ngx.ssl_client_raw_cert", pem.as_bytes());
                h.set_property("ngx.ssl_client_verify", b"SUCCESS");
            }
            None => h.set_property("ngx.ssl_client_verify", b"NONE"),
        }
        h
    }

    pub fn set_property(&self, dotted: &str, value: &[u8]) {
        self.properties
            .borrow_mut()
            .insert(dotted.to_string(), value.to_vec());
    }

    pub fn request(&self, path: &str, headers: &[(&str, &str)]) {
        let mut all = vec![
            (":method".to_string(), b"GET".to_vec()),
            (":path".to_string(), path.as_bytes().to_vec()),
            (":authority".to_string(), b"api.example".to_vec()),
        ];
        all.extend(
            headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())),
        );
        *self.headers.borrow_mut() = all;
        self.set_property("request.path", path.as_bytes());
    }

    pub fn bearer(&self, token: &str) {
        self.request(
            "/accounts",
            &[("authorization", &format!("Bearer {token}"))],
        );
    }

    /// The response the host hands to `on_http_call_response`.
    pub fn call_returns(&self, headers: &[(&str, &str)], body: &[u8]) {
        *self.call_headers.borrow_mut() = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect();
        *self.call_body.borrow_mut() = body.to_vec();
    }

    pub fn last_response(&self) -> Option<SentResponse> {
        self.responses.borrow().last().cloned()
    }

    pub fn header_values(&self, name: &str) -> Vec<String> {
        self.headers
            .borrow()
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    pub fn metric(&self, metric: Metric) -> u64 {
        self.metrics
            .borrow()
            .get(metric.name())
            .copied()
            .unwrap_or(0)
    }

    pub fn fail(&self, what: Fail) {
        self.failing.borrow_mut().push(what);
    }

    fn check(&self, what: Fail) -> Result<(), HostError> {
        if self.failing.borrow().contains(&what) {
            Err(HostError::Failed(format!("{what:?} failed (test)")))
        } else {
            Ok(())
        }
    }

    /// The callback that runs next is the root context's (its tick or call response).
    pub fn as_root(&self) -> &Self {
        self.effective.set(ROOT);
        self
    }

    /// The callback that runs next is request context `id`'s.
    pub fn as_request(&self, id: u32) -> &Self {
        self.effective.set(id);
        self
    }

    pub fn log_text(&self) -> String {
        self.logs
            .borrow()
            .iter()
            .map(|(_, m)| m.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Host for FakeHost {
    fn now(&self) -> Result<u64, HostError> {
        self.check(Fail::Clock)?;
        Ok(self.now.get())
    }

    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
        self.check(Fail::Property)?;
        self.reads.borrow_mut().push(path.join("."));
        // What each engine makes of the SDK's encoding (parts joined by NUL, none after the
        // last; docs/abi.md §1): ngx_wasm_module turns each NUL into a dot and looks the whole
        // name up, so an empty part (a trailing NUL) is a name that does not exist; Envoy walks
        // the parts and ignores a trailing NUL, and a part with a dot in it is not the path it
        // looks like there.
        let last = path.len().saturating_sub(1);
        let lost = if self.kong.get() {
            path.iter().any(|p| p.is_empty())
        } else {
            path.iter()
                .enumerate()
                .any(|(i, p)| p.contains('.') || (p.is_empty() && i != last))
        };
        if lost {
            return Ok(None);
        }
        // Kong's engine has no request to read nginx variables from in the root context:
        // InternalFailure, and an [error] line (ngx_proxy_wasm_properties.c).
        if self.kong.get() && self.effective.get() == ROOT && path.first() == Some(&"ngx") {
            return Err(HostError::Failed(
                "proxy_get_property failed with status 10".into(),
            ));
        }
        let parts = match path.split_last() {
            Some((&"", rest)) if !self.kong.get() => rest,
            _ => path,
        };
        Ok(self.properties.borrow().get(&parts.join(".")).cloned())
    }

    fn request_header_count(&self) -> usize {
        self.announced_request_headers.get().unwrap_or_else(|| {
            self.headers
                .borrow()
                .iter()
                .filter(|(k, _)| !k.starts_with(':'))
                .count()
        })
    }

    fn call_response_header_count(&self) -> usize {
        self.call_headers
            .borrow()
            .iter()
            .filter(|(k, _)| !k.starts_with(':'))
            .count()
    }

    fn request_headers(&self) -> Result<Headers, HostError> {
        self.check(Fail::RequestHeaders)?;
        if self.failing.borrow().contains(&Fail::HeaderNameNotUtf8) {
            return Err(HostError::HeaderNameNotUtf8);
        }
        Ok(self.headers.borrow().clone())
    }

    fn set_request_header(&self, name: &str, value: &str) -> Result<(), HostError> {
        self.check(Fail::HeaderWrites)?;
        let mut h = self.headers.borrow_mut();
        h.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        h.push((name.to_string(), value.as_bytes().to_vec()));
        Ok(())
    }

    fn remove_request_header(&self, name: &str) -> Result<(), HostError> {
        self.check(Fail::HeaderWrites)?;
        self.headers
            .borrow_mut()
            .retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        Ok(())
    }

    fn send_response(
        &self,
        status: u16,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<(), HostError> {
        self.check(Fail::LocalReply)?;
        let mut sent: Vec<(String, String)> = Vec::new();
        for (k, v) in headers {
            // Kong's engine sets each local-reply header by name: a repeat replaces the
            // earlier one (ngx_http_wasm_local_response.c, NGX_HTTP_WASM_HEADERS_SET).
            if self.kong.get() {
                sent.retain(|(name, _)| !name.eq_ignore_ascii_case(k));
            }
            sent.push((k.to_string(), v.to_string()));
        }
        self.responses.borrow_mut().push(SentResponse {
            context: self.effective.get(),
            status,
            headers: sent,
            body: body.map(<[u8]>::to_vec),
        });
        Ok(())
    }

    fn resume_request(&self) -> Result<(), HostError> {
        self.check(Fail::Resume)?;
        self.resumed.set(self.resumed.get() + 1);
        self.resumed_contexts
            .borrow_mut()
            .push(self.effective.get());
        Ok(())
    }

    fn dispatch(&self, request: &OutboundRequest) -> Result<u32, HostError> {
        if let Some(e) = self.dispatch_error.borrow().clone() {
            return Err(HostError::Failed(e));
        }
        let mut d = self.dispatched.borrow_mut();
        d.push(request.clone());
        self.dispatched_from.borrow_mut().push(self.effective.get());
        Ok(d.len() as u32)
    }

    fn set_effective_context(&self, context_id: u32) -> Result<(), HostError> {
        // Kong's engine accepts the call and does nothing; Envoy refuses an id no context has
        // (BadArgument).
        if self.kong.get() {
            return Ok(());
        }
        if context_id == certbound::host::NO_SUCH_CONTEXT {
            return Err(HostError::Failed(
                "proxy_set_effective_context: BadArgument".into(),
            ));
        }
        self.effective.set(context_id);
        Ok(())
    }

    fn call_response_headers(&self) -> Result<Headers, HostError> {
        Ok(self.call_headers.borrow().clone())
    }

    fn call_response_body(&self, len: usize) -> Result<Vec<u8>, HostError> {
        Ok(self.call_body.borrow().iter().take(len).copied().collect())
    }

    fn shared_get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
        self.shared_calls.set(self.shared_calls.get() + 1);
        self.check(Fail::SharedData)?;
        Ok(self.shared.borrow().get(key).cloned())
    }

    /// As both engines (docs/hosts.md): a version that is not the current one is a
    /// mismatch; no version overwrites on Envoy and writes only an absent key on Kong.
    fn shared_set(&self, key: &str, value: &[u8], version: Option<u32>) -> Result<bool, HostError> {
        self.shared_calls.set(self.shared_calls.get() + 1);
        self.check(Fail::SharedData)?;
        let mut s = self.shared.borrow_mut();
        let current = s.get(key).map(|(_, c)| *c);
        let allowed = match (version, current) {
            (Some(v), Some(c)) => v == c,
            (Some(_), None) => false,
            (None, None) => true,
            (None, Some(_)) => !self.kong.get(),
        };
        if !allowed {
            return Ok(false);
        }
        let next = self.next_cas.get() + 1;
        self.next_cas.set(next);
        s.insert(key.to_string(), (value.to_vec(), next));
        Ok(true)
    }

    fn count(&self, metric: Metric) {
        *self.metrics.borrow_mut().entry(metric.name()).or_default() += 1;
    }

    fn log(&self, level: LogLevel, message: &str) {
        self.logs.borrow_mut().push((level, message.to_string()));
    }

    fn set_tick_period(&self, period: Duration) -> Result<(), HostError> {
        self.check(Fail::TickPeriod)?;
        self.tick.set(Some(period));
        self.ticks_set.borrow_mut().push(period);
        Ok(())
    }
}
