//! What Kong hands the filter for a configuration its validator accepted, read as Kong means
//! it. Kong validates a filter's config on Lua values (lua-resty-ljsonschema, PCRE without UTF
//! mode) and hands the filter cjson's encoding of them. A config Kong accepted that the
//! filter then refuses is the worst outcome on Kong: the filter is dropped and the route
//! proxied unprotected. So the loader takes Kong's forms, each harmless:
//!
//! - strings that are not UTF-8 (cjson does not check, and PCRE matches their bytes): each
//!   byte outside ASCII of such a string becomes U+FFFD (see `utf8_strings`);
//! - an empty table, Lua's one value for `[]` and `{}`: `[]` where the config has an object
//!   (`upstreams`, `client_certificate`, a key of `jwks`), `{}` where it has an array (read by
//!   `raw::list`), both as the empty value;
//! - Lua's one number type: `1.0`, `1e2` and `-0` for an integer (read by `raw::whole`).
//!
//! tests/config_schema.rs runs Kong 3.9.3's own validator over thousands of configs and
//! feeds the filter the bytes Kong would hand it.

use std::borrow::Cow;

use serde_json::Value;

use super::RawConfig;

const REPLACEMENT: &[u8] = "\u{FFFD}".as_bytes();

/// The config bytes with every JSON string that is not UTF-8 made UTF-8: each of its bytes
/// outside ASCII, and each `\u` escape of a character outside ASCII, becomes as many U+FFFD
/// as the character has bytes. The string keeps the length Kong's validator gave it
/// (ljsonschema counts the bytes of a string that is not UTF-8, for `minLength`) and, like
/// its bytes for Kong's patterns, matches no name, URL or pattern that allows only ASCII.
/// Valid UTF-8 (every config Envoy hands over) is returned as it is.
pub(super) fn utf8_strings(bytes: &[u8]) -> Cow<'_, [u8]> {
    if std::str::from_utf8(bytes).is_ok() {
        return Cow::Borrowed(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len() + 16);
    let mut rest = bytes;
    // Outside strings: up to the next quote (any other byte outside ASCII is not JSON and is
    // left for the parser to refuse).
    while let Some(open) = rest.iter().position(|&b| b == b'"') {
        let (before, after) = rest.split_at(open + 1);
        out.extend_from_slice(before);
        let end = string_end(after);
        let (content, after) = after.split_at(end);
        if std::str::from_utf8(content).is_ok() {
            out.extend_from_slice(content);
        } else {
            replace_outside_ascii(content, &mut out);
        }
        // `after` starts with the closing quote, or is empty (unterminated: the parser refuses)
        match after.split_first() {
            Some((quote, tail)) => {
                out.push(*quote);
                rest = tail;
            }
            None => return Cow::Owned(out),
        }
    }
    out.extend_from_slice(rest);
    Cow::Owned(out)
}

/// Where the string starting at `s` (after its opening quote) ends: its closing quote.
fn string_end(s: &[u8]) -> usize {
    let mut escaped = false;
    for (i, &b) in s.iter().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' => escaped = true,
            b'"' => return i,
            _ => {}
        }
    }
    s.len()
}

fn hex4(s: Option<&[u8]>) -> Option<u32> {
    let s = std::str::from_utf8(s?).ok()?;
    if s.len() != 4 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(s, 16).ok()
}

fn replace_outside_ascii(content: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while let Some(&b) = content.get(i) {
        if b == b'\\' {
            let escape =
                hex4(content.get(i + 2..i + 6)).filter(|_| content.get(i + 1) == Some(&b'u'));
            let (chars, len) = match escape {
                // ASCII, or a lone surrogate (which cjson refuses, and serde_json too)
                Some(c) if c < 0x80 => (0, 6),
                Some(0xD800..=0xDBFF)
                    if content.get(i + 6..i + 8) == Some(b"\\u".as_slice())
                        && hex4(content.get(i + 8..i + 12))
                            .is_some_and(|l| (0xDC00..=0xDFFF).contains(&l)) =>
                {
                    (4, 12)
                }
                Some(0xD800..=0xDFFF) => (0, 6),
                Some(c) if c < 0x800 => (2, 6),
                Some(_) => (3, 6),
                // another escape: the backslash and the (ASCII) character after it
                None => (
                    0,
                    if content.get(i + 1).is_some_and(u8::is_ascii) {
                        2
                    } else {
                        1
                    },
                ),
            };
            if chars == 0 {
                out.extend_from_slice(content.get(i..i + len).unwrap_or_default());
            } else {
                for _ in 0..chars {
                    out.extend_from_slice(REPLACEMENT);
                }
            }
            i += len;
            continue;
        }
        if b.is_ascii() {
            out.push(b);
        } else {
            out.extend_from_slice(REPLACEMENT);
        }
        i += 1;
    }
}

