//! Counters. Envoy lists them in `/stats` (prefixed `wasmcustom.`); Kong prefixes them
//! `pw.certbound.` and exposes them to Prometheus.

use crate::reply::rejection::MetricGroup;

/// One counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Allowed,
    Denied(MetricGroup),
    IntrospectionCalls,
    IntrospectionCacheHits,
    IntrospectionFailures,
    JwtCacheHits,
    /// JWT signatures another worker verified (shared data): not checked again here.
    JwtSharedHits,
    /// Signature verifications attempted: at most one per token and worker, per cache life.
    SignatureChecks,
    JwksFetches,
    JwksFetchFailures,
    /// DPoP proof signatures checked: one per request with the DPoP scheme that gets that far.
    DpopProofChecks,
}

impl Metric {
    /// Every counter, defined up front so they all show (at zero) before the first request.
    pub fn all() -> impl Iterator<Item = Metric> {
        [
            Metric::Allowed,
            Metric::IntrospectionCalls,
            Metric::IntrospectionCacheHits,
            Metric::IntrospectionFailures,
            Metric::JwtCacheHits,
            Metric::JwtSharedHits,
            Metric::SignatureChecks,
            Metric::JwksFetches,
            Metric::JwksFetchFailures,
            Metric::DpopProofChecks,
        ]
        .into_iter()
        .chain(MetricGroup::ALL.into_iter().map(Metric::Denied))
    }

    pub fn name(self) -> &'static str {
        match self {
            Metric::Allowed => "certbound_requests_allowed",
            Metric::IntrospectionCalls => "certbound_introspection_calls",
            Metric::IntrospectionCacheHits => "certbound_introspection_cache_hits",
            Metric::IntrospectionFailures => "certbound_introspection_failures",
            Metric::JwtCacheHits => "certbound_jwt_cache_hits",
            Metric::JwtSharedHits => "certbound_jwt_shared_hits",
            Metric::SignatureChecks => "certbound_jwt_signature_checks",
            Metric::JwksFetches => "certbound_jwks_fetches",
            Metric::JwksFetchFailures => "certbound_jwks_fetch_failures",
            Metric::DpopProofChecks => "certbound_dpop_proof_checks",
            Metric::Denied(group) => match group {
                MetricGroup::MissingToken => "certbound_requests_denied_missing_token",
                MetricGroup::InvalidRequest => "certbound_requests_denied_invalid_request",
                MetricGroup::InvalidToken => "certbound_requests_denied_invalid_token",
                MetricGroup::TokenExpired => "certbound_requests_denied_token_expired",
                MetricGroup::BindingFailed => "certbound_requests_denied_binding_failed",
                MetricGroup::InsufficientScope => "certbound_requests_denied_insufficient_scope",
                MetricGroup::IdpUnavailable => "certbound_requests_denied_idp_unavailable",
                MetricGroup::HostFailure => "certbound_requests_denied_host_failure",
                MetricGroup::DpopFailed => "certbound_requests_denied_dpop_failed",
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::rejection::Rejection;

    #[test]
    fn denied_names_follow_the_groups_and_every_name_is_unique() {
        for group in MetricGroup::ALL {
            assert_eq!(
                Metric::Denied(group).name(),
                format!("certbound_requests_denied_{}", group.as_str())
            );
        }
        let names: Vec<&str> = Metric::all().map(Metric::name).collect();
        for (i, n) in names.iter().enumerate() {
            assert!(!names[i + 1..].contains(n), "{n}");
        }
        assert_eq!(
            Metric::Denied(Rejection::ThumbprintMismatch.metric_group()).name(),
            "certbound_requests_denied_binding_failed"
        );
    }
}
