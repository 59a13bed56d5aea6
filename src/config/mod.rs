//! The filter's configuration: the JSON a user writes (`raw`, mirrored by
//! `filter-config/certbound.schema.json`) and the validated, ready-to-use form (`Settings`)
//! built once at `on_configure`.
//!
//! One truth with the schema: the filter refuses a configuration only for a rule the schema
//! states too (so Kong refuses it at its Admin API instead of losing a worker: docs/hosts.md),
//! and every refusal names the field at fault. What the schema cannot express (a key that
//! does not decode, a CA certificate that is not one, header lists of different lengths) and a
//! field the other settings leave unused is a warning logged once at start-up, and is always
//! resolved toward refusing more requests, never fewer.

mod kong;
mod raw;

use std::fmt;
use std::time::Duration;

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use serde_json::Value;

pub use raw::*;

use crate::binding::PopMode;
use crate::binding::certificate::{HeaderFormat, Thumbprint};
use crate::binding::chain::TrustStore;
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

/// The IdP's signing keys, inline and fetched: for JWT access tokens (`bearer`) and for
/// signed introspection responses (`introspection_jwt`).
#[derive(Debug, Clone)]
pub struct KeySettings {
    pub algorithms: Vec<Alg>,
    pub inline: KeySet,
    pub endpoint: Option<Endpoint>,
    pub refresh_interval: u64,
    pub rediscovery_lifetime: u64,
}

/// Local JWT verification settings (`auth_methods` has `bearer`); the keys are `Settings::keys`.
#[derive(Debug, Clone)]
pub struct BearerSettings {
    pub issuer: String,
    pub typ_strict: bool,
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
    /// Ask for a signed response (RFC 9701) and verify it: the issuer it must come from.
    pub signed: Option<SignedIntrospection>,
}

/// JWT introspection responses (RFC 9701).
#[derive(Debug, Clone)]
pub struct SignedIntrospection {
    pub issuer: String,
    /// The request header the signed response is forwarded upstream in, lower-case.
    pub forward_header: Option<String>,
}

/// Where the client certificate comes from, validated.
#[derive(Debug, Clone)]
pub enum CertSource {
    Connection,
    Header {
        name: String,
        /// With `rfc9440`: `<name>-chain`, the intermediates (RFC 9440 `Client-Cert-Chain`).
        chain_header: Option<String>,
        format: HeaderFormat,
        /// The peers allowed to set the header, when `ips_required` (`trusted_ips` given).
        trusted: Vec<IpNet>,
        ips_required: bool,
        /// The SHA-256 fingerprints of the proxies' own client certificates; when not empty,
        /// the connection's client certificate must be one of them.
        proxy_certificates: Vec<Thumbprint>,
        /// The CAs a header certificate must chain to.
        trust: Arc<TrustStore>,
    },
}

/// The secret DPoP nonces are a MAC under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NonceSecret {
    /// `dpop_nonce_secret`: the same on every instance that has it.
    Configured(Vec<u8>),
    /// None configured: random, made once by the first worker that needs it and shared with
    /// the others (`flow::worker::Worker::nonce_key`).
    Generated,
}

/// DPoP (RFC 9449) settings.
#[derive(Debug, Clone)]
pub struct DpopSettings {
    pub mode: PopMode,
    pub lifetime: u64,
    /// Proofs the replay cache holds (`dpop_replay_cache_entries`).
    pub replay_entries: u32,
    pub algorithms: Vec<Alg>,
    /// Where the key nonces are made under comes from, when nonces are required.
    pub nonce: Option<NonceSecret>,
    /// The origins a request may come to (`dpop_allowed_origins`), normalised as `external`.
    pub origins: Vec<String>,
    /// `scheme://authority` clients use, when configured (`dpop_external_url`), lower-case.
    pub external: Option<String>,
    pub upstream: DpopUpstream,
}

/// The validated configuration the filter runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub pop: PopMode,
    pub dpop: DpopSettings,
    pub keys: Option<KeySettings>,
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
    /// (claim, lower-case header name) pairs set on allowed requests; a pair without a claim
    /// (`None`) always clears its header.
    pub upstream_headers: Vec<(Option<String>, String)>,
    pub realm: String,
    /// `expose_error_descriptions`: false makes token and proof refusals say only that.
    pub expose_error_descriptions: bool,
    /// Settings that load but deserve the operator's attention, logged once at start-up.
    pub warnings: Vec<String>,
}

