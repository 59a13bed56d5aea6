//! The filter's configuration: the JSON a user writes (`raw`, mirrored by
//! `filter-config/certbound.schema.json`) and the validated, ready-to-use form (`Settings`)
//! built once at `on_configure`. Every refusal names the field at fault.

mod raw;

use std::fmt;
use std::time::Duration;

use ipnet::IpNet;

pub use raw::*;

use crate::binding::PopMode;
use crate::binding::certificate::HeaderFormat;
use crate::endpoint::Endpoint;
use crate::tokens::jwks::{Alg, KeySet};

/// A refused configuration: the field at fault (a JSON path) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl ConfigError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "invalid configuration: {}", self.message)
        } else {
            write!(f, "invalid configuration: {}: {}", self.field, self.message)
        }
    }
}

/// Local JWT verification settings (`auth_methods` has `bearer`).
#[derive(Debug, Clone)]
pub struct BearerSettings {
    pub issuer: String,
    pub algorithms: Vec<Alg>,
    pub typ_strict: bool,
    pub inline_keys: KeySet,
    pub jwks_endpoint: Option<Endpoint>,
    pub refresh_interval: u64,
    pub rediscovery_lifetime: u64,
}

/// Introspection settings (`auth_methods` has `introspection`).
#[derive(Debug, Clone)]
pub struct IntrospectionSettings {
    pub endpoint: Endpoint,
    pub client_id: String,
    pub client_secret: String,
    pub client_auth: ClientAuth,
    /// The issuer an `iss` member of the response must equal, when configured.
    pub issuer: Option<String>,
    pub cache_ttl: u64,
}

/// Where the client certificate comes from, validated.
#[derive(Debug, Clone, PartialEq)]
pub enum CertSource {
    Connection,
    Header {
        name: String,
        format: HeaderFormat,
        trusted: Vec<IpNet>,
    },
}

/// The validated configuration the filter runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub pop: PopMode,
    pub bearer: Option<BearerSettings>,
    pub introspection: Option<IntrospectionSettings>,
    pub audience_required: Vec<String>,
    pub scopes_required: Vec<String>,
    pub leeway: u64,
    pub shared_cache: bool,
    /// Entries (slots) of each cache: introspection answers and verified JWTs.
    pub cache_max_entries: u32,
    pub http_timeout: Duration,
    pub cert_source: CertSource,
    /// (claim, lower-case header name) pairs set on allowed requests.
    pub upstream_headers: Vec<(String, String)>,
    pub realm: String,
    /// Settings that load but deserve the operator's attention, logged once at start-up.
    pub warnings: Vec<String>,
}

/// Upper bounds that catch typos (a timeout in seconds where milliseconds were meant).
const MAX_LEEWAY: u64 = 600;
const MAX_CACHE_TTL: u64 = 86_400;
const MAX_CACHE_ENTRIES: u32 = 1_000_000;
const MAX_HTTP_TIMEOUT_MS: u64 = 60_000;

/// Request headers the filter must never overwrite from claims.
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "host",
    "connection",
    "content-length",
    "content-type",
    "transfer-encoding",
    "te",
    "upgrade",
    "keep-alive",
    "proxy-authorization",
    "cookie",
    "x-forwarded-client-cert",
    "client-cert",
    "client-cert-chain",
];

impl Settings {
    /// Request headers a client may not send more than once or imitate: those set from
    /// claims, and the certificate header.
    pub fn reserved_headers(&self) -> impl Iterator<Item = &str> {
        let cert_header = match &self.cert_source {
            CertSource::Header { name, .. } => Some(name.as_str()),
            CertSource::Connection => None,
        };
        self.upstream_headers
            .iter()
            .map(|(_, n)| n.as_str())
            .chain(cert_header)
    }

    /// Parses and validates the configuration bytes the host hands to `on_configure`.
    /// An empty configuration is refused: an issuer or an introspection endpoint is always needed.
    pub fn from_json(bytes: &[u8]) -> Result<Settings, ConfigError> {
        let raw = RawConfig::from_json(bytes)?;
        Settings::validate(raw)
    }

