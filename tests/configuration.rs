//! The configuration is the user interface: every rule refuses a bad config at load time with
//! an error naming the field, and accepts the good one.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use certbound::binding::PopMode;
use certbound::config::{CertSource, ClientAuth, Settings};
use serde_json::{Value, json};
use support::*;

fn refused(config: &Value) -> String {
    match Settings::from_json(config.to_string().as_bytes()) {
        Ok(_) => panic!("accepted: {config}"),
        Err(e) => e.to_string(),
    }
}

/// Asserts the config is refused and the message names `field`.
fn refused_naming(config: Value, field: &str) {
    let msg = refused(&config);
    assert!(msg.contains(field), "error {msg:?} does not name {field}");
}

fn minimal_jwt() -> Value {
    json!({"issuer": ISSUER, "jwks_endpoint": "https://idp.example/jwks"})
}

#[test]
fn minimal_configs_load_with_documented_defaults() {
    let s = settings(&minimal_jwt());
    assert_eq!(s.pop, PopMode::Strict);
    assert_eq!(s.leeway, 60);
    assert_eq!(s.realm, "api");
    assert_eq!(s.http_timeout.as_millis(), 2000);
    assert!(s.shared_cache);
    assert_eq!(s.cert_source, CertSource::Connection);
    let b = s.bearer.unwrap();
    assert!(b.typ_strict);
    assert_eq!(b.refresh_interval, 600);
    assert_eq!(b.rediscovery_lifetime, 30);
    assert_eq!(b.algorithms.len(), 9);
    assert!(s.introspection.is_none());

    let s = settings(&json!({
        "auth_methods": ["introspection"],
        "introspection_endpoint": "https://idp.example/introspect",
        "client_id": "gw", "client_secret": "x"
    }));
    let i = s.introspection.unwrap();
    assert_eq!(i.client_auth, ClientAuth::ClientSecretBasic);
    assert_eq!(i.cache_ttl, 60);
    assert_eq!(s.cache_max_entries, 4096);
    assert_eq!(i.endpoint.upstream, "idp.example:443");
    assert!(s.bearer.is_none());
}

#[test]
fn empty_or_non_json_configs_are_refused() {
    for bad in ["", "   ", "null", "[]", "{", "\"x\""] {
        assert!(
            Settings::from_json(bad.as_bytes()).is_err(),
            "{bad:?} accepted"
        );
    }
    refused_naming(json!({}), "issuer");
}

#[test]
fn unknown_fields_and_wrong_types_name_the_field() {
    refused_naming(with(minimal_jwt(), json!({"leway": 5})), "leway");
    refused_naming(with(minimal_jwt(), json!({"leeway": "5"})), "leeway");
    refused_naming(with(minimal_jwt(), json!({"leeway": -1})), "leeway");
    refused_naming(
        with(
            minimal_jwt(),
            json!({"proof_of_possession_mtls": "sometimes"}),
        ),
        "proof_of_possession_mtls",
    );
    refused_naming(
        with(minimal_jwt(), json!({"auth_methods": ["bearer", "dpop"]})),
        "auth_methods",
    );
    refused_naming(
        with(minimal_jwt(), json!({"jwt_algorithms": ["HS256"]})),
        "jwt_algorithms",
    );
    refused_naming(
        with(minimal_jwt(), json!({"jwt_algorithms": ["none"]})),
        "jwt_algorithms",
    );
    refused_naming(
        with(
            minimal_jwt(),
            json!({"client_certificate": {"source": "connection", "extra": 1}}),
        ),
        "client_certificate",
    );
    refused_naming(
        with(minimal_jwt(), json!({"upstreams": {"a:1": 5}})),
        "upstreams",
    );
}

#[test]
fn auth_methods_must_be_a_nonempty_set() {
    refused_naming(
        with(minimal_jwt(), json!({"auth_methods": []})),
        "auth_methods",
    );
    refused_naming(
        with(minimal_jwt(), json!({"auth_methods": ["bearer", "bearer"]})),
        "auth_methods",
    );
}