/// Upper bounds that catch typos (a timeout in seconds where milliseconds were meant).
const MAX_LEEWAY: u64 = 600;
const MAX_CACHE_TTL: u64 = 86_400;
const MAX_CACHE_ENTRIES: u32 = 1_000_000;
const MAX_HTTP_TIMEOUT_MS: u64 = 60_000;
const MIN_JWKS_REFRESH: u64 = 10;
const MAX_JWKS_REFRESH: u64 = 604_800;
const MAX_REDISCOVERY: u64 = 86_400;
const MAX_DPOP_LIFETIME: u64 = 3_600;
const MIN_DPOP_REPLAY_ENTRIES: u64 = 16;
const MAX_DPOP_REPLAY_ENTRIES: u64 = 10_000_000;
const MIN_NONCE_SECRET: usize = 32;

/// Request headers the filter must never set from claims: the schema's pattern for header
/// names refuses them too (tests/config_schema.rs checks the two lists agree).
pub const RESERVED_HEADERS: &[&str] = &[
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
    "dpop",
];

/// The top-level and `client_certificate` members the user wrote with a value other than
/// the default: only those can be "unused" (Kong may fill in defaults it knows).
struct Written {
    top: Vec<String>,
    cert: Vec<String>,
}

impl Written {
    fn of(value: &Value) -> Written {
        let defaults = serde_json::to_value(RawConfig::default()).unwrap_or_default();
        let differs = |obj: Option<&serde_json::Map<String, Value>>, defaults: &Value| {
            obj.map(|o| {
                o.iter()
                    .filter(|(k, v)| defaults.get(k.as_str()) != Some(*v) && !v.is_null())
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default()
        };
        Written {
            top: differs(value.as_object(), &defaults),
            cert: differs(
                value.get("client_certificate").and_then(Value::as_object),
                defaults.get("client_certificate").unwrap_or(&Value::Null),
            ),
        }
    }
}

impl Settings {
    /// Request headers a client may not send more than once or imitate: those the filter
    /// sets (identity headers, the forwarded introspection JWT) and the certificate headers.
    /// What refusals challenge with: `Bearer` unless DPoP is strict, `DPoP` when it is on.
    pub fn challenges(&self) -> crate::reply::response::Challenges<'_> {
        let dpop_on = self.dpop.mode != PopMode::Off;
        crate::reply::response::Challenges {
            realm: &self.realm,
            detailed: self.expose_error_descriptions,
            scopes: &self.scopes_required,
            bearer: self.dpop.mode != PopMode::Strict,
            dpop_algs: dpop_on.then(|| {
                self.dpop
                    .algorithms
                    .iter()
                    .map(|a| a.name())
                    .collect::<Vec<_>>()
                    .join(" ")
            }),
        }
    }

    pub fn reserved_headers(&self) -> impl Iterator<Item = &str> {
        let cert_headers = match &self.cert_source {
            CertSource::Header {
                name, chain_header, ..
            } => [Some(name.as_str()), chain_header.as_deref()],
            CertSource::Connection => [None, None],
        };
        let jwt_header = self
            .introspection
            .as_ref()
            .and_then(|i| i.signed.as_ref())
            .and_then(|s| s.forward_header.as_deref());
        self.upstream_headers
            .iter()
            .map(|(_, n)| n.as_str())
            .chain(cert_headers.into_iter().flatten())
            .chain(jwt_header)
    }

    /// Parses and validates the configuration bytes the host hands to `on_configure`.
    pub fn from_json(bytes: &[u8]) -> Result<Settings, ConfigError> {
        let value = parse_json(bytes)?;
        let written = Written::of(&value);
        let raw = RawConfig::from_value(value)?;
        Settings::build(raw, &written)
    }

    /// Validates a configuration as if every field were written.
    pub fn validate(raw: RawConfig) -> Result<Settings, ConfigError> {
        let value = serde_json::to_value(&raw).unwrap_or_default();
        Settings::build(raw, &Written::of(&value))
    }

    fn build(raw: RawConfig, written: &Written) -> Result<Settings, ConfigError> {
        // Every refusal below is a rule the schema states as well.
        if raw.auth_methods.is_empty() {
            return Err(ConfigError::new(
                "auth_methods",
                "must name at least one of \"bearer\", \"introspection\"",
            ));
        }
        if has_duplicates(&raw.auth_methods) {
            return Err(ConfigError::new("auth_methods", "lists a method twice"));
        }
        check_range("leeway", raw.leeway, 0, MAX_LEEWAY)?;
        check_range("http_timeout", raw.http_timeout, 1, MAX_HTTP_TIMEOUT_MS)?;
        check_range(
            "cache_introspection",
            raw.cache_introspection,
            0,
            MAX_CACHE_TTL,
        )?;
        check_range(
            "cache_max_entries",
            u64::from(raw.cache_max_entries),
            1,
            u64::from(MAX_CACHE_ENTRIES),
        )?;
        check_range(
            "jwks_refresh_interval",
            raw.jwks_refresh_interval,
            MIN_JWKS_REFRESH,
            MAX_JWKS_REFRESH,
        )?;
        check_range(
            "rediscovery_lifetime",
            raw.rediscovery_lifetime,
            1,
            MAX_REDISCOVERY,
        )?;
        check_range(
            "dpop_proof_lifetime",
            raw.dpop_proof_lifetime,
            1,
            MAX_DPOP_LIFETIME,
        )?;
        check_range(
            "dpop_replay_cache_entries",
            u64::from(raw.dpop_replay_cache_entries),
            MIN_DPOP_REPLAY_ENTRIES,
            MAX_DPOP_REPLAY_ENTRIES,
        )?;
        if raw.dpop_algorithms.is_empty() {
            return Err(ConfigError::new(
                "dpop_algorithms",
                "must allow at least one algorithm",
            ));
        }
        if raw
            .dpop_nonce_secret
            .as_deref()
            .is_some_and(|s| s.chars().count() < MIN_NONCE_SECRET)
        {
            return Err(ConfigError::new(
                "dpop_nonce_secret",
                format!("must be at least {MIN_NONCE_SECRET} characters"),
            ));
        }

        let external = raw
            .dpop_external_url
            .as_deref()
            .map(|u| external_url("dpop_external_url", u))
            .transpose()?;
        if external.is_some() && !raw.dpop_allowed_origins.is_empty() {
            return Err(ConfigError::new(
                "dpop_allowed_origins",
                "not with dpop_external_url (that fixes the one origin proofs are checked against)",
            ));
        }
        let origins = raw
            .dpop_allowed_origins
            .iter()
            .enumerate()
            .map(|(i, u)| external_url(&format!("dpop_allowed_origins[{i}]"), u))
            .collect::<Result<Vec<_>, _>>()?;
        if raw.jwt_algorithms.is_empty() {
            return Err(ConfigError::new(
                "jwt_algorithms",
                "must allow at least one algorithm",
            ));
        }
        check_strings("audience_required", &raw.audience_required, |_| true)?;
        check_strings("scopes_required", &raw.scopes_required, is_scope_token)?;
        check_strings(
            "upstream_headers_claims",
            &raw.upstream_headers_claims,
            |_| true,
        )?;
        check_quoted_string("realm", &raw.realm)?;
        for (authority, upstream) in &raw.upstreams {
            check_upstream(authority, upstream)?;
        }
        for (i, name) in raw.upstream_headers_names.iter().enumerate() {
            check_settable_header(&format!("upstream_headers_names[{i}]"), name)?;
        }
        if has_duplicates(&raw.upstream_headers_names) {
            return Err(ConfigError::new(
                "upstream_headers_names",
                "lists a header twice",
            ));
        }
        if let Some(name) = &raw.upstream_introspection_jwt_header {
            check_settable_header("upstream_introspection_jwt_header", name)?;
        }
        if let Some(jwks) = &raw.jwks {
            check_jwks_shape(jwks)?;
        }
        // The schema checks a URL's syntax whether or not its method is on.
        let jwks_endpoint = endpoint("jwks_endpoint", raw.jwks_endpoint.as_deref(), &raw)?;
        let introspection_endpoint = endpoint(
            "introspection_endpoint",
            raw.introspection_endpoint.as_deref(),
            &raw,
        )?;
        let issuer = optional_nonempty("issuer", raw.issuer.as_deref())?;
        let client_id = optional_nonempty("client_id", raw.client_id.as_deref())?;
        let client_secret = optional_nonempty("client_secret", raw.client_secret.as_deref())?;

        let mut warnings = Vec::new();
        let bearer_on = raw.auth_methods.contains(&AuthMethod::Bearer);
        let introspection_on = raw.auth_methods.contains(&AuthMethod::Introspection);
        let signed_on = introspection_on && raw.introspection_jwt;
        let keys_on = bearer_on || signed_on;
        let need =
            |field: &str, why: &str| ConfigError::new(field, format!("is required when {why}"));

        let bearer = if bearer_on {
            let issuer = issuer
                .clone()
                .ok_or_else(|| need("issuer", "auth_methods includes \"bearer\""))?;
            Some(BearerSettings {
                issuer,
                typ_strict: raw.jwt_typ_strict,
            })
        } else {
            None
        };
        let keys = if keys_on {
            if raw.jwks.is_none() && raw.jwks_endpoint.is_none() {
                return Err(need(
                    "jwks_endpoint",
                    "auth_methods includes \"bearer\" or introspection_jwt is on (or jwks)",
                ));
            }
            Some(key_settings(&raw, jwks_endpoint, &mut warnings))
        } else {
            None
        };
        let introspection = if introspection_on {
            let endpoint = introspection_endpoint.ok_or_else(|| {
                need(
                    "introspection_endpoint",
                    "auth_methods includes \"introspection\"",
                )
            })?;
            let client_id = client_id
                .ok_or_else(|| need("client_id", "auth_methods includes \"introspection\""))?;
            let client_secret = client_secret
                .ok_or_else(|| need("client_secret", "auth_methods includes \"introspection\""))?;
            let signed = if signed_on {
                let issuer = issuer
                    .clone()
                    .ok_or_else(|| need("issuer", "introspection_jwt is on"))?;
                Some(SignedIntrospection {
                    issuer,
                    forward_header: raw
                        .upstream_introspection_jwt_header
                        .as_deref()
                        .map(str::to_ascii_lowercase),
                })
            } else {
                None
            };
            Some(IntrospectionSettings {
                endpoint,
                client_id,
                client_secret,
                client_auth: raw.client_auth,
                issuer: issuer.clone(),
                cache_ttl: raw.cache_introspection,
                signed,
            })
        } else {
            None
        };

        // Written but unused: a warning, never a refusal (users toggle auth_methods and leave
        // the rest, as Kong's and Envoy's own filters allow).
        let unused = |fields: &[&str], why: &str, warnings: &mut Vec<String>| {
            for f in fields {
                if written.top.iter().any(|w| w == f) {
                    warnings.push(format!("{f} is not used: {why}"));
                }
            }
        };
        if !keys_on {
            unused(
                &[
                    "jwks",
                    "jwks_endpoint",
                    "jwks_refresh_interval",
                    "rediscovery_lifetime",
                    "jwt_algorithms",
                ],
                "auth_methods has no \"bearer\" and introspection_jwt is off",
                &mut warnings,
            );
        }
        if !bearer_on {
            unused(
                &["jwt_typ_strict"],
                "auth_methods has no \"bearer\"",
                &mut warnings,
            );
        }
        if !introspection_on {
            unused(
                &[
                    "introspection_endpoint",
                    "client_id",
                    "client_secret",
                    "client_auth",
                    "cache_introspection",
                    "shared_cache",
                    "introspection_jwt",
                    "upstream_introspection_jwt_header",
                ],
                "auth_methods has no \"introspection\"",
                &mut warnings,
            );
        } else if !signed_on {
            unused(
                &["upstream_introspection_jwt_header"],
                "introspection_jwt is off",
                &mut warnings,
            );
        }

        let dpop_on = raw.proof_of_possession_dpop != PopMode::Off;
        if !dpop_on {
            unused(
                &[
                    "dpop_proof_lifetime",
                    "dpop_replay_cache_entries",
                    "dpop_algorithms",
                    "dpop_use_nonce",
                    "dpop_nonce_secret",
                    "dpop_external_url",
                    "dpop_allowed_origins",
                    "dpop_upstream",
                ],
                "proof_of_possession_dpop is off",
                &mut warnings,
            );
        }
        if dpop_on && external.is_none() && origins.is_empty() {
            warnings.push(
                "proof_of_possession_dpop is on without dpop_external_url or dpop_allowed_origins: \
                 a proof's htu is checked against the origin the request names, which a client \
                 writes, so a proof made for another resource server can be used here once with \
                 its host; set the origin(s) clients use"
                    .to_string(),
            );
        }
        if dpop_on && raw.dpop_use_nonce && raw.dpop_nonce_secret.is_none() {
            warnings.push(if raw.shared_cache {
                "dpop_use_nonce without dpop_nonce_secret: this gateway makes a random secret, \
                 shared by its workers; several gateway instances need the same \
                 dpop_nonce_secret, or a nonce from one is refused by another"
                    .to_string()
            } else {
                "dpop_use_nonce without dpop_nonce_secret and with shared_cache off: each \
                 worker makes its own random secret, so a nonce from one worker is refused by \
                 another (clients retry); set dpop_nonce_secret"
                    .to_string()
            });
        }
        if dpop_on && !raw.shared_cache {
            warnings.push(
                "shared_cache is off: each worker remembers only the DPoP proofs it saw, so a \
                 proof could be replayed once on every other worker"
                    .to_string(),
            );
        }
        let dpop = DpopSettings {
            mode: raw.proof_of_possession_dpop,
            lifetime: raw.dpop_proof_lifetime,
            replay_entries: raw.dpop_replay_cache_entries,
            algorithms: raw.dpop_algorithms.clone(),
            nonce: raw.dpop_use_nonce.then(|| match &raw.dpop_nonce_secret {
                Some(secret) => NonceSecret::Configured(secret.clone().into_bytes()),
                None => NonceSecret::Generated,
            }),
            external,
            origins,
            upstream: raw.dpop_upstream,
        };
        let upstream_headers = upstream_headers(&raw, &introspection, &mut warnings);
        let cert_source = cert_source(&raw.client_certificate, written, &mut warnings)?;
        Ok(Settings {
            pop: raw.proof_of_possession_mtls,
            dpop,
            keys,
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
            expose_error_descriptions: raw.expose_error_descriptions,
            warnings,
        })
    }
}

fn parse_json(bytes: &[u8]) -> Result<Value, ConfigError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ConfigError::new(
            "",
            "the configuration is empty; it must be a JSON object",
        ));
    }
    let mut value: Value = serde_json::from_slice(&kong::utf8_strings(bytes))
        .map_err(|e| ConfigError::new("", format!("not JSON: {e}")))?;
    if !value.is_object() {
        return Err(ConfigError::new("", "must be a JSON object"));
    }
    kong::empty_tables(&mut value);
    Ok(value)
}

