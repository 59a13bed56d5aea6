//! What the request presented, read from the host once: the access token, the client
//! certificate's thumbprint (from the connection, or from a header a trusted proxy set), and
//! whether the client abused a header this gateway reserves. Like Envoy jwt_authn's
//! extractor: nothing here decides whether the token is good.

use std::net::IpAddr;

use crate::binding::certificate::{self, Thumbprint};
use crate::binding::dpop::{self, RequestTarget};
use crate::config::{CertSource, Settings};
use crate::flow::known::KnownCertificates;
use crate::host::{self, Engine, Headers, Host, HostError, LogLevel, NoCertificate};
use crate::reply::rejection::{Rejection, Scheme};
use crate::tokens::credentials;

/// What the request presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented {
    pub token: String,
    /// `Bearer`, or `DPoP` when DPoP is on.
    pub scheme: Scheme,
    pub certificate: Option<Thumbprint>,
    /// With a certificate from a header: the certificate and the chain it came with, whose
    /// path to a configured CA the decider checks once a token bound to it could be allowed.
    pub forwarded: Option<ForwardedChain>,
    /// With the DPoP scheme: its one proof and the request it must be for.
    pub dpop: Option<DpopRequest>,
}

/// A certificate forwarded in a header, its path to a configured CA not checked yet: its
/// thumbprint is its hash, so the cheap token and binding checks come first, and path
/// building (signature checks) happens only for a token bound to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardedChain {
    pub leaf: Vec<u8>,
    pub chain: Vec<Vec<u8>>,
}

/// A request made with the DPoP scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpopRequest {
    /// The `DPoP` header (exactly one).
    pub proof: String,
    pub target: RequestTarget,
}

fn host_failure(host: &impl Host, what: &str, e: &HostError) -> Rejection {
    match e {
        HostError::HeaderNameNotUtf8 => Rejection::MalformedHeaderName,
        HostError::Failed(why) => {
            host.log(LogLevel::Error, &format!("{what}: {why}"));
            Rejection::HostFailure
        }
    }
}

/// Reads the request. The token comes first: a request without one costs no certificate
/// lookups.
pub fn extract(
    settings: &Settings,
    engine: Engine,
    host: &impl Host,
    certificates: &KnownCertificates,
) -> Result<Presented, Rejection> {
    // Kong's engine cuts the list it hands over and forwards the rest unseen (a duplicate or
    // forged header past the cut could not be caught), and for such a list it writes past the
    // buffer it allocated in our memory: so the count it announced decides, before any read.
    if engine == Engine::Nginx
        && !host::nginx_map_fits(
            host.request_header_count(),
            host::NGINX_REQUEST_PSEUDO_HEADERS,
        )
    {
        return Err(Rejection::TooManyHeaders);
    }
    let headers = host
        .request_headers()
        .map_err(|e| host_failure(host, "reading the request headers", &e))?;
    if engine == Engine::Nginx && headers.len() >= host::NGINX_MAX_HEADER_PAIRS {
        return Err(Rejection::TooManyHeaders);
    }
    if reserved_header_abused(settings, &headers) {
        return Err(Rejection::DuplicateIdentityHeader);
    }
    let path = request_path(host, engine, &headers)?;
    let dpop_on = settings.dpop.mode != crate::binding::PopMode::Off;
    let credential =
        credentials::credential(&headers, &path, dpop_on)?.ok_or(Rejection::MissingToken)?;
    let dpop = match credential.scheme {
        Scheme::Dpop => Some(dpop_request(settings, engine, &headers, &path)?),
        Scheme::Bearer => None,
    };
    let (certificate, forwarded) =
        match client_certificate(settings, engine, host, &headers, certificates)? {
            Some((tp, forwarded)) => (Some(tp), forwarded),
            None => (None, None),
        };
    Ok(Presented {
        token: credential.token,
        scheme: credential.scheme,
        certificate,
        forwarded,
        dpop,
    })
}

