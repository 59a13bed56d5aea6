//! Every reason a request is refused, each mapped to one HTTP status, one RFC 6750 error code
//! and a description for the client developer. Descriptions never echo the token or the
//! expected thumbprint.

/// A named reason for refusing a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// No `Authorization` header: a bare challenge (RFC 6750 §3.1: no error code).
    MissingToken,

    // 400 invalid_request
    MultipleAuthorization,
    UnsupportedScheme,
    EmptyToken,
    MalformedAuthorization,
    TokenInQuery,
    DuplicateIdentityHeader,

    // 401 invalid_token
    TokenTooLong,
    NotAJwt,
    MalformedJwt,
    AlgorithmNotAllowed,
    CriticalHeader,
    TypeNotAllowed,
    IssuerMismatch,
    MissingExpiry,
    Expired,
    NotYetValid,
    IssuedInFuture,
    AudienceMismatch,
    UnknownKey,
    BadSignature,
    Inactive,
    NotAnAccessToken,

    // 401 invalid_token: the certificate binding (RFC 8705 §3)
    CertificateRequired,
    ThumbprintMismatch,
    Unbound,
    UnsupportedConfirmation,

    // 403 insufficient_scope
    InsufficientScope,

    // 503: the IdP could not be asked; fail closed
    KeysUnavailable,
    IntrospectionUnavailable,
}

/// RFC 6750 §3.1 error codes, plus the 503 case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidToken,
    InsufficientScope,
    TemporarilyUnavailable,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::InsufficientScope => "insufficient_scope",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }
}

/// Coarse groups for the `denied_*` metrics; the fine reason goes to the log line.
pub const METRIC_GROUPS: [&str; 7] = [
    "missing_token",
    "invalid_request",
    "invalid_token",
    "token_expired",
    "binding_failed",
    "insufficient_scope",
    "idp_unavailable",
];

impl Rejection {
    /// Every rejection, for tests and docs that go through all of them.
    pub const ALL: [Rejection; 30] = {
        use Rejection::*;
        [
            MissingToken,
            MultipleAuthorization,
            UnsupportedScheme,
            EmptyToken,
            MalformedAuthorization,
            TokenInQuery,
            DuplicateIdentityHeader,
            TokenTooLong,
            NotAJwt,
            MalformedJwt,
            AlgorithmNotAllowed,
            CriticalHeader,
            TypeNotAllowed,
            IssuerMismatch,
            MissingExpiry,
            Expired,
            NotYetValid,
            IssuedInFuture,
            AudienceMismatch,
            UnknownKey,
            BadSignature,
            Inactive,
            NotAnAccessToken,
            CertificateRequired,
            ThumbprintMismatch,
            Unbound,
            UnsupportedConfirmation,
            InsufficientScope,
            KeysUnavailable,
            IntrospectionUnavailable,
        ]
    };

    pub fn status(self) -> u16 {
        match self.error_code() {
            None | Some(ErrorCode::InvalidToken) => 401,
            Some(ErrorCode::InvalidRequest) => 400,
            Some(ErrorCode::InsufficientScope) => 403,
            Some(ErrorCode::TemporarilyUnavailable) => 503,
        }
    }

    pub fn error_code(self) -> Option<ErrorCode> {
        use Rejection::*;
        Some(match self {
            MissingToken => return None,
            MultipleAuthorization
            | UnsupportedScheme
            | EmptyToken
            | MalformedAuthorization
            | TokenInQuery
            | DuplicateIdentityHeader => ErrorCode::InvalidRequest,
            InsufficientScope => ErrorCode::InsufficientScope,
            KeysUnavailable | IntrospectionUnavailable => ErrorCode::TemporarilyUnavailable,
            _ => ErrorCode::InvalidToken,
        })
    }