impl RawConfig {
    /// Deserialises, naming the field of a type error (`leeway: invalid type ...`).
    pub fn from_json(bytes: &[u8]) -> Result<RawConfig, ConfigError> {
        RawConfig::from_value(parse_json(bytes)?)
    }

    fn from_value(value: Value) -> Result<RawConfig, ConfigError> {
        serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." { String::new() } else { path };
            // serde quotes the offending value; a secret must not reach the host's log.
            let message =
                if field.starts_with("client_secret") || field.starts_with("dpop_nonce_secret") {
                    "must be a string".to_string()
                } else {
                    e.into_inner().to_string()
                };
            ConfigError::new(field, message)
        })
    }
}

/// The shape the schema gives `jwks`: an object with a `keys` array of at most 64 objects
/// (`{}` for an empty array: Kong's Lua encoding).
fn check_jwks_shape(jwks: &Value) -> Result<(), ConfigError> {
    if !numbers_within(jwks, MAX_JWKS_NUMBER) {
        return Err(ConfigError::new(
            "jwks",
            "holds a number beyond -1e308 to 1e308 (Kong cannot hand it over)",
        ));
    }
    let keys = match jwks.as_object().map(|o| o.get("keys")) {
        None => return Err(ConfigError::new("jwks", "must be a JSON object")),
        Some(None) => return Err(ConfigError::new("jwks", "must have a \"keys\" array")),
        Some(Some(keys)) => keys,
    };
    match keys {
        Value::Object(o) if o.is_empty() => Ok(()),
        Value::Array(items) if items.len() > crate::tokens::jwks::MAX_KEYS => {
            Err(ConfigError::new("jwks.keys", "has more than 64 keys"))
        }
        Value::Array(items) => match items.iter().position(|k| !k.is_object()) {
            Some(i) => Err(ConfigError::new(
                format!("jwks.keys[{i}]"),
                "must be a JSON object (a JWK)",
            )),
            None => Ok(()),
        },
        _ => Err(ConfigError::new("jwks.keys", "must be an array")),
    }
}

