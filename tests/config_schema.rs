#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! `filter-config/certbound.schema.json` (Kong's `config_schema`, and the config reference of
//! the docs) against the Rust config types: every example config in the repo passes both, the
//! schema's fields, defaults, enums and bounds are the Rust ones, and the reference table in
//! `filter-config/README.md` is rendered from the schema (`UPDATE_CONFIG_REFERENCE=1` rewrites it).

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use certbound::binding::PopMode;
use certbound::binding::certificate::HeaderFormat;
use certbound::config::{
    AuthMethod, CertSourceKind, ClientAuth, DpopUpstream, RawCertSource, RawConfig, Settings,
};
use certbound::tokens::jwks::Alg;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::{Value, json};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

const SCHEMA_PATH: &str = "filter-config/certbound.schema.json";

fn schema_text() -> String {
    fs::read_to_string(root().join(SCHEMA_PATH)).unwrap()
}

fn schema() -> Value {
    serde_json::from_str(&schema_text()).unwrap()
}

fn validator() -> jsonschema::Validator {
    jsonschema::draft4::new(&schema()).unwrap()
}

fn schema_errors(validator: &jsonschema::Validator, config: &Value) -> Vec<String> {
    validator
        .iter_errors(config)
        .map(|e| format!("{}: {e}", e.instance_path))
        .collect()
}

fn rust_load(config: &Value) -> Result<Settings, String> {
    Settings::from_json(config.to_string().as_bytes()).map_err(|e| e.to_string())
}

/// A configuration with both methods on, so that every conditional rule of `Settings::validate`
/// applies; tests change one field of it.
fn full() -> Value {
    json!({
        "proof_of_possession_mtls": "strict",
        "auth_methods": ["bearer", "introspection"],
        "issuer": "https://idp.example:8443",
        "jwks_endpoint": "https://idp.example:8443/jwks",
        "introspection_endpoint": "https://idp.example:8443/token/introspection",
        "client_id": "gateway",
        "client_secret": "s3cret",
        "upstreams": {"idp.example:8443": "idp"},
        "upstream_headers_claims": ["sub"],
        "upstream_headers_names": ["x-authenticated-sub"]
    })
}

/// A CA certificate (public, self-signed, EC P-256, valid for a century) for the header source.
const CA_PEM: &str = include_str!("data/test-ca.pem");

fn header_source(format: &str) -> Value {
    json!({"source": "header", "header": "client-cert", "format": format, "trusted_ips": ["10.0.0.0/8"], "ca_certificates": CA_PEM})
}

fn with(mut config: Value, field: &str, value: Value) -> Value {
    match field.split_once('.') {
        Some((outer, inner)) => config[outer][inner] = value,
        None => config[field] = value,
    }
    config
}

#[track_caller]
fn assert_both_accept(what: &str, validator: &jsonschema::Validator, config: &Value) {
    let errors = schema_errors(validator, config);
    assert!(
        errors.is_empty(),
        "{what}: refused by the schema: {errors:?}\n{config:#}"
    );
    if let Err(e) = rust_load(config) {
        panic!("{what}: refused by Rust: {e}\n{config:#}");
    }
}

#[track_caller]
fn assert_both_refuse(what: &str, validator: &jsonschema::Validator, config: &Value) {
    assert!(
        validator.validate(config).is_err(),
        "{what}: accepted by the schema\n{config:#}"
    );
    assert!(
        rust_load(config).is_err(),
        "{what}: accepted by Rust\n{config:#}"
    );
}

// ---------------------------------------------------------------------------------------------
// (a) The schema is draft 4, and only uses what lua-resty-ljsonschema (Kong) understands.

/// Keywords of a schema object we allow: draft 4 only, no `format`, nothing Kong ignores.
/// Kong validates with lua-resty-ljsonschema, which runs the draft-4 test suite for the
/// combinators, `patternProperties` and `dependencies` too (its spec/suite_spec.lua; patterns
/// through PCRE under OpenResty): docs/hosts.md.
const KEYWORDS: &[&str] = &[
    "not",
    "anyOf",
    "allOf",
    "oneOf",
    "patternProperties",
    "dependencies",
    "$schema",
    "$ref",
    "title",
    "description",
    "type",
    "properties",
    "additionalProperties",
    "required",
    "enum",
    "items",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "uniqueItems",
    "pattern",
    "default",
    "definitions",
];

fn check_keywords(node: &Value, at: &str) {
    let Value::Object(members) = node else {
        panic!("{at}: a schema must be an object")
    };
    for (key, value) in members {
        assert!(
            KEYWORDS.contains(&key.as_str()),
            "{at}: keyword {key:?} is not in the allowed draft-4 set"
        );
        match key.as_str() {
            "properties" | "definitions" | "patternProperties" => {
                for (name, sub) in value.as_object().unwrap() {
                    check_keywords(sub, &format!("{at}/{key}/{name}"));
                }
            }
            "dependencies" => {
                for (name, sub) in value.as_object().unwrap() {
                    if sub.is_object() {
                        check_keywords(sub, &format!("{at}/{key}/{name}"));
                    }
                }
            }
            "not" => check_keywords(value, &format!("{at}/not")),
            "anyOf" | "allOf" | "oneOf" => {
                for (i, sub) in value.as_array().unwrap().iter().enumerate() {
                    check_keywords(sub, &format!("{at}/{key}/{i}"));
                }
            }
            "items" => check_keywords(value, &format!("{at}/items")),
            "additionalProperties" if value.is_object() => {
                check_keywords(value, &format!("{at}/{key}"))
            }
            "$ref" => assert!(
                value.as_str().unwrap().starts_with("#/"),
                "{at}: only local $ref"
            ),
            _ => {}
        }
    }
}

#[test]
fn schema_is_draft4_with_kong_compatible_keywords() {
    let schema = schema();
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-04/schema#");
    if let Err(e) = jsonschema::draft4::meta::validate(&schema) {
        panic!("not a valid draft-4 schema: {e}");
    }
    jsonschema::draft4::new(&schema).unwrap();
    check_keywords(&schema, "#");
    assert_eq!(schema["type"], "object");
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(
        schema["properties"]["client_certificate"]["additionalProperties"],
        false
    );
}

// ---------------------------------------------------------------------------------------------
// (b) Every example configuration in the repo passes the schema and loads in Rust.

/// The e2e configs' placeholders, filled as `envoy/render.py` would.
fn fill_placeholders(text: &str) -> String {
    text.replace("${IDP_URL}", "https://idp.localhost:8443")
        .replace("${IDP_AUTHORITY}", "idp.localhost:8443")
        .replace("${GATEWAY_ORIGIN}", "https://localhost:8443")
}

fn files_in(dir: &Path, extensions: &[&str]) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .is_some_and(|x| extensions.iter().any(|e| x == *e))
        })
        .collect();
    files.sort();
    files
}

fn relative(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

fn is_certbound_config(value: &Value) -> bool {
    value.get("proof_of_possession_mtls").is_some() || value.get("auth_methods").is_some()
}

/// The first complete JSON value at the start of `text` (a `{...}` spanning lines).
fn balanced_json(text: &str) -> Option<&str> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_string => escaped = true,
            '"' => in_string = !in_string,
            '{' | '[' if !in_string => depth += 1,
            '}' | ']' if !in_string => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return text.get(..=i);
                }
            }
            _ => {}
        }
    }
    None
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches([' ', '-']).len()
}

/// certbound configs in Kong declarative files. There is no YAML parser among our dependencies,
/// so a certbound `config:` must be JSON: a flow mapping (`config: {"auth_methods": ...}`,
/// JSON is YAML) or a literal block (`config: |` followed by JSON text). A certbound config in
/// block-mapping YAML fails the test rather than going unchecked.
fn kong_configs() -> Vec<(String, Value)> {
    let mut found = Vec::new();
    for file in files_in(&root().join("kong"), &["yml", "yaml"]) {
        let text = fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (n, line) in lines.iter().enumerate() {
            let Some(rest) = line.trim_start_matches([' ', '-']).strip_prefix("config:") else {
                continue;
            };
            let rest = rest.trim();
            let at = format!("{}:{}", relative(&file), n + 1);
            let block: Vec<&str> = lines
                .iter()
                .skip(n + 1)
                .take_while(|l| l.trim().is_empty() || indent_of(l) > indent_of(line))
                .copied()
                .collect();
            let json_text = if rest.starts_with('{') {
                let from_here = std::iter::once(rest)
                    .chain(lines.iter().skip(n + 1).copied())
                    .collect::<Vec<_>>()
                    .join("\n");
                match balanced_json(&from_here) {
                    Some(t) => t.to_string(),
                    None => panic!("{at}: unbalanced flow mapping after config:"),
                }
            } else if rest.starts_with('|') {
                block.join("\n")
            } else {
                let mentions =
                    |l: &&str| l.contains("proof_of_possession_mtls") || l.contains("auth_methods");
                assert!(
                    !(block.iter().any(mentions) || mentions(&rest)),
                    "{at}: write the certbound config as JSON (`config: {{...}}` or `config: |` + JSON) so \
                     tests/config_schema.rs can check it; or add a YAML dev-dependency and parse the file"
                );
                continue;
            };
            let value: Value = match serde_json::from_str(&fill_placeholders(&json_text)) {
                Ok(v) => v,
                Err(e) => panic!(
                    "{at}: config is not JSON ({e}); certbound configs in kong/ must be JSON"
                ),
            };
            if is_certbound_config(&value) {
                found.push((at, value));
            }
        }
    }
    found
}

/// JSON code blocks of the docs that are whole certbound configs. A fence whose info string
/// says `no-check` is skipped (for a deliberately broken config).
fn markdown_configs() -> Vec<(String, Value)> {
    let mut docs = vec![
        root().join("README.md"),
        root().join("filter-config/README.md"),
    ];
    docs.extend(files_in(&root().join("docs"), &["md"]));
    docs.extend(files_in(&root().join("kong"), &["md"]));
    let mut found = Vec::new();
    for doc in docs.into_iter().filter(|d| d.is_file()) {
        let text = fs::read_to_string(&doc).unwrap();
        let mut block: Option<(usize, bool, Vec<&str>)> = None;
        for (n, line) in text.lines().enumerate() {
            let fence = line.trim_start().strip_prefix("```");
            match (fence, block.take()) {
                (Some(info), None) => block = Some((n + 1, info.contains("no-check"), Vec::new())),
                (Some(_), Some((start, skip, body))) => {
                    let body = body.join("\n");
                    let looks_like_config = body.trim_start().starts_with('{')
                        && (body.contains("\"proof_of_possession_mtls\"")
                            || body.contains("\"auth_methods\""));
                    if looks_like_config && !skip {
                        let at = format!("{}:{start}", relative(&doc));
                        match serde_json::from_str(&fill_placeholders(&body)) {
                            Ok(value) => found.push((at, value)),
                            Err(e) => panic!("{at}: config block is not JSON: {e}"),
                        }
                    }
                }
                (None, Some(mut open)) => {
                    open.2.push(line);
                    block = Some(open);
                }
                (None, None) => {}
            }
        }
    }
    found
}

fn json_files(dir: &str) -> Vec<(String, Value)> {
    files_in(&root().join(dir), &["json"])
        .into_iter()
        .map(|file| {
            let text = fill_placeholders(&fs::read_to_string(&file).unwrap());
            match serde_json::from_str(&text) {
                Ok(value) => (relative(&file), value),
                Err(e) => panic!("{}: not JSON: {e}", relative(&file)),
            }
        })
        .collect()
}