/// The proof of a DPoP request (RFC 9449 §4.3: exactly one `DPoP` header) and the request
/// it must be for: the method, and the URL clients used, without query. The scheme and
/// authority come from `dpop_external_url`, else from the request: `:scheme`, and
/// `:authority`, except on Kong's engine, whose `:authority` is nginx's server name and port
/// while the client's is in `host` (docs/hosts.md).
fn dpop_request(
    settings: &Settings,
    engine: Engine,
    headers: &Headers,
    path: &str,
) -> Result<DpopRequest, Rejection> {
    let mut proofs = header_values(headers, "dpop");
    let (Some(proof), None) = (proofs.next(), proofs.next()) else {
        return Err(Rejection::DpopProofMissing);
    };
    let first = |name: &str| header_values(headers, name).next().unwrap_or_default();
    let origin = match &settings.dpop.external {
        Some(external) => external.clone(),
        None => {
            let authority = match engine {
                Engine::Nginx => first("host"),
                Engine::Envoy => first(":authority"),
            };
            // What a client writes into its Host must not move the path: `?`, `#`, `/`, `@`
            // and the like are not an authority (nginx lets some through).
            if authority.is_empty() || !authority.bytes().all(authority_byte) {
                return Err(Rejection::DpopUrlMismatch);
            }
            let scheme = match first(":scheme") {
                s if s.is_empty() => "https".to_string(),
                s => s,
            };
            format!("{scheme}://{authority}")
        }
    };
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let url = dpop::normalize_htu(&format!("{origin}{path}")).unwrap_or_default();
    // With `dpop_allowed_origins` the origin the request names must be one of them: a Host a
    // client wrote for another resource server then matches no proof here.
    let origins = &settings.dpop.origins;
    if !origins.is_empty()
        && !origins.iter().any(|o| {
            url.strip_prefix(o.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
        })
    {
        return Err(Rejection::DpopUrlMismatch);
    }
    Ok(DpopRequest {
        proof: proof.trim().to_string(),
        target: RequestTarget {
            method: first(":method"),
            url,
        },
    })
}

/// RFC 3986 §3.2.2 host (reg-name, IPv4, bracketed IPv6) and port characters.
fn authority_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=:[]".contains(&b)
}

/// The values of every header named `name` (any case), as text.
fn header_values<'a>(headers: &'a Headers, name: &'a str) -> impl Iterator<Item = String> + 'a {
    headers
        .iter()
        .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
}

/// The path with its query: Envoy's `:path` has it (no host call needed); Kong's engine gives
/// `:path` without it, and `request.path` with it.
fn request_path(host: &impl Host, engine: Engine, headers: &Headers) -> Result<String, Rejection> {
    let pseudo = || headers.iter().find(|(k, _)| k == ":path");
    if engine == Engine::Envoy
        && let Some((_, v)) = pseudo()
    {
        return Ok(String::from_utf8_lossy(v).into_owned());
    }
    let path = match host.property(&["request", "path"]) {
        Ok(Some(p)) => Some(p),
        Ok(None) => pseudo().map(|(_, v)| v.clone()),
        Err(e) => return Err(host_failure(host, "reading request.path", &e)),
    };
    Ok(path
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_default())
}

