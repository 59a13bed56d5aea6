//! The raw proxy-wasm host calls the filter makes, each returning the host's status as a
//! value. proxy-wasm 0.2.5's `hostcalls` panic on any status they do not expect (and decode
//! statuses into an enum that lacks some a host really returns, 6, 11 and 12), and its map
//! decoder panics on a header name that is not UTF-8 or a short buffer: a panic kills the VM,
//! and with FAIL_CLOSED every later request on that worker gets 503. So the calls are
//! declared here again with `u32` statuses (the same wasm-level types as the SDK's own
//! declarations, so both link to one import), and the returned buffers are parsed without
//! trusting their lengths. docs/hosts.md lists the statuses each host returns.
//!
//! Not here: `proxy_http_call`. The SDK's dispatcher must register each call's token, or it
//! panics when the response arrives, so calls go through `hostcalls::dispatch_http_call`
//! (which returns Ok, BadArgument and InternalFailure as values: the statuses hosts return).
//!
//! This is the crate's only `unsafe`: pointers handed to the host and buffers it allocates
//! with our allocator (`proxy_on_memory_allocate`, the SDK's), taken back as `Vec`s.
#![allow(unsafe_code)]

use std::ptr::{null, null_mut};

use crate::host::pairs;

/// A host status other than Ok.
pub type Status = u32;

pub const OK: Status = 0;
pub const NOT_FOUND: Status = 1;
pub const CAS_MISMATCH: Status = 8;

/// `proxy_map_type_t`.
pub const HTTP_REQUEST_HEADERS: u32 = 0;
pub const HTTP_REQUEST_TRAILERS: u32 = 1;
pub const HTTP_CALL_RESPONSE_HEADERS: u32 = 6;
/// `proxy_buffer_type_t`.
pub const HTTP_CALL_RESPONSE_BODY: u32 = 4;
pub const PLUGIN_CONFIGURATION: u32 = 7;
/// `proxy_stream_type_t`.
const HTTP_REQUEST: u32 = 0;
/// `proxy_metric_type_t`.
const COUNTER: u32 = 0;

#[link(wasm_import_module = "env")]
unsafe extern "C" {
    fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
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
    fn proxy_continue_stream(stream_type: u32) -> u32;
    fn proxy_set_effective_context(context_id: u32) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> u32;
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    fn proxy_define_metric(
        metric_type: u32,
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
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

pub fn log(level: u32, message: &str) -> Result<(), Status> {
    // SAFETY: pointer and length of a live string.
    status(unsafe { proxy_log(level, message.as_ptr(), message.len()) })
}

pub fn now_nanos() -> Result<u64, Status> {
    let mut t: u64 = 0;
    // SAFETY: `t` outlives the call.
    status(unsafe { proxy_get_current_time_nanoseconds(&mut t) })?;
    Ok(t)
}

pub fn set_tick_period_ms(period: u32) -> Result<(), Status> {
    // SAFETY: no pointers.
    status(unsafe { proxy_set_tick_period_milliseconds(period) })
}

/// `Ok(None)` for a property the host does not have. The SDK's call, so the path is encoded
/// by the SDK (parts joined by NUL, none after the last): a hand-written encoder once added a
/// trailing NUL, which Envoy tolerates and ngx_wasm_module looks up as another name
/// (docs/hosts.md). Both hosts return only Ok, NotFound, SerializationFailure and
/// InternalFailure for a path in our memory, all of which the SDK returns as values.
pub fn property(path: &[&str]) -> Result<Option<Vec<u8>>, Status> {
    proxy_wasm::hostcalls::get_property(path.to_vec()).map_err(|s| s as Status)
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
    // SAFETY: no pointers.
    status(unsafe { proxy_continue_stream(HTTP_REQUEST) })
}

pub fn set_effective_context(context_id: u32) -> Result<(), Status> {
    // SAFETY: no pointers.
    status(unsafe { proxy_set_effective_context(context_id) })
}

pub fn buffer(buffer_type: u32, max_size: usize) -> Result<Vec<u8>, Status> {
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: out-pointers to locals.
    let s = unsafe { proxy_get_buffer_bytes(buffer_type, 0, max_size, &mut data, &mut size) };
    match s {
        OK => Ok(unsafe { take_buffer(data, size) }.unwrap_or_default()),
        NOT_FOUND => Ok(Vec::new()),
        other => Err(other),
    }
}

/// The value and its version (`None`: no version, the host's 0).
pub fn shared_data(key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), Status> {
    let (mut data, mut size, mut cas) = (null_mut(), 0usize, 0u32);
    // SAFETY: the key lives through the call; out-pointers to locals.
    let s =
        unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) };
    match s {
        OK => Ok((
            unsafe { take_buffer(data, size) },
            (cas != 0).then_some(cas),
        )),
        NOT_FOUND => Ok((None, None)),
        other => Err(other),
    }
}

pub fn set_shared_data(key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Status> {
    // SAFETY: the buffers live through the call.
    status(unsafe {
        proxy_set_shared_data(
            key.as_ptr(),
            key.len(),
            value.as_ptr(),
            value.len(),
            cas.unwrap_or(0),
        )
    })
}

pub fn define_counter(name: &str) -> Result<u32, Status> {
    let mut id = 0u32;
    // SAFETY: the name lives through the call; out-pointer to a local.
    status(unsafe { proxy_define_metric(COUNTER, name.as_ptr(), name.len(), &mut id) })?;
    Ok(id)
}

pub fn increment(metric_id: u32) -> Result<(), Status> {
    // SAFETY: no pointers.
    status(unsafe { proxy_increment_metric(metric_id, 1) })
}