    /// Stable snake_case name, for logs.
    pub fn reason(self) -> &'static str {
        use Rejection::*;
        match self {
            MissingToken => "missing_token",
            MultipleAuthorization => "multiple_authorization_headers",
            UnsupportedScheme => "unsupported_scheme",
            EmptyToken => "empty_token",
            MalformedAuthorization => "malformed_authorization",
            TokenInQuery => "token_in_query",
            DuplicateIdentityHeader => "duplicate_identity_header",
            TokenTooLong => "token_too_long",
            NotAJwt => "not_a_jwt",
            MalformedJwt => "malformed_jwt",
            AlgorithmNotAllowed => "algorithm_not_allowed",
            CriticalHeader => "critical_header",
            TypeNotAllowed => "typ_not_allowed",
            IssuerMismatch => "issuer_mismatch",
            MissingExpiry => "missing_exp",
            Expired => "expired",
            NotYetValid => "not_yet_valid",
            IssuedInFuture => "issued_in_future",
            AudienceMismatch => "audience_mismatch",
            UnknownKey => "unknown_key",
            BadSignature => "bad_signature",
            Inactive => "inactive",
            NotAnAccessToken => "not_an_access_token",
            CertificateRequired => "certificate_required",
            ThumbprintMismatch => "thumbprint_mismatch",
            Unbound => "unbound_token",
            UnsupportedConfirmation => "unsupported_confirmation",
            InsufficientScope => "insufficient_scope",
            KeysUnavailable => "keys_unavailable",
            IntrospectionUnavailable => "introspection_unavailable",
        }
    }

    /// One of `METRIC_GROUPS`.
    pub fn metric_group(self) -> &'static str {
        use Rejection::*;
        match self {
            MissingToken => "missing_token",
            Expired | NotYetValid | IssuedInFuture => "token_expired",
            CertificateRequired | ThumbprintMismatch | Unbound | UnsupportedConfirmation => {
                "binding_failed"
            }
            KeysUnavailable | IntrospectionUnavailable => "idp_unavailable",
            other => match other.error_code() {
                Some(ErrorCode::InvalidRequest) => "invalid_request",
                Some(ErrorCode::InsufficientScope) => "insufficient_scope",
                _ => "invalid_token",
            },
        }
    }

    /// For the client developer: what is wrong, never which token or certificate was expected.
    pub fn description(self) -> &'static str {
        use Rejection::*;
        match self {
            MissingToken => "an access token is required in the Authorization header",
            MultipleAuthorization => "more than one Authorization header",
            UnsupportedScheme => "the Authorization header must use the Bearer scheme",
            EmptyToken => "the Bearer token is empty",
            MalformedAuthorization => "the Authorization header is not a valid Bearer credential",
            TokenInQuery => "access tokens are accepted only in the Authorization header",
            DuplicateIdentityHeader => {
                "the request repeats, or imitates with underscores, a header this gateway reserves"
            }
            TokenTooLong => "the access token is too long",
            NotAJwt => "the access token is not a JWT",
            MalformedJwt => "the access token is not a well-formed JWT",
            AlgorithmNotAllowed => "the token's signing algorithm is not accepted",
            CriticalHeader => {
                "the token has critical header parameters this gateway does not support"
            }
            TypeNotAllowed => "the token is not a JWT access token (typ at+jwt)",
            IssuerMismatch => "the token was issued by another issuer",
            MissingExpiry => "the token has no expiry",
            Expired => "the token has expired",
            NotYetValid => "the token is not valid yet",
            IssuedInFuture => "the token's issue time is in the future",
            AudienceMismatch => "the token is not intended for this API",
            UnknownKey => "the token was signed with an unknown key",
            BadSignature => "the token signature is invalid",
            Inactive => "the token is not active",
            NotAnAccessToken => "the token is not an access token",
            CertificateRequired => {
                "the token is bound to a client certificate; present it over mutual TLS"
            }
            ThumbprintMismatch => "the token is bound to a different client certificate",
            Unbound => "the token is not bound to a client certificate",
            UnsupportedConfirmation => "the token is bound to a key this gateway cannot check",
            InsufficientScope => "the token lacks a required scope",
            KeysUnavailable => "the token signing keys could not be fetched; try again later",
            IntrospectionUnavailable => {
                "the token could not be checked with the authorization server; try again later"
            }
        }
    }
}