    pub fn validate(raw: RawConfig) -> Result<Settings, ConfigError> {
        if raw.auth_methods.is_empty() {
            return Err(ConfigError::new(
                "auth_methods",
                "must name at least one of \"bearer\", \"introspection\"",
            ));
        }
        if has_duplicates(&raw.auth_methods) {
            return Err(ConfigError::new("auth_methods", "lists a method twice"));
        }
        if raw.leeway > MAX_LEEWAY {
            return Err(ConfigError::new(
                "leeway",
                format!("must be at most {MAX_LEEWAY} seconds"),
            ));
        }
        if raw.http_timeout == 0 || raw.http_timeout > MAX_HTTP_TIMEOUT_MS {
            return Err(ConfigError::new(
                "http_timeout",
                format!("must be 1 to {MAX_HTTP_TIMEOUT_MS} milliseconds"),
            ));
        }
        if raw.cache_introspection > MAX_CACHE_TTL {
            return Err(ConfigError::new(
                "cache_introspection",
                format!("must be at most {MAX_CACHE_TTL} seconds"),
            ));
        }
        if raw.cache_max_entries == 0 || raw.cache_max_entries > MAX_CACHE_ENTRIES {
            return Err(ConfigError::new(
                "cache_max_entries",
                format!("must be 1 to {MAX_CACHE_ENTRIES}"),
            ));
        }
        if raw.jwks_refresh_interval < 10 {
            return Err(ConfigError::new(
                "jwks_refresh_interval",
                "must be at least 10 seconds",
            ));
        }
        if raw.rediscovery_lifetime == 0 {
            return Err(ConfigError::new(
                "rediscovery_lifetime",
                "must be at least 1 second, or a flood of unknown kids would reach the IdP",
            ));
        }
        if raw.jwt_algorithms.is_empty() {
            return Err(ConfigError::new(
                "jwt_algorithms",
                "must allow at least one algorithm",
            ));
        }
        check_strings("audience_required", &raw.audience_required, |_| true)?;
        check_strings("scopes_required", &raw.scopes_required, is_scope_token)?;
        check_quoted_string("realm", &raw.realm)?;
        for (authority, upstream) in &raw.upstreams {
            check_upstream(authority, upstream)?;
        }
        let mut warnings = Vec::new();

        let bearer_on = raw.auth_methods.contains(&AuthMethod::Bearer);
        let introspection_on = raw.auth_methods.contains(&AuthMethod::Introspection);
        let issuer = optional_nonempty("issuer", raw.issuer.as_deref())?;

        let bearer = if bearer_on {
            Some(bearer_settings(&raw, issuer.clone())?)
        } else {
            None
        };
        if !bearer_on && (raw.jwks.is_some() || raw.jwks_endpoint.is_some()) {
            return Err(ConfigError::new(
                if raw.jwks.is_some() {
                    "jwks"
                } else {
                    "jwks_endpoint"
                },
                "is only used when auth_methods includes \"bearer\"",
            ));
        }
        let introspection = if introspection_on {
            Some(introspection_settings(&raw, issuer)?)
        } else {
            if raw.introspection_endpoint.is_some() {
                return Err(ConfigError::new(
                    "introspection_endpoint",
                    "is only used when auth_methods includes \"introspection\"",
                ));
            }
            None
        };

        let upstream_headers = upstream_headers(&raw)?;
        let cert_source = cert_source(&raw.client_certificate, &mut warnings)?;
        Ok(Settings {
            pop: raw.proof_of_possession_mtls,
            bearer,
            introspection,
            audience_required: raw.audience_required,
            scopes_required: raw.scopes_required,
            leeway: raw.leeway,
            shared_cache: raw.shared_cache,
            cache_max_entries: raw.cache_max_entries,
            http_timeout: Duration::from_millis(raw.http_timeout),
            cert_source,
            upstream_headers,
            realm: raw.realm,
            warnings,
        })
    }
}

impl RawConfig {
    /// Deserialises, naming the field of a type error (`leeway: invalid type ...`).
    pub fn from_json(bytes: &[u8]) -> Result<RawConfig, ConfigError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ConfigError::new(
                "",
                "the configuration is empty; it must be a JSON object",
            ));
        }
        let de = &mut serde_json::Deserializer::from_slice(bytes);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." { String::new() } else { path };
            // serde quotes the offending value; a secret must not reach the host's log.
            let message = if field.starts_with("client_secret") {
                "must be a string".to_string()
            } else {
                e.into_inner().to_string()
            };
            ConfigError::new(field, message)
        })
    }
}

