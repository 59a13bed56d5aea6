//! The proxy-wasm header map the host hands over: `pairs::parse` on raw bytes, and
//! `parse(serialize(x)) == x` on maps built from the input.
//!
//! Asserted: never more pairs than the map's count says, nor than the bytes can hold; a map
//! parsed from bytes, written again, parses to itself.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use certbound::host::pairs::{parse, serialize};
use certbound_fuzz::write_seeds;
use libfuzzer_sys::fuzz_target;

fn seeds() -> Vec<(String, Vec<u8>)> {
    let request = [
        (":method", "GET"),
        (":path", "/accounts?x=1"),
        (":authority", "api.example"),
        ("authorization", "Bearer eyJhbGciOiJFUzI1NiJ9.e30.c2ln"),
        ("x-forwarded-client-cert", "Hash=00ff;Subject=\"CN=a\""),
    ];
    let call = [(":status", "200"), ("content-type", "application/json")];
    let kong = [(":status", ""), (":dispatch_status", "timeout")];
    let mut truncated = serialize(&request);
    truncated.truncate(truncated.len() - 9);
    vec![
        ("request".into(), serialize(&request)),
        ("call-response".into(), serialize(&call)),
        ("kong-dispatch".into(), serialize(&kong)),
        ("truncated".into(), truncated),
        ("empty".into(), serialize(&[])),
        ("envoy-empty".into(), vec![0]),
    ]
}

fuzz_target!(
    init: write_seeds("pairs", seeds),
    |data: &[u8]| {
        let parsed = parse(data);
        let count = data
            .get(..4)
            .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
        assert!(parsed.len() <= count, "{} pairs, count {count}", parsed.len());
        // Each pair takes 8 bytes of lengths and 2 NULs at least.
        assert!(parsed.len() * 10 <= data.len(), "{} pairs from {} bytes", parsed.len(), data.len());
        let text: Option<Vec<(String, String)>> = parsed
            .iter()
            .map(|(k, v)| Some((String::from_utf8(k.clone()).ok()?, String::from_utf8(v.clone()).ok()?)))
            .collect();
        if let Some(text) = text {
            let refs: Vec<(&str, &str)> = text.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            assert_eq!(parse(&serialize(&refs)), parsed, "parse(serialize(parse(x))) != parse(x)");
        }
        // A map built from the same bytes survives a round trip.
        let mut u = Unstructured::new(data);
        if let Ok(map) = Vec::<(String, String)>::arbitrary(&mut u) {
            let refs: Vec<(&str, &str)> = map.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let expect: Vec<(Vec<u8>, Vec<u8>)> = map
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect();
            assert_eq!(parse(&serialize(&refs)), expect);
        }
    }
);