#[test]
fn bearer_needs_an_issuer_and_keys() {
    refused_naming(json!({"jwks_endpoint": "https://idp/jwks"}), "issuer");
    refused_naming(
        json!({"issuer": "", "jwks_endpoint": "https://idp/jwks"}),
        "issuer",
    );
    refused_naming(json!({"issuer": ISSUER}), "jwks_endpoint");
    assert!(
        Settings::from_json(
            json!({"issuer": ISSUER, "jwks": jwks()})
                .to_string()
                .as_bytes()
        )
        .is_ok()
    );
}

#[test]
fn inline_jwks_is_checked_at_load_time() {
    let bad_key = json!({"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "tiny"}]});
    refused_naming(json!({"issuer": ISSUER, "jwks": bad_key}), "jwks.keys[0]");
    refused_naming(json!({"issuer": ISSUER, "jwks": {"keys": []}}), "jwks.keys");
    refused_naming(
        json!({"issuer": ISSUER, "jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}}),
        "jwks.keys",
    );
    refused_naming(json!({"issuer": ISSUER, "jwks": [1]}), "jwks");
    // Keys usable only with algorithms the config does not allow leave nothing to verify with.
    let ec_only = json!({"keys": [jwks()["keys"][1].clone()]});
    refused_naming(
        json!({"issuer": ISSUER, "jwks": ec_only, "jwt_algorithms": ["RS256"]}),
        "jwks.keys",
    );
}

#[test]
fn endpoints_must_be_http_urls() {
    for bad in [
        "idp.example/jwks",
        "ftp://idp/jwks",
        "https://user:pw@idp/jwks",
        "https://idp/jwks#x",
        "/jwks",
    ] {
        refused_naming(
            with(minimal_jwt(), json!({"jwks_endpoint": bad})),
            "jwks_endpoint",
        );
    }
    let intro = json!({"auth_methods": ["introspection"], "client_id": "gw", "client_secret": "x"});
    refused_naming(
        with(intro.clone(), json!({"introspection_endpoint": "nope"})),
        "introspection_endpoint",
    );
    refused_naming(intro, "introspection_endpoint");
}

#[test]
fn introspection_needs_client_credentials() {
    let base =
        json!({"auth_methods": ["introspection"], "introspection_endpoint": "https://idp/i"});
    refused_naming(
        with(base.clone(), json!({"client_secret": "x"})),
        "client_id",
    );
    refused_naming(
        with(base.clone(), json!({"client_id": "gw"})),
        "client_secret",
    );
    refused_naming(
        with(base, json!({"client_id": "gw", "client_secret": " "})),
        "client_secret",
    );
}

#[test]
fn settings_for_a_method_that_is_off_are_refused_not_ignored() {
    refused_naming(
        with(
            minimal_jwt(),
            json!({"introspection_endpoint": "https://idp/i"}),
        ),
        "introspection_endpoint",
    );
    let intro = json!({"auth_methods": ["introspection"], "introspection_endpoint": "https://idp/i", "client_id": "g", "client_secret": "s"});
    refused_naming(
        with(intro.clone(), json!({"jwks_endpoint": "https://idp/jwks"})),
        "jwks_endpoint",
    );
    refused_naming(with(intro, json!({"jwks": jwks()})), "jwks");
}

#[test]
fn numeric_bounds() {
    let ok = |v: Value| {
        assert!(
            Settings::from_json(with(base_config(), v.clone()).to_string().as_bytes()).is_ok(),
            "{v}"
        )
    };
    ok(json!({"leeway": 600}));
    ok(json!({"leeway": 0}));
    refused_naming(with(base_config(), json!({"leeway": 601})), "leeway");
    ok(json!({"http_timeout": 60000}));
    refused_naming(
        with(base_config(), json!({"http_timeout": 0})),
        "http_timeout",
    );
    refused_naming(
        with(base_config(), json!({"http_timeout": 60001})),
        "http_timeout",
    );
    ok(json!({"cache_introspection": 86400}));
    refused_naming(
        with(base_config(), json!({"cache_introspection": 86401})),
        "cache_introspection",
    );
    refused_naming(
        with(base_config(), json!({"cache_max_entries": 0})),
        "cache_max_entries",
    );
    ok(json!({"cache_max_entries": 1000000}));
    refused_naming(
        with(base_config(), json!({"cache_max_entries": 1000001})),
        "cache_max_entries",
    );
    refused_naming(
        with(base_config(), json!({"jwks_refresh_interval": 9})),
        "jwks_refresh_interval",
    );
    ok(json!({"jwks_refresh_interval": 10}));
    refused_naming(
        with(base_config(), json!({"rediscovery_lifetime": 0})),
        "rediscovery_lifetime",
    );
    ok(json!({"rediscovery_lifetime": 1}));
}

#[test]
fn upstream_header_lists_pair_up_and_name_safe_headers() {
    refused_naming(
        with(base_config(), json!({"upstream_headers_names": ["x-a"]})),
        "upstream_headers_names",
    );
    let pair = |claim: &str, name: &str| {
        with(
            base_config(),
            json!({"upstream_headers_claims": [claim], "upstream_headers_names": [name]}),
        )
    };
    for bad in ["x a", "x:a", "", ":path", "x\r\na"] {
        refused_naming(pair("sub", bad), "upstream_headers_names[0]");
    }
    for reserved in [
        "Authorization",
        "host",
        "content-length",
        "x-forwarded-client-cert",
        "cookie",
    ] {
        refused_naming(pair("sub", reserved), "upstream_headers_names[0]");
    }
    refused_naming(
        with(
            base_config(),
            json!({"upstream_headers_claims": ["sub", "client_id"], "upstream_headers_names": ["X-A", "x-a"]}),
        ),
        "upstream_headers_names[1]",
    );
    refused_naming(pair("", "x-a"), "upstream_headers_claims[0]");
    let s = settings(&pair("sub", "X-User"));
    assert_eq!(
        s.upstream_headers,
        vec![("sub".to_string(), "x-user".to_string())]
    );
}

#[test]
fn scopes_and_realm_must_be_safe_inside_the_challenge() {
    refused_naming(
        with(base_config(), json!({"scopes_required": ["a b"]})),
        "scopes_required[0]",
    );
    refused_naming(
        with(base_config(), json!({"scopes_required": ["a\"b"]})),
        "scopes_required[0]",
    );
    refused_naming(
        with(base_config(), json!({"scopes_required": [""]})),
        "scopes_required[0]",
    );
    refused_naming(with(base_config(), json!({"realm": "a\"b"})), "realm");
    refused_naming(with(base_config(), json!({"realm": ""})), "realm");
    assert!(
        Settings::from_json(
            with(
                base_config(),
                json!({"scopes_required": ["accounts:read", "https://x/y"]})
            )
            .to_string()
            .as_bytes()
        )
        .is_ok()
    );
}

#[test]
fn client_certificate_header_source_rules() {
    let src = |v: Value| with(base_config(), json!({"client_certificate": v}));
    refused_naming(
        src(json!({"source": "header", "format": "xfcc", "trusted_ips": ["10.0.0.0/8"]})),
        "client_certificate.header",
    );
    refused_naming(
        src(json!({"source": "header", "header": "x", "trusted_ips": ["10.0.0.0/8"]})),
        "client_certificate.format",
    );
    refused_naming(
        src(json!({"source": "header", "header": "x", "format": "xfcc"})),
        "client_certificate.trusted_ips",
    );
    refused_naming(
        src(json!({"source": "header", "header": "x", "format": "xfcc", "trusted_ips": []})),
        "client_certificate.trusted_ips",
    );
    refused_naming(
        src(
            json!({"source": "header", "header": "x", "format": "xfcc", "trusted_ips": ["10.0.0.0/33"]}),
        ),
        "client_certificate.trusted_ips[0]",
    );
    refused_naming(
        src(
            json!({"source": "header", "header": "x", "format": "pem", "trusted_ips": ["10.0.0.1"]}),
        ),
        "client_certificate.format",
    );
    refused_naming(
        src(json!({"source": "connection", "header": "x"})),
        "client_certificate",
    );
    // A /0 block, or a typo giving one, makes every client a trusted proxy.
    for zero in ["0.0.0.0/0", "10.0.0.1/0", "::/0"] {
        refused_naming(
            src(
                json!({"source": "header", "header": "x", "format": "xfcc", "trusted_ips": ["10.0.0.9", zero]}),
            ),
            "client_certificate.trusted_ips[1]: a /0 block",
        );
    }
    let s = settings(&src(
        json!({"source": "header", "header": "Client-Cert", "format": "rfc9440", "trusted_ips": ["10.0.0.0/8", "192.168.1.1", "::1"]}),
    ));
    match s.cert_source {
        CertSource::Header { name, trusted, .. } => {
            assert_eq!(name, "client-cert");
            assert_eq!(trusted.len(), 3);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn kongs_empty_object_for_an_empty_array_is_accepted() {
    // Kong JSON-encodes the validated config from Lua, where [] and {} are one table.
    let s = settings(&with(
        base_config(),
        json!({
            "audience_required": {}, "scopes_required": {}, "upstream_headers_claims": {}, "upstream_headers_names": {}, "upstreams": {}
        }),
    ));
    assert!(
        s.audience_required.is_empty()
            && s.scopes_required.is_empty()
            && s.upstream_headers.is_empty()
    );
    refused_naming(
        with(base_config(), json!({"scopes_required": {"a": 1}})),
        "scopes_required",
    );
}

#[test]
fn upstreams_pick_the_dispatch_target() {
    let s = settings(&with(
        base_config(),
        json!({"introspection_endpoint": "https://idp.example:8443/introspect"}),
    ));
    assert_eq!(s.introspection.unwrap().endpoint.upstream, "idp");
    let s = settings(&with(base_config(), json!({"upstreams": {}})));
    assert_eq!(
        s.introspection.unwrap().endpoint.upstream,
        "idp.example:8443"
    );
    refused_naming(
        with(
            base_config(),
            json!({"upstreams": {"idp.example:8443": ""}}),
        ),
        "upstreams",
    );
    // A URL where a cluster name or host:port belongs traps the filter on Kong's engine.
    for bad in [
        "http://127.0.0.1:80",
        "https://idp",
        "10.0.0.5:8443/jwks",
        "idp cluster",
    ] {
        refused_naming(
            with(
                base_config(),
                json!({"upstreams": {"idp.example:8443": bad}}),
            ),
            "upstreams.idp.example:8443: must be an Envoy cluster name or host:port",
        );
    }
    refused_naming(
        with(
            base_config(),
            json!({"upstreams": {"https://idp.example:8443": "idp"}}),
        ),
        "upstreams.https://idp.example:8443: keys are URL authorities",
    );
    // Istio's and Envoy Gateway's cluster names are fine.
    for good in [
        "outbound|443||idp.example.com",
        "certbound_idp",
        "10.0.0.5:8443",
    ] {
        settings(&with(
            base_config(),
            json!({"upstreams": {"idp.example:8443": good}}),
        ));
    }
}

#[test]
fn the_error_message_never_echoes_the_client_secret() {
    let msg = refused(&with(
        base_config(),
        json!({"client_secret": 12345, "leeway": 9999}),
    ));
    assert!(msg.contains("client_secret"));
    assert!(!msg.contains("12345"), "{msg}");
    let msg = refused(&with(
        base_config(),
        json!({"client_secret": "hunter2", "leeway": 9999}),
    ));
    assert!(!msg.contains("hunter2"), "{msg}");
}
