//! The Authorization header and the request path: `credentials::bearer_token`.
//!
//! Input: the first line is the path (query included), every further line a header,
//! `name: value` (the value may hold any bytes but a newline).
#![no_main]

use certbound::reply::rejection::Rejection;
use certbound::tokens::credentials::{MAX_TOKEN_LENGTH, bearer_token};
use libfuzzer_sys::fuzz_target;

fn request(data: &[u8]) -> (String, Vec<(String, Vec<u8>)>) {
    let mut lines = data.split(|b| *b == b'\n');
    let path = String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
    let headers = lines
        .map(|line| {
            let at = line.windows(2).position(|w| w == b": ");
            let (name, value) = match at {
                Some(i) => (&line[..i], &line[i + 2..]),
                None => (line, &b""[..]),
            };
            (String::from_utf8_lossy(name).into_owned(), value.to_vec())
        })
        .collect();
    (path, headers)
}

fuzz_target!(|data: &[u8]| {
    let (path, headers) = request(data);
    let result = bearer_token(&headers, &path);
    let auth: Vec<&[u8]> = headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| v.as_slice())
        .collect();
    match &result {
        Ok(None) => assert!(auth.is_empty(), "a token header was missed: {auth:?}"),
        Ok(Some(token)) => {
            assert_eq!(
                auth.len(),
                1,
                "a token from {} Authorization headers",
                auth.len()
            );
            assert!(!token.is_empty() && token.len() <= MAX_TOKEN_LENGTH);
            let body = token.trim_end_matches('=');
            assert!(
                !body.is_empty()
                    && body
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)),
                "not an RFC 6750 b64token: {token:?}"
            );
            let value = std::str::from_utf8(auth[0]).expect("the token came from UTF-8");
            let value = value.trim();
            assert!(
                value.len() > 6 && value.as_bytes()[..6].eq_ignore_ascii_case(b"bearer"),
                "token from a non-Bearer value {value:?}"
            );
            assert!(
                value.ends_with(token.as_str()),
                "token {token:?} not the end of {value:?}"
            );
            let query = path
                .split_once('?')
                .map(|(_, q)| q.split('#').next().unwrap_or(""));
            assert!(
                !query.is_some_and(|q| q.split('&').any(|p| p
                    .split('=')
                    .next()
                    .is_some_and(|n| n.eq_ignore_ascii_case("access_token")))),
                "token accepted with a token in the query: {path:?}"
            );
        }
        Err(Rejection::MultipleAuthorization) => assert!(auth.len() > 1),
        Err(_) => {}
    }
});
