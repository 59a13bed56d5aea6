//! Where the access token comes from: the `Authorization: Bearer` header only (RFC 6750 §2.1).
//! FAPI 2.0 forbids tokens in the query or a form body: a query `access_token` alone is an
//! unsupported method (401 with the bare challenge), next to a header it is two methods at
//! once (400 invalid_request); the body is never read.

use crate::reply::rejection::{Rejection, Scheme};

/// Longest token accepted. RFC 9068 tokens are around 1 KiB; this leaves room for rich
/// claims while bounding the work (and jwt-simple's default of 1 MB).
pub const MAX_TOKEN_LENGTH: usize = 16 * 1024;

/// An access token and the scheme it came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub scheme: Scheme,
    pub token: String,
}

/// The bearer token of the request, `Ok(None)` when there is no `Authorization` header.
pub fn bearer_token(
    headers: &[(String, Vec<u8>)],
    path: &str,
) -> Result<Option<String>, Rejection> {
    credential(headers, path, false).map(|c| c.map(|c| c.token))
}

/// The access token of the request and its scheme (`DPoP` only when `dpop` is on),
/// `Ok(None)` when there is no `Authorization` header. `headers` is the full request header
/// list, so that a repeated header is seen even on a host that would hand only the first to
/// a single-value lookup.
pub fn credential(
    headers: &[(String, Vec<u8>)],
    path: &str,
    dpop: bool,
) -> Result<Option<Credential>, Rejection> {
    let in_query = query_has_access_token(path);
    let mut values = headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| v);
    let Some(value) = values.next() else {
        // RFC 6750 §3.1: no authentication information, or only an unsupported method (a
        // token in the query, which FAPI 2.0 forbids), gets the bare challenge.
        return if in_query {
            Err(Rejection::TokenInQuery)
        } else {
            Ok(None)
        };
    };
    if in_query {
        return Err(Rejection::MultipleMethods);
    }
    if values.next().is_some() {
        return Err(Rejection::MultipleAuthorization);
    }
    let value = std::str::from_utf8(value)
        .map_err(|_| Rejection::MalformedAuthorization)?
        .trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let scheme = if scheme.eq_ignore_ascii_case("bearer") {
        Scheme::Bearer
    } else if dpop && scheme.eq_ignore_ascii_case("dpop") {
        Scheme::Dpop
    } else {
        return Err(Rejection::UnsupportedScheme);
    };
    let token = rest.trim_start_matches(' ');
    if token.is_empty() {
        return Err(Rejection::EmptyToken);
    }
    if token.len() > MAX_TOKEN_LENGTH {
        return Err(Rejection::TokenTooLong);
    }
    if !is_b64token(token) {
        return Err(Rejection::MalformedAuthorization);
    }
    Ok(Some(Credential {
        scheme,
        token: token.to_string(),
    }))
}

/// RFC 6750 §2.1 `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| B64TOKEN.get(usize::from(b)) == Some(&true))
}

/// The b64token characters, as a table: this runs over every token of every request.
#[allow(clippy::indexing_slicing)] // a const loop over 0..256 into 256 entries
static B64TOKEN: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        table[i] =
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
        i += 1;
    }
    table
};