/// The certificate the request presented, if any. An unusable one counts as none (in
/// strict mode that is a refusal); a host that fails to answer is a 503.
fn client_certificate(
    settings: &Settings,
    engine: Engine,
    host: &impl Host,
    headers: &Headers,
    certificates: &KnownCertificates,
) -> Result<Option<(Thumbprint, Option<ForwardedChain>)>, Rejection> {
    match &settings.cert_source {
        CertSource::Connection => match host::connection_thumbprint(host, engine, certificates) {
            Ok(tp) => Ok(Some((tp, None))),
            Err(NoCertificate::Absent) => Ok(None),
            Err(NoCertificate::Unreadable(e)) => {
                host.log(
                    LogLevel::Warn,
                    &format!("client certificate from the host is unusable: {e}"),
                );
                Ok(None)
            }
            Err(NoCertificate::Host(e)) => {
                Err(host_failure(host, "reading the client certificate", &e))
            }
        },
        CertSource::Header {
            name,
            chain_header,
            format,
            trusted,
            ips_required,
            proxy_certificates,
            ..
        } => {
            let mut values = headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name));
            let Some((_, value)) = values.next() else {
                return Ok(None);
            };
            if *ips_required && !certificate::is_trusted(peer_address(host, engine)?, trusted) {
                host.log(
                    LogLevel::Info,
                    &format!("ignoring {name} from an untrusted peer"),
                );
                return Ok(None);
            }
            // RFC 9440 §4: the proxy proves itself with its own client certificate, which no
            // X-Forwarded-For can change.
            if !proxy_certificates.is_empty() {
                let proxy = match host::connection_thumbprint(host, engine, certificates) {
                    Ok(tp) => Some(tp),
                    Err(NoCertificate::Host(e)) => {
                        return Err(host_failure(host, "reading the proxy's certificate", &e));
                    }
                    Err(_) => None,
                };
                if !proxy.is_some_and(|tp| proxy_certificates.contains(&tp)) {
                    host.log(
                        LogLevel::Info,
                        &format!(
                            "ignoring {name}: the connection's certificate is not a trusted proxy's"
                        ),
                    );
                    return Ok(None);
                }
            }
            if values.next().is_some() {
                host.log(
                    LogLevel::Warn,
                    &format!("ignoring {name}: sent more than once"),
                );
                return Ok(None);
            }
            let cert = match certificate::from_header(value, *format) {
                Ok(cert) => cert,
                Err(e) => {
                    host.log(LogLevel::Warn, &format!("ignoring {name}: {e}"));
                    return Ok(None);
                }
            };
            let mut chain = cert.chain;
            if let Some(chain_name) = chain_header {
                let mut chains = headers
                    .iter()
                    .filter(|(k, _)| k.eq_ignore_ascii_case(chain_name));
                if let (Some((_, v)), None) = (chains.next(), chains.next()) {
                    chain.extend(certificate::chain_from_rfc9440(v));
                }
            }
            // Believed only with a path to a configured CA (a hash alone cannot be checked).
            let Some(der) = cert.der else {
                host.log(
                    LogLevel::Info,
                    &format!("{name} carries no certificate to check against ca_certificates"),
                );
                return Err(Rejection::CertificateNotTrusted);
            };
            Ok(Some((
                cert.thumbprint,
                Some(ForwardedChain { leaf: der, chain }),
            )))
        }
    }
}

/// The address of the peer that connected to us. On nginx, `source.address` is
/// `$remote_addr`, which the realip module may have rewritten from a client header;
/// `$realip_remote_addr` is the connection's own. (On Envoy `source.address` follows
/// X-Forwarded-For unless `use_remote_address: true`, as envoy/envoy.yaml sets it.)
pub(crate) fn peer_address(host: &impl Host, engine: Engine) -> Result<Option<IpAddr>, Rejection> {
    let read = |path: &[&str]| {
        host.property(path)
            .map_err(|e| host_failure(host, "reading the peer address", &e))
    };
    let raw = match engine {
        Engine::Nginx => match read(&["ngx", "realip_remote_addr"])? {
            Some(v) if !v.is_empty() => Some(v),
            _ => read(&["source", "address"])?,
        },
        Engine::Envoy => read(&["source", "address"])?,
    };
    Ok(raw.and_then(|a| certificate::parse_source_address(&a)))
}

/// Headers this gateway sets or reads as trusted must reach it at most once, and not as a
/// look-alike: on Kong a second copy survives our overwrite and reaches the upstream, and many
/// upstream frameworks (CGI, WSGI, Rack, PHP) read `x_authenticated_sub` as
/// `x-authenticated-sub`, which Envoy forwards by default (docs/hosts.md).
fn reserved_header_abused(settings: &Settings, headers: &Headers) -> bool {
    settings.reserved_headers().any(|name| {
        let same = headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .count();
        let look_alike = headers
            .iter()
            .any(|(k, _)| k.contains('_') && k.replace('_', "-").eq_ignore_ascii_case(name));
        same > 1 || look_alike
    })
}
