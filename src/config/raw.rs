//! The configuration exactly as the user writes it: `RawConfig`, its defaults, and how Kong's
//! Lua-encoded JSON is read. The doc comment of each field is the field's reference text: the
//! JSON Schema in `filter-config/` carries the same text as its `description`, and a test
//! (tests/config_schema.rs) keeps the two identical.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::binding::PopMode;
use crate::binding::certificate::HeaderFormat;
use crate::tokens::jwks::Alg;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// JWT access tokens (RFC 9068) verified locally.
    Bearer,
    /// Token introspection (RFC 7662).
    Introspection,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    #[default]
    ClientSecretBasic,
    ClientSecretPost,
}

/// How a token presented with DPoP goes upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DpopUpstream {
    /// `Authorization: Bearer <token>`, the `DPoP` header removed (as Kong does).
    #[default]
    Bearer,
    /// As it came: `Authorization: DPoP <token>` and the proof.
    Dpop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CertSourceKind {
    /// The mutual-TLS connection of the request (Envoy and Kong properties).
    #[default]
    Connection,
    /// A header set by a trusted TLS-terminating proxy.
    Header,
}

/// `client_certificate` as written by the user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RawCertSource {
    /// `connection`: the certificate of the request's mutual-TLS connection, read from the host
    /// (Envoy: `connection.sha256_peer_certificate_digest` or `connection.peer_certificate`; Kong:
    /// `ngx.ssl_client_raw_cert`). `header`: a header set by a trusted TLS-terminating proxy in
    /// front of the gateway; then `header`, `format`, `trusted_ips` and `ca_certificates` are
    /// required. With `connection` they are not used (a warning at start-up). Default:
    /// `connection`.
    pub source: CertSourceKind,
    /// With source `header`: the request header carrying the certificate, e.g. `client-cert` (RFC
    /// 9440) or `x-forwarded-client-cert` (Envoy XFCC); case-insensitive. With `rfc9440`,
    /// intermediates come in `<header>-chain` (RFC 9440 `Client-Cert-Chain`). The headers are
    /// removed before the request goes upstream; one sent twice is ignored. No default.
    pub header: Option<String>,
    /// With source `header`: how the header encodes the certificate. `rfc9440`: `:<base64 DER>:`
    /// (RFC 9440 Client-Cert). `xfcc`: Envoy x-forwarded-client-cert holding exactly one element,
    /// written by a front Envoy with `forward_client_cert_details: SANITIZE_SET` and `cert: true`:
    /// its `Cert=` (needed for the CA check), which must agree with its `Hash=`, and its `Chain=`;
    /// a second element, a repeated `Hash`/`Cert`/`Chain` or a stray quote make the header unusable
    /// (a client can write `,` and `;` into its own certificate's SANs, which Envoy does not
    /// escape). `url_encoded_pem`: URL-encoded PEM (nginx `$ssl_client_escaped_cert`).
    /// `base64_der`: base64 of the DER certificate. No default.
    pub format: Option<HeaderFormat>,
    /// With source `header`: the peers allowed to set the header, as IP addresses or CIDR blocks
    /// (`10.0.0.0/8`, `2001:db8::/32`); this or `trusted_proxy_certificates` (or both, then both
    /// must hold) is required. From any other peer the header is ignored and the request has no
    /// certificate. The peer is the TCP peer only where the gateway does not take it from
    /// `X-Forwarded-For`: on Envoy `use_remote_address: true` with `xff_num_trusted_hops: 0` (Istio
    /// `numTrustedProxies: 0`, Envoy Gateway `numTrustedHops: 0`), else prefer
    /// `trusted_proxy_certificates`. A `/0` block is refused (it would trust every client), and
    /// so is an IPv4-mapped IPv6 address (`::ffff:...`: write IPv4 as IPv4; peers are compared as
    /// IPv4, so `::ffff:0:0/96` would be `0.0.0.0/0`); one wider than /8 (IPv4) or /32 (IPv6) is
    /// warned about at start-up, and an entry that is no
    /// address or block is skipped with a warning. Default: none.
    #[serde(deserialize_with = "list")]
    pub trusted_ips: Vec<String>,
    /// With source `header`: the SHA-256 fingerprints (64 hex digits, colons between bytes
    /// allowed) of the TLS client certificates of the proxies allowed to set the header: the
    /// header is believed only on a mutual-TLS connection whose own client certificate is one of
    /// them (RFC 9440 §4), whatever any address says. This or `trusted_ips` is required.
    /// Default: none.
    #[serde(deserialize_with = "list")]
    pub trusted_proxy_certificates: Vec<String>,
    /// With source `header`: the CA certificates (PEM, one or more `CERTIFICATE` blocks, inline:
    /// the filter reads no files) a header certificate must chain to, with the intermediates the
    /// header carries. The certificate must be within its validity and allow client authentication
    /// (every certificate of the path, when they name extended key usages), else 401. Without
    /// `allow_partial_chain` only self-issued CAs are trust anchors and the others serve as
    /// intermediates. A block that is not a usable CA certificate is skipped with a warning.
    /// Required with source `header`. No default.
    pub ca_certificates: Option<String>,
    /// With source `header`: when true, every certificate in `ca_certificates` is a trust anchor,
    /// an intermediate CA included (OpenSSL's partial-chain flag, Kong's `allow_partial_chain`).
    /// Default: false.
    pub allow_partial_chain: bool,
    /// With source `header`: certificate revocation lists (PEM, one or more `X509 CRL` blocks,
    /// inline). When set, the header certificate's issuer must have a CRL here and the certificate
    /// must not be on it, else 401. A CRL that cannot be used is warned about (its CA's
    /// certificates are then refused). No default (no revocation check).
    pub crls: Option<String>,
}

