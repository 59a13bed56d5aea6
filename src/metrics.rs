//! Counter names. Envoy lists them in `/stats`; Kong prefixes them `pw.certbound.` and
//! exposes them to Prometheus.

use crate::rejection::{METRIC_GROUPS, Rejection};

pub const ALLOWED: &str = "certbound_requests_allowed";
pub const INTROSPECTION_CALLS: &str = "certbound_introspection_calls";
pub const INTROSPECTION_CACHE_HITS: &str = "certbound_introspection_cache_hits";
pub const INTROSPECTION_FAILURES: &str = "certbound_introspection_failures";
pub const JWT_CACHE_HITS: &str = "certbound_jwt_cache_hits";
pub const JWKS_FETCHES: &str = "certbound_jwks_fetches";
pub const JWKS_FETCH_FAILURES: &str = "certbound_jwks_fetch_failures";

/// `certbound_requests_denied_<group>` for each of `METRIC_GROUPS`, as static strings.
const DENIED: [&str; METRIC_GROUPS.len()] = [
    "certbound_requests_denied_missing_token",
    "certbound_requests_denied_invalid_request",
    "certbound_requests_denied_invalid_token",
    "certbound_requests_denied_token_expired",
    "certbound_requests_denied_binding_failed",
    "certbound_requests_denied_insufficient_scope",
    "certbound_requests_denied_idp_unavailable",
];

pub fn denied(rejection: Rejection) -> &'static str {
    let group = rejection.metric_group();
    METRIC_GROUPS
        .iter()
        .position(|g| *g == group)
        .and_then(|i| DENIED.get(i))
        .copied()
        .unwrap_or("certbound_requests_denied_invalid_token")
}

/// Every counter, defined up front so they all show (at zero) before the first request.
pub fn all() -> impl Iterator<Item = &'static str> {
    [
        ALLOWED,
        INTROSPECTION_CALLS,
        INTROSPECTION_CACHE_HITS,
        INTROSPECTION_FAILURES,
        JWT_CACHE_HITS,
        JWKS_FETCHES,
        JWKS_FETCH_FAILURES,
    ]
    .into_iter()
    .chain(DENIED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denied_names_follow_the_groups() {
        for (group, name) in METRIC_GROUPS.iter().zip(DENIED) {
            assert_eq!(name, format!("certbound_requests_denied_{group}"));
        }
        assert_eq!(
            denied(Rejection::ThumbprintMismatch),
            "certbound_requests_denied_binding_failed"
        );
        assert_eq!(
            denied(Rejection::MissingToken),
            "certbound_requests_denied_missing_token"
        );
    }
}