/// Kong's empty table where the config has an object: `[]` for `upstreams`,
/// `client_certificate` or a key of `jwks` is read as `{}`, and `{}` where the config has an
/// array as `[]`, so that what the user wrote and what Kong hands over read the same (and a
/// default written in Kong's form is not taken for a setting).
pub(super) fn empty_tables(config: &mut Value) {
    let defaults = serde_json::to_value(RawConfig::default()).unwrap_or_default();
    normalise_members(config, &defaults);
    if let Some(cert) = config.get_mut("client_certificate") {
        normalise_members(
            cert,
            defaults.get("client_certificate").unwrap_or(&Value::Null),
        );
    }
    if let Some(Value::Array(keys)) = config.get_mut("jwks").and_then(|j| j.get_mut("keys")) {
        for key in keys {
            if is_empty_array(key) {
                *key = Value::Object(Default::default());
            }
        }
    }
}

fn is_empty_array(v: &Value) -> bool {
    v.as_array().is_some_and(Vec::is_empty)
}

fn is_empty_object(v: &Value) -> bool {
    v.as_object().is_some_and(serde_json::Map::is_empty)
}

fn normalise_members(object: &mut Value, defaults: &Value) {
    let Some(members) = object.as_object_mut() else {
        return;
    };
    for (name, value) in members.iter_mut() {
        match defaults.get(name) {
            Some(Value::Object(_)) if is_empty_array(value) => {
                *value = Value::Object(Default::default())
            }
            Some(Value::Array(_)) if is_empty_object(value) => *value = Value::Array(Vec::new()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed(bytes: &[u8]) -> String {
        String::from_utf8(utf8_strings(bytes).into_owned()).unwrap_or_else(|e| format!("{e}"))
    }

    #[test]
    fn utf8_is_left_as_it_is() {
        let text = "{\"issuer\": \"é\\u00e9\\\"\"}".as_bytes();
        assert!(matches!(utf8_strings(text), Cow::Borrowed(_)));
    }

    #[test]
    fn a_string_that_is_not_utf8_gets_one_replacement_per_byte() {
        // the valid strings around it are kept, é included
        assert_eq!(
            fixed(b"{\"a\": \"\xc3\xa9\", \"b\": \"x\xff\xc3\xa9\", \"c\xe2\x80\": 1}"),
            "{\"a\": \"é\", \"b\": \"x\u{fffd}\u{fffd}\u{fffd}\", \"c\u{fffd}\u{fffd}\": 1}"
        );
    }

    #[test]
    fn escapes_count_as_the_bytes_kong_decodes_them_to() {
        assert_eq!(
            fixed(b"[\"\\u00e9\\u20ac\\ud83d\\ude00\\n\\u0041\\\"\xff\"]"),
            format!(
                "[\"{}\\n\\u0041\\\"\u{fffd}\"]",
                "\u{fffd}".repeat(2 + 3 + 4)
            )
        );
        // a lone surrogate stays, for the parser to refuse as cjson does
        assert_eq!(fixed(b"[\"\\ud800\xff\"]"), "[\"\\ud800\u{fffd}\"]");
        // a backslash before a byte outside ASCII
        assert_eq!(fixed(b"[\"\\\xff\"]"), "[\"\\\u{fffd}\"]");
    }

    #[test]
    fn outside_strings_and_unterminated_strings_are_left_to_the_parser() {
        assert_eq!(fixed(b"[1, \"\xff"), "[1, \"\u{fffd}");
        assert!(std::str::from_utf8(&utf8_strings(b"[\xff]")).is_err());
    }

    #[test]
    fn empty_tables_take_the_shape_of_the_default() {
        let mut v = serde_json::json!({
            "upstreams": [], "client_certificate": {"trusted_ips": {}}, "audience_required": {},
            "jwks": {"keys": [[], [1], {}]}, "issuer": [], "leeway": {}
        });
        empty_tables(&mut v);
        assert_eq!(
            v,
            serde_json::json!({
                "upstreams": {}, "client_certificate": {"trusted_ips": []}, "audience_required": [],
                "jwks": {"keys": [{}, [1], {}]}, "issuer": [], "leeway": {}
            })
        );
        let mut cert = serde_json::json!({"client_certificate": []});
        empty_tables(&mut cert);
        assert_eq!(cert, serde_json::json!({"client_certificate": {}}));
    }
}