fn query_has_access_token(path: &str) -> bool {
    let Some((_, query)) = path.split_once('?') else {
        return false;
    };
    let query = query.split('#').next().unwrap_or_default();
    query.split('&').any(|pair| {
        let name = pair.split('=').next().unwrap_or_default();
        percent_encoding::percent_decode_str(name)
            .decode_utf8_lossy()
            .eq_ignore_ascii_case("access_token")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(values: &[&str]) -> Vec<(String, Vec<u8>)> {
        let mut h = vec![(":path".to_string(), b"/x".to_vec())];
        h.extend(
            values
                .iter()
                .map(|v| ("authorization".to_string(), v.as_bytes().to_vec())),
        );
        h
    }

    #[test]
    fn accepts_bearer_in_any_case() {
        for v in ["Bearer abc.def-ghi_~+/==", "bearer abc", "BEARER  abc"] {
            assert!(bearer_token(&auth(&[v]), "/x").unwrap().is_some(), "{v}");
        }
        assert_eq!(
            bearer_token(&auth(&["Bearer tok"]), "/x")
                .unwrap()
                .as_deref(),
            Some("tok")
        );
    }

    #[test]
    fn the_dpop_scheme_is_taken_only_when_dpop_is_on() {
        let h = auth(&["DPoP abc"]);
        assert_eq!(
            credential(&h, "/x", true),
            Ok(Some(Credential {
                scheme: Scheme::Dpop,
                token: "abc".into()
            }))
        );
        assert_eq!(
            credential(&h, "/x", false),
            Err(Rejection::UnsupportedScheme)
        );
        assert_eq!(
            credential(&auth(&["dpop abc"]), "/x", true).map(|c| c.map(|c| c.scheme)),
            Ok(Some(Scheme::Dpop))
        );
    }

    #[test]
    fn no_header_is_no_token() {
        assert_eq!(bearer_token(&auth(&[]), "/x"), Ok(None));
    }

    #[test]
    fn two_authorization_headers_are_invalid_request() {
        let r = bearer_token(&auth(&["Bearer a", "Bearer b"]), "/x");
        assert_eq!(r, Err(Rejection::MultipleAuthorization));
        // Header names are case-insensitive: a differently cased copy is still a second header.
        let mut h = auth(&["Bearer a"]);
        h.push(("Authorization".into(), b"Bearer b".to_vec()));
        assert_eq!(
            bearer_token(&h, "/x"),
            Err(Rejection::MultipleAuthorization)
        );
    }

    #[test]
    fn other_schemes_and_empty_tokens_are_refused() {
        assert_eq!(
            bearer_token(&auth(&["Basic dXNlcjpwdw=="]), "/x"),
            Err(Rejection::UnsupportedScheme)
        );
        assert_eq!(
            bearer_token(&auth(&["DPoP abc"]), "/x"),
            Err(Rejection::UnsupportedScheme)
        );
        assert_eq!(
            bearer_token(&auth(&["Bearer"]), "/x"),
            Err(Rejection::EmptyToken)
        );
        assert_eq!(
            bearer_token(&auth(&["Bearer   "]), "/x"),
            Err(Rejection::EmptyToken)
        );
        assert_eq!(
            bearer_token(&auth(&[""]), "/x"),
            Err(Rejection::UnsupportedScheme)
        );
    }

    #[test]
    fn tokens_outside_b64token_syntax_are_malformed() {
        for v in [
            "Bearer a b",
            "Bearer a,Bearer b",
            "Bearer ===",
            "Bearer a\"b",
            "Bearer a=b",
        ] {
            assert_eq!(
                bearer_token(&auth(&[v]), "/x"),
                Err(Rejection::MalformedAuthorization),
                "{v}"
            );
        }
        let raw = vec![("authorization".to_string(), b"Bearer \xff\xfe".to_vec())];
        assert_eq!(
            bearer_token(&raw, "/x"),
            Err(Rejection::MalformedAuthorization)
        );
    }

    #[test]
    fn overlong_tokens_are_refused_before_parsing() {
        let long = format!("Bearer {}", "a".repeat(MAX_TOKEN_LENGTH + 1));
        assert_eq!(
            bearer_token(&auth(&[&long]), "/x"),
            Err(Rejection::TokenTooLong)
        );
        let fits = format!("Bearer {}", "a".repeat(MAX_TOKEN_LENGTH));
        assert!(bearer_token(&auth(&[&fits]), "/x").is_ok());
    }

    #[test]
    fn a_query_token_alone_is_an_unsupported_method_and_next_to_a_header_two_methods() {
        for path in [
            "/x?access_token=abc",
            "/x?a=1&access_token",
            "/x?ACCESS_TOKEN=1",
            "/x?access%5Ftoken=1",
        ] {
            assert_eq!(
                bearer_token(&auth(&[]), path),
                Err(Rejection::TokenInQuery),
                "{path}"
            );
            assert_eq!(
                bearer_token(&auth(&["Bearer a"]), path),
                Err(Rejection::MultipleMethods),
                "{path}"
            );
        }
        for path in ["/x?my_access_token=1", "/access_token", "/x?a=access_token"] {
            assert!(bearer_token(&auth(&["Bearer a"]), path).is_ok(), "{path}");
        }
    }
}
