//! The local reply for a refused request: status, one `WWW-Authenticate` challenge per scheme
//! this gateway takes (RFC 6750 §3 `Bearer`, RFC 9449 §7.1 `DPoP` with its `algs`), the error
//! in the challenge of the scheme the client used, a `DPoP-Nonce` when one is asked for, and a
//! small JSON body.

use serde_json::json;

use crate::reply::rejection::{ErrorCode, Rejection, Scheme};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What the challenges offer, from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenges<'a> {
    pub realm: &'a str,
    /// Advertised on `insufficient_scope`, so the client knows what to ask the IdP for.
    pub scopes: &'a [String],
    /// Whether the `Bearer` scheme can succeed (not when DPoP is strict).
    pub bearer: bool,
    /// The DPoP challenge's `algs`, when the `DPoP` scheme is accepted.
    pub dpop_algs: Option<String>,
    /// Whether a refused token or proof says which check failed (`expose_error_descriptions`).
    pub detailed: bool,
}

/// What a refusal's `error_description` says: the check that failed, or with details off,
/// for a token or DPoP proof, only that it is not valid (a forger learns nothing from it).
fn description(rejection: Rejection, challenges: &Challenges<'_>) -> &'static str {
    match rejection.error_code() {
        _ if challenges.detailed => rejection.description(),
        Some(ErrorCode::InvalidToken) => "the access token is not valid here",
        Some(ErrorCode::InvalidDpopProof) => "the DPoP proof is not valid here",
        _ => rejection.description(),
    }
}

/// Builds the reply. `used`: the scheme of the request's `Authorization`, when it was read;
/// `nonce`: the `DPoP-Nonce` to send with `use_dpop_nonce`.
pub fn render(
    rejection: Rejection,
    challenges: &Challenges<'_>,
    used: Option<Scheme>,
    nonce: Option<&str>,
) -> LocalResponse {
    let mut headers = vec![("cache-control".to_string(), "no-store".to_string())];
    let code = rejection.error_code();
    if code != Some(ErrorCode::TemporarilyUnavailable) {
        let offered = [
            (Scheme::Bearer, challenges.bearer),
            (Scheme::Dpop, challenges.dpop_algs.is_some()),
        ];
        // The error goes where the client looks: the challenge of the scheme it used (a DPoP
        // proof's errors always under DPoP), or the one scheme offered.
        let wanted = match rejection.scheme() {
            Scheme::Dpop => Scheme::Dpop,
            Scheme::Bearer => used.unwrap_or(Scheme::Bearer),
        };
        let carrier = if offered.contains(&(wanted, true)) {
            wanted
        } else {
            offered
                .iter()
                .find(|(_, on)| *on)
                .map_or(Scheme::Bearer, |(s, _)| *s)
        };
        for (scheme, on) in offered {
            if on {
                let with_error = scheme == carrier;
                headers.push((
                    "www-authenticate".to_string(),
                    challenge(scheme, rejection, challenges, with_error),
                ));
            }
        }
    }
    if let (Rejection::UseDpopNonce, Some(nonce)) = (rejection, nonce) {
        headers.push(("dpop-nonce".to_string(), nonce.to_string()));
    }
    let body = match code {
        None => {
            json!({"error": "unauthorized", "error_description": description(rejection, challenges)})
        }
        Some(code) => {
            json!({"error": code.as_str(), "error_description": description(rejection, challenges)})
        }
    };
    headers.push(("content-type".to_string(), "application/json".to_string()));
    LocalResponse {
        status: rejection.status(),
        headers,
        body: body.to_string().into_bytes(),
    }
}

fn challenge(
    scheme: Scheme,
    rejection: Rejection,
    challenges: &Challenges<'_>,
    with_error: bool,
) -> String {
    // realm and scopes were checked at configure time to be safe inside quotes.
    let mut c = match scheme {
        Scheme::Bearer => format!("Bearer realm=\"{}\"", challenges.realm),
        Scheme::Dpop => format!("DPoP realm=\"{}\"", challenges.realm),
    };
    if scheme == Scheme::Dpop
        && let Some(algs) = &challenges.dpop_algs
    {
        c.push_str(&format!(", algs=\"{algs}\""));
    }
    if let (true, Some(code)) = (with_error, rejection.error_code()) {
        c.push_str(&format!(
            ", error=\"{}\", error_description=\"{}\"",
            code.as_str(),
            description(rejection, challenges)
        ));
        if code == ErrorCode::InsufficientScope && !challenges.scopes.is_empty() {
            c.push_str(&format!(", scope=\"{}\"", challenges.scopes.join(" ")));
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer_only(scopes: &[String]) -> Challenges<'_> {
        Challenges {
            realm: "api",
            scopes,
            bearer: true,
            dpop_algs: None,
            detailed: true,
        }
    }

    fn both(bearer: bool) -> Challenges<'static> {
        Challenges {
            realm: "api",
            scopes: &[],
            bearer,
            dpop_algs: Some("ES256 PS256".into()),
            detailed: true,
        }
    }

    fn challenges(r: &LocalResponse) -> Vec<&str> {
        r.headers
            .iter()
            .filter(|(k, _)| k == "www-authenticate")
            .map(|(_, v)| v.as_str())
            .collect()
    }

    #[test]
    fn both_schemes_are_challenged_and_the_error_goes_to_the_one_used() {
        let r = render(Rejection::MissingToken, &both(true), None, None);
        assert_eq!(
            challenges(&r),
            [
                "Bearer realm=\"api\"",
                "DPoP realm=\"api\", algs=\"ES256 PS256\""
            ]
        );
        let r = render(Rejection::Expired, &both(true), Some(Scheme::Dpop), None);
        let c = challenges(&r);
        assert_eq!(c[0], "Bearer realm=\"api\"");
        assert!(
            c[1].starts_with("DPoP realm=\"api\", algs=\"ES256 PS256\", error=\"invalid_token\""),
            "{c:?}"
        );
        let r = render(Rejection::Expired, &both(true), Some(Scheme::Bearer), None);
        assert!(challenges(&r)[0].contains("error=\"invalid_token\""));
        assert!(!challenges(&r)[1].contains("error="));
    }

    #[test]
    fn proof_errors_are_dpop_errors_and_strict_dpop_offers_only_dpop() {
        let r = render(Rejection::DpopStale, &both(false), Some(Scheme::Dpop), None);
        assert_eq!(r.status, 401);
        assert_eq!(
            challenges(&r),
            [
                "DPoP realm=\"api\", algs=\"ES256 PS256\", error=\"invalid_dpop_proof\", \
              error_description=\"the DPoP proof is too old or from the future\""
            ]
        );
        // A Bearer request refused where only DPoP is offered: the error is under DPoP.
        let r = render(
            Rejection::DpopRequired,
            &both(false),
            Some(Scheme::Bearer),
            None,
        );
        assert_eq!(challenges(&r).len(), 1);
        assert!(challenges(&r)[0].starts_with("DPoP "));
    }

    #[test]
    fn use_dpop_nonce_carries_the_nonce() {
        let r = render(
            Rejection::UseDpopNonce,
            &both(true),
            Some(Scheme::Dpop),
            Some("n-1"),
        );
        assert_eq!(r.status, 401);
        assert_eq!(header(&r, "dpop-nonce"), Some("n-1"));
        assert!(challenges(&r)[1].contains("error=\"use_dpop_nonce\""));
        let other = render(
            Rejection::DpopStale,
            &both(true),
            Some(Scheme::Dpop),
            Some("n-1"),
        );
        assert_eq!(header(&other, "dpop-nonce"), None);
    }

    fn header<'a>(r: &'a LocalResponse, name: &str) -> Option<&'a str> {
        r.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn missing_token_is_a_bare_challenge() {
        let r = render(Rejection::MissingToken, &bearer_only(&[]), None, None);
        assert_eq!(r.status, 401);
        assert_eq!(header(&r, "www-authenticate"), Some("Bearer realm=\"api\""));
    }

    #[test]
    fn invalid_token_names_the_error() {
        let r = render(Rejection::ThumbprintMismatch, &bearer_only(&[]), None, None);
        assert_eq!(r.status, 401);
        let c = header(&r, "www-authenticate").unwrap();
        assert!(
            c.starts_with("Bearer realm=\"api\", error=\"invalid_token\", error_description=\""),
            "{c}"
        );
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["error"], "invalid_token");
        assert_eq!(header(&r, "content-type"), Some("application/json"));
    }

    #[test]
    fn insufficient_scope_advertises_the_scopes() {
        let r = render(
            Rejection::InsufficientScope,
            &bearer_only(&["a:read".into(), "b".into()]),
            None,
            None,
        );
        assert_eq!(r.status, 403);
        assert!(
            header(&r, "www-authenticate")
                .unwrap()
                .ends_with(", scope=\"a:read b\"")
        );
    }

    #[test]
    fn invalid_request_is_400_and_unavailable_is_503_without_challenge() {
        assert_eq!(
            render(
                Rejection::MultipleAuthorization,
                &bearer_only(&[]),
                None,
                None
            )
            .status,
            400
        );
        let r = render(
            Rejection::IntrospectionUnavailable,
            &bearer_only(&[]),
            None,
            None,
        );
        assert_eq!(r.status, 503);
        assert_eq!(header(&r, "www-authenticate"), None);
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["error"], "temporarily_unavailable");
    }

    #[test]
    fn every_reply_is_json_and_challenges_only_when_not_503() {
        for &r in Rejection::ALL {
            let reply = render(r, &bearer_only(&["a".into()]), None, None);
            assert_eq!(reply.status, r.status());
            let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
            assert_eq!(body["error_description"], r.description());
            assert_eq!(
                header(&reply, "www-authenticate").is_some(),
                r.status() != 503
            );
        }
    }
}
