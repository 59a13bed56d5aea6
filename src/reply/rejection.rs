//! Every reason a request is refused, declared once: from each declaration follow the HTTP
//! status, the RFC 6750 error code, the metric group, the stable reason for logs and the
//! description for the client developer. Descriptions never echo the token or the expected
//! thumbprint.

/// RFC 6750 §3.1 and RFC 9449 §7.1 error codes, plus the 503 case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidToken,
    InsufficientScope,
    TemporarilyUnavailable,
    InvalidDpopProof,
    UseDpopNonce,
}

/// The authentication scheme whose challenge carries a rejection's error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Bearer,
    Dpop,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::InsufficientScope => "insufficient_scope",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
            ErrorCode::InvalidDpopProof => "invalid_dpop_proof",
            ErrorCode::UseDpopNonce => "use_dpop_nonce",
        }
    }

    fn status(code: Option<ErrorCode>) -> u16 {
        match code {
            None
            | Some(
                ErrorCode::InvalidToken | ErrorCode::InvalidDpopProof | ErrorCode::UseDpopNonce,
            ) => 401,
            Some(ErrorCode::InvalidRequest) => 400,
            Some(ErrorCode::InsufficientScope) => 403,
            Some(ErrorCode::TemporarilyUnavailable) => 503,
        }
    }
}

/// Coarse groups for the `certbound_requests_denied_<group>` counters; the fine reason goes
/// to the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricGroup {
    MissingToken,
    InvalidRequest,
    InvalidToken,
    TokenExpired,
    BindingFailed,
    InsufficientScope,
    IdpUnavailable,
    /// The gateway itself failed (a host call that must not fail did): fail closed.
    HostFailure,
    /// A DPoP proof was missing, malformed, stale, replayed or for another request.
    DpopFailed,
}

impl MetricGroup {
    pub const ALL: [MetricGroup; 9] = [
        MetricGroup::MissingToken,
        MetricGroup::InvalidRequest,
        MetricGroup::InvalidToken,
        MetricGroup::TokenExpired,
        MetricGroup::BindingFailed,
        MetricGroup::InsufficientScope,
        MetricGroup::IdpUnavailable,
        MetricGroup::HostFailure,
        MetricGroup::DpopFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MetricGroup::MissingToken => "missing_token",
            MetricGroup::InvalidRequest => "invalid_request",
            MetricGroup::InvalidToken => "invalid_token",
            MetricGroup::TokenExpired => "token_expired",
            MetricGroup::BindingFailed => "binding_failed",
            MetricGroup::InsufficientScope => "insufficient_scope",
            MetricGroup::IdpUnavailable => "idp_unavailable",
            MetricGroup::HostFailure => "host_failure",
            MetricGroup::DpopFailed => "dpop_failed",
        }
    }
}

/// What one declaration says about a rejection.
struct Spec {
    code: Option<ErrorCode>,
    scheme: Scheme,
    group: MetricGroup,
    reason: &'static str,
    description: &'static str,
}

/// A declaration's scheme: Bearer unless it names another.
macro_rules! scheme {
    () => {
        Scheme::Bearer
    };
    ($scheme:ident) => {
        Scheme::$scheme
    };
}