fn bearer_settings(raw: &RawConfig, issuer: Option<String>) -> Result<BearerSettings, ConfigError> {
    let issuer = issuer.ok_or_else(|| {
        ConfigError::new(
            "issuer",
            "is required when auth_methods includes \"bearer\" (JWT `iss` is checked against it)",
        )
    })?;
    if raw.jwks.is_none() && raw.jwks_endpoint.is_none() {
        return Err(ConfigError::new(
            "jwks_endpoint",
            "either jwks or jwks_endpoint is required when auth_methods includes \"bearer\"",
        ));
    }
    let inline_keys = match &raw.jwks {
        None => KeySet::default(),
        Some(value) => {
            let keys = KeySet::from_jwks(value, &raw.jwt_algorithms)
                .map_err(|e| ConfigError::new(format!("jwks{}", e.path), e.message))?;
            // Inline keys may be empty when the endpoint provides them.
            if keys.is_empty() && raw.jwks_endpoint.is_none() {
                return Err(ConfigError::new(
                    "jwks.keys",
                    "holds no signature key usable with jwt_algorithms",
                ));
            }
            keys
        }
    };
    let jwks_endpoint = raw
        .jwks_endpoint
        .as_deref()
        .map(|url| {
            Endpoint::parse(url, &raw.upstreams).map_err(|m| ConfigError::new("jwks_endpoint", m))
        })
        .transpose()?;
    Ok(BearerSettings {
        issuer,
        algorithms: raw.jwt_algorithms.clone(),
        typ_strict: raw.jwt_typ_strict,
        inline_keys,
        jwks_endpoint,
        refresh_interval: raw.jwks_refresh_interval,
        rediscovery_lifetime: raw.rediscovery_lifetime,
    })
}

fn introspection_settings(
    raw: &RawConfig,
    issuer: Option<String>,
) -> Result<IntrospectionSettings, ConfigError> {
    let url = raw.introspection_endpoint.as_deref().ok_or_else(|| {
        ConfigError::new(
            "introspection_endpoint",
            "is required when auth_methods includes \"introspection\"",
        )
    })?;
    let endpoint = Endpoint::parse(url, &raw.upstreams)
        .map_err(|m| ConfigError::new("introspection_endpoint", m))?;
    let client_id = optional_nonempty("client_id", raw.client_id.as_deref())?
        .ok_or_else(|| ConfigError::new("client_id", "is required for introspection"))?;
    let client_secret = optional_nonempty("client_secret", raw.client_secret.as_deref())?
        .ok_or_else(|| ConfigError::new("client_secret", "is required for introspection"))?;
    Ok(IntrospectionSettings {
        endpoint,
        client_id,
        client_secret,
        client_auth: raw.client_auth,
        issuer,
        cache_ttl: raw.cache_introspection,
    })
}

fn upstream_headers(raw: &RawConfig) -> Result<Vec<(String, String)>, ConfigError> {
    let (claims, names) = (&raw.upstream_headers_claims, &raw.upstream_headers_names);
    if claims.len() != names.len() {
        return Err(ConfigError::new(
            "upstream_headers_names",
            format!(
                "has {} entries but upstream_headers_claims has {}; they pair up by position",
                names.len(),
                claims.len()
            ),
        ));
    }
    check_strings("upstream_headers_claims", claims, |_| true)?;
    let mut pairs: Vec<(String, String)> = Vec::with_capacity(claims.len());
    for (i, (claim, name)) in claims.iter().zip(names).enumerate() {
        let lower = name.to_ascii_lowercase();
        if !is_header_name(&lower) {
            return Err(ConfigError::new(
                format!("upstream_headers_names[{i}]"),
                "is not a valid HTTP header name",
            ));
        }
        if RESERVED_HEADERS.contains(&lower.as_str()) {
            return Err(ConfigError::new(
                format!("upstream_headers_names[{i}]"),
                format!("\"{lower}\" may not be set from a claim"),
            ));
        }
        if pairs.iter().any(|(_, n)| *n == lower) {
            return Err(ConfigError::new(
                format!("upstream_headers_names[{i}]"),
                "names a header twice",
            ));
        }
        pairs.push((claim.clone(), lower));
    }
    Ok(pairs)
}

/// An `upstreams` entry: the key a URL authority, the value an Envoy cluster name or
/// `host:port`. A URL as the value traps the filter on Kong's engine (docs/hosts.md).
fn check_upstream(authority: &str, upstream: &str) -> Result<(), ConfigError> {
    let field = || {
        if authority.is_empty() {
            "upstreams".to_string()
        } else {
            format!("upstreams.{authority}")
        }
    };
    let blank = |s: &str| s.is_empty() || s.chars().any(char::is_whitespace);
    if blank(authority) || authority.contains('/') {
        return Err(ConfigError::new(
            field(),
            "keys are URL authorities (host:port, as in the endpoint URLs), not URLs",
        ));
    }
    let has_path = upstream.split_once('/').is_some_and(|(head, _)| {
        head.rsplit_once(':')
            .is_some_and(|(_, port)| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))
    });
    if blank(upstream) || upstream.contains("://") || has_path {
        return Err(ConfigError::new(
            field(),
            "must be an Envoy cluster name or host:port, without a scheme or path",
        ));
    }
    Ok(())
}