/// The schema's bound on the numbers of `jwks` (`#/definitions/finite`): Kong re-encodes a
/// number with 16 digits, which makes the largest doubles infinite, and then hands the filter
/// no configuration.
const MAX_JWKS_NUMBER: f64 = 1e308;

fn numbers_within(value: &Value, max: f64) -> bool {
    match value {
        Value::Number(n) => n.as_f64().is_some_and(|f| f.abs() <= max),
        Value::Array(items) => items.iter().all(|v| numbers_within(v, max)),
        Value::Object(members) => members.values().all(|v| numbers_within(v, max)),
        _ => true,
    }
}

/// `dpop_external_url`: `scheme://authority`, the schema's pattern: an endpoint URL with no
/// path or query.
fn external_url(field: &str, url: &str) -> Result<String, ConfigError> {
    let bare = url
        .split_once("://")
        .is_some_and(|(_, rest)| !rest.contains(['/', '?', '#']));
    let endpoint = Endpoint::parse(url, &Default::default())
        .ok()
        .filter(|_| bare)
        .ok_or_else(|| {
            ConfigError::new(
                field,
                "must be scheme://host[:port], e.g. https://api.example.com",
            )
        })?;
    let normalised = crate::binding::dpop::normalize_htu(&format!(
        "{}://{}",
        endpoint.scheme, endpoint.authority
    ))
    .ok_or_else(|| ConfigError::new(field, "must be an http or https URL"))?;
    Ok(normalised.trim_end_matches('/').to_string())
}

