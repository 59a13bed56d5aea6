//! certbound: a proxy-wasm HTTP filter that enforces OAuth 2.0 sender-constrained access
//! tokens (certificate-bound, RFC 8705) in Envoy and Kong Gateway.
//!
//! The layout is the architecture:
//! - `config`: what the user writes (`RawConfig`) and the validated `Settings`.
//! - `tokens`: where a token comes from and what it says (JWT, JWKS, introspection, claims).
//! - `binding`: proofs of possession, the token's `cnf` against what the client presented.
//! - `reply`: named rejections, the RFC 6750 local reply, the counters.
//! - `flow`: one request as a value: `extract` reads what it presented, `decider` returns the
//!   next step, `request` applies it in one place; `worker` owns the per-VM state and every
//!   JWKS fetch; `cache` the bounded token caches.
//! - `sigalgs`: the RustCrypto signature primitives every verifier above shares.
//! - `host`: the `Host` trait and engine differences; in wasm builds the only code that
//!   touches the proxy-wasm ABI.
//!
//! Everything but `host`'s wasm part is a pure core, unit-tested natively against a fake host.

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

pub mod binding;
pub mod config;
pub mod endpoint;
pub mod flow;
pub mod host;
pub mod reply;
pub mod sigalgs;
pub mod tokens;
