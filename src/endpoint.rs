//! IdP endpoints (JWKS, introspection) and the outbound calls made to them through the
//! host's `dispatch_http_call`.

use std::collections::BTreeMap;
use std::time::Duration;

/// A parsed endpoint URL and the `upstream` argument its calls are dispatched to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub scheme: String,
    /// As written in the URL; becomes `:authority` (Host header, and SNI on Kong's engine).
    pub authority: String,
    pub path: String,
    /// An Envoy cluster name from `upstreams`, else `host:port` with the port always explicit:
    /// Kong's engine defaults a bare host to port 80, even for https.
    pub upstream: String,
}

/// Characters of a URL's path and query we take (RFC 3986 pchar, `/` and `?`); the schema's
/// pattern for the endpoint fields allows exactly these.
fn path_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"._~!$&'()*+,;=:@%/?-".contains(&b)
}

/// A port: 1 to 65535, no leading zero.
fn port(digits: &str) -> Option<u16> {
    if digits.is_empty() || digits.len() > 5 || digits.starts_with('0') {
        return None;
    }
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u16>().ok()
}

impl Endpoint {
    /// Parses an endpoint URL: `http` or `https` (any case), a host name (letters, digits,
    /// `.`, `_`, `~`, `-`) or a bracketed IPv6 literal, an optional port, an optional path and
    /// query of RFC 3986 characters; no credentials, no fragment. This is exactly the
    /// schema's pattern for `jwks_endpoint` and `introspection_endpoint`, so Kong refuses at
    /// its Admin API what the filter would.
    pub fn parse(url: &str, upstreams: &BTreeMap<String, String>) -> Result<Endpoint, String> {
        // Messages do not repeat the URL: it could carry credentials.
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| "must be an http or https URL".to_string())?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "https" => 443,
            "http" => 80,
            _ => return Err("must be an http or https URL".to_string()),
        };
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        if authority.contains('@') {
            return Err(
                "credentials in the URL are not supported; use client_id and client_secret".into(),
            );
        }
        if path.contains('#') {
            return Err("must not have a fragment".to_string());
        }
        if !path.bytes().all(path_char) {
            return Err("has characters a URL path may not hold unescaped".to_string());
        }
        let (host, port_text) = if let Some(inner) = authority.strip_prefix('[') {
            let (literal, after) = inner
                .split_once(']')
                .ok_or_else(|| "has an unterminated IPv6 literal".to_string())?;
            if literal.is_empty()
                || !literal
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
            {
                return Err("has a malformed IPv6 literal".to_string());
            }
            let host = authority.get(..literal.len() + 2).unwrap_or(authority);
            (host, after)
        } else {
            let end = authority.find(':').unwrap_or(authority.len());
            authority.split_at(end)
        };
        if !host.starts_with('[')
            && (host.is_empty()
                || !host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._~-".contains(&b)))
        {
            return Err("has no host, or a host with characters a host name may not hold".into());
        }
        let port = match port_text {
            "" => default_port,
            p => p
                .strip_prefix(':')
                .and_then(port)
                .ok_or_else(|| "has a port that is not 1 to 65535".to_string())?,
        };
        let host_port = format!("{host}:{port}");
        let upstream = upstreams
            .get(authority)
            .or_else(|| upstreams.get(&host_port))
            .cloned()
            .unwrap_or(host_port);
        let path = match path.strip_prefix('?') {
            Some(query) => format!("/?{query}"),
            None if path.is_empty() => "/".to_string(),
            None => path.to_string(),
        };
        Ok(Endpoint {
            scheme,
            authority: authority.to_string(),
            path,
            upstream,
        })
    }
}

/// For logs: `https://idp:8443/jwks via idp`, without the query string (it may carry secrets).
impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = self.path.split('?').next().unwrap_or_default();
        write!(
            f,
            "{}://{}{} via {}",
            self.scheme, self.authority, path, self.upstream
        )
    }
}

/// One outbound HTTP call, ready for `dispatch_http_call`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRequest {
    pub upstream: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub timeout: Duration,
}