/// The configuration exactly as the user writes it. Field docs are the reference; the JSON
/// Schema in `filter-config/` repeats them and a test keeps the two in step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    /// How the certificate binding of the token (RFC 8705 §3) is enforced. `strict`: every token
    /// must carry `cnf["x5t#S256"]` (the JWT claim or the introspection response member) equal to
    /// the SHA-256 thumbprint of the request's client certificate; an unbound token is refused with
    /// 401 invalid_token. `optional`: a token that carries `cnf["x5t#S256"]` must match, an unbound
    /// token passes (for migrating clients to mTLS-bound tokens). `off`: no certificate binding
    /// check. Independent of `proof_of_possession_dpop`: a token bound both ways must satisfy both;
    /// a token bound to a key neither setting checks is refused unless both are `off`. Default:
    /// `strict`.
    pub proof_of_possession_mtls: PopMode,
    /// How DPoP-bound tokens (RFC 9449) are enforced, independently of `proof_of_possession_mtls`.
    /// `strict`: every token must carry `cnf.jkt` and come with the `DPoP` scheme and a valid proof
    /// by that key. `optional`: the `DPoP` scheme is accepted; a token with `cnf.jkt` needs it
    /// (sent as `Bearer` it is refused), other tokens pass as the mTLS setting allows. `off`: the
    /// `DPoP` scheme is not accepted and a token with `cnf.jkt` is refused. Default: `off`.
    pub proof_of_possession_dpop: PopMode,
    /// Seconds a DPoP proof is accepted after its `iat` (plus `leeway`); its `jti` is remembered
    /// that long (see `dpop_replay_cache_entries`), so a proof is accepted once. 1 to 3600.
    /// Default: 300.
    #[serde(deserialize_with = "whole")]
    pub dpop_proof_lifetime: u64,
    /// How many DPoP proofs can be remembered at once for replay detection: each for
    /// `dpop_proof_lifetime` + `leeway` seconds (at most 120 s with `dpop_use_nonce`), in shared
    /// data with `shared_cache` (so all workers refuse a replay), else per worker. When the cache
    /// is full a new proof is refused with 503 rather than an old one forgotten: size it 25% above
    /// your peak DPoP request rate times that time. Changing it starts an empty cache (for one
    /// proof lifetime a proof used before the change could be used once more). About 30 bytes per
    /// entry. 16 to 10000000. Default: 131072.
    #[serde(deserialize_with = "whole")]
    pub dpop_replay_cache_entries: u32,
    /// Signature algorithms accepted for DPoP proofs (asymmetric only: `none` and HMAC never),
    /// advertised in the `DPoP` challenge's `algs`. At least one. Default: `["ES256", "ES384",
    /// "EdDSA", "PS256", "RS256"]`.
    #[serde(deserialize_with = "list")]
    pub dpop_algorithms: Vec<Alg>,
    /// When true, a proof must carry a nonce this gateway issued (RFC 9449 §9): one without a
    /// current nonce gets 401 `use_dpop_nonce` and a fresh nonce in the `DPoP-Nonce` header. Nonces
    /// are a MAC of the time (60-second steps, each good for two) under `dpop_nonce_secret`, so
    /// every worker and every instance with the same secret accepts them, and nothing is stored;
    /// without a secret the gateway makes a random one once, shared by its workers (through
    /// shared data with `shared_cache`, else per worker), and warns at start-up that a fleet
    /// needs the same `dpop_nonce_secret` on every instance. Default: false.
    pub dpop_use_nonce: bool,
    /// With `dpop_use_nonce`: the secret nonces are made under, at least 32 characters, the same on
    /// every gateway instance a client may reach. Never logged. No default (a random secret,
    /// this gateway's own).
    pub dpop_nonce_secret: Option<String>,
    /// The scheme and authority clients use to reach this gateway, e.g. `https://api.example.com`
    /// (no path), against which a proof's `htu` is checked: set it when a proxy in front changes
    /// them. Without it (and without `dpop_allowed_origins`) they come from the request (its
    /// scheme, and `:authority`, or on Kong the `host` header), which a client writes: a proof
    /// made for another resource server could then be used here once by sending that server's
    /// host, so a warning says so at start-up. The path is always the request's, without the
    /// query. Not with `dpop_allowed_origins`. No default.
    pub dpop_external_url: Option<String>,
    /// The origins (`scheme://host[:port]`) clients may reach this gateway under, when it has
    /// several names: the request's origin must be one of them for a proof's `htu` to match.
    /// Not with `dpop_external_url`. Default: none.
    #[serde(deserialize_with = "list")]
    pub dpop_allowed_origins: Vec<String>,
    /// How a token presented with DPoP goes upstream: `bearer` rewrites `Authorization` to `Bearer
    /// <token>` and removes the `DPoP` header (as Kong does); `dpop` leaves both as they came.
    /// Default: `bearer`.
    pub dpop_upstream: DpopUpstream,
    /// How access tokens are validated, one or both, each at most once. `bearer`: JWT access tokens
    /// (RFC 9068) verified locally against the IdP's keys; needs `issuer` and `jwks` or
    /// `jwks_endpoint`. `introspection`: the token is POSTed to `introspection_endpoint` (RFC
    /// 7662); needs `client_id` and `client_secret`. With both, a token that looks like a JWT
    /// (three base64url segments whose header is a JSON object with `alg`) is verified locally and
    /// any other token is introspected; with `introspection` alone every token, JWT or not, is
    /// introspected. Settings of a method that is off are not used (a warning at start-up names
    /// each one). Default: `["bearer"]`.
    #[serde(deserialize_with = "list")]
    pub auth_methods: Vec<AuthMethod>,
    /// The IdP's issuer identifier, compared exactly (no normalisation) with the `iss` claim.
    /// Required when `auth_methods` includes `bearer` (a JWT must carry this `iss`) and with
    /// `introspection_jwt` (the signed response's `iss`). With `introspection`, when set, an `iss`
    /// member in the introspection response must equal it (an absent one passes). No default.
    pub issuer: Option<String>,
    /// Audiences accepted: the token's `aud` (string or array) must contain at least one of them;
    /// when empty, the audience is not checked. Each entry is a non-empty string. Default: none (no
    /// audience check).
    #[serde(deserialize_with = "list")]
    pub audience_required: Vec<String>,
    /// Scopes the token must all grant, from its `scope` string or `scp` array; a token lacking one
    /// gets 403 insufficient_scope, with these scopes in the `WWW-Authenticate` header. Each entry
    /// is an RFC 6749 scope-token: printable ASCII without spaces, `"` or `\`. Default: none
    /// required.
    #[serde(deserialize_with = "list")]
    pub scopes_required: Vec<String>,
    /// Clock skew tolerated, in seconds, either way on `exp`, `nbf` and `iat` (JWT claims and
    /// introspection response members). At most 600. Default: 60.
    #[serde(deserialize_with = "whole")]
    pub leeway: u64,
    /// When true, a JWT must have the header `typ: at+jwt` (RFC 9068; `application/at+jwt` too,
    /// case-insensitive). When false, `typ: JWT` or no `typ` is accepted too, for IdPs that do not
    /// issue RFC 9068 tokens. Used with `bearer`. Default: true.
    pub jwt_typ_strict: bool,
    /// Signature algorithms accepted for JWT access tokens and signed introspection responses,
    /// case-sensitive, at least one. A token whose header names another algorithm is refused before
    /// any key lookup, and keys are only used for the algorithms listed here. `none` and HMAC are
    /// never accepted. Default: all nine.
    #[serde(deserialize_with = "list")]
    pub jwt_algorithms: Vec<Alg>,
    /// A static JSON Web Key Set (RFC 7517), `{"keys": [...]}`, of the IdP's public signing keys
    /// (RSA, EC P-256/P-384, Ed25519), at most 64 keys. Keys with `use` other than `sig` and key
    /// types certbound does not verify with are skipped; a key that does not decode is skipped with
    /// a warning at start-up (as is a set with no key usable with `jwt_algorithms` and no
    /// `jwks_endpoint`: every JWT would be refused). Used with `bearer` and `introspection_jwt`;
    /// with `jwks_endpoint` as well, both sets are tried (inline keys first). No default.
    pub jwks: Option<serde_json::Value>,
    /// The IdP's JWKS URL: `http` or `https`, a host name or bracketed IPv6 address, an optional
    /// port (1 to 65535), an optional path and query; no credentials or fragment. E.g.
    /// `https://idp.example:8443/jwks`. Fetched at start-up, every `jwks_refresh_interval` seconds,
    /// and when a token names a `kid` the worker does not have (at most once per
    /// `rediscovery_lifetime`); one fetch at a time per worker, owned by the worker. With `bearer`
    /// or `introspection_jwt`, `jwks` or `jwks_endpoint` (or both) is required. No default.
    pub jwks_endpoint: Option<String>,
    /// Seconds between periodic fetches of `jwks_endpoint`. 10 to 604800. Default: 600.
    #[serde(deserialize_with = "whole")]
    pub jwks_refresh_interval: u64,
    /// Cool-down, in seconds, counted from the end of the last JWKS fetch, before a token with an
    /// unknown `kid` may cause another: a flood of random kids reaches the IdP at most once per
    /// this period. While a worker has no keys at all, failed fetches are retried after 1, 2, 4,
    /// ... seconds, never more than this. 1 to 86400. Default: 30.
    #[serde(deserialize_with = "whole")]
    pub rediscovery_lifetime: u64,
    /// The IdP's token introspection URL (RFC 7662): `http` or `https`, a host name or bracketed
    /// IPv6 address, an optional port (1 to 65535), an optional path and query; no credentials or
    /// fragment. E.g. `https://idp.example:8443/token/introspection`. Required when `auth_methods`
    /// includes `introspection`. No default.
    pub introspection_endpoint: Option<String>,
    /// The gateway's client id at the IdP, used to authenticate introspection calls; the `aud` a
    /// signed introspection response must carry. Required (non-empty) with `introspection`. No
    /// default.
    pub client_id: Option<String>,
    /// The gateway's client secret at the IdP, for introspection calls. Required (non-empty) with
    /// `introspection`. Never logged. No default.
    pub client_secret: Option<String>,
    /// How introspection calls authenticate the gateway: `client_secret_basic` (HTTP Basic
    /// `Authorization` header) or `client_secret_post` (`client_id` and `client_secret` in the form
    /// body). Default: `client_secret_basic`.
    pub client_auth: ClientAuth,
    /// Seconds an introspection result is cached, keyed by the SHA-256 of the token (never the
    /// token itself), and never past the token's `exp`; 0 disables the cache. The binding,
    /// audience, scopes and lifetime are re-checked on every cache hit. At most 86400. Default: 60.
    #[serde(deserialize_with = "whole")]
    pub cache_introspection: u64,
    /// When true, introspection asks for a signed JWT response (RFC 9701, `Accept:
    /// application/token-introspection+jwt`) and uses its `token_introspection` claims only after
    /// checking it: `typ` `token-introspection+jwt`, a signature by the IdP's keys
    /// (`jwks`/`jwks_endpoint`, `jwt_algorithms`), `iss` equal to `issuer`, `aud` equal to
    /// `client_id`, and an `iat` at most `leeway` + 60 seconds old. Needs `issuer` and keys. Used
    /// with `introspection`. Default: false.
    pub introspection_jwt: bool,
    /// With `introspection_jwt`: the request header the signed introspection response is forwarded
    /// upstream in, so the upstream can verify the caller's identity itself (as Kong's
    /// `upstream_introspection_jwt_header`); a client's copy is replaced, and a request carrying it
    /// twice is refused. A valid HTTP header name, not a reserved one (see
    /// `upstream_headers_names`). No default (not forwarded).
    pub upstream_introspection_jwt_header: Option<String>,
    /// Number of slots of each of the filter's two caches: introspection answers (shared or per
    /// worker, see `shared_cache`) and, per worker, JWTs whose signature was verified (their
    /// signature is not checked again until `exp`; every other check is). Fixed-size caches: a new
    /// entry may replace an older one. 1 to 1000000. Default: 4096.
    #[serde(deserialize_with = "whole")]
    pub cache_max_entries: u32,
    /// When true, the introspection cache and the DPoP replay cache are shared by all workers
    /// through the host's shared data (a DPoP proof used on one worker is then refused on every
    /// other). Set false to keep them per worker: on Kong, shared data needs an `shm_kv` zone
    /// (kong.conf `nginx_wasm_shm_kv`), without which the filter fails. Default: true.
    pub shared_cache: bool,
    /// Timeout, in milliseconds, of each call to the IdP (JWKS fetch or introspection). A call that
    /// times out fails closed (503). 1 to 60000. Default: 2000.
    #[serde(deserialize_with = "whole")]
    pub http_timeout: u64,
    /// Where calls to the IdP are sent, by URL authority: a key is the `host:port` (or authority
    /// exactly as written in the URL) of `jwks_endpoint` or `introspection_endpoint`, the value an
    /// Envoy cluster name or, on Kong, the `ip:port` to dial (the URL's host name still goes in
    /// `:authority` and SNI). Authorities not listed are dialled as the URL's `host:port` (port 443
    /// or 80 made explicit). Keys and values must be non-empty, without spaces; a key is not a URL,
    /// and a value has no scheme or path (a URL such as `http://10.0.0.5:80` traps the filter on
    /// Kong). Default: none.
    pub upstreams: BTreeMap<String, String>,
    /// Where the client certificate comes from. Default: `{"source": "connection"}`, the request's
    /// own mutual-TLS connection.
    pub client_certificate: RawCertSource,
    /// Claims copied into request headers on allowed requests, paired by position with
    /// `upstream_headers_names`: claim `upstream_headers_claims[i]` goes into header
    /// `upstream_headers_names[i]`. A string claim is sent as is, an array of strings
    /// space-separated, other values as JSON; a claim that is absent (or holds control characters)
    /// removes the header. Each entry is a non-empty claim name. Lists of different lengths are
    /// warned about: an unpaired claim is not sent. Default: none.
    #[serde(deserialize_with = "list")]
    pub upstream_headers_claims: Vec<String>,
    /// Request header names set from `upstream_headers_claims`. Any copy of these headers sent by
    /// the client is replaced, and a request carrying one of them twice is refused; a name without
    /// a claim is always removed. Valid HTTP header names, each at most once (a name repeated in
    /// another case is warned about and used once); reserved headers may not be named:
    /// authorization, host, connection, content-length, content-type, transfer-encoding, te,
    /// upgrade, keep-alive, proxy-authorization, cookie, x-forwarded-client-cert, client-cert,
    /// client-cert-chain, dpop. Default: none.
    #[serde(deserialize_with = "list")]
    pub upstream_headers_names: Vec<String>,
    /// The `realm` of the `WWW-Authenticate: Bearer` challenge in 401 and 403 responses. Non-empty
    /// printable ASCII without `"` or `\`. Default: `api`.
    pub realm: String,
    /// When false, a refused token or DPoP proof gets a generic `error_description` (`the
    /// access token is not valid here`, `the DPoP proof is not valid here`) instead of the check
    /// that failed, so a forger learns nothing from it (Kong's `expose_error_code` is the like
    /// switch there). The `error` code stays (RFC 6750, RFC 9449: clients act on it), and the
    /// reason is always in the log and the counters. Default: true.
    pub expose_error_descriptions: bool,
}