/// Prefixes shorter than these trust a very wide range of peers: warned about.
const WIDE_V4_PREFIX: u8 = 8;
const WIDE_V6_PREFIX: u8 = 32;

fn cert_source(raw: &RawCertSource, warnings: &mut Vec<String>) -> Result<CertSource, ConfigError> {
    match raw.source {
        CertSourceKind::Connection => {
            if raw.header.is_some() || raw.format.is_some() || !raw.trusted_ips.is_empty() {
                return Err(ConfigError::new(
                    "client_certificate",
                    "header, format and trusted_ips are only used with \"source\": \"header\"",
                ));
            }
            Ok(CertSource::Connection)
        }
        CertSourceKind::Header => {
            let name = raw
                .header
                .as_deref()
                .map(str::to_ascii_lowercase)
                .filter(|n| is_header_name(n))
                .ok_or_else(|| {
                    ConfigError::new(
                        "client_certificate.header",
                        "a valid header name is required with source header",
                    )
                })?;
            let format = raw.format.ok_or_else(|| {
                ConfigError::new(
                    "client_certificate.format",
                    "is required with source header",
                )
            })?;
            if raw.trusted_ips.is_empty() {
                return Err(ConfigError::new(
                    "client_certificate.trusted_ips",
                    "must list the proxies allowed to set the header (CIDR or address)",
                ));
            }
            let mut trusted = Vec::with_capacity(raw.trusted_ips.len());
            for (i, s) in raw.trusted_ips.iter().enumerate() {
                let field = format!("client_certificate.trusted_ips[{i}]");
                let net = parse_net(s)
                    .ok_or_else(|| ConfigError::new(&field, "is not an IP address or CIDR"))?;
                if net.prefix_len() == 0 {
                    return Err(ConfigError::new(
                        field,
                        "a /0 block makes every client a trusted proxy; list the proxies",
                    ));
                }
                let wide = match net {
                    IpNet::V4(_) => net.prefix_len() < WIDE_V4_PREFIX,
                    IpNet::V6(_) => net.prefix_len() < WIDE_V6_PREFIX,
                };
                if wide {
                    warnings.push(format!(
                        "{field} ({net}) is very wide: every peer in it may assert any client \
                         certificate"
                    ));
                }
                trusted.push(net);
            }
            Ok(CertSource::Header {
                name,
                format,
                trusted,
            })
        }
    }
}

fn parse_net(s: &str) -> Option<IpNet> {
    let s = s.trim();
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

fn optional_nonempty(field: &str, value: Option<&str>) -> Result<Option<String>, ConfigError> {
    match value {
        None => Ok(None),
        Some(v) if v.trim().is_empty() => Err(ConfigError::new(field, "must not be empty")),
        Some(v) => Ok(Some(v.to_string())),
    }
}

fn check_strings(
    field: &str,
    values: &[String],
    ok: impl Fn(&str) -> bool,
) -> Result<(), ConfigError> {
    for (i, v) in values.iter().enumerate() {
        if v.is_empty() || !ok(v) {
            return Err(ConfigError::new(
                format!("{field}[{i}]"),
                "is empty or has characters not allowed here",
            ));
        }
    }
    Ok(())
}

/// RFC 6749 §3.3 scope-token; it is echoed inside `WWW-Authenticate: ... scope="..."`.
fn is_scope_token(s: &str) -> bool {
    s.bytes()
        .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

/// The realm goes into a quoted-string of `WWW-Authenticate`.
fn check_quoted_string(field: &str, s: &str) -> Result<(), ConfigError> {
    if s.is_empty()
        || s.bytes()
            .any(|b| b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b))
    {
        return Err(ConfigError::new(
            field,
            "must be non-empty printable ASCII without quotes or backslashes",
        ));
    }
    Ok(())
}

/// RFC 9110 token characters; pseudo-headers (`:path`) are refused.
pub fn is_header_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn has_duplicates<T: PartialEq>(items: &[T]) -> bool {
    items
        .iter()
        .enumerate()
        .any(|(i, a)| items.iter().skip(i + 1).any(|b| a == b))
}