fn check_range(field: &str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::new(field, format!("must be {min} to {max}")))
    }
}

/// The keys: a key of the inline JWKS that cannot be used is skipped with a warning (a JWT
/// it would have verified is refused: never a pass).
fn endpoint(
    field: &str,
    url: Option<&str>,
    raw: &RawConfig,
) -> Result<Option<Endpoint>, ConfigError> {
    url.map(|url| Endpoint::parse(url, &raw.upstreams).map_err(|m| ConfigError::new(field, m)))
        .transpose()
}

fn key_settings(
    raw: &RawConfig,
    endpoint: Option<Endpoint>,
    warnings: &mut Vec<String>,
) -> KeySettings {
    let inline = match &raw.jwks {
        None => KeySet::default(),
        Some(value) => {
            let (keys, skipped) = KeySet::from_jwks(value, &raw.jwt_algorithms);
            for e in skipped {
                warnings.push(format!("jwks{}: {}; skipped", e.path, e.message));
            }
            if keys.is_empty() && raw.jwks_endpoint.is_none() {
                warnings.push(
                    "jwks holds no key usable with jwt_algorithms and there is no \
                     jwks_endpoint: every JWT will be refused"
                        .to_string(),
                );
            }
            keys
        }
    };
    KeySettings {
        algorithms: raw.jwt_algorithms.clone(),
        inline,
        endpoint,
        refresh_interval: raw.jwks_refresh_interval,
        rediscovery_lifetime: raw.rediscovery_lifetime,
    }
}