/// Declares the `Rejection` enum, its `ALL` list and its `Spec`s from one table.
macro_rules! rejections {
    ($($(#[$doc:meta])* $name:ident => $code:expr, $group:ident, $reason:literal, $description:literal $(, $scheme:ident)?;)*) => {
        /// A named reason for refusing a request.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Rejection {
            $($(#[$doc])* $name,)*
        }

        impl Rejection {
            /// Every rejection, in declaration order.
            pub const ALL: &'static [Rejection] = &[$(Rejection::$name,)*];

            fn spec(self) -> Spec {
                match self {
                    $(Rejection::$name => Spec {
                        code: $code,
                        scheme: scheme!($($scheme)?),
                        group: MetricGroup::$group,
                        reason: $reason,
                        description: $description,
                    },)*
                }
            }
        }
    };
}

const BARE: Option<ErrorCode> = None;
const REQUEST: Option<ErrorCode> = Some(ErrorCode::InvalidRequest);
const TOKEN: Option<ErrorCode> = Some(ErrorCode::InvalidToken);
const SCOPE: Option<ErrorCode> = Some(ErrorCode::InsufficientScope);
const UNAVAILABLE: Option<ErrorCode> = Some(ErrorCode::TemporarilyUnavailable);
const PROOF: Option<ErrorCode> = Some(ErrorCode::InvalidDpopProof);
const NONCE: Option<ErrorCode> = Some(ErrorCode::UseDpopNonce);

rejections! {
    /// No `Authorization` header: a bare challenge (RFC 6750 §3.1: no error code).
    MissingToken => BARE, MissingToken, "missing_token",
        "an access token is required in the Authorization header";

    /// An Authorization scheme this gateway does not take (`Basic`): an unsupported method,
    /// so the bare challenge (RFC 6750 §3.1).
    UnsupportedScheme => BARE, MissingToken, "unsupported_scheme",
        "the Authorization header must use the Bearer scheme";
    /// A token only in the query string (FAPI 2.0 forbids it): an unsupported method.
    TokenInQuery => BARE, MissingToken, "token_in_query",
        "access tokens are accepted only in the Authorization header";

    MultipleAuthorization => REQUEST, InvalidRequest, "multiple_authorization_headers",
        "more than one Authorization header";
    /// A token in the header and in the query: more than one method at once (RFC 6750 §3.1).
    MultipleMethods => REQUEST, InvalidRequest, "multiple_methods",
        "the request carries an access token in more than one way";
    EmptyToken => REQUEST, InvalidRequest, "empty_token",
        "the Bearer token is empty";
    MalformedAuthorization => REQUEST, InvalidRequest, "malformed_authorization",
        "the Authorization header is not a valid Bearer credential";
    DuplicateIdentityHeader => REQUEST, InvalidRequest, "duplicate_identity_header",
        "the request repeats, or imitates with underscores, a header this gateway reserves";
    /// More headers than Kong's engine hands a filter: the rest could hide a duplicate.
    TooManyHeaders => REQUEST, InvalidRequest, "too_many_headers",
        "the request has more headers than this gateway can check";
    /// A header name that is not UTF-8 (the host hands names over as bytes).
    MalformedHeaderName => REQUEST, InvalidRequest, "malformed_header_name",
        "the request has a header name that is not valid";

    TokenTooLong => TOKEN, InvalidToken, "token_too_long",
        "the access token is too long";
    NotAJwt => TOKEN, InvalidToken, "not_a_jwt",
        "the access token is not a JWT";
    MalformedJwt => TOKEN, InvalidToken, "malformed_jwt",
        "the access token is not a well-formed JWT";
    /// A claim named twice (RFC 7519 §4: names must be unique); refused before any key is
    /// looked up, under its own name rather than as the signature failure it later becomes.
    DuplicateClaim => TOKEN, InvalidToken, "duplicate_claim",
        "the access token names a claim more than once";
    AlgorithmNotAllowed => TOKEN, InvalidToken, "algorithm_not_allowed",
        "the token's signing algorithm is not accepted";
    CriticalHeader => TOKEN, InvalidToken, "critical_header",
        "the token has critical header parameters this gateway does not support";
    TypeNotAllowed => TOKEN, InvalidToken, "typ_not_allowed",
        "the token is not a JWT access token (typ at+jwt)";
    IssuerMismatch => TOKEN, InvalidToken, "issuer_mismatch",
        "the token was issued by another issuer";
    MissingExpiry => TOKEN, InvalidToken, "missing_exp",
        "the token has no expiry";
    Expired => TOKEN, TokenExpired, "expired",
        "the token has expired";
    NotYetValid => TOKEN, TokenExpired, "not_yet_valid",
        "the token is not valid yet";
    IssuedInFuture => TOKEN, TokenExpired, "issued_in_future",
        "the token's issue time is in the future";
    AudienceMismatch => TOKEN, InvalidToken, "audience_mismatch",
        "the token is not intended for this API";
    UnknownKey => TOKEN, InvalidToken, "unknown_key",
        "the token was signed with an unknown key";
    /// No `kid`, and more than one key of the token's algorithm: one signature check per
    /// token, never one per key.
    KeyNotIdentified => TOKEN, InvalidToken, "key_not_identified",
        "the token names no key (kid) and more than one key could have signed it";
    BadSignature => TOKEN, InvalidToken, "bad_signature",
        "the token signature is invalid";
    Inactive => TOKEN, InvalidToken, "inactive",
        "the token is not active";
    NotAnAccessToken => TOKEN, InvalidToken, "not_an_access_token",
        "the token is not an access token";

    // The certificate binding (RFC 8705 §3).
    CertificateRequired => TOKEN, BindingFailed, "certificate_required",
        "the token is bound to a client certificate; present it over mutual TLS";
    ThumbprintMismatch => TOKEN, BindingFailed, "thumbprint_mismatch",
        "the token is bound to a different client certificate";
    Unbound => TOKEN, BindingFailed, "unbound_token",
        "the token is not bound to a client certificate";
    UnsupportedConfirmation => TOKEN, BindingFailed, "unsupported_confirmation",
        "the token is bound to a key this gateway cannot check";
    /// A certificate a trusted proxy forwarded that does not chain to `ca_certificates`, is
    /// out of its validity, not for client authentication or revoked.
    CertificateNotTrusted => TOKEN, BindingFailed, "certificate_not_trusted",
        "the client certificate is not trusted by this gateway";

    // DPoP (RFC 9449): the token's binding to the proof's key.
    DpopKeyMismatch => TOKEN, BindingFailed, "dpop_key_mismatch",
        "the token is bound to a different DPoP key", Dpop;
    /// The DPoP scheme with a token that is not DPoP-bound.
    TokenNotDpopBound => TOKEN, BindingFailed, "token_not_dpop_bound",
        "the DPoP scheme needs a token bound to the proof's key", Dpop;
    /// A DPoP-bound token sent with the Bearer scheme (a downgrade).
    DpopDowngrade => TOKEN, BindingFailed, "dpop_downgrade",
        "the token is bound to a DPoP key; present it with the DPoP scheme and a proof", Dpop;
    /// `proof_of_possession_dpop: strict` and a token without `cnf.jkt`.
    DpopRequired => TOKEN, BindingFailed, "dpop_required",
        "the token is not bound to a DPoP key", Dpop;

    // DPoP proofs (RFC 9449 §4.3).
    DpopProofMissing => PROOF, DpopFailed, "dpop_proof_missing",
        "the DPoP scheme needs exactly one DPoP header with a proof", Dpop;
    DpopProofMalformed => PROOF, DpopFailed, "dpop_proof_malformed",
        "the DPoP proof is not a well-formed proof JWT with a public key", Dpop;
    DpopAlgorithm => PROOF, DpopFailed, "dpop_algorithm_not_allowed",
        "the DPoP proof's signing algorithm is not accepted", Dpop;
    DpopSignature => PROOF, DpopFailed, "dpop_bad_signature",
        "the DPoP proof signature is invalid", Dpop;
    DpopMethodMismatch => PROOF, DpopFailed, "dpop_htm_mismatch",
        "the DPoP proof is for another HTTP method", Dpop;
    DpopUrlMismatch => PROOF, DpopFailed, "dpop_htu_mismatch",
        "the DPoP proof is for another URL", Dpop;
    DpopStale => PROOF, DpopFailed, "dpop_proof_stale",
        "the DPoP proof is too old or from the future", Dpop;
    DpopAth => PROOF, DpopFailed, "dpop_ath_mismatch",
        "the DPoP proof is not for this access token", Dpop;
    DpopReplay => PROOF, DpopFailed, "dpop_proof_replayed",
        "the DPoP proof was already used", Dpop;
    /// The replay cache has no room for another live proof: refusing beats forgetting one.
    DpopReplayCacheFull => UNAVAILABLE, HostFailure, "dpop_replay_cache_full",
        "the gateway cannot take more DPoP proofs now; try again later";
    /// The proof lacks the current server nonce: the reply carries one (`DPoP-Nonce`).
    UseDpopNonce => NONCE, DpopFailed, "use_dpop_nonce",
        "a DPoP nonce is required; use the one in the DPoP-Nonce header", Dpop;

    InsufficientScope => SCOPE, InsufficientScope, "insufficient_scope",
        "the token lacks a required scope";

    // The IdP could not be asked: fail closed.
    KeysUnavailable => UNAVAILABLE, IdpUnavailable, "keys_unavailable",
        "the token signing keys could not be fetched; try again later";
    IntrospectionUnavailable => UNAVAILABLE, IdpUnavailable, "introspection_unavailable",
        "the token could not be checked with the authorization server; try again later";
    /// A host call the decision depends on failed (a header that cannot be set or removed, a
    /// clock that cannot be read): never a pass.
    HostFailure => UNAVAILABLE, HostFailure, "host_failure",
        "the gateway could not process the request; try again later";
}

impl Rejection {
    pub fn status(self) -> u16 {
        ErrorCode::status(self.spec().code)
    }

    pub fn error_code(self) -> Option<ErrorCode> {
        self.spec().code
    }

    /// Stable snake_case name, for logs.
    pub fn reason(self) -> &'static str {
        self.spec().reason
    }

    pub fn metric_group(self) -> MetricGroup {
        self.spec().group
    }

    /// The scheme whose challenge carries the error.
    pub fn scheme(self) -> Scheme {
        self.spec().scheme
    }

    /// For the client developer: what is wrong, never which token or certificate was expected.
    pub fn description(self) -> &'static str {
        self.spec().description
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_unique_and_descriptions_fit_in_a_quoted_string() {
        for (i, r) in Rejection::ALL.iter().enumerate() {
            assert!(
                Rejection::ALL[i + 1..]
                    .iter()
                    .all(|o| o.reason() != r.reason()),
                "{r:?}"
            );
            let d = r.description();
            assert!(
                d.bytes()
                    .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\'),
                "{d}"
            );
        }
    }

    #[test]
    fn statuses_follow_the_error_code() {
        assert_eq!(Rejection::MissingToken.status(), 401);
        assert_eq!(Rejection::MultipleAuthorization.status(), 400);
        assert_eq!(Rejection::ThumbprintMismatch.status(), 401);
        assert_eq!(Rejection::InsufficientScope.status(), 403);
        assert_eq!(Rejection::KeysUnavailable.status(), 503);
        assert_eq!(Rejection::HostFailure.status(), 503);
        assert_eq!(
            Rejection::ThumbprintMismatch.metric_group(),
            MetricGroup::BindingFailed
        );
    }
}