impl OutboundRequest {
    pub fn new(endpoint: &Endpoint, method: &str, timeout: Duration) -> OutboundRequest {
        OutboundRequest {
            upstream: endpoint.upstream.clone(),
            headers: vec![
                (":method".into(), method.into()),
                (":path".into(), endpoint.path.clone()),
                (":authority".into(), endpoint.authority.clone()),
                (":scheme".into(), endpoint.scheme.clone()),
                ("accept".into(), "application/json".into()),
                (
                    "user-agent".into(),
                    concat!("certbound/", env!("CARGO_PKG_VERSION")).into(),
                ),
            ],
            body: None,
            timeout,
        }
    }
}

/// What came back from a dispatched call. `status` is `None` when the call never got an
/// HTTP response (Kong's engine: no `:status`, `:dispatch_status` says why; Envoy: no headers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallOutcome {
    pub status: Option<u16>,
    pub body: Vec<u8>,
    /// Why the call failed, when the host said (`:dispatch_status` on Kong's engine).
    pub failure: Option<String>,
}

impl CallOutcome {
    /// Builds the outcome from the call's response headers and body.
    pub fn from_parts(headers: &[(String, Vec<u8>)], body: Vec<u8>) -> CallOutcome {
        let find = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| String::from_utf8_lossy(v).trim().to_string())
        };
        let status = find(":status").and_then(|s| s.parse::<u16>().ok());
        let failure = find(":dispatch_status").filter(|s| s != "ok");
        let failure = match (status, failure) {
            (_, Some(why)) => Some(why),
            (None, None) => Some("no response".to_string()),
            (Some(_), None) => None,
        };
        CallOutcome {
            status: if failure.is_some() { None } else { status },
            body,
            failure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_upstreams() -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    #[test]
    fn https_url_without_port_dispatches_to_port_443() {
        let e =
            Endpoint::parse("https://idp.example/token/introspection", &no_upstreams()).unwrap();
        assert_eq!(e.upstream, "idp.example:443");
        assert_eq!(e.authority, "idp.example");
        assert_eq!(e.path, "/token/introspection");
        assert_eq!(e.scheme, "https");
    }

    #[test]
    fn upstreams_map_names_the_envoy_cluster() {
        let mut up = BTreeMap::new();
        up.insert("idp.example:8443".to_string(), "idp".to_string());
        let e = Endpoint::parse("https://idp.example:8443/jwks", &up).unwrap();
        assert_eq!(e.upstream, "idp");
        assert_eq!(e.authority, "idp.example:8443");
    }

    #[test]
    fn query_is_kept_in_path() {
        let e = Endpoint::parse("http://10.0.0.5:8080/jwks?x=1", &no_upstreams()).unwrap();
        assert_eq!(e.path, "/jwks?x=1");
        assert_eq!(e.to_string(), "http://10.0.0.5:8080/jwks via 10.0.0.5:8080");
        assert_eq!(e.upstream, "10.0.0.5:8080");
    }

    #[test]
    fn rejects_non_http_urls_userinfo_and_fragments() {
        for bad in [
            "ftp://idp/x",
            "idp.example/jwks",
            "https://user:pw@idp/x",
            "https://idp/x#f",
            "",
            "https:///x",
        ] {
            assert!(
                Endpoint::parse(bad, &no_upstreams()).is_err(),
                "{bad} accepted"
            );
        }
    }

    #[test]
    fn outcome_without_status_is_a_failure() {
        let kong = vec![(
            ":dispatch_status".to_string(),
            b"tls handshake failure".to_vec(),
        )];
        let o = CallOutcome::from_parts(&kong, vec![]);
        assert_eq!(o.status, None);
        assert_eq!(o.failure.as_deref(), Some("tls handshake failure"));

        let ok = vec![
            (":status".to_string(), b"200".to_vec()),
            (":dispatch_status".to_string(), b"ok".to_vec()),
        ];
        let o = CallOutcome::from_parts(&ok, b"{}".to_vec());
        assert_eq!(o.status, Some(200));
        assert_eq!(o.failure, None);

        let o = CallOutcome::from_parts(&[], vec![]);
        assert_eq!(o.status, None);
    }
}