#[test]
fn every_example_config_passes_schema_and_rust() {
    let examples = json_files("filter-config/examples");
    let names: BTreeSet<String> = examples.iter().map(|(n, _)| n.clone()).collect();
    for expected in [
        "jwt-only.json",
        "introspection-only.json",
        "jwt-and-introspection.json",
        "header-source.json",
        "inline-jwks.json",
        "optional-binding.json",
    ] {
        assert!(
            names.contains(&format!("filter-config/examples/{expected}")),
            "missing example {expected}"
        );
    }
    let e2e = json_files("tests/e2e/configs");
    assert!(!e2e.is_empty(), "tests/e2e/configs/*.json not found");

    let validator = validator();
    let all: Vec<(String, Value)> = examples
        .into_iter()
        .chain(e2e)
        .chain(kong_configs())
        .chain(markdown_configs())
        .collect();
    let mut failures = Vec::new();
    for (name, config) in &all {
        let errors = schema_errors(&validator, config);
        if !errors.is_empty() {
            failures.push(format!("{name}: schema: {errors:?}"));
        }
        if let Err(e) = rust_load(config) {
            failures.push(format!("{name}: Rust: {e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "example configs refused:\n{}",
        failures.join("\n")
    );
    eprintln!(
        "checked {} example configs: {:?}",
        all.len(),
        all.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
}

#[test]
fn the_example_finders_read_kong_and_markdown_forms() {
    assert_eq!(
        balanced_json(r#"{"a": "}", "b": [1, {"c": 2}]} trailing"#),
        Some(r#"{"a": "}", "b": [1, {"c": 2}]}"#)
    );
    assert_eq!(balanced_json(r#"{"a": "\"}"#), None);
    assert_eq!(indent_of("    - config: {}"), 6);
}

// ---------------------------------------------------------------------------------------------
// (c) The schema and the Rust types agree.

fn strip_nulls(value: &Value) -> Value {
    match value {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// (schema object, Rust default serialised, JSON path prefix) for the top level and `client_certificate`.
fn object_pairs() -> Vec<(Value, Value, &'static str)> {
    let schema = schema();
    vec![
        (
            schema.clone(),
            serde_json::to_value(RawConfig::default()).unwrap(),
            "",
        ),
        (
            schema["properties"]["client_certificate"].clone(),
            serde_json::to_value(RawCertSource::default()).unwrap(),
            "client_certificate.",
        ),
    ]
}

#[test]
fn schema_properties_are_the_rust_fields() {
    for (schema, rust, prefix) in object_pairs() {
        let in_schema: BTreeSet<&String> =
            schema["properties"].as_object().unwrap().keys().collect();
        let in_rust: BTreeSet<&String> = rust.as_object().unwrap().keys().collect();
        assert_eq!(in_schema, in_rust, "properties of {prefix:?}");
    }
}

#[test]
fn schema_defaults_are_the_rust_defaults() {
    for (schema, rust, prefix) in object_pairs() {
        for (name, property) in schema["properties"].as_object().unwrap() {
            let field = format!("{prefix}{name}");
            let rust_default = &rust[name];
            let description = property["description"]
                .as_str()
                .unwrap_or_else(|| panic!("{field}: no description"));
            if rust_default.is_null() {
                assert!(
                    property.get("default").is_none(),
                    "{field}: an Option field has no default"
                );
                assert!(
                    description.contains("No default"),
                    "{field}: description should say \"No default\""
                );
            } else {
                assert_eq!(
                    property.get("default"),
                    Some(&strip_nulls(rust_default)),
                    "{field}: default"
                );
                assert!(
                    description.contains("Default"),
                    "{field}: description should state the default"
                );
                let own = jsonschema::draft4::new(property).unwrap();
                assert!(
                    own.is_valid(&property["default"]),
                    "{field}: the default breaks its own schema"
                );
            }
        }
    }
}

// Each list is every variant: a variant added in Rust stops these matches compiling.
fn pop_modes() -> Vec<Value> {
    [PopMode::Strict, PopMode::Optional, PopMode::Off]
        .iter()
        .map(|v| match v {
            PopMode::Strict | PopMode::Optional | PopMode::Off => serde_json::to_value(v).unwrap(),
        })
        .collect()
}

fn dpop_upstreams() -> Vec<Value> {
    [DpopUpstream::Bearer, DpopUpstream::Dpop]
        .iter()
        .map(|v| match v {
            DpopUpstream::Bearer | DpopUpstream::Dpop => serde_json::to_value(v).unwrap(),
        })
        .collect()
}

/// `full()` with DPoP enforced, so its settings are in use.
fn dpop_on() -> Value {
    with(full(), "proof_of_possession_dpop", json!("optional"))
}

fn auth_methods() -> Vec<Value> {
    [AuthMethod::Bearer, AuthMethod::Introspection]
        .iter()
        .map(|v| match v {
            AuthMethod::Bearer | AuthMethod::Introspection => serde_json::to_value(v).unwrap(),
        })
        .collect()
}

fn client_auths() -> Vec<Value> {
    [ClientAuth::ClientSecretBasic, ClientAuth::ClientSecretPost]
        .iter()
        .map(|v| match v {
            ClientAuth::ClientSecretBasic | ClientAuth::ClientSecretPost => {
                serde_json::to_value(v).unwrap()
            }
        })
        .collect()
}

fn cert_sources() -> Vec<Value> {
    [CertSourceKind::Connection, CertSourceKind::Header]
        .iter()
        .map(|v| match v {
            CertSourceKind::Connection | CertSourceKind::Header => serde_json::to_value(v).unwrap(),
        })
        .collect()
}

fn header_formats() -> Vec<Value> {
    [
        HeaderFormat::Rfc9440,
        HeaderFormat::Xfcc,
        HeaderFormat::UrlEncodedPem,
        HeaderFormat::Base64Der,
    ]
    .iter()
    .map(|v| match v {
        HeaderFormat::Rfc9440
        | HeaderFormat::Xfcc
        | HeaderFormat::UrlEncodedPem
        | HeaderFormat::Base64Der => serde_json::to_value(v).unwrap(),
    })
    .collect()
}

fn algorithms() -> Vec<Value> {
    Alg::ALL
        .iter()
        .map(|v| match v {
            Alg::RS256
            | Alg::RS384
            | Alg::RS512
            | Alg::PS256
            | Alg::PS384
            | Alg::PS512
            | Alg::ES256
            | Alg::ES384
            | Alg::EdDSA => serde_json::to_value(v).unwrap(),
        })
        .collect()
}

/// A valid configuration using `value` for one enum, or (for a value Rust does not know) the
/// same configuration with that value in place.
fn config_with_auth_method(v: &Value) -> Value {
    let mut c = full();
    c["auth_methods"] = json!([v]);
    if v == "bearer" {
        for k in ["introspection_endpoint", "client_id", "client_secret"] {
            c.as_object_mut().unwrap().remove(k);
        }
    } else {
        c.as_object_mut().unwrap().remove("jwks_endpoint");
    }
    c
}

fn config_with_source(v: &Value) -> Value {
    if v == "connection" {
        with(full(), "client_certificate", json!({"source": v}))
    } else {
        with(
            full(),
            "client_certificate",
            with(header_source("rfc9440"), "source", v.clone()),
        )
    }
}

fn find_enums(node: &Value, at: String, out: &mut BTreeSet<String>) {
    if let Value::Object(m) = node {
        if m.contains_key("enum") {
            out.insert(at.clone());
        }
        for (k, v) in m {
            if matches!(k.as_str(), "default" | "enum") {
                continue;
            }
            let child = if k == "properties" {
                at.clone()
            } else {
                format!("{at}/{k}")
            };
            find_enums(v, child, out);
        }
    }
}

#[test]
fn schema_enums_are_exactly_the_rust_variants() {
    type Make = fn(&Value) -> Value;
    let cases: Vec<(&str, Vec<Value>, Make)> = vec![
        ("/proof_of_possession_mtls", pop_modes(), |v| {
            with(full(), "proof_of_possession_mtls", v.clone())
        }),
        ("/proof_of_possession_dpop", pop_modes(), |v| {
            with(full(), "proof_of_possession_dpop", v.clone())
        }),
        ("/dpop_algorithms/items", algorithms(), |v| {
            with(dpop_on(), "dpop_algorithms", json!([v]))
        }),
        ("/dpop_upstream", dpop_upstreams(), |v| {
            with(dpop_on(), "dpop_upstream", v.clone())
        }),
        (
            "/auth_methods/items",
            auth_methods(),
            config_with_auth_method,
        ),
        ("/jwt_algorithms/items", algorithms(), |v| {
            with(full(), "jwt_algorithms", json!([v]))
        }),
        ("/client_auth", client_auths(), |v| {
            with(full(), "client_auth", v.clone())
        }),
        (
            "/client_certificate/source",
            cert_sources(),
            config_with_source,
        ),
        ("/client_certificate/format", header_formats(), |v| {
            with(
                full(),
                "client_certificate",
                header_source(v.as_str().unwrap()),
            )
        }),
    ];
    let schema = schema();
    let mut in_schema = BTreeSet::new();
    find_enums(&schema, String::new(), &mut in_schema);
    let covered: BTreeSet<String> = cases.iter().map(|(p, _, _)| (*p).to_string()).collect();
    assert_eq!(
        in_schema, covered,
        "every enum of the schema needs a case here"
    );

    let validator = validator();
    for (pointer, rust_values, make) in cases {
        let property = pointer.replace("/client_certificate/", "/client_certificate/properties/");
        let enum_values = schema["properties"].pointer(&property).unwrap()["enum"]
            .as_array()
            .unwrap()
            .clone();
        assert_eq!(
            enum_values, rust_values,
            "{pointer}: schema enum vs Rust variants (same order)"
        );
        for v in &enum_values {
            assert_both_accept(&format!("{pointer} = {v}"), &validator, &make(v));
        }
        // Serde is case-sensitive, and so is the schema.
        let upper = json!(enum_values[0].as_str().unwrap().to_uppercase());
        for bad in [json!("nope"), upper, json!("")] {
            if !enum_values.contains(&bad) {
                assert_both_refuse(&format!("{pointer} = {bad}"), &validator, &make(&bad));
            }
        }
    }
}

#[test]
fn numeric_bounds_agree() {
    let schema = schema();
    let validator = validator();
    let mut checked = 0;
    for (name, property) in schema["properties"].as_object().unwrap() {
        if property["type"] != "integer" {
            continue;
        }
        let min = property["minimum"]
            .as_u64()
            .unwrap_or_else(|| panic!("{name}: integers are unsigned in Rust: set minimum"));
        assert_both_accept(
            &format!("{name} = {min}"),
            &validator,
            &with(full(), name, json!(min)),
        );
        let below = min.checked_sub(1).map_or(json!(-1), |b| json!(b));
        assert_both_refuse(
            &format!("{name} = {below}"),
            &validator,
            &with(full(), name, below.clone()),
        );
        match property["maximum"].as_u64() {
            Some(max) => {
                assert_both_accept(
                    &format!("{name} = {max}"),
                    &validator,
                    &with(full(), name, json!(max)),
                );
                assert_both_refuse(
                    &format!("{name} = {}", max + 1),
                    &validator,
                    &with(full(), name, json!(max + 1)),
                );
            }
            // No maximum in the schema: Rust must have none below the type's range either.
            None => assert_both_accept(
                &format!("{name} large"),
                &validator,
                &with(full(), name, json!(u32::MAX)),
            ),
        }
        assert_both_refuse(
            &format!("{name} = 1.5"),
            &validator,
            &with(full(), name, json!(1.5)),
        );
        assert_both_refuse(
            &format!("{name} = \"5\""),
            &validator,
            &with(full(), name, json!("5")),
        );
        checked += 1;
    }
    assert_eq!(
        checked, 8,
        "dpop_proof_lifetime, dpop_replay_cache_entries, leeway, jwks_refresh_interval, \
         rediscovery_lifetime, cache_introspection, cache_max_entries, http_timeout"
    );
}

#[test]
fn list_and_string_rules_agree() {
    let validator = validator();
    let ec_key = json!({"kty": "EC", "crv": "P-256", "x": "N4yMU6qWAeWZ-7eoDW4Pb2up8fO6TQR7jCTaW0q2BMM", "y": "fXHIKqhFV_O4xJ7kBrAo76fRMlncEO4EYI8sIJoWGxg"});
    let keys = |n: usize| json!({"keys": vec![ec_key.clone(); n]});
    let two_headers = |names: Value| {
        with(
            with(
                full(),
                "upstream_headers_claims",
                json!(["sub", "client_id"]),
            ),
            "upstream_headers_names",
            names,
        )
    };
    let accepted = [
        (
            "auth_methods both",
            with(full(), "auth_methods", json!(["introspection", "bearer"])),
        ),
        ("jwks 64 keys", with(full(), "jwks", keys(64))),
        (
            "scope token",
            with(
                full(),
                "scopes_required",
                json!(["accounts:read", "a!#[]~"]),
            ),
        ),
        ("realm with space", with(full(), "realm", json!("my api"))),
        (
            "header name chars",
            two_headers(json!(["X-Sub", "x_client!#$%&'*+.^`|~"])),
        ),
        (
            "endpoint with query",
            with(
                full(),
                "jwks_endpoint",
                json!("http://idp.example:8080/jwks?x=1"),
            ),
        ),
        (
            "cert header XFCC",
            with(
                full(),
                "client_certificate",
                with(
                    header_source("xfcc"),
                    "header",
                    json!("X-Forwarded-Client-Cert"),
                ),
            ),
        ),
        (
            "trusted IPv6",
            with(
                full(),
                "client_certificate",
                with(
                    header_source("xfcc"),
                    "trusted_ips",
                    json!(["fd00::/8", "::1"]),
                ),
            ),
        ),
        ("upstreams empty", with(full(), "upstreams", json!({}))),
    ];
    for (what, config) in &accepted {
        assert_both_accept(what, &validator, config);
    }
    let refused = [
        (
            "auth_methods empty",
            with(full(), "auth_methods", json!([])),
        ),
        (
            "auth_methods twice",
            with(
                full(),
                "auth_methods",
                json!(["bearer", "introspection", "bearer"]),
            ),
        ),
        (
            "auth_methods a string",
            with(full(), "auth_methods", json!("bearer")),
        ),
        (
            "jwt_algorithms empty",
            with(full(), "jwt_algorithms", json!([])),
        ),
        (
            "jwt_algorithms none",
            with(full(), "jwt_algorithms", json!(["none"])),
        ),
        (
            "jwt_algorithms HS256",
            with(full(), "jwt_algorithms", json!(["HS256"])),
        ),
        ("jwks 65 keys", with(full(), "jwks", keys(65))),
        ("jwks without keys", with(full(), "jwks", json!({}))),
        (
            "jwks a key that is not an object",
            with(full(), "jwks", json!({"keys": ["k"]})),
        ),
        (
            "jwks a string",
            with(full(), "jwks", json!("{\"keys\": []}")),
        ),
        ("issuer blank", with(full(), "issuer", json!("  "))),
        ("issuer a number", with(full(), "issuer", json!(1))),
        ("client_id empty", with(full(), "client_id", json!(""))),
        (
            "client_secret blank",
            with(full(), "client_secret", json!(" ")),
        ),
        (
            "audience empty string",
            with(full(), "audience_required", json!([""])),
        ),
        (
            "scope with space",
            with(full(), "scopes_required", json!(["a b"])),
        ),
        (
            "scope with quote",
            with(full(), "scopes_required", json!(["a\"b"])),
        ),
        ("scope empty", with(full(), "scopes_required", json!([""]))),
        ("realm empty", with(full(), "realm", json!(""))),
        ("realm with quote", with(full(), "realm", json!("a\"b"))),
        ("realm with backslash", with(full(), "realm", json!("a\\b"))),
        ("realm non-ASCII", with(full(), "realm", json!("apí"))),
        (
            "endpoint not http",
            with(full(), "jwks_endpoint", json!("ftp://idp.example/jwks")),
        ),
        (
            "endpoint no scheme",
            with(
                full(),
                "introspection_endpoint",
                json!("idp.example/introspect"),
            ),
        ),
        (
            "endpoint with credentials",
            with(
                full(),
                "introspection_endpoint",
                json!("https://u:p@idp.example/introspect"),
            ),
        ),
        (
            "endpoint with fragment",
            with(full(), "jwks_endpoint", json!("https://idp.example/jwks#k")),
        ),
        (
            "upstream blank",
            with(full(), "upstreams", json!({"idp.example:8443": " "})),
        ),
        (
            "upstream not a string",
            with(full(), "upstreams", json!({"idp.example:8443": 1})),
        ),
        (
            "upstream a URL",
            with(
                full(),
                "upstreams",
                json!({"idp.example:8443": "http://127.0.0.1:80"}),
            ),
        ),
        (
            "upstream with a path",
            with(
                full(),
                "upstreams",
                json!({"idp.example:8443": "10.0.0.5:80/x"}),
            ),
        ),
        (
            "upstream key a URL",
            with(
                full(),
                "upstreams",
                json!({"https://idp.example:8443": "idp"}),
            ),
        ),
        (
            "trusted ips /0",
            with(
                full(),
                "client_certificate",
                with(header_source("xfcc"), "trusted_ips", json!(["0.0.0.0/0"])),
            ),
        ),
        (
            "trusted ips typo /0",
            with(
                full(),
                "client_certificate",
                with(header_source("xfcc"), "trusted_ips", json!(["10.0.0.1/0"])),
            ),
        ),
        (
            "trusted ips ::/0",
            with(
                full(),
                "client_certificate",
                with(header_source("xfcc"), "trusted_ips", json!(["::/0"])),
            ),
        ),
        (
            "header name with space",
            two_headers(json!(["x-sub", "x client"])),
        ),
        ("header name twice", two_headers(json!(["x-sub", "x-sub"]))),
        ("header name pseudo", two_headers(json!(["x-sub", ":path"]))),
        (
            "header claim empty",
            with(full(), "upstream_headers_claims", json!([""])),
        ),
        (
            "cert header invalid",
            with(
                full(),
                "client_certificate",
                with(header_source("xfcc"), "header", json!("client cert")),
            ),
        ),
        (
            "trusted ip empty",
            with(
                full(),
                "client_certificate",
                with(header_source("xfcc"), "trusted_ips", json!([""])),
            ),
        ),
        (
            "shared_cache a string",
            with(full(), "shared_cache", json!("true")),
        ),
        (
            "jwt_typ_strict a number",
            with(full(), "jwt_typ_strict", json!(1)),
        ),
        (
            "client_certificate a string",
            with(full(), "client_certificate", json!("connection")),
        ),
        ("not an object", json!(["bearer"])),
    ];
    for (what, config) in &refused {
        assert_both_refuse(what, &validator, config);
    }
}

#[test]
fn unknown_fields_are_refused_by_both() {
    let validator = validator();
    assert_both_refuse("top level", &validator, &with(full(), "leewy", json!(5)));
    assert_both_refuse(
        "client_certificate",
        &validator,
        &with(
            full(),
            "client_certificate",
            json!({"source": "connection", "hedaer": "x"}),
        ),
    );
    assert_both_refuse("Kong's own wrapper", &validator, &json!({"config": full()}));
}

/// Kong's Lua cannot tell `[]` from `{}`: both Kong's validator (lua-resty-ljsonschema with
/// array_mt = false) and Rust take `{}` for an empty array. The Rust half is checked here.
#[test]
fn rust_takes_an_empty_object_for_any_array() {
    let schema = schema();
    for (name, property) in schema["properties"].as_object().unwrap() {
        if property["type"] == "array" && property.get("minItems").is_none() {
            let mut config = with(full(), name, json!({}));
            if name.starts_with("upstream_headers") {
                config = with(
                    with(config, "upstream_headers_claims", json!({})),
                    "upstream_headers_names",
                    json!({}),
                );
            }
            if let Err(e) = rust_load(&config) {
                panic!("{name}: {{}} refused: {e}");
            }
        }
    }
    rust_load(&with(
        full(),
        "client_certificate",
        json!({"source": "connection", "trusted_ips": {}}),
    ))
    .unwrap();
}

// ---------------------------------------------------------------------------------------------
// (d) A refused configuration names the field at fault.

#[test]
fn rust_errors_name_the_field() {
    let cases = [
        (json!({"leeway": "x"}), "leeway"),
        (json!({"leewy": 5}), "leewy"),
        (
            json!({"client_certificate": {"source": "header", "hedaer": "x"}}),
            "hedaer",
        ),
        (
            json!({"client_certificate": {"source": "file"}}),
            "client_certificate.source",
        ),
        (json!({"auth_methods": ["bearr"]}), "auth_methods"),
        (with(full(), "leeway", json!(601)), "leeway"),
        (with(full(), "http_timeout", json!(0)), "http_timeout"),
        (
            with(full(), "upstream_headers_names", json!(["authorization"])),
            "upstream_headers_names[0]",
        ),
        (with(full(), "issuer", Value::Null), "issuer"),
        (with(full(), "jwks", json!({"keys": [5]})), "jwks.keys[0]"),
        (
            with(
                full(),
                "client_certificate",
                with(
                    header_source("rfc9440"),
                    "trusted_ips",
                    json!(["0.0.0.0/0"]),
                ),
            ),
            "client_certificate.trusted_ips[0]",
        ),
        (
            with(full(), "client_certificate", json!({"source": "header"})),
            "client_certificate.header",
        ),
        (
            with(full(), "introspection_endpoint", json!("https://u@idp/x")),
            "introspection_endpoint",
        ),
    ];
    for (config, field) in cases {
        match Settings::from_json(config.to_string().as_bytes()) {
            Ok(_) => panic!("accepted: {config}"),
            Err(e) => assert!(
                e.to_string().contains(field),
                "error for {config} does not name {field}: {e}"
            ),
        }
    }
    let empty = Settings::from_json(b" ").unwrap_err();
    assert!(empty.to_string().contains("empty"), "{empty}");
}

// ---------------------------------------------------------------------------------------------
// The config reference in filter-config/README.md, rendered from the schema.

const START: &str = "<!-- config-reference:start -->";
const END: &str = "<!-- config-reference:end -->";

/// An object's members in document order (serde_json's `Map` sorts them), recursing into
/// `properties` only.
#[derive(Default)]
struct Ordered(Vec<(String, Names)>);

#[derive(Default, serde::Deserialize)]
struct Names {
    #[serde(default)]
    properties: Ordered,
}

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry()? {
                    members.push(member);
                }
                Ok(Ordered(members))
            }
        }
        d.deserialize_map(V)
    }
}

fn type_of(p: &Value) -> String {
    let code = |v: &Value| format!("`{}`", v.as_str().unwrap_or_default());
    let one_of = |s: &Value| {
        s["enum"]
            .as_array()
            .map(|e| e.iter().map(code).collect::<Vec<_>>().join(", "))
    };
    let base = p["type"].as_str().unwrap_or("any");
    let mut text = match base {
        "array" => match one_of(&p["items"]) {
            Some(values) => format!("array of {values}"),
            None => format!("array of {}", p["items"]["type"].as_str().unwrap_or("any")),
        },
        "object" if p["additionalProperties"].get("type").is_some() => {
            format!(
                "object of {}",
                p["additionalProperties"]["type"].as_str().unwrap_or("any")
            )
        }
        _ => one_of(p).unwrap_or_else(|| base.to_string()),
    };
    match (p["minimum"].as_u64(), p["maximum"].as_u64()) {
        (Some(lo), Some(hi)) => text.push_str(&format!(", {lo}–{hi}")),
        (Some(lo), None) => text.push_str(&format!(", ≥ {lo}")),
        _ => {}
    }
    text
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn render_reference() -> String {
    let schema = schema();
    let names: Names = serde_json::from_str(&schema_text()).unwrap();
    let mut rows = vec![
        "| Field | Type | Default | Description |".to_string(),
        "|---|---|---|---|".to_string(),
    ];
    let mut row = |field: &str, p: &Value| {
        let default = p
            .get("default")
            .map_or("—".to_string(), |d| format!("`{d}`"));
        let description = p["description"].as_str().unwrap_or_default();
        rows.push(format!(
            "| `{field}` | {} | {} | {} |",
            cell(&type_of(p)),
            cell(&default),
            cell(description)
        ));
    };
    for (name, nested) in &names.properties.0 {
        let property = &schema["properties"][name];
        row(name, property);
        for (inner, _) in &nested.properties.0 {
            row(&format!("{name}.{inner}"), &property["properties"][inner]);
        }
    }
    rows.join("\n") + "\n"
}

#[test]
fn readme_config_references_are_rendered_from_the_schema() {
    let expected = format!("\n{}", render_reference());
    for file in ["filter-config/README.md", "README.md"] {
        let path = root().join(file);
        let readme = fs::read_to_string(&path).unwrap();
        let (Some(start), Some(end)) = (readme.find(START), readme.find(END)) else {
            panic!("{file} lacks the {START} / {END} markers");
        };
        let inner_start = start + START.len();
        assert!(inner_start <= end, "markers out of order in {file}");
        if std::env::var("UPDATE_CONFIG_REFERENCE").is_ok_and(|v| v == "1") {
            let updated = format!("{}{expected}{}", &readme[..inner_start], &readme[end..]);
            fs::write(&path, updated).unwrap();
            continue;
        }
        assert!(
            readme[inner_start..end] == expected,
            "the config reference in {file} is out of date with {SCHEMA_PATH}; \
             run UPDATE_CONFIG_REFERENCE=1 cargo test --test config_schema"
        );
    }
}

#[test]
fn the_reference_has_a_row_per_field() {
    let table = render_reference();
    let rust = serde_json::to_value(RawConfig::default()).unwrap();
    let cert = serde_json::to_value(RawCertSource::default()).unwrap();
    let fields = rust.as_object().unwrap().keys().cloned().chain(
        cert.as_object()
            .unwrap()
            .keys()
            .map(|k| format!("client_certificate.{k}")),
    );
    for field in fields {
        assert!(
            table.contains(&format!("\n| `{field}` |")),
            "no row for {field}"
        );
    }
    assert!(table.contains(
        "| `client_certificate.format` | `rfc9440`, `xfcc`, `url_encoded_pem`, `base64_der` | — |"
    ));
    assert!(table.contains("| `leeway` | integer, 0–600 | `60` |"));
    assert!(
        table.contains("| `auth_methods` | array of `bearer`, `introspection` | `[\"bearer\"]` |")
    );
}

// ---------------------------------------------------------------------------------------------
// The doc comments of the config fields are the reference; the schema repeats them.

/// `field -> doc text` of the `pub` fields of `struct name` in src/config/raw.rs, the `///`
/// lines above each field joined with spaces.
fn field_docs(name: &str) -> Vec<(String, String)> {
    let source = fs::read_to_string(root().join("src/config/raw.rs")).unwrap();
    let start = source
        .find(&format!("pub struct {name} {{"))
        .unwrap_or_else(|| panic!("no struct {name} in src/config/raw.rs"));
    let body = &source[start..];
    let body = &body[..body.find("\n}").unwrap()];
    let mut docs = Vec::new();
    let mut pending: Vec<&str> = Vec::new();
    for line in body.lines().skip(1) {
        let line = line.trim();
        if let Some(text) = line.strip_prefix("///") {
            pending.push(text.trim());
        } else if let Some(field) = line.strip_prefix("pub ") {
            let field = field.split(':').next().unwrap().to_string();
            docs.push((field, pending.join(" ")));
            pending.clear();
        }
    }
    docs
}

#[test]
fn schema_descriptions_are_the_config_fields_doc_comments() {
    let schema = schema();
    let cert = &schema["properties"]["client_certificate"]["properties"];
    let structs = [
        ("RawConfig", &schema["properties"]),
        ("RawCertSource", cert),
    ];
    for (name, properties) in structs {
        let docs = field_docs(name);
        assert_eq!(
            docs.len(),
            properties.as_object().unwrap().len(),
            "{name}: fields vs schema properties"
        );
        for (field, doc) in docs {
            assert!(!doc.is_empty(), "{name}.{field} has no doc comment");
            let description = properties[&field]["description"]
                .as_str()
                .unwrap_or_else(|| panic!("{field}: not in the schema"));
            assert_eq!(
                doc.split_whitespace().collect::<Vec<_>>(),
                description.split_whitespace().collect::<Vec<_>>(),
                "{name}.{field}: doc comment and schema description differ"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// (e) One config truth: over many generated configurations, the draft-4 schema (what Kong
// checks at its Admin API) and the filter's parser agree on every one.

fn valid_jwk() -> Value {
    json!({"kty": "EC", "crv": "P-256", "kid": "k1",
        "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
        "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"})
}

/// Values to try in each field: valid ones, invalid ones, `null` to leave the field out.
fn field_values() -> Vec<(&'static str, Vec<Value>)> {
    let urls = [
        "https://idp",
        "https://idp.example:8443/x",
        "HTTPS://IDP/x",
        "http://10.0.0.1:80/jwks",
        "https://idp?x=1",
        "https://idp/a%20b",
        "https://[::1]:8443/x",
        "https://idp:65535",
        "https://idp_name-1~x/x",
        "https://idp:0/x",
        "https://idp:65536",
        "https://idp:08080",
        "https://[::1/x",
        "https://[zz]/x",
        "https://idp/x y",
        "https://idp/x#f",
        "https://u@idp/x",
        "https://idp:/x",
        "https://:443/x",
        "https:///x",
        "ftp://idp",
        "https://idp/ä",
        "https://idp/x\"y",
        "https://idp/x{y}",
        "idp/x",
        "",
        "https://idp/x\\y",
    ];
    let urls: Vec<Value> = urls
        .iter()
        .map(|u| json!(u))
        .chain([Value::Null, json!(5)])
        .collect();
    vec![
        (
            "proof_of_possession_mtls",
            vec![json!("strict"), json!("off"), json!("Strict"), json!(1)],
        ),
        (
            "auth_methods",
            vec![
                json!([]),
                json!(["bearer"]),
                json!(["introspection"]),
                json!(["bearer", "introspection"]),
                json!(["bearer", "bearer"]),
                json!(["dpop"]),
                json!("bearer"),
                Value::Null,
            ],
        ),
        (
            "issuer",
            vec![json!(""), json!(" "), json!("x"), json!(5), Value::Null],
        ),
        (
            "audience_required",
            vec![json!([]), json!([""]), json!(["a", "b"]), json!("a")],
        ),
        (
            "scopes_required",
            vec![
                json!(["a:b"]),
                json!(["a b"]),
                json!(["a\"b"]),
                json!([""]),
                json!(["é"]),
            ],
        ),
        (
            "leeway",
            vec![
                json!(-1),
                json!(0),
                json!(600),
                json!(601),
                json!(1.5),
                json!("5"),
            ],
        ),
        ("jwt_typ_strict", vec![json!(false), json!("true")]),
        (
            "jwt_algorithms",
            vec![
                json!([]),
                json!(["ES256"]),
                json!(["none"]),
                json!(["HS256"]),
                json!(["es256"]),
            ],
        ),
        (
            "jwks",
            vec![
                // Not `{"keys": {}}`: Kong's re-encoding of `[]`, which the filter also takes
                // (configuration.rs), while users' JSON goes through the schema as `[]`.
                json!({"keys": []}),
                json!([1]),
                json!({}),
                json!({"keys": [1]}),
                json!({"keys": [valid_jwk()]}),
                json!({"keys": [{"kty": "EC", "x": "AA"}]}),
                json!({"keys": vec![valid_jwk(); 65]}),
                Value::Null,
            ],
        ),
        ("jwks_endpoint", urls.clone()),
        (
            "jwks_refresh_interval",
            vec![json!(9), json!(10), json!(604800), json!(604801)],
        ),
        (
            "rediscovery_lifetime",
            vec![json!(0), json!(1), json!(86400), json!(86401)],
        ),
        ("introspection_endpoint", urls),
        (
            "client_id",
            vec![json!(""), json!(" "), json!("gw"), Value::Null],
        ),
        (
            "client_secret",
            vec![json!(""), json!("s"), json!(1), Value::Null],
        ),
        (
            "client_auth",
            vec![json!("client_secret_post"), json!("private_key_jwt")],
        ),
        (
            "cache_introspection",
            vec![json!(0), json!(86400), json!(86401)],
        ),
        (
            "introspection_jwt",
            vec![json!(true), json!(false), json!("true")],
        ),
        (
            "upstream_introspection_jwt_header",
            vec![
                json!("x-jwt"),
                json!("Authorization"),
                json!("DPoP"),
                json!("x y"),
                json!(""),
                Value::Null,
            ],
        ),
        (
            "cache_max_entries",
            vec![json!(0), json!(1), json!(1000000), json!(1000001)],
        ),
        ("shared_cache", vec![json!(false), json!(0)]),
        (
            "http_timeout",
            vec![json!(0), json!(1), json!(60000), json!(60001)],
        ),
        (
            "upstreams",
            vec![
                json!({}),
                json!({"idp.example:8443": "idp"}),
                json!({"idp:1": "outbound|443||idp.example.com"}),
                json!({"idp:1": "http://127.0.0.1:80"}),
                json!({"idp:1": "10.0.0.5:80/x"}),
                json!({"idp:1": " "}),
                json!({"https://idp:1": "idp"}),
                json!({"idp:1": 5}),
                json!({"": "idp"}),
                json!({"idp:1": "a b"}),
                json!({"idp:1": "a:b:80/x"}),
                json!({"idp:1": "[::1]:80/x"}),
                json!({"idp:1": "[::1]:80"}),
                json!({"idp:1": "a/b:80"}),
            ],
        ),
        (
            "upstream_headers_claims",
            vec![
                json!([]),
                json!(["sub"]),
                json!(["sub", "client_id", "scope"]),
                json!([""]),
            ],
        ),
        (
            "upstream_headers_names",
            vec![
                json!([]),
                json!(["x-a"]),
                json!(["x-a", "X-A"]),
                json!(["x-a", "x-a"]),
                json!(["Cookie"]),
                json!(["x a"]),
                json!([":path"]),
                json!(["dpop"]),
            ],
        ),
        (
            "realm",
            vec![
                json!(""),
                json!("api"),
                json!("a\"b"),
                json!("a\\b"),
                json!("apí"),
            ],
        ),
        (
            "client_certificate",
            vec![
                json!({}),
                json!({"source": "connection"}),
                json!({"source": "connection", "header": "x"}),
                json!({"source": "connection", "header": "a b"}),
                json!({"source": "connection", "trusted_ips": ["0.0.0.0/0"]}),
                json!({"source": "connection", "trusted_ips": [""]}),
                json!({"source": "connection", "ca_certificates": "not a pem"}),
                json!({"source": "connection", "crls": "no"}),
                json!({"source": "connection", "format": "pem"}),
                json!({"source": "file"}),
                header_source("xfcc"),
                header_source("rfc9440"),
                with(header_source("xfcc"), "ca_certificates", Value::Null),
                with(header_source("xfcc"), "ca_certificates", json!("not a pem")),
                with(header_source("xfcc"), "trusted_ips", json!([])),
                with(
                    header_source("xfcc"),
                    "trusted_ips",
                    json!(["10.0.0.0/33", "x"]),
                ),
                with(header_source("xfcc"), "trusted_ips", json!(["0.0.0.0/0"])),
                with(header_source("xfcc"), "trusted_ips", json!(["::/00"])),
                with(
                    header_source("xfcc"),
                    "trusted_ips",
                    json!(["::ffff:0:0/96"]),
                ),
                with(
                    header_source("xfcc"),
                    "trusted_ips",
                    json!(["::FFFF:10.0.0.0/104"]),
                ),
                with(
                    header_source("xfcc"),
                    "trusted_ips",
                    json!(["0:0:0:0:0:ffff:0:0/96"]),
                ),
                with(
                    header_source("xfcc"),
                    "trusted_ips",
                    json!(["0::ffff:0a00:0/104"]),
                ),
                with(
                    header_source("xfcc"),
                    "trusted_ips",
                    json!(["::ffff:10.1.2.3"]),
                ),
                with(
                    header_source("xfcc"),
                    "trusted_ips",
                    json!(["2001:db8::ffff:0:0/96"]),
                ),
                with(
                    header_source("xfcc"),
                    "trusted_ips",
                    json!(["fe80::ffff:1"]),
                ),
                with(header_source("xfcc"), "trusted_ips", json!([""])),
                // Proxies told by their own certificate, with or without addresses.
                json!({"source": "header", "header": "client-cert", "format": "xfcc",
                    "ca_certificates": CA_PEM,
                    "trusted_proxy_certificates": [FINGERPRINT, "ab".repeat(32)]}),
                with(
                    header_source("xfcc"),
                    "trusted_proxy_certificates",
                    json!(["AB".repeat(32)]),
                ),
                json!({"source": "header", "header": "client-cert", "format": "xfcc",
                    "ca_certificates": CA_PEM, "trusted_proxy_certificates": []}),
                with(
                    header_source("xfcc"),
                    "trusted_proxy_certificates",
                    json!(["ab".repeat(31)]),
                ),
                with(
                    header_source("xfcc"),
                    "trusted_proxy_certificates",
                    json!([format!("{}:", &FINGERPRINT[..94])]),
                ),
                with(
                    header_source("xfcc"),
                    "trusted_proxy_certificates",
                    json!([FINGERPRINT.replace(':', "-")]),
                ),
                with(
                    header_source("xfcc"),
                    "trusted_proxy_certificates",
                    json!(["zz".repeat(32)]),
                ),
                with(header_source("xfcc"), "header", json!("a b")),
                with(header_source("xfcc"), "header", Value::Null),
                with(header_source("xfcc"), "format", Value::Null),
                with(header_source("xfcc"), "allow_partial_chain", json!(true)),
                with(header_source("xfcc"), "allow_partial_chain", json!("yes")),
                with(
                    header_source("xfcc"),
                    "crls",
                    json!("-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"),
                ),
                with(header_source("xfcc"), "crls", json!("no pem")),
                json!({"source": "header"}),
            ],
        ),
    ]
}

/// Bases: each method alone and together, signed introspection on and off.
fn bases() -> Vec<Value> {
    let bearer = json!({"issuer": "https://idp.example:8443", "jwks_endpoint": "https://idp.example:8443/jwks"});
    let intro = json!({"auth_methods": ["introspection"],
        "introspection_endpoint": "https://idp.example:8443/token/introspection",
        "client_id": "gateway", "client_secret": "s3cret"});
    let signed = with(
        with(intro.clone(), "introspection_jwt", json!(true)),
        "jwks",
        json!({"keys": [valid_jwk()]}),
    );
    let signed = with(signed, "issuer", json!("https://idp.example:8443"));
    vec![
        json!({}),
        bearer,
        intro,
        full(),
        signed.clone(),
        with(full(), "introspection_jwt", json!(true)),
    ]
}

fn set_field(config: &Value, field: &str, value: &Value) -> Value {
    let mut out = config.clone();
    let object = out.as_object_mut().unwrap();
    if value.is_null() {
        object.remove(field);
    } else {
        object.insert(field.to_string(), value.clone());
    }
    out
}

/// The generated configurations: each base, then each base with one field set to each of its
/// values (alone and with each method on its own), labelled by the field they vary.
fn generated_configurations() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let fields = field_values();
    for base in bases() {
        out.push(("(base)".to_string(), base.clone()));
        for (field, values) in &fields {
            for value in values {
                let one = set_field(&base, field, value);
                out.push((field.to_string(), one.clone()));
                // And each value next to each method's toggles.
                for methods in [json!(["bearer"]), json!(["introspection"])] {
                    out.push((field.to_string(), set_field(&one, "auth_methods", &methods)));
                }
            }
        }
    }
    out
}

/// The schema (the Rust validator and Kong's own) and the filter agree on thousands of
/// configurations. With the Rust validator: the same verdict on each generated one. With
/// Kong's validator (`../shared/kong-validator`, Kong 3.9.3's code), on the generated ones
/// and on the forms Kong's Lua value model and byte-wise PCRE produce (trailing newlines,
/// non-ASCII whitespace, invalid UTF-8, `-0`, `1.0`, `1e2`, `[]`/`{}`, huge numbers): a
/// config Kong accepts loads in the filter from the bytes Kong hands it (else Kong drops
/// the filter and proxies the route unprotected), and one the filter refuses Kong refuses.
#[test]
fn schema_and_filter_agree_on_generated_configurations() {
    let validator = validator();
    let generated = generated_configurations();
    let mut accepted = 0;
    let mut disagreements = Vec::new();
    for (_, config) in &generated {
        let schema_ok = validator.is_valid(config);
        let rust = rust_load(config);
        accepted += usize::from(schema_ok);
        if schema_ok != rust.is_ok() {
            disagreements.push(format!(
                "schema {} / filter {}: {config}",
                if schema_ok { "accepts" } else { "refuses" },
                match &rust {
                    Ok(_) => "accepts".to_string(),
                    Err(e) => format!("refuses ({e})"),
                }
            ));
        }
    }
    let checked = generated.len();
    assert!(checked > 1000, "{checked}");
    assert!(
        disagreements.is_empty(),
        "{} of {checked} configurations disagree:\n{}",
        disagreements.len(),
        disagreements[..disagreements.len().min(15)].join("\n")
    );
    eprintln!("{checked} generated configurations, {accepted} accepted by both");

    let mut cases: Vec<KongCase> = generated
        .iter()
        .map(|(field, config)| {
            let what = format!("{field} = {}", config.get(field).unwrap_or(&Value::Null));
            KongCase::json(field, &what, config.to_string())
        })
        .collect();
    let n_generated = cases.len();
    cases.extend(value_model_cases());
    let verdicts = kong_validate(&cases);
    let report = kong_agreement(&validator, &cases, &verdicts);
    let kong_accepted = verdicts.iter().filter(|v| v.accepted).count();
    eprintln!(
        "Kong's validator: {} configurations ({n_generated} generated, {} value-model cases), \
         {kong_accepted} accepted, every accepted one loaded from Kong's bytes: {}",
        cases.len(),
        cases.len() - n_generated,
        report.is_empty()
    );
    assert!(
        report.is_empty(),
        "Kong's validator and the filter disagree on {} configurations, by field:\n{}",
        report.values().map(Vec::len).sum::<usize>(),
        report
            .iter()
            .map(|(field, lines)| format!(
                "{field} ({}):\n  {}",
                lines.len(),
                lines[..lines.len().min(8)].join("\n  ")
            ))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn unused_fields_are_warnings_not_refusals() {
    // A user toggles auth_methods and leaves the rest: Kong's schema accepts it, so must the
    // filter, saying what it ignores.
    let both = full();
    let bearer_only = set_field(&both, "auth_methods", &json!(["bearer"]));
    let s = rust_load(&bearer_only).unwrap();
    assert!(
        s.warnings
            .iter()
            .any(|w| w.starts_with("introspection_endpoint is not used"))
    );
    let intro_only = set_field(&both, "auth_methods", &json!(["introspection"]));
    let s = rust_load(&intro_only).unwrap();
    assert!(
        s.warnings
            .iter()
            .any(|w| w.starts_with("jwks_endpoint is not used"))
    );
    assert!(validator().is_valid(&bearer_only) && validator().is_valid(&intro_only));
}

#[test]
fn the_reserved_header_pattern_is_the_filters_list() {
    let schema = schema();
    let pattern = schema["properties"]["upstream_headers_names"]["items"]["not"]["pattern"]
        .as_str()
        .unwrap();
    for name in certbound::config::RESERVED_HEADERS {
        let upper = name.to_ascii_uppercase();
        for variant in [name.to_string(), upper] {
            let config = with(full(), "upstream_headers_names", json!([variant]));
            let config = with(config, "upstream_headers_claims", json!(["sub"]));
            assert!(
                !validator().is_valid(&config),
                "{variant} accepted by {pattern}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// (f) Kong's own validator: Kong Gateway 3.9.3's filter-config validation run offline by
// `../shared/kong-validator` (lua-resty-ljsonschema on Lua values, PCRE without UTF mode, and
// cjson's re-encoding of what it accepted: the bytes the filter gets).

/// One input for Kong's validator: the field it exercises, what it is, and its exact bytes.
struct KongCase {
    field: String,
    what: String,
    bytes: Vec<u8>,
    /// Not JSON (RFC 8259) but read by cjson (`0x10`, `+5`, `05`, `5.`): such input never
    /// reaches the filter itself, only Kong's re-encoding of it.
    cjson_only: bool,
}

impl KongCase {
    fn json(field: &str, what: &str, text: String) -> KongCase {
        KongCase::bytes(field, what, text.into_bytes())
    }

    fn bytes(field: &str, what: &str, bytes: Vec<u8>) -> KongCase {
        KongCase {
            field: field.to_string(),
            what: what.to_string(),
            bytes,
            cjson_only: false,
        }
    }
}

struct KongVerdict {
    accepted: bool,
    /// The bytes Kong hands the filter (`serialize_configuration()`), for an accepted config.
    emitted: Option<Vec<u8>>,
}

/// `$CERTBOUND_SHARED`, else `shared/` beside the repository (where CI puts its copy).
fn shared_dir() -> PathBuf {
    match std::env::var_os("CERTBOUND_SHARED") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => root().join("../shared"),
    }
}

/// Runs Kong's validator once over every case (a few seconds for thousands): the meta.json
/// `make dist` makes, each case a file, `validate.sh --json --emit`.
fn kong_validate(cases: &[KongCase]) -> Vec<KongVerdict> {
    let home = shared_dir().join("kong-validator");
    let validate = home.join("validate.sh");
    let set_up = format!(
        "make kong-validator (runs {}/setup.sh: apt packages and a lua-cjson build, cached)",
        home.display()
    );
    assert!(
        validate.is_file(),
        "Kong's validator is not at {}: tests/config_schema.rs needs ../shared/kong-validator \
         beside the repository (or CERTBOUND_SHARED=<folder holding kong-validator/>), then {set_up}",
        validate.display()
    );
    // one folder per call: tests run in parallel
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("kong-validator-{}-{run}", std::process::id()));
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(work.join("in")).unwrap();
    fs::write(
        work.join("certbound.meta.json"),
        format!("{{\"config_schema\": {}}}", schema_text()),
    )
    .unwrap();
    let names: Vec<String> = (0..cases.len())
        .map(|i| format!("in/{i:05}.json"))
        .collect();
    for (name, case) in names.iter().zip(cases) {
        fs::write(work.join(name), &case.bytes).unwrap();
    }
    let started = std::time::Instant::now();
    let run = std::process::Command::new("bash")
        .arg(&validate)
        .args(["--json", "--emit", "out", "certbound.meta.json"])
        .args(&names)
        .current_dir(&work)
        .output()
        .unwrap_or_else(|e| panic!("cannot run bash {}: {e}", validate.display()));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "Kong's validator did not run ({}): {stderr}\nSet it up: {set_up}",
        run.status
    );
    let mut verdicts: Vec<Option<KongVerdict>> = (0..cases.len()).map(|_| None).collect();
    for line in String::from_utf8_lossy(&run.stdout).lines() {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("validate.sh --json printed {line:?}: {e}"));
        let file = v["file"].as_str().unwrap();
        let i: usize = file
            .strip_prefix("in/")
            .and_then(|f| f.strip_suffix(".json"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("verdict for an unknown file {file}"));
        let emitted = v["emitted"]
            .as_str()
            .map(|path| fs::read(work.join(path)).unwrap());
        verdicts[i] = Some(KongVerdict {
            accepted: v["verdict"] == "accept",
            emitted,
        });
    }
    eprintln!(
        "Kong's validator checked {} configurations in {:.1} s",
        cases.len(),
        started.elapsed().as_secs_f64()
    );
    let _ = fs::remove_dir_all(&work);
    verdicts
        .into_iter()
        .zip(&names)
        .map(|(v, name)| v.unwrap_or_else(|| panic!("no verdict for {name}: {stderr}")))
        .collect()
}

fn show(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text: String = text.chars().take(220).collect();
    format!("{text:?}")
}

/// Disagreements, by field: Kong accepts but the filter cannot load Kong's bytes; the filter
/// refuses a config Kong accepts; the filter reads Kong's bytes otherwise than the user's;
/// the Rust validator accepts what the filter refuses.
fn kong_agreement(
    validator: &jsonschema::Validator,
    cases: &[KongCase],
    verdicts: &[KongVerdict],
) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut report: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (case, kong) in cases.iter().zip(verdicts) {
        let mut flag = |problem: String| {
            report
                .entry(case.field.clone())
                .or_default()
                .push(format!("{}: {problem}", case.what));
        };
        let on_input = Settings::from_json(&case.bytes);
        if kong.accepted {
            let emitted = kong.emitted.as_deref().unwrap_or_default();
            match Settings::from_json(emitted) {
                Err(e) => flag(format!(
                    "FAILS OPEN: Kong accepts, the filter refuses Kong's bytes ({e})"
                )),
                Ok(from_kong) => {
                    if let Ok(from_input) = &on_input {
                        if format!("{from_kong:?}") != format!("{from_input:?}") {
                            flag(format!(
                                "the filter reads Kong's bytes {} otherwise than the input",
                                show(emitted)
                            ));
                        }
                    }
                }
            }
            if let (Err(e), false) = (&on_input, case.cjson_only) {
                flag(format!("Kong accepts, the filter refuses it ({e})"));
            }
        }
        if let (Ok(value), Err(e)) = (serde_json::from_slice::<Value>(&case.bytes), &on_input) {
            if validator.is_valid(&value) {
                flag(format!(
                    "the Rust validator accepts, the filter refuses ({e})"
                ));
            }
        }
    }
    report
}

/// A configuration using every field (each method, signed introspection, DPoP with nonces,
/// the header certificate source), all valid: the value-model cases change one slot of it.
fn everything() -> Value {
    let mut c = full();
    for (k, v) in [
        ("proof_of_possession_dpop", json!("optional")),
        ("dpop_use_nonce", json!(true)),
        ("dpop_nonce_secret", json!("n".repeat(40))),
        ("dpop_external_url", json!("https://api.example.com")),
        ("introspection_jwt", json!(true)),
        (
            "upstream_introspection_jwt_header",
            json!("x-introspection-jwt"),
        ),
        ("jwks", json!({"keys": [valid_jwk()]})),
        ("audience_required", json!(["https://api.example"])),
        ("scopes_required", json!(["accounts:read"])),
        ("realm", json!("my api")),
        (
            "client_certificate",
            with(
                with(
                    header_source("rfc9440"),
                    "crls",
                    json!("-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"),
                ),
                "trusted_proxy_certificates",
                json!([FINGERPRINT]),
            ),
        ),
    ] {
        c[k] = v;
    }
    c
}

/// A SHA-256 fingerprint as `openssl x509 -fingerprint -sha256` writes it.
const FINGERPRINT: &str = "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89";

/// A valid value of each string field the schema has, by slot: `field`, `field[]` (an
/// array's item), `upstreams{key}`, `upstreams{value}`, `client_certificate.field`.
fn string_samples() -> Vec<(String, String)> {
    let everything = everything();
    let mut out = Vec::new();
    let cert = &everything["client_certificate"];
    let schema = schema();
    let mut visit = |prefix: &str, properties: &Value, config: &Value| {
        for (name, p) in properties.as_object().unwrap() {
            let slot = format!("{prefix}{name}");
            let is_free_string = |p: &Value| p["type"] == "string" && p.get("enum").is_none();
            if is_free_string(p) {
                let sample = config[name].as_str();
                out.push((
                    slot,
                    sample
                        .unwrap_or_else(|| panic!("no sample for {name}"))
                        .to_string(),
                ));
            } else if p["type"] == "array" && is_free_string(&p["items"]) {
                // A field that cannot stand beside everything()'s others has its sample here.
                let absent = match name.as_str() {
                    "dpop_allowed_origins" => Some("https://api.example.com"),
                    _ => None,
                };
                let sample = config[name][0].as_str().or(absent);
                out.push((
                    format!("{slot}[]"),
                    sample
                        .unwrap_or_else(|| panic!("no sample for {name}"))
                        .to_string(),
                ));
            } else if p.get("patternProperties").is_some() {
                let (key, value) = config[name].as_object().unwrap().iter().next().unwrap();
                out.push((format!("{slot}{{key}}"), key.clone()));
                out.push((
                    format!("{slot}{{value}}"),
                    value.as_str().unwrap().to_string(),
                ));
            }
        }
    };
    visit("", &schema["properties"], &everything);

    visit(
        "client_certificate.",
        &schema["properties"]["client_certificate"]["properties"],
        cert,
    );
    // a /0 block is refused, whatever White_Space follows it
    out.push((
        "client_certificate.trusted_ips[]".to_string(),
        "10.0.0.1/0".to_string(),
    ));
    out
}

/// A JSON string that stands for the slot being varied, replaced by raw bytes afterwards.
const SLOT: &str = "\u{1}slot\u{1}";

/// `everything()` with `slot` holding SLOT.
fn with_slot(slot: &str) -> Value {
    let marker = json!(SLOT);
    let mut base = everything();
    // The one origin or the list of them, not both.
    if slot.starts_with("dpop_allowed_origins") {
        base.as_object_mut().unwrap().remove("dpop_external_url");
    }
    if let Some(field) = slot.strip_suffix("{key}") {
        return with(base, field, json!({ SLOT: "idp" }));
    }
    if let Some(field) = slot.strip_suffix("{value}") {
        return with(base, field, json!({ "idp.example:8443": SLOT }));
    }
    if let Some(field) = slot.strip_suffix("[]") {
        return with(base, field, json!([marker]));
    }
    with(base, slot, marker)
}

/// The text of `config` with its SLOT replaced by `raw` (any bytes, JSON or not).
fn fill(config: &Value, raw: &[u8]) -> Vec<u8> {
    let text = config.to_string();
    let marker = serde_json::to_string(SLOT).unwrap();
    let (before, after) = text.split_once(&marker).unwrap();
    [before.as_bytes(), raw, after.as_bytes()].concat()
}

/// The inside of a JSON string literal for `s`.
fn escaped(s: &str) -> String {
    let quoted = serde_json::to_string(s).unwrap();
    quoted[1..quoted.len() - 1].to_string()
}

/// String literals (raw bytes, quotes included) around a valid `sample`: trailing and leading
/// newlines, whitespace outside ASCII and other characters Rust, PCRE and ECMA-262 class
/// differently, invalid UTF-8 (cjson passes it through), a lone surrogate.
fn string_variants(sample: &str) -> Vec<(String, Vec<u8>)> {
    let mid = sample
        .char_indices()
        .nth(sample.chars().count() / 2)
        .map_or(sample.len(), |(i, _)| i);
    let (head, tail) = (escaped(&sample[..mid]), escaped(&sample[mid..]));
    let s = escaped(sample);
    let lit = |inner: String| format!("\"{inner}\"").into_bytes();
    let mut out = vec![
        ("as is".to_string(), lit(s.clone())),
        ("trailing \\n".to_string(), lit(format!("{s}\\n"))),
        ("trailing \\n\\n".to_string(), lit(format!("{s}\\n\\n"))),
        ("trailing \\r\\n".to_string(), lit(format!("{s}\\r\\n"))),
        ("leading \\n".to_string(), lit(format!("\\n{s}"))),
        ("inner \\n".to_string(), lit(format!("{head}\\n{tail}"))),
        ("trailing space".to_string(), lit(format!("{s} "))),
        ("empty".to_string(), lit(String::new())),
        ("\\n alone".to_string(), lit("\\n".to_string())),
        (
            "raw NBSP after".to_string(),
            [lit(s.clone()).as_slice()]
                .concat()
                .into_iter()
                .take(s.len() + 1)
                .chain("\u{a0}\"".bytes())
                .collect(),
        ),
        ("é after".to_string(), lit(format!("{s}\\u00e9"))),
        ("raw é after".to_string(), lit(format!("{s}é"))),
        (
            "lone surrogate after".to_string(),
            lit(format!("{s}\\ud800")),
        ),
    ];
    for (name, ch) in [
        ("NBSP", "\\u00a0"),
        ("U+3000", "\\u3000"),
        ("U+001C", "\\u001c"),
        ("U+2028", "\\u2028"),
        ("U+0085", "\\u0085"),
        ("U+FEFF", "\\ufeff"),
        ("U+2009", "\\u2009"),
        ("U+180E", "\\u180e"),
        ("VT", "\\u000b"),
        ("tab", "\\t"),
        ("NUL", "\\u0000"),
    ] {
        out.push((format!("{name} after"), lit(format!("{s}{ch}"))));
        out.push((format!("{name} before"), lit(format!("{ch}{s}"))));
        out.push((format!("{name} inside"), lit(format!("{head}{ch}{tail}"))));
        out.push((format!("{name} alone"), lit(ch.to_string())));
        out.push((format!("{name} twice alone"), lit(format!("{ch}{ch}"))));
    }
    for (name, bytes) in [
        ("invalid UTF-8 \\xff after", b"\xff".as_slice()),
        ("truncated UTF-8 \\xc2 after", b"\xc2"),
        ("truncated UTF-8 \\xe2\\x80 after", b"\xe2\x80"),
        ("lone continuation \\xa0 after", b"\xa0"),
        ("lone continuation \\x85 after", b"\x85"),
    ] {
        let mut v = format!("\"{s}").into_bytes();
        v.extend_from_slice(bytes);
        v.push(b'"');
        out.push((name.to_string(), v));
        let mut v = b"\"".to_vec();
        v.extend_from_slice(bytes);
        v.extend_from_slice(format!("{s}\"").as_bytes());
        out.push((name.replace("after", "before"), v));
        out.push((
            name.replace("after", "alone"),
            [b"\"", bytes, b"\""].concat(),
        ));
    }
    out
}

/// Number literals for an integer field of `min..=max`: Kong has one number type (a double;
/// "integer" means no fractional part) and re-encodes with 16 significant digits.
fn number_variants(min: u64, max: u64) -> Vec<(String, String, bool)> {
    let mut out: Vec<(String, String, bool)> = [
        "-0".to_string(),
        "-0.0".to_string(),
        "-0e0".to_string(),
        "-1e-400".to_string(),
        "1e-400".to_string(),
        format!("{min}.0"),
        format!("{max}.0"),
        format!("{max}e0"),
        format!("{max}E+0"),
        format!("{max}.0000000000000001"),
        format!("{max}.000000001"),
        format!("{}.0", max + 1),
        format!("{min}.5"),
        format!("{}e-1", max * 10),
        "1e2".to_string(),
        "1E2".to_string(),
        "100.0e0".to_string(),
        "1e400".to_string(),
        "-1e400".to_string(),
        "9007199254740993".to_string(),
        "18446744073709551615".to_string(),
        "18446744073709551616".to_string(),
        "1e19".to_string(),
        "-9007199254740993".to_string(),
        format!("-{max}"),
        "NaN".to_string(),
        "Infinity".to_string(),
        "null".to_string(),
        "true".to_string(),
        "\"1\"".to_string(),
        "[]".to_string(),
        "{}".to_string(),
    ]
    .into_iter()
    .map(|n| (n.clone(), n, false))
    .collect();
    let mut exponent = max;
    let mut e = 0;
    while exponent % 10 == 0 && exponent > 0 {
        exponent /= 10;
        e += 1;
        out.push((format!("{exponent}e{e}"), format!("{exponent}e{e}"), false));
    }
    // cjson reads these; they are not JSON.
    for n in [
        "0x10".to_string(),
        format!("+{min}"),
        format!("0{max}"),
        format!("{max}."),
    ] {
        out.push((n.clone(), n, true));
    }
    out
}

/// Everything Kong's value model and PCRE do differently from JSON and ECMA-262, one slot at
/// a time, in `everything()`: string forms in every string field, number forms in every
/// integer field, `[]`/`{}` in every object/array field, and whole-config oddities.
fn value_model_cases() -> Vec<KongCase> {
    let mut cases = Vec::new();
    let base = everything();
    assert!(
        rust_load(&base).is_ok() && validator().is_valid(&base),
        "everything() must be valid"
    );
    for (slot, sample) in string_samples() {
        let config = with_slot(&slot);
        for (what, literal) in string_variants(&sample) {
            cases.push(KongCase::bytes(&slot, &what, fill(&config, &literal)));
        }
        for (what, literal) in [
            ("null", "null"),
            ("a number", "1"),
            ("[]", "[]"),
            ("{}", "{}"),
        ] {
            cases.push(KongCase::bytes(
                &slot,
                what,
                fill(&config, literal.as_bytes()),
            ));
        }
    }
    // dpop_nonce_secret's minLength counts characters; ljsonschema counts bytes in a string
    // that is not valid UTF-8.
    let secret = with_slot("dpop_nonce_secret");
    for (what, literal) in [
        (
            "31 + \\xff",
            [b"\"".as_slice(), &[b'a'; 31], b"\xff\""].concat(),
        ),
        (
            "30 + \\xe2\\x80",
            [b"\"".as_slice(), &[b'a'; 30], b"\xe2\x80\""].concat(),
        ),
        (
            "16 x \\xe9\\xff",
            [b"\"".as_slice(), &b"\xe9\xff".repeat(16), b"\""].concat(),
        ),
        (
            "30 + \\u00e9 + \\xff",
            [b"\"".as_slice(), &[b'a'; 30], b"\\u00e9\xff\""].concat(),
        ),
        (
            "29 + \\u20ac + \\xff",
            [b"\"".as_slice(), &[b'a'; 29], b"\\u20ac\xff\""].concat(),
        ),
        (
            "28 + \\ud83d\\ude00 + \\xff",
            [b"\"".as_slice(), &[b'a'; 28], b"\\ud83d\\ude00\xff\""].concat(),
        ),
        (
            "31 + é (32 bytes)",
            format!("\"{}é\"", "a".repeat(31)).into_bytes(),
        ),
        ("16 x é", format!("\"{}\"", "é".repeat(16)).into_bytes()),
        ("32 x é", format!("\"{}\"", "é".repeat(32)).into_bytes()),
        (
            "31 + \\u0000",
            format!("\"{}\\u0000\"", "a".repeat(31)).into_bytes(),
        ),
    ] {
        cases.push(KongCase::bytes(
            "dpop_nonce_secret",
            what,
            fill(&secret, &literal),
        ));
    }
    let schema = schema();
    for (name, p) in schema["properties"].as_object().unwrap() {
        let config = with_slot(name);
        if p["type"] == "integer" {
            let (min, max) = (
                p["minimum"].as_u64().unwrap(),
                p["maximum"].as_u64().unwrap(),
            );
            for (what, literal, cjson_only) in number_variants(min, max) {
                let mut case = KongCase::bytes(name, &what, fill(&config, literal.as_bytes()));
                case.cjson_only = cjson_only;
                cases.push(case);
            }
        }
        let shapes: &[&str] = match p["type"].as_str().unwrap() {
            "object" => &["[]", "{}", "[{}]", "[[]]", "null", "\"\"", "[1]"],
            "array" => &[
                "{}",
                "[]",
                "[{}]",
                "[[]]",
                "[{}, []]",
                "null",
                "{\"a\": 1}",
                "{\"1\": \"sub\"}",
            ],
            "boolean" => &["0", "1", "[]", "{}", "\"true\"", "null", "-0"],
            _ => &["[]", "{}", "null"],
        };
        for shape in shapes {
            cases.push(KongCase::bytes(
                name,
                shape,
                fill(&config, shape.as_bytes()),
            ));
        }
    }
    // Containers inside containers.
    for (slot, shapes) in [
        (
            "jwks",
            vec![
                r#"{"keys": {}}"#,
                r#"{"keys": []}"#,
                r#"{"keys": [[]]}"#,
                r#"{"keys": [{}]}"#,
                r#"{"keys": [[], {}]}"#,
                r#"{"keys": [[1]]}"#,
                r#"{"keys": {"a": 1}}"#,
                r#"{"keys": [{"kty": "EC", "x": []}]}"#,
                r#"{"keys": [{"kty": "RSA", "n": 123456789012345678901234567890, "e": 1e400}]}"#,
                r#"{"keys": [], "x": []}"#,
                r#"{"keys": [{"kty": "RSA", "e": 1.7976931348623157e308}]}"#,
                r#"{"keys": [{"kty": "RSA", "e": NaN, "f": -Infinity}]}"#,
                r#"{"keys": [{"kty": "RSA", "e": 1e308, "f": -1e308, "g": 5e-324}]}"#,
            ],
        ),
        (
            "upstreams",
            vec![
                r#"{"idp.example:8443": []}"#,
                r#"{"idp.example:8443": {}}"#,
                r#"{"idp.example:8443": "idp", "idp.example:8443": "other"}"#,
            ],
        ),
        (
            "client_certificate",
            vec![
                r#"{"source": "connection", "trusted_ips": {}}"#,
                r#"{"source": "connection", "trusted_ips": []}"#,
                r#"{"source": "connection", "trusted_ips": [[]]}"#,
                r#"{"source": "header", "header": "client-cert", "format": "rfc9440", "trusted_ips": {}, "ca_certificates": "-----BEGIN CERTIFICATE-----"}"#,
                r#"{"source": "connection", "allow_partial_chain": []}"#,
            ],
        ),
    ] {
        let config = with_slot(slot);
        for shape in shapes {
            cases.push(KongCase::bytes(
                slot,
                shape,
                fill(&config, shape.as_bytes()),
            ));
        }
    }
    // The whole configuration.
    let text = base.to_string();
    let inner = &text[1..text.len() - 1];
    for (what, bytes) in [
        ("[]", "[]".to_string()),
        ("{}", "{}".to_string()),
        ("null", "null".to_string()),
        ("a string", format!("{:?}", text)),
        (
            "leeway twice, the last valid",
            format!(r#"{{"leeway": 601, {inner}, "leeway": 5}}"#),
        ),
        (
            "leeway twice, the last invalid",
            format!(r#"{{"leeway": 5, {inner}, "leeway": 601}}"#),
        ),
        (
            "issuer twice, the last blank",
            format!(r#"{{{inner}, "issuer": " "}}"#),
        ),
        ("trailing newline after the object", format!("{text}\n")),
        ("BOM before the object", format!("\u{feff}{text}")),
        ("an unknown field", format!(r#"{{{inner}, "leewy": 5}}"#)),
        (
            "an unknown field with invalid UTF-8",
            format!(r#"{{{inner}, "x"#),
        ),
    ] {
        let mut bytes = bytes.into_bytes();
        if what.ends_with("invalid UTF-8") {
            bytes.extend_from_slice(b"\xff\": 1}");
        }
        cases.push(KongCase::bytes("(whole config)", what, bytes));
    }
    cases
}

/// How a configuration must fare.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Expect {
    /// Accepted by the Rust validator (when it is JSON), Kong and the filter.
    Accept,
    /// One of Kong's forms: accepted by Kong and the filter; the Rust validator, reading it
    /// as JSON, may refuse it (`1.0` is no draft-4 integer, `[]` no object).
    KongForm,
    /// Refused by all three.
    Refuse,
}

/// Each case through Kong's validator, the filter (on the input and on Kong's bytes) and
/// the Rust validator, against what it must give.
#[track_caller]
fn assert_everywhere(cases: &[(&str, Vec<u8>, Expect)]) {
    let validator = validator();
    let kong_cases: Vec<KongCase> = cases
        .iter()
        .map(|(what, bytes, _)| KongCase::bytes("", what, bytes.clone()))
        .collect();
    let verdicts = kong_validate(&kong_cases);
    let mut wrong = Vec::new();
    for ((what, bytes, expect), kong) in cases.iter().zip(&verdicts) {
        let accept = *expect != Expect::Refuse;
        let on_input = Settings::from_json(bytes);
        let rust_schema = serde_json::from_slice::<Value>(bytes)
            .ok()
            .map(|v| validator.is_valid(&v));
        let mut problems = Vec::new();
        if kong.accepted != accept {
            problems.push(format!("Kong accepts: {}", kong.accepted));
        }
        if on_input.is_ok() != accept {
            problems.push(format!("the filter: {:?}", on_input.as_ref().err()));
        }
        if kong.accepted {
            if let Err(e) = Settings::from_json(kong.emitted.as_deref().unwrap_or_default()) {
                problems.push(format!("the filter refuses Kong's bytes: {e}"));
            }
        }
        match (expect, rust_schema) {
            (Expect::Accept, Some(false)) => problems.push("the Rust validator refuses".into()),
            (Expect::Refuse, Some(true)) => problems.push("the Rust validator accepts".into()),
            _ => {}
        }
        if !problems.is_empty() {
            wrong.push(format!("{what} ({expect:?}): {}", problems.join("; ")));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// `everything()` with `slot` (as `with_slot` names it) holding the raw JSON `literal`.
fn slot_bytes(slot: &str, literal: &[u8]) -> Vec<u8> {
    fill(&with_slot(slot), literal)
}

#[test]
fn kong_a_trailing_newline_is_refused_by_every_pattern() {
    // PCRE's `$` matches before a final newline: each anchored pattern ends `$(?!\n)`.
    let mut cases = Vec::new();
    for (slot, value) in [
        ("realm", "api"),
        ("scopes_required[]", "accounts:read"),
        ("upstream_headers_names[]", "x-authenticated-sub"),
        ("upstream_introspection_jwt_header", "x-jwt"),
        ("client_certificate.header", "client-cert"),
        ("jwks_endpoint", "https://idp.example:8443/jwks"),
        (
            "introspection_endpoint",
            "https://idp.example:8443/introspect",
        ),
        ("dpop_external_url", "https://api.example.com"),
        ("upstreams{key}", "idp.example:8443"),
        ("upstreams{value}", "idp"),
    ] {
        cases.push((
            slot,
            slot_bytes(slot, format!("\"{value}\"").as_bytes()),
            Expect::Accept,
        ));
        cases.push((
            slot,
            slot_bytes(slot, format!("\"{value}\\n\"").as_bytes()),
            Expect::Refuse,
        ));
    }
    // Where a newline is no problem, it still passes.
    let pem = format!("{CA_PEM}\n");
    cases.push((
        "ca_certificates",
        slot_bytes(
            "client_certificate.ca_certificates",
            json!(pem).to_string().as_bytes(),
        ),
        Expect::Accept,
    ));
    cases.push((
        "issuer",
        slot_bytes("issuer", b"\"https://idp\\n\""),
        Expect::Accept,
    ));
    assert_everywhere(&cases);
}

#[test]
fn kong_white_space_outside_ascii_is_white_space_in_every_engine() {
    // PCRE without UTF mode runs `\S` and `[^\s]` byte by byte; the filter trims Unicode
    // White_Space. The schema lists White_Space itself, as literal characters.
    let mut cases = Vec::new();
    for slot in ["issuer", "client_id", "client_secret"] {
        for (literal, expect) in [
            ("\"\\u00a0\"", Expect::Refuse),
            ("\"\\u3000\\u2028\"", Expect::Refuse),
            ("\" \\u0085\\t\\u205f\"", Expect::Refuse),
            ("\"\u{a0}\"", Expect::Refuse),
            ("\"\"", Expect::Refuse),
            ("\"\\u00a0x\"", Expect::Accept),
            ("\"x\\u3000\"", Expect::Accept),
            ("\"é\"", Expect::Accept),
            // not White_Space for Rust (ECMA-262's \s has U+FEFF, Python's U+001C)
            ("\"\\u001c\"", Expect::Accept),
            ("\"\\ufeff\"", Expect::Accept),
            ("\"\\u180e\"", Expect::Accept),
        ] {
            cases.push((slot, slot_bytes(slot, literal.as_bytes()), expect));
        }
    }
    for (slot, literal, expect) in [
        ("upstreams{key}", "\"idp\\u00a0:8443\"", Expect::Refuse),
        ("upstreams{key}", "\"\\u2028\"", Expect::Refuse),
        ("upstreams{key}", "\"idpé:8443\"", Expect::Accept),
        ("upstreams{value}", "\"i\\u3000dp\"", Expect::Refuse),
        ("upstreams{value}", "\"idp\\u0085\"", Expect::Refuse),
        (
            "upstreams{value}",
            "\"outbound|443||idp.example\"",
            Expect::Accept,
        ),
        ("upstreams{value}", "\"idp\\u001c\"", Expect::Accept),
        (
            "client_certificate.trusted_ips[]",
            "\"10.0.0.1/0\\u00a0\"",
            Expect::Refuse,
        ),
        (
            "client_certificate.trusted_ips[]",
            "\"10.0.0.1/00 \\u3000\"",
            Expect::Refuse,
        ),
        (
            "client_certificate.trusted_ips[]",
            "\"10.0.0.0/8\\u00a0\"",
            Expect::Accept,
        ),
    ] {
        cases.push((slot, slot_bytes(slot, literal.as_bytes()), expect));
    }
    assert_everywhere(&cases);
}

#[test]
fn upstream_values_with_a_path_are_refused_whatever_the_host() {
    let mut cases = Vec::new();
    for (value, expect) in [
        ("a:b:80/x", Expect::Refuse),
        ("[::1]:80/x", Expect::Refuse),
        ("10.0.0.5:80/", Expect::Refuse),
        ("[::1]:80", Expect::Accept),
        ("a/b:80", Expect::Accept),
        ("outbound|443||idp.example", Expect::Accept),
    ] {
        let bytes = slot_bytes("upstreams{value}", json!(value).to_string().as_bytes());
        cases.push((value, bytes, expect));
    }
    assert_everywhere(&cases);
}

#[test]
fn kong_whole_numbers_are_integers() {
    // Kong has one number type: "integer" is "no fractional part", and Kong hands the
    // filter `1`, `100`, `-0`.
    let mut cases = Vec::new();
    for (field, literal, expect) in [
        ("leeway", "30", Expect::Accept),
        ("leeway", "-0", Expect::KongForm),
        ("leeway", "-0.0", Expect::KongForm),
        ("leeway", "1.0", Expect::KongForm),
        ("leeway", "6e2", Expect::KongForm),
        ("leeway", "600.0000000000000001", Expect::KongForm),
        ("cache_max_entries", "1e6", Expect::KongForm),
        ("dpop_replay_cache_entries", "1.6e1", Expect::KongForm),
        ("leeway", "1.5", Expect::Refuse),
        ("leeway", "-1", Expect::Refuse),
        ("leeway", "601.0", Expect::Refuse),
        ("leeway", "6.01e2", Expect::Refuse),
        ("leeway", "1e400", Expect::Refuse),
        ("cache_max_entries", "1e7", Expect::Refuse),
        ("cache_max_entries", "18446744073709551616", Expect::Refuse),
        ("http_timeout", "-0", Expect::Refuse),
    ] {
        cases.push((field, slot_bytes(field, literal.as_bytes()), expect));
    }
    assert_everywhere(&cases);
    let s = Settings::from_json(&slot_bytes("leeway", b"-0")).unwrap();
    assert_eq!(s.leeway, 0);
    let s = Settings::from_json(&slot_bytes("leeway", b"6e2")).unwrap();
    assert_eq!(s.leeway, 600);
}

#[test]
fn kong_empty_tables_are_empty_objects_and_arrays() {
    let cert = |value: &str| slot_bytes("client_certificate", value.as_bytes());
    let jwks = |value: &str| slot_bytes("jwks", value.as_bytes());
    assert_everywhere(&[
        (
            "upstreams []",
            slot_bytes("upstreams", b"[]"),
            Expect::KongForm,
        ),
        (
            "upstreams [1]",
            slot_bytes("upstreams", b"[1]"),
            Expect::Refuse,
        ),
        ("client_certificate []", cert("[]"), Expect::KongForm),
        ("client_certificate [1]", cert("[1]"), Expect::Refuse),
        (
            "jwks keys [[]]",
            jwks(r#"{"keys": [[]]}"#),
            Expect::KongForm,
        ),
        (
            "jwks keys [[], {}]",
            jwks(r#"{"keys": [[], {}]}"#),
            Expect::KongForm,
        ),
        (
            "jwks keys [[1]]",
            jwks(r#"{"keys": [[1]]}"#),
            Expect::Refuse,
        ),
        ("jwks []", jwks("[]"), Expect::Refuse),
        (
            "audience_required {}",
            slot_bytes("audience_required", b"{}"),
            Expect::KongForm,
        ),
        (
            "audience_required {\"a\": 1}",
            slot_bytes("audience_required", br#"{"a": 1}"#),
            Expect::Refuse,
        ),
    ]);
    // An empty table where the default is empty is no setting: no "not used" warning.
    let connection = |trusted: &str| {
        rust_load(
            &serde_json::from_str::<Value>(&format!(
                r#"{{"issuer": "https://idp", "jwks_endpoint": "https://idp/jwks",
                "client_certificate": {{"source": "connection", "trusted_ips": {trusted}}}}}"#
            ))
            .unwrap(),
        )
        .unwrap()
        .warnings
    };
    assert_eq!(connection("{}"), connection("[]"));
    assert!(connection("{}").is_empty(), "{:?}", connection("{}"));
    assert!(!connection(r#"["10.0.0.1"]"#).is_empty());
}

#[test]
fn kong_strings_that_are_not_utf8_load_as_kong_checked_them() {
    // cjson passes a string that is not UTF-8 through; Kong's patterns then see its bytes and
    // minLength counts them. The filter reads each byte outside ASCII as U+FFFD.
    let raw = |slot: &str, bytes: &[u8]| slot_bytes(slot, &[b"\"", bytes, b"\""].concat());
    let secret =
        |ascii: usize, tail: &[u8]| raw("dpop_nonce_secret", &[&b"n".repeat(ascii), tail].concat());
    assert_everywhere(&[
        ("issuer x\\xff", raw("issuer", b"x\xff"), Expect::KongForm),
        (
            "client_secret \\xc2",
            raw("client_secret", b"\xc2"),
            Expect::KongForm,
        ),
        (
            "upstreams key \\xa0",
            raw("upstreams{key}", b"idp\xa0"),
            Expect::KongForm,
        ),
        (
            "upstreams value \\x85",
            raw("upstreams{value}", b"idp\x85"),
            Expect::KongForm,
        ),
        (
            "trusted_ips /0\\x85",
            raw("client_certificate.trusted_ips[]", b"10.0.0.1/0\x85"),
            Expect::KongForm,
        ),
        ("realm \\xff", raw("realm", b"api\xff"), Expect::Refuse),
        (
            "scope \\xe2\\x80",
            raw("scopes_required[]", b"a\xe2\x80"),
            Expect::Refuse,
        ),
        (
            "header name \\xff",
            raw("upstream_headers_names[]", b"x-a\xff"),
            Expect::Refuse,
        ),
        (
            "endpoint \\xff",
            raw("jwks_endpoint", b"https://idp/\xff"),
            Expect::Refuse,
        ),
        // minLength 32: the bytes of a string that is not UTF-8
        ("secret 31 + \\xff", secret(31, b"\xff"), Expect::KongForm),
        ("secret 30 + \\xff", secret(30, b"\xff"), Expect::Refuse),
        (
            "secret 30 + \\xe2\\x80",
            secret(30, b"\xe2\x80"),
            Expect::KongForm,
        ),
        (
            "secret 29 + \\xe2\\x80",
            secret(29, b"\xe2\x80"),
            Expect::Refuse,
        ),
        (
            "secret 30 + \\u00e9\\xff",
            secret(30, b"\\u00e9\xff"),
            Expect::KongForm,
        ),
        (
            "secret 28 + \\u00e9\\xff",
            secret(28, b"\\u00e9\xff"),
            Expect::Refuse,
        ),
        (
            "secret 27 + \\ud83d\\ude00\\xff",
            secret(27, b"\\ud83d\\ude00\xff"),
            Expect::KongForm,
        ),
        (
            "secret 26 + \\ud83d\\ude00\\xff",
            secret(26, b"\\ud83d\\ude00\xff"),
            Expect::Refuse,
        ),
        (
            "secret 31 + \\ud800\\xff",
            secret(31, b"\\ud800\xff"),
            Expect::Refuse,
        ),
        // valid UTF-8 counts characters everywhere
        (
            "secret 16 x é",
            raw("dpop_nonce_secret", "é".repeat(16).as_bytes()),
            Expect::Refuse,
        ),
        (
            "secret 32 x é",
            raw("dpop_nonce_secret", "é".repeat(32).as_bytes()),
            Expect::Accept,
        ),
    ]);
    let s = Settings::from_json(&raw("issuer", b"x\xff\xc3\xa9")).unwrap();
    assert_eq!(s.bearer.unwrap().issuer, "x\u{fffd}\u{fffd}\u{fffd}");
}

#[test]
fn kong_numbers_in_jwks_must_be_finite() {
    // Kong reads NaN, Infinity and 1e400 and then cannot encode them: it would hand the
    // filter no configuration. The schema refuses them; finite numbers pass.
    let jwks = |value: &str| slot_bytes("jwks", value.as_bytes());
    assert_everywhere(&[
        (
            "e 1e400",
            jwks(r#"{"keys": [{"kty": "RSA", "e": 1e400}]}"#),
            Expect::Refuse,
        ),
        (
            "e -1e400",
            jwks(r#"{"keys": [{"kty": "RSA", "e": -1e400}]}"#),
            Expect::Refuse,
        ),
        (
            "NaN",
            jwks(r#"{"keys": [{"kty": "RSA", "e": NaN}]}"#),
            Expect::Refuse,
        ),
        (
            "Infinity deep",
            jwks(r#"{"keys": [{"kty": "RSA", "oth": [{"r": Infinity}]}]}"#),
            Expect::Refuse,
        ),
        (
            "beside keys",
            jwks(r#"{"keys": [], "x": [-Infinity]}"#),
            Expect::Refuse,
        ),
        (
            "a huge finite number",
            jwks(r#"{"keys": [{"kty": "RSA", "e": 123456789012345678901234567890}]}"#),
            Expect::Accept,
        ),
        (
            "1e308 either way",
            jwks(r#"{"keys": [{"kty": "RSA", "e": 1e308, "f": -1e308}]}"#),
            Expect::Accept,
        ),
        (
            // finite, but Kong's 16 digits make it 1.797693134862316e308: infinite
            "the largest double",
            jwks(r#"{"keys": [{"kty": "RSA", "e": 1.7976931348623157e308}]}"#),
            Expect::Refuse,
        ),
        (
            "past -1e308",
            jwks(r#"{"keys": [{"kty": "RSA", "e": -1.00000000000001e308}]}"#),
            Expect::Refuse,
        ),
        (
            "numbers and strings",
            jwks(
                r#"{"keys": [{"kty": "EC", "x": 0, "y": -0, "z": [1.5, "a", null, true]}], "n": 5}"#,
            ),
            Expect::Accept,
        ),
    ]);
}

#[test]
fn ipv4_mapped_trusted_ips_are_refused_by_schema_and_filter() {
    // `::ffff:0:0/96` is 0.0.0.0/0 once peers are compared as IPv4: refused as written, by
    // both, whatever the spelling; IPv6 blocks that merely contain ffff are not mapped.
    let validator = validator();
    for mapped in [
        "::ffff:0:0/96",
        "::FFFF:10.0.0.0/104",
        "0:0:0:0:0:ffff:0:0/96",
        "::ffff:10.1.2.3",
    ] {
        let c = with(
            full(),
            "client_certificate",
            with(header_source("xfcc"), "trusted_ips", json!([mapped])),
        );
        assert_both_refuse(mapped, &validator, &c);
        let e = rust_load(&c).unwrap_err();
        assert!(
            e.contains("client_certificate.trusted_ips[0]") && e.contains("IPv4-mapped"),
            "{e}"
        );
    }
    for fine in ["2001:db8::ffff:0:0/96", "fe80::ffff:1", "10.0.0.0/8", "::1"] {
        let c = with(
            full(),
            "client_certificate",
            with(header_source("xfcc"), "trusted_ips", json!([fine])),
        );
        assert_both_accept(fine, &validator, &c);
    }
}

#[test]
fn proxies_may_be_told_by_their_certificates_instead_of_their_addresses() {
    let validator = validator();
    let only_certs = json!({"source": "header", "header": "client-cert", "format": "xfcc",
        "ca_certificates": CA_PEM, "trusted_proxy_certificates": [FINGERPRINT]});
    let c = with(full(), "client_certificate", only_certs.clone());
    assert_both_accept("fingerprints alone", &validator, &c);
    let neither = with(
        full(),
        "client_certificate",
        with(only_certs, "trusted_proxy_certificates", json!([])),
    );
    assert_both_refuse("neither addresses nor fingerprints", &validator, &neither);
    for bad in [
        "ab",
        "AB:CD",
        &format!("{FINGERPRINT}\n"),
        &format!(" {FINGERPRINT}"),
    ] {
        let c = with(
            full(),
            "client_certificate",
            with(
                header_source("xfcc"),
                "trusted_proxy_certificates",
                json!([bad]),
            ),
        );
        assert_both_refuse(bad, &validator, &c);
    }
}

#[test]
fn dpop_origins_one_or_a_list_and_a_warning_without_either() {
    let validator = validator();
    let on = with(full(), "proof_of_possession_dpop", json!("optional"));
    let s = rust_load(&on).unwrap();
    assert!(
        s.warnings
            .iter()
            .any(|w| w.contains("without dpop_external_url or dpop_allowed_origins")),
        "{:?}",
        s.warnings
    );
    let listed = with(
        on.clone(),
        "dpop_allowed_origins",
        json!(["https://api.example", "https://API2.example:443"]),
    );
    assert_both_accept("a list", &validator, &listed);
    let s = rust_load(&listed).unwrap();
    assert!(
        !s.warnings
            .iter()
            .any(|w| w.contains("dpop_allowed_origins")),
        "{:?}",
        s.warnings
    );
    let both = with(listed, "dpop_external_url", json!("https://api.example"));
    assert_both_refuse("both", &validator, &both);
    for bad in [
        "https://api.example/",
        "api.example",
        "https://a b",
        "ftp://api.example",
    ] {
        let c = with(on.clone(), "dpop_allowed_origins", json!([bad]));
        assert_both_refuse(bad, &validator, &c);
    }
    // An empty list (Kong hands one over as {}) stands beside the one origin.
    assert_both_accept(
        "an empty list",
        &validator,
        &with(
            with(on, "dpop_external_url", json!("https://api.example")),
            "dpop_allowed_origins",
            json!([]),
        ),
    );
}
