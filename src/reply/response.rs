//! The local reply for a refused request (RFC 6750 §3): status, `WWW-Authenticate` challenge
//! and a small JSON body.

use serde_json::json;

use crate::reply::rejection::{ErrorCode, Rejection};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Builds the reply. `required_scopes` is advertised on `insufficient_scope` so the client
/// knows what to ask the IdP for.
pub fn render(rejection: Rejection, realm: &str, required_scopes: &[String]) -> LocalResponse {
    let mut headers = vec![("cache-control".to_string(), "no-store".to_string())];
    let code = rejection.error_code();
    if code != Some(ErrorCode::TemporarilyUnavailable) {
        headers.push((
            "www-authenticate".to_string(),
            challenge(rejection, realm, required_scopes),
        ));
    }
    let body = match code {
        None => json!({"error": "unauthorized", "error_description": rejection.description()}),
        Some(code) => json!({"error": code.as_str(), "error_description": rejection.description()}),
    };
    headers.push(("content-type".to_string(), "application/json".to_string()));
    LocalResponse {
        status: rejection.status(),
        headers,
        body: body.to_string().into_bytes(),
    }
}

fn challenge(rejection: Rejection, realm: &str, required_scopes: &[String]) -> String {
    // realm and scopes were checked at configure time to be safe inside quotes.
    let mut c = format!("Bearer realm=\"{realm}\"");
    if let Some(code) = rejection.error_code() {
        c.push_str(&format!(
            ", error=\"{}\", error_description=\"{}\"",
            code.as_str(),
            rejection.description()
        ));
        if code == ErrorCode::InsufficientScope && !required_scopes.is_empty() {
            c.push_str(&format!(", scope=\"{}\"", required_scopes.join(" ")));
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(r: &'a LocalResponse, name: &str) -> Option<&'a str> {
        r.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn missing_token_is_a_bare_challenge() {
        let r = render(Rejection::MissingToken, "api", &[]);
        assert_eq!(r.status, 401);
        assert_eq!(header(&r, "www-authenticate"), Some("Bearer realm=\"api\""));
    }

    #[test]
    fn invalid_token_names_the_error() {
        let r = render(Rejection::ThumbprintMismatch, "api", &[]);
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
            "api",
            &["a:read".into(), "b".into()],
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
            render(Rejection::MultipleAuthorization, "api", &[]).status,
            400
        );
        let r = render(Rejection::IntrospectionUnavailable, "api", &[]);
        assert_eq!(r.status, 503);
        assert_eq!(header(&r, "www-authenticate"), None);
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["error"], "temporarily_unavailable");
    }

    #[test]
    fn every_reply_is_json_and_challenges_only_when_not_503() {
        for &r in Rejection::ALL {
            let reply = render(r, "api", &["a".into()]);
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
