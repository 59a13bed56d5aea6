//! What the client and the operator get back: named rejections, the RFC 6750 local reply,
//! and the counters.

pub mod metrics;
pub mod rejection;
pub mod response;