pub const DEFAULT_LEEWAY: u64 = 60;
pub const DEFAULT_JWKS_REFRESH: u64 = 600;
pub const DEFAULT_REDISCOVERY: u64 = 30;
pub const DEFAULT_CACHE_TTL: u64 = 60;
pub const DEFAULT_CACHE_ENTRIES: u32 = 4096;
/// Proofs the DPoP replay cache holds by default: 364 DPoP requests a second for 360 s.
pub const DEFAULT_DPOP_REPLAY_ENTRIES: u32 = 131_072;
pub const DEFAULT_HTTP_TIMEOUT_MS: u64 = 2000;
pub const DEFAULT_REALM: &str = "api";
pub const DEFAULT_DPOP_LIFETIME: u64 = 300;
pub const DEFAULT_DPOP_ALGORITHMS: [Alg; 5] =
    [Alg::ES256, Alg::ES384, Alg::EdDSA, Alg::PS256, Alg::RS256];

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            proof_of_possession_mtls: PopMode::Strict,
            proof_of_possession_dpop: PopMode::Off,
            dpop_proof_lifetime: DEFAULT_DPOP_LIFETIME,
            dpop_replay_cache_entries: DEFAULT_DPOP_REPLAY_ENTRIES,
            dpop_algorithms: DEFAULT_DPOP_ALGORITHMS.to_vec(),
            dpop_use_nonce: false,
            dpop_nonce_secret: None,
            dpop_external_url: None,
            dpop_allowed_origins: Vec::new(),
            dpop_upstream: DpopUpstream::Bearer,
            auth_methods: vec![AuthMethod::Bearer],
            issuer: None,
            audience_required: Vec::new(),
            scopes_required: Vec::new(),
            leeway: DEFAULT_LEEWAY,
            jwt_typ_strict: true,
            jwt_algorithms: Alg::ALL.to_vec(),
            jwks: None,
            jwks_endpoint: None,
            jwks_refresh_interval: DEFAULT_JWKS_REFRESH,
            rediscovery_lifetime: DEFAULT_REDISCOVERY,
            introspection_endpoint: None,
            client_id: None,
            client_secret: None,
            client_auth: ClientAuth::ClientSecretBasic,
            cache_introspection: DEFAULT_CACHE_TTL,
            introspection_jwt: false,
            upstream_introspection_jwt_header: None,
            cache_max_entries: DEFAULT_CACHE_ENTRIES,
            shared_cache: true,
            http_timeout: DEFAULT_HTTP_TIMEOUT_MS,
            upstreams: BTreeMap::new(),
            client_certificate: RawCertSource::default(),
            upstream_headers_claims: Vec::new(),
            upstream_headers_names: Vec::new(),
            realm: DEFAULT_REALM.to_string(),
            expose_error_descriptions: true,
        }
    }
}