/// Pairs claims with header names by position. Lists of different lengths cannot be refused
/// by the schema: an unpaired claim is dropped, an unpaired header is always cleared (so a
/// client's copy never survives), both with a warning. The header the signed introspection
/// response goes in wins over a claim header of the same name.
fn upstream_headers(
    raw: &RawConfig,
    introspection: &Option<IntrospectionSettings>,
    warnings: &mut Vec<String>,
) -> Vec<(Option<String>, String)> {
    let (claims, names) = (&raw.upstream_headers_claims, &raw.upstream_headers_names);
    if claims.len() != names.len() {
        warnings.push(format!(
            "upstream_headers_names has {} entries and upstream_headers_claims {}: they pair up \
             by position; an unpaired claim is not sent, an unpaired header is always removed",
            names.len(),
            claims.len()
        ));
    }
    let jwt_header = introspection
        .as_ref()
        .and_then(|i| i.signed.as_ref())
        .and_then(|s| s.forward_header.clone());
    let mut pairs = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let lower = name.to_ascii_lowercase();
        if jwt_header.as_deref() == Some(lower.as_str()) {
            warnings.push(format!(
                "upstream_headers_names[{i}] is upstream_introspection_jwt_header too: it \
                 carries the signed introspection response"
            ));
            continue;
        }
        if pairs.iter().any(|(_, n)| *n == lower) {
            warnings.push(format!(
                "upstream_headers_names[{i}] names a header already listed (case-insensitive); \
                 the first one is used"
            ));
            continue;
        }
        pairs.push((claims.get(i).cloned(), lower));
    }
    pairs
}

