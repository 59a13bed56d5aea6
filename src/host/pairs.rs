//! The proxy-wasm serialized map: `count`, then a (key length, value length) pair per entry,
//! then each key and value followed by a NUL; all integers little-endian u32. The host hands
//! request and call-response headers over in it, and takes local-reply headers in it.

/// Name/value pairs as bytes.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Reads a map defensively: an entry that would run past the buffer ends the read, lengths
/// are never trusted, names and values stay bytes. Envoy sends nothing at all for an empty
/// map; Kong's engine may truncate a long one, so its sizes and contents can disagree
/// (docs/hosts.md).
pub fn parse(bytes: &[u8]) -> Pairs {
    let u32_at = |at: usize| -> Option<usize> {
        let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(u32::from_le_bytes(b) as usize)
    };
    let Some(count) = u32_at(0) else {
        return Vec::new();
    };
    let Some(mut at) = count.checked_mul(8).and_then(|n| n.checked_add(4)) else {
        return Vec::new();
    };
    // Each entry takes at least 10 bytes: a huge `count` must not reserve memory.
    let mut pairs = Vec::with_capacity(count.min(bytes.len() / 10));
    let take = |from: usize, len: usize| -> Option<(Vec<u8>, usize)> {
        let end = from.checked_add(len)?;
        Some((bytes.get(from..end)?.to_vec(), end.checked_add(1)?))
    };
    for i in 0..count {
        let lengths = i
            .checked_mul(8)
            .and_then(|o| Some((u32_at(o.checked_add(4)?)?, u32_at(o.checked_add(8)?)?)));
        let Some((k, v)) = lengths else { break };
        let Some((key, next)) = take(at, k) else {
            break;
        };
        let Some((value, next)) = take(next, v) else {
            break;
        };
        pairs.push((key, value));
        at = next;
    }
    pairs
}

/// Writes a map.
pub fn serialize(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let map = [
            (":path", "/x"),
            ("authorization", "Bearer t"),
            ("empty", ""),
        ];
        let parsed = parse(&serialize(&map));
        let expect: Vec<(Vec<u8>, Vec<u8>)> = map
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect();
        assert_eq!(parsed, expect);
    }

    #[test]
    fn the_bytes_are_the_sdks_and_what_both_engines_read() {
        // proxy-wasm SDK 0.2.5 `serialize_map`, Envoy's `toPairs`, ngx_wasm_module's
        // `ngx_proxy_wasm_pairs_unmarshal` (docs/abi.md §1): count, (key len, value len) per
        // entry, then each key and value NUL-terminated, integers little-endian u32.
        assert_eq!(
            serialize(&[("ab", "c"), ("", "")]),
            [
                2, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, b'a', b'b', 0, b'c', 0,
                0, 0
            ]
        );
        assert_eq!(serialize(&[]), [0, 0, 0, 0]);
    }

    #[test]
    fn short_truncated_and_lying_buffers_never_panic() {
        assert!(parse(&[]).is_empty());
        assert!(parse(&[0]).is_empty(), "the spec's one-byte empty map");
        assert!(parse(&[1, 0, 0]).is_empty());
        let full = serialize(&[("a", "b"), ("cc", "dd")]);
        for cut in 0..full.len() {
            let parsed = parse(&full[..cut]);
            assert!(parsed.len() <= 2);
        }
        // count = u32::MAX with a tiny buffer
        assert!(parse(&[0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0]).is_empty());
        // a length past the end
        let mut lying = serialize(&[("a", "b")]);
        lying[4] = 0xff;
        assert!(parse(&lying).is_empty());
    }

    #[test]
    fn names_that_are_not_utf8_stay_bytes() {
        let mut raw = serialize(&[("ab", "v")]);
        let at = raw.len() - 5;
        raw[at] = 0xff;
        assert_eq!(parse(&raw), vec![(vec![0xff, b'b'], b"v".to_vec())]);
    }
}
