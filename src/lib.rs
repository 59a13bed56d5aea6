//! certbound: a proxy-wasm HTTP filter that enforces OAuth 2.0 certificate-bound access
//! tokens (RFC 8705) in Envoy and Kong Gateway.
//!
//! Everything but `abi` is a pure core with no proxy-wasm calls, unit-tested natively;
//! `abi` (wasm builds only) maps the proxy-wasm callbacks and host calls onto it.

// Tests may unwrap: a failing test should stop at the failure.
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod authorizer;
pub mod cache;
pub mod certificate;
pub mod claims;
pub mod config;
pub mod credentials;
pub mod endpoint;
pub mod filter;
pub mod host;
pub mod introspection;
pub mod jwks;
pub mod jwt;
pub mod metrics;
pub mod policy;
pub mod rejection;
pub mod response;

#[cfg(target_arch = "wasm32")]
mod abi;