/// A JSON array, or `{}` for an empty one: Kong JSON-encodes the validated config from Lua,
/// where an empty array and an empty object are the same table.
pub(crate) fn list<'de, D, T>(de: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    use serde::de::Error;
    match serde_json::Value::deserialize(de)? {
        serde_json::Value::Object(o) if o.is_empty() => Ok(Vec::new()),
        v @ serde_json::Value::Array(_) => serde_json::from_value(v).map_err(D::Error::custom),
        _ => Err(D::Error::custom("expected a JSON array")),
    }
}

/// An integer field as Kong hands it: Kong's Lua has one number type, and the schema's
/// "integer" there means a number without a fractional part, so `1.0`, `1e2` and `-0` pass
/// Kong's check (and reach the filter as `1`, `100` and `-0`). The filter reads every such
/// number as that integer; a fraction, a negative number or one out of the type's range is
/// refused as before.
pub(crate) fn whole<'de, D, T>(de: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64>,
{
    use serde::de::{Error, Unexpected};
    let n = serde_json::Number::deserialize(de)?;
    // 2^64: every whole f64 below it (and -0, which is 0) is a u64.
    const BEYOND_U64: f64 = 18_446_744_073_709_551_616.0;
    let v = match (n.as_u64(), n.as_i64(), n.as_f64()) {
        (Some(v), _, _) => v,
        (None, Some(v), _) => {
            return Err(D::Error::invalid_value(
                Unexpected::Signed(v),
                &"an integer of 0 or more",
            ));
        }
        (None, None, Some(f)) if f.fract() == 0.0 && f > -1.0 && f < BEYOND_U64 => f as u64,
        (None, None, Some(f)) => {
            return Err(D::Error::invalid_value(
                Unexpected::Float(f),
                &"an integer of 0 or more",
            ));
        }
        (None, None, None) => return Err(D::Error::custom("expected an integer")),
    };
    T::try_from(v)
        .map_err(|_| D::Error::invalid_value(Unexpected::Unsigned(v), &"a smaller integer"))
}
