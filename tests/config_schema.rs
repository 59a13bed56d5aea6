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
        "object" if p["additionalProperties"].is_object() => {
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
                with(header_source("xfcc"), "trusted_ips", json!([""])),
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

#[test]
fn schema_and_filter_agree_on_generated_configurations() {
    let validator = validator();
    let mut checked = 0;
    let mut accepted = 0;
    let mut disagreements = Vec::new();
    let mut check = |config: &Value| {
        let schema_ok = validator.is_valid(config);
        let rust = rust_load(config);
        checked += 1;
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
    };
    let fields = field_values();
    for base in bases() {
        check(&base);
        for (field, values) in &fields {
            for value in values {
                let one = set_field(&base, field, value);
                check(&one);
                // And each value next to each method's toggles.
                for methods in [json!(["bearer"]), json!(["introspection"])] {
                    check(&set_field(&one, "auth_methods", &methods));
                }
            }
        }
    }
    assert!(checked > 1000, "{checked}");
    assert!(
        disagreements.is_empty(),
        "{} of {checked} configurations disagree:\n{}",
        disagreements.len(),
        disagreements[..disagreements.len().min(15)].join("\n")
    );
    eprintln!("{checked} generated configurations, {accepted} accepted by both");
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