/// A header name the filter may set: RFC 9110 token characters, not one of the reserved
/// headers (case-insensitive).
fn check_settable_header(field: &str, name: &str) -> Result<(), ConfigError> {
    let lower = name.to_ascii_lowercase();
    if !is_header_name(&lower) {
        return Err(ConfigError::new(field, "is not a valid HTTP header name"));
    }
    if RESERVED_HEADERS.contains(&lower.as_str()) {
        return Err(ConfigError::new(
            field,
            format!("\"{lower}\" may not be set by the filter"),
        ));
    }
    Ok(())
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

fn cert_source(
    raw: &RawCertSource,
    written: &Written,
    warnings: &mut Vec<String>,
) -> Result<CertSource, ConfigError> {
    let need = |field: &str| {
        ConfigError::new(
            format!("client_certificate.{field}"),
            "is required with \"source\": \"header\"",
        )
    };
    check_cert_fields(raw)?;
    match raw.source {
        CertSourceKind::Connection => {
            for f in [
                "header",
                "format",
                "trusted_ips",
                "trusted_proxy_certificates",
                "ca_certificates",
                "allow_partial_chain",
                "crls",
            ] {
                if written.cert.iter().any(|w| w == f) {
                    warnings.push(format!(
                        "client_certificate.{f} is not used: the source is the connection"
                    ));
                }
            }
            Ok(CertSource::Connection)
        }
        CertSourceKind::Header => {
            let name = raw
                .header
                .as_deref()
                .ok_or_else(|| need("header"))?
                .to_ascii_lowercase();
            let format = raw.format.ok_or_else(|| need("format"))?;
            if raw.trusted_ips.is_empty() && raw.trusted_proxy_certificates.is_empty() {
                return Err(ConfigError::new(
                    "client_certificate.trusted_ips",
                    "must list the proxies allowed to set the header (CIDR or address), or \
                     trusted_proxy_certificates their certificates' SHA-256 fingerprints",
                ));
            }
            let proxy_certificates: Vec<Thumbprint> = raw
                .trusted_proxy_certificates
                .iter()
                .filter_map(|f| parse_fingerprint(f))
                .collect();
            let ca = raw
                .ca_certificates
                .as_deref()
                .ok_or_else(|| need("ca_certificates"))?;

            let mut trusted = Vec::with_capacity(raw.trusted_ips.len());
            for (i, s) in raw.trusted_ips.iter().enumerate() {
                let field = format!("client_certificate.trusted_ips[{i}]");
                // What the schema cannot tell: an entry that is no address or block trusts
                // no one.
                let Some(net) = parse_net(s) else {
                    warnings.push(format!(
                        "{field} is not an IP address or CIDR block; skipped"
                    ));
                    continue;
                };
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
            if trusted.is_empty() && !raw.trusted_ips.is_empty() {
                warnings.push(
                    "client_certificate.trusted_ips holds no usable entry: no certificate \
                     header will be believed"
                        .to_string(),
                );
            }
            let trust = TrustStore::new(ca, raw.crls.as_deref(), raw.allow_partial_chain, warnings);
            Ok(CertSource::Header {
                chain_header: (format == HeaderFormat::Rfc9440).then(|| format!("{name}-chain")),
                name,
                format,
                ips_required: !raw.trusted_ips.is_empty(),
                trusted,
                proxy_certificates,
                trust: Arc::new(trust),
            })
        }
    }
}

/// The syntax the schema gives each member of `client_certificate`, whatever the source.
fn check_cert_fields(raw: &RawCertSource) -> Result<(), ConfigError> {
    if raw.header.as_deref().is_some_and(|h| !is_header_name(h)) {
        return Err(ConfigError::new(
            "client_certificate.header",
            "is not a valid HTTP header name",
        ));
    }
    check_strings("client_certificate.trusted_ips", &raw.trusted_ips, |_| true)?;
    for (i, f) in raw.trusted_proxy_certificates.iter().enumerate() {
        if parse_fingerprint(f).is_none() {
            return Err(ConfigError::new(
                format!("client_certificate.trusted_proxy_certificates[{i}]"),
                "is not a SHA-256 fingerprint (64 hex digits, or 32 hex bytes between colons)",
            ));
        }
    }
    for (i, s) in raw.trusted_ips.iter().enumerate() {
        if ends_in_zero_prefix(s) {
            return Err(ConfigError::new(
                format!("client_certificate.trusted_ips[{i}]"),
                "a /0 block makes every client a trusted proxy; list the proxies",
            ));
        }
        // Peers are compared as IPv4 when they are IPv4-mapped, so `::ffff:0:0/96` would be
        // 0.0.0.0/0: an IPv4 block is written as IPv4 (the schema's pattern says the same).
        if looks_ipv4_mapped(s) {
            return Err(ConfigError::new(
                format!("client_certificate.trusted_ips[{i}]"),
                "an IPv4-mapped IPv6 address (::ffff:...); write the IPv4 address or block",
            ));
        }
    }
    // PEM blocks: at least the opening line of one.
    if raw
        .ca_certificates
        .as_deref()
        .is_some_and(|c| !c.contains("-----BEGIN CERTIFICATE-----"))
    {
        return Err(ConfigError::new(
            "client_certificate.ca_certificates",
            "must hold PEM CERTIFICATE blocks",
        ));
    }
    if raw
        .crls
        .as_deref()
        .is_some_and(|c| !c.contains("-----BEGIN X509 CRL-----"))
    {
        return Err(ConfigError::new(
            "client_certificate.crls",
            "must hold PEM X509 CRL blocks",
        ));
    }
    Ok(())
}

/// Starts with zeros and colons only, then `:ffff:` (any case): the schema's pattern for
/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.0/104`, `0:0:0:0:0:ffff:0:0/96`).
fn looks_ipv4_mapped(s: &str) -> bool {
    let head = s.trim_start_matches(['0', ':']);
    let run = s.len() - head.len();
    run > 0
        && s.as_bytes().get(run - 1) == Some(&b':')
        && head
            .get(..5)
            .is_some_and(|h| h.eq_ignore_ascii_case("ffff:"))
}

/// A SHA-256 fingerprint as the schema's pattern has it: 64 hex digits, or 32 hex bytes
/// between colons (`openssl x509 -fingerprint -sha256`), nothing around them.
fn parse_fingerprint(s: &str) -> Option<Thumbprint> {
    let hex: String = if s.len() == 95 {
        let bytes = s.as_bytes();
        let colons_ok = bytes
            .iter()
            .enumerate()
            .all(|(i, b)| (i % 3 == 2) == (*b == b':'));
        if !colons_ok {
            return None;
        }
        s.chars().filter(|c| *c != ':').collect()
    } else {
        s.to_string()
    };
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Thumbprint::from_hex(hex.as_bytes()).ok()
}

/// `/0`, `/00`, ...: the schema's pattern for these.
fn ends_in_zero_prefix(s: &str) -> bool {
    s.rsplit_once('/').is_some_and(|(_, p)| {
        let p = p.trim_end();
        !p.is_empty() && p.bytes().all(|b| b == b'0')
    })
}

/// An address or a CIDR block: digits only in the prefix, the prefix no longer than the
/// address.
fn parse_net(s: &str) -> Option<IpNet> {
    let net = match s.split_once('/') {
        None => IpNet::from(s.parse::<IpAddr>().ok()?),
        Some((addr, prefix)) => {
            let addr = addr.parse::<IpAddr>().ok()?;
            if prefix.is_empty() || prefix.len() > 3 || !prefix.bytes().all(|b| b.is_ascii_digit())
            {
                return None;
            }
            IpNet::new(addr, prefix.parse().ok()?).ok()?
        }
    };
    Some(canonical_net(net))
}

/// Peers are compared in canonical form (an IPv4-mapped IPv6 peer is its IPv4 address,
/// `certificate::parse_source_address`): an entry inside `::ffff:0:0/96` is made its IPv4
/// block too, or it could never match.
fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
                .map(IpNet::V4)
                .unwrap_or(net),
            None => net,
        },
        other => other,
    }
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
