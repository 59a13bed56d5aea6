//! The configuration is the user interface: a rule the schema states refuses a bad config at
//! load time with an error naming the field; what the schema cannot state is a warning that
//! names the field, resolved toward refusing requests; the good config loads clean.
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

/// Asserts the config loads and a start-up warning contains `text`.
fn warned(config: Value, text: &str) -> certbound::config::Settings {
    let s = Settings::from_json(config.to_string().as_bytes())
        .unwrap_or_else(|e| panic!("refused: {e}\n{config}"));
    assert!(
        s.warnings.iter().any(|w| w.contains(text)),
        "no warning containing {text:?} in {:?}",
        s.warnings
    );
    s
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
    assert!(matches!(s.cert_source, CertSource::Connection));
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    assert!(s.bearer.unwrap().typ_strict);
    let k = s.keys.unwrap();
    assert_eq!(k.refresh_interval, 600);
    assert_eq!(k.rediscovery_lifetime, 30);
    assert_eq!(k.algorithms.len(), 9);
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
fn inline_jwks_keys_that_do_not_decode_are_skipped_with_a_warning() {
    // The schema checks the shape; a key that does not decode cannot be refused by Kong, so
    // it is left out (a JWT it would verify is refused) and named in a warning.
    let bad_key = json!({"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "tiny"}, jwks()["keys"][1].clone()]});
    let s = warned(json!({"issuer": ISSUER, "jwks": bad_key}), "jwks.keys[0]");
    assert_eq!(s.keys.unwrap().inline.len(), 1);
    warned(
        json!({"issuer": ISSUER, "jwks": {"keys": []}}),
        "every JWT will be refused",
    );
    warned(
        json!({"issuer": ISSUER, "jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}}),
        "every JWT will be refused",
    );
    // Keys usable only with algorithms the config does not allow leave nothing to verify with.
    let ec_only = json!({"keys": [jwks()["keys"][1].clone()]});
    warned(
        json!({"issuer": ISSUER, "jwks": ec_only, "jwt_algorithms": ["RS256"]}),
        "every JWT will be refused",
    );
    // The shape is the schema's: refused.
    refused_naming(json!({"issuer": ISSUER, "jwks": [1]}), "jwks");
    refused_naming(json!({"issuer": ISSUER, "jwks": {"nokeys": []}}), "jwks");
    refused_naming(
        json!({"issuer": ISSUER, "jwks": {"keys": [1]}}),
        "jwks.keys[0]",
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
fn settings_for_a_method_that_is_off_are_warned_about_not_refused() {
    // Users toggle auth_methods and leave the rest; on Kong a refusal loses the worker.
    warned(
        with(
            minimal_jwt(),
            json!({"introspection_endpoint": "https://idp/i", "client_id": "g"}),
        ),
        "introspection_endpoint is not used",
    );
    let intro = json!({"auth_methods": ["introspection"], "introspection_endpoint": "https://idp/i", "client_id": "g", "client_secret": "s"});
    let s = warned(
        with(intro.clone(), json!({"jwks_endpoint": "https://idp/jwks"})),
        "jwks_endpoint is not used",
    );
    assert!(s.keys.is_none());
    warned(
        with(intro.clone(), json!({"jwks": jwks()})),
        "jwks is not used",
    );
    warned(
        with(intro.clone(), json!({"jwt_typ_strict": false})),
        "jwt_typ_strict is not used",
    );
    // A default value written out (Kong may fill defaults in) is not "unused".
    let s = settings(&with(intro, json!({"jwks_refresh_interval": 600})));
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
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
    ok(json!({"jwks_refresh_interval": 604800}));
    refused_naming(
        with(base_config(), json!({"jwks_refresh_interval": 604801})),
        "jwks_refresh_interval",
    );
    refused_naming(
        with(base_config(), json!({"rediscovery_lifetime": 0})),
        "rediscovery_lifetime",
    );
    ok(json!({"rediscovery_lifetime": 1}));
    refused_naming(
        with(base_config(), json!({"rediscovery_lifetime": 86401})),
        "rediscovery_lifetime",
    );
}

#[test]
fn upstream_header_lists_pair_up_and_name_safe_headers() {
    // Lists of different lengths: the schema cannot say so; an unpaired header is always
    // cleared (a client's copy never survives), an unpaired claim not sent.
    let s = warned(
        with(base_config(), json!({"upstream_headers_names": ["x-a"]})),
        "they pair up by position",
    );
    assert_eq!(
        s.upstream_headers,
        vec![(Some("sub".to_string()), "x-a".to_string())]
    );
    let s = warned(
        with(
            base_config(),
            json!({"upstream_headers_claims": ["sub"], "upstream_headers_names": ["x-a", "x-b"]}),
        ),
        "an unpaired header is always removed",
    );
    assert_eq!(s.upstream_headers[1], (None, "x-b".to_string()));
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
        "DPoP",
    ] {
        refused_naming(pair("sub", reserved), "upstream_headers_names[0]");
    }
    refused_naming(
        with(
            base_config(),
            json!({"upstream_headers_claims": ["sub", "client_id"], "upstream_headers_names": ["x-a", "x-a"]}),
        ),
        "upstream_headers_names",
    );
    // The same name in another case: the schema's uniqueItems cannot see it; used once.
    let s = warned(
        with(
            base_config(),
            json!({"upstream_headers_claims": ["sub", "client_id"], "upstream_headers_names": ["X-A", "x-a"]}),
        ),
        "upstream_headers_names[1] names a header already listed",
    );
    assert_eq!(s.upstream_headers.len(), 1);
    refused_naming(pair("", "x-a"), "upstream_headers_claims[0]");
    let s = settings(&pair("sub", "X-User"));
    assert_eq!(
        s.upstream_headers,
        vec![(Some("sub".to_string()), "x-user".to_string())]
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
    let full = |fields: Value| {
        let mut v = header_source("x", "xfcc", &["10.0.0.0/8"]);
        for (k, f) in fields.as_object().unwrap() {
            if f.is_null() {
                v.as_object_mut().unwrap().remove(k);
            } else {
                v[k] = f.clone();
            }
        }
        src(v)
    };
    for missing in ["header", "format", "trusted_ips", "ca_certificates"] {
        refused_naming(
            full(json!({missing: null})),
            &format!("client_certificate.{missing}"),
        );
    }
    refused_naming(
        full(json!({"trusted_ips": []})),
        "client_certificate.trusted_ips",
    );
    refused_naming(full(json!({"format": "pem"})), "client_certificate.format");
    refused_naming(
        full(json!({"header": "client cert"})),
        "client_certificate.header",
    );
    // An entry that is no address or block trusts no one: skipped with a warning.
    let s = warned(
        full(json!({"trusted_ips": ["10.0.0.0/33", "10.0.0.9"]})),
        "client_certificate.trusted_ips[0] is not an IP address",
    );
    match s.cert_source {
        CertSource::Header { trusted, .. } => assert_eq!(trusted.len(), 1),
        other => panic!("{other:?}"),
    }
    // A /0 block, or a typo giving one, makes every client a trusted proxy.
    for zero in ["0.0.0.0/0", "10.0.0.1/0", "::/0", "10.0.0.0/00"] {
        refused_naming(
            full(json!({"trusted_ips": ["10.0.0.9", zero]})),
            "client_certificate.trusted_ips[1]: a /0 block",
        );
    }
    // A CA block that is not a CA certificate: skipped, and with no anchor left every header
    // certificate is refused (warned).
    warned(
        full(
            json!({"ca_certificates": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}),
        ),
        "every header certificate will be refused",
    );
    // Fields of the header source with the connection source: not used.
    warned(
        src(json!({"source": "connection", "header": "x"})),
        "client_certificate.header is not used",
    );
    let s = settings(&src(header_source(
        "Client-Cert",
        "rfc9440",
        &["10.0.0.0/8", "192.168.1.1", "::1"],
    )));
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    match s.cert_source {
        CertSource::Header {
            name,
            chain_header,
            trusted,
            ..
        } => {
            assert_eq!(name, "client-cert");
            assert_eq!(chain_header.as_deref(), Some("client-cert-chain"));
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
