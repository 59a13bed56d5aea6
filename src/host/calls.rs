//! The proxy-wasm host calls the filter makes, each returning the host's status as a value.
//! Where proxy-wasm 0.2.5's `hostcalls` handle every status both hosts return for our calls,
//! they are used as they are (docs/abi.md has the table, from both hosts' sources). The SDK
//! panics on any status it does not expect, and a panic kills the VM (with FAIL_CLOSED every
//! later request on that worker gets 503), so three calls stay ours:
//! - `proxy_get_header_map_pairs`: the SDK's decoder panics on a header name that is not
//!   UTF-8 and on a short or lying buffer (Kong's engine hands over one for a long map);
//! - `proxy_replace_header_map_value` / `proxy_remove_header_map_value`: Envoy answers
//!   BadArgument once the map is gone, Kong's engine InternalFailure, and the SDK panics;
//! - `proxy_send_local_response`: Kong's engine answers InternalFailure when nginx cannot
//!   allocate, and the SDK panics.
//!
//! They are declared with `u32` statuses (the same wasm-level types as the SDK's own
//! declarations, so both link to one import) and the buffers are parsed without trusting
//! their lengths. This is the crate's only `unsafe`.
#![allow(unsafe_code)]

use std::ptr::{null, null_mut};
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MetricType};

use crate::host::pairs;

/// A host status other than Ok.
pub type Status = u32;

pub const OK: Status = 0;
pub const CAS_MISMATCH: Status = proxy_wasm::types::Status::CasMismatch as Status;

/// `proxy_map_type_t`, as the SDK numbers them.
pub const HTTP_REQUEST_HEADERS: u32 = proxy_wasm::types::MapType::HttpRequestHeaders as u32;
pub const HTTP_REQUEST_TRAILERS: u32 = proxy_wasm::types::MapType::HttpRequestTrailers as u32;
pub const HTTP_CALL_RESPONSE_HEADERS: u32 =
    proxy_wasm::types::MapType::HttpCallResponseHeaders as u32;

#[link(wasm_import_module = "env")]
unsafe extern "C" {
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize) -> u32;
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
}

fn status(s: u32) -> Result<(), Status> {
    if s == OK { Ok(()) } else { Err(s) }
}

/// Takes ownership of a buffer the host allocated with our allocator. A null pointer (or a
/// size without one) is no buffer.
///
/// # Safety
/// `data`/`size` must come from a host call that succeeded.
unsafe fn take_buffer(data: *mut u8, size: usize) -> Option<Vec<u8>> {
    if data.is_null() {
        return None;
    }
    // SAFETY: the host allocated `size` bytes at `data` through `proxy_on_memory_allocate`,
    // which hands out a forgotten `Vec<u8>` of exactly that capacity.
    Some(unsafe { Vec::from_raw_parts(data, size, size) })
}

fn code(s: proxy_wasm::types::Status) -> Status {
    s as Status
}

/// `Ok(None)` for a property the host does not have. The SDK's call, so the path is encoded
/// by the SDK (parts joined by NUL, none after the last): a hand-written encoder once added a
/// trailing NUL, which Envoy tolerates and ngx_wasm_module looks up as another name
/// (docs/hosts.md). Both hosts return only Ok, NotFound, SerializationFailure and
/// InternalFailure for a path in our memory, all of which the SDK returns as values.
pub fn property(path: &[&str]) -> Result<Option<Vec<u8>>, Status> {
    hostcalls::get_property(path.to_vec()).map_err(code)
}

/// A header map's pairs, names and values as bytes.
pub fn header_pairs(map_type: u32) -> Result<pairs::Pairs, Status> {
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: out-pointers to locals.
    status(unsafe { proxy_get_header_map_pairs(map_type, &mut data, &mut size) })?;
    // SAFETY: the call succeeded.
    let bytes = unsafe { take_buffer(data, size) }.unwrap_or_default();
    Ok(pairs::parse(&bytes))
}

pub fn replace_header(map_type: u32, name: &str, value: &str) -> Result<(), Status> {
    // SAFETY: pointers and lengths of live strings.
    status(unsafe {
        proxy_replace_header_map_value(
            map_type,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    })
}

pub fn remove_header(map_type: u32, name: &str) -> Result<(), Status> {
    // SAFETY: pointer and length of a live string.
    status(unsafe { proxy_remove_header_map_value(map_type, name.as_ptr(), name.len()) })
}

pub fn send_local_response(
    status_code: u16,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<(), Status> {
    let serialized = pairs::serialize(headers);
    let (body_ptr, body_len) = body.map_or((null(), 0), |b| (b.as_ptr(), b.len()));
    // SAFETY: the buffers live through the call.
    status(unsafe {
        proxy_send_local_response(
            u32::from(status_code),
            null(),
            0,
            body_ptr,
            body_len,
            serialized.as_ptr(),
            serialized.len(),
            -1,
        )
    })
}

pub fn resume_request() -> Result<(), Status> {
    hostcalls::resume_http_request().map_err(code)
}

pub fn set_effective_context(context_id: u32) -> Result<(), Status> {
    hostcalls::set_effective_context(context_id).map_err(code)
}

/// A buffer's first `max_size` bytes; only from on_configure (the plugin configuration) and
/// on_http_call_response (its body), where both hosts answer Ok or NotFound.
pub fn buffer(buffer_type: BufferType, max_size: usize) -> Result<Vec<u8>, Status> {
    Ok(hostcalls::get_buffer(buffer_type, 0, max_size)
        .map_err(code)?
        .unwrap_or_default())
}

/// The value and its version (`None`: no version, the host's 0).
pub fn shared_data(key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), Status> {
    hostcalls::get_shared_data(key).map_err(code)
}

pub fn set_shared_data(key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Status> {
    hostcalls::set_shared_data(key, Some(value), cas).map_err(code)
}

pub fn define_counter(name: &str) -> Result<u32, Status> {
    hostcalls::define_metric(MetricType::Counter, name).map_err(code)
}

pub fn increment(metric_id: u32) -> Result<(), Status> {
    hostcalls::increment_metric(metric_id, 1).map_err(code)
}

pub fn log(level: LogLevel, message: &str) -> Result<(), Status> {
    hostcalls::log(level, message).map_err(code)
}

pub fn now_nanos() -> Result<u64, Status> {
    let t = hostcalls::get_current_time().map_err(code)?;
    Ok(t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)))
}

pub fn set_tick_period(period: Duration) -> Result<(), Status> {
    hostcalls::set_tick_period(period).map_err(code)
}
