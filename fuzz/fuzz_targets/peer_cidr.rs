//! The peer address and the trusted proxies: `parse_source_address` (Envoy's `ip:port`, Kong's
//! bare `ip`) and the CIDR list of `client_certificate.trusted_ips` (through
//! `Settings::from_json`), then `is_trusted`.
//!
//! Input: the first line is the peer address, each further line a `trusted_ips` entry.
//!
//! Asserted: a parsed peer is canonical (an IPv4-mapped IPv6 peer reads as IPv4) and reads back
//! from its own text; an address listed in `trusted_ips` (IPv4-mapped IPv6 included) is trusted
//! when it is the peer, written as a host reports it.
#![no_main]

use std::net::{IpAddr, SocketAddr};

use certbound::binding::certificate::{is_trusted, parse_source_address};
use certbound::config::{CertSource, Settings};
use libfuzzer_sys::fuzz_target;
use serde_json::json;

/// A public test CA (tests/data/test-ca.pem): a header source needs `ca_certificates`.
const TEST_CA: &str = include_str!("../../tests/data/test-ca.pem");

fuzz_target!(|data: &[u8]| {
    let mut lines = data.split(|b| *b == b'\n');
    let peer_raw = lines.next().unwrap_or_default();
    let entries: Vec<String> = lines
        .take(16)
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect();

    let peer = parse_source_address(peer_raw);
    if let Some(ip) = peer {
        assert_eq!(ip, ip.to_canonical(), "peer {ip} not canonical");
        assert_eq!(parse_source_address(ip.to_string().as_bytes()), Some(ip));
        let envoy = SocketAddr::new(ip, 443).to_string();
        assert_eq!(parse_source_address(envoy.as_bytes()), Some(ip), "{envoy}");
    }

    if entries.is_empty() {
        return;
    }
    let config = json!({
        "auth_methods": ["introspection"],
        "introspection_endpoint": "https://idp.example/introspect",
        "client_id": "gateway",
        "client_secret": "not-a-secret",
        "client_certificate": {
            "source": "header",
            "header": "x-forwarded-client-cert",
            "format": "xfcc",
            "trusted_ips": entries,
            "ca_certificates": TEST_CA,
        }
    });
    let Ok(settings) = Settings::from_json(config.to_string().as_bytes()) else {
        return;
    };
    let CertSource::Header { trusted, .. } = &settings.cert_source else {
        panic!("header source read as {:?}", settings.cert_source);
    };
    // An entry that is no address or block is skipped (with a warning): it trusts no one.
    let skipped = settings
        .warnings
        .iter()
        .filter(|w| w.contains("is not an IP address or CIDR block; skipped"))
        .count();
    assert_eq!(
        trusted.len() + skipped,
        entries.len(),
        "{:?}",
        settings.warnings
    );
    let _ = is_trusted(peer, trusted);
    for entry in &entries {
        // An entry that is a plain address: that peer, as Envoy (`ip:port`) or Kong (`ip`)
        // reports it, is trusted.
        let Ok(addr) = entry.parse::<IpAddr>() else {
            continue;
        };
        for reported in [addr.to_string(), SocketAddr::new(addr, 50_000).to_string()] {
            let seen = parse_source_address(reported.as_bytes());
            assert!(
                is_trusted(seen, trusted),
                "trusted_ips lists {entry:?}, but the peer {reported} (read as {seen:?}) is not trusted"
            );
        }
    }
});
