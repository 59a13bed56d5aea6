//! Certificate thumbprints (RFC 8705 §3.1 x5t#S256) checked against openssl's, from every
//! form a host or a trusted proxy hands the certificate over in.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use certbound::binding::certificate::{self, CertError, HeaderFormat, Thumbprint};
use support::{TestCert, pki};

fn all_certs() -> [&'static TestCert; 3] {
    let p = pki();
    [&p.rsa, &p.ec, &p.ed25519]
}

fn url_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[test]
fn thumbprint_of_der_and_pem_equals_openssls_for_rsa_ec_and_ed25519_certificates() {
    for cert in all_certs() {
        assert_eq!(
            Thumbprint::from_der(&cert.der).unwrap().to_x5t_s256(),
            cert.x5t_openssl,
            "{}",
            cert.name
        );
        assert_eq!(
            Thumbprint::from_pem(cert.pem.as_bytes())
                .unwrap()
                .to_x5t_s256(),
            cert.x5t_openssl,
            "{}",
            cert.name
        );
        assert_eq!(
            Thumbprint::from_hex(cert.sha256_hex.as_bytes())
                .unwrap()
                .to_x5t_s256(),
            cert.x5t_openssl
        );
        assert_eq!(
            cert.x5t_openssl.len(),
            43,
            "base64url of 32 bytes, no padding"
        );
    }
}

#[test]
fn uppercase_hex_digest_is_the_same_thumbprint() {
    let cert = &pki().ec;
    let upper = cert.sha256_hex.to_uppercase();
    assert_eq!(
        Thumbprint::from_hex(upper.as_bytes())
            .unwrap()
            .to_x5t_s256(),
        cert.x5t_openssl
    );
}

#[test]
fn pem_chain_uses_the_leaf() {
    let p = pki();
    let chain = format!("{}{}", p.ec.pem, p.rsa.pem);
    assert_eq!(
        Thumbprint::from_pem(chain.as_bytes())
            .unwrap()
            .to_x5t_s256(),
        p.ec.x5t_openssl
    );
}

#[test]
fn blobs_that_are_not_certificates_give_no_thumbprint() {
    let p = pki();
    // A private key PEM, a public key PEM, garbage inside a CERTIFICATE block, truncated DER.
    let key_pem = std::fs::read_to_string(p.dir.join("client-ec.key")).unwrap();
    assert_eq!(
        Thumbprint::from_pem(key_pem.as_bytes()),
        Err(CertError::NotPem)
    );
    let fake = "-----BEGIN CERTIFICATE-----\nAAECAwQFBgcICQ==\n-----END CERTIFICATE-----\n";
    assert_eq!(
        Thumbprint::from_pem(fake.as_bytes()),
        Err(CertError::NotCertificate)
    );
    assert_eq!(
        Thumbprint::from_der(&p.ec.der[..p.ec.der.len() - 1]),
        Err(CertError::NotCertificate)
    );
    assert_eq!(
        Thumbprint::from_der(b"hello"),
        Err(CertError::NotCertificate)
    );
    assert_eq!(Thumbprint::from_pem(b""), Err(CertError::NotPem));
    for bad in ["", "abc", &"g".repeat(64), &"a".repeat(63), &"a".repeat(66)] {
        assert_eq!(
            Thumbprint::from_hex(bad.as_bytes()),
            Err(CertError::BadDigest),
            "{bad}"
        );
    }
}

#[test]
fn comparison_accepts_only_the_exact_rfc8705_encoding() {
    let cert = &pki().rsa;
    let tp = Thumbprint::from_der(&cert.der).unwrap();
    assert!(tp.matches_x5t_s256(&cert.x5t_openssl));
    // The common bugs in the wild: hex, padded base64url, standard base64.
    let padded = format!("{}=", cert.x5t_openssl);
    let standard = cert.x5t_openssl.replace('-', "+").replace('_', "/");
    assert!(!tp.matches_x5t_s256(&cert.sha256_hex));
    assert!(!tp.matches_x5t_s256(&padded));
    if standard != cert.x5t_openssl {
        assert!(!tp.matches_x5t_s256(&standard));
    }
    assert!(!tp.matches_x5t_s256(""));
    assert!(!tp.matches_x5t_s256(&pki().ec.x5t_openssl));
}

#[test]
fn rfc9440_client_cert_header() {
    for cert in all_certs() {
        let value = format!(":{}:", STANDARD.encode(&cert.der));
        let tp = certificate::from_header(value.as_bytes(), HeaderFormat::Rfc9440).unwrap();
        assert_eq!(tp.thumbprint.to_x5t_s256(), cert.x5t_openssl);
    }
    let bare = STANDARD.encode(&pki().ec.der);
    assert_eq!(
        certificate::from_header(bare.as_bytes(), HeaderFormat::Rfc9440),
        Err(CertError::BadHeaderSyntax)
    );
    assert_eq!(
        certificate::from_header(b":!!!:", HeaderFormat::Rfc9440),
        Err(CertError::NotDer)
    );
}

#[test]
fn base64_der_header() {
    let cert = &pki().ed25519;
    let tp = certificate::from_header(
        STANDARD.encode(&cert.der).as_bytes(),
        HeaderFormat::Base64Der,
    )
    .unwrap();
    assert_eq!(tp.thumbprint.to_x5t_s256(), cert.x5t_openssl);
    assert!(certificate::from_header(b"bm90IGEgY2VydA==", HeaderFormat::Base64Der).is_err());
}

#[test]
fn url_encoded_pem_header_as_nginx_escapes_it() {
    let cert = &pki().rsa;
    let tp = certificate::from_header(
        url_encode(&cert.pem).as_bytes(),
        HeaderFormat::UrlEncodedPem,
    )
    .unwrap();
    assert_eq!(tp.thumbprint.to_x5t_s256(), cert.x5t_openssl);
    assert!(certificate::from_header(b"%2D%2D%2D", HeaderFormat::UrlEncodedPem).is_err());
}

#[test]
fn xfcc_whose_hash_and_cert_disagree_is_refused() {
    let p = pki();
    let value = format!(
        "Hash={};Cert=\"{}\"",
        p.rsa.sha256_hex,
        url_encode(&p.ec.pem)
    );
    assert_eq!(
        certificate::from_header(value.as_bytes(), HeaderFormat::Xfcc),
        Err(CertError::Inconsistent)
    );
    assert!(certificate::from_header(b"Subject=\"CN=a\"", HeaderFormat::Xfcc).is_err());
    assert!(certificate::from_header(b"Hash=\"unterminated", HeaderFormat::Xfcc).is_err());
}

#[test]
fn source_address_parses_envoy_and_nginx_forms() {
    use std::net::IpAddr;
    let ip = |s: &str| certificate::parse_source_address(s.as_bytes());
    assert_eq!(
        ip("10.1.2.3:45976"),
        Some("10.1.2.3".parse::<IpAddr>().unwrap())
    );
    assert_eq!(ip("10.1.2.3"), Some("10.1.2.3".parse::<IpAddr>().unwrap()));
    assert_eq!(
        ip("[2001:db8::1]:443"),
        Some("2001:db8::1".parse::<IpAddr>().unwrap())
    );
    assert_eq!(
        ip("2001:db8::1"),
        Some("2001:db8::1".parse::<IpAddr>().unwrap())
    );
    // An IPv4-mapped IPv6 peer matches an IPv4 range.
    assert_eq!(
        ip("[::ffff:10.0.0.1]:1"),
        Some("10.0.0.1".parse::<IpAddr>().unwrap())
    );
    assert_eq!(ip("not an address"), None);
}

#[test]
fn only_listed_proxies_are_trusted() {
    let nets = vec![
        "10.0.0.0/8".parse().unwrap(),
        "2001:db8::/32".parse().unwrap(),
    ];
    let ip = |s: &str| certificate::parse_source_address(s.as_bytes());
    assert!(certificate::is_trusted(ip("10.9.8.7:1"), &nets));
    assert!(certificate::is_trusted(ip("2001:db8::5"), &nets));
    assert!(!certificate::is_trusted(ip("11.0.0.1:1"), &nets));
    assert!(!certificate::is_trusted(ip("192.168.1.1"), &nets));
    assert!(!certificate::is_trusted(None, &nets));
}

#[test]
fn xfcc_quote_smuggling_by_the_client_is_refused() {
    // The client sends `Hash=<victim>;Subject="` and a front Envoy (APPEND_FORWARD) appends its
    // own element: the unbalanced quote would swallow the proxy's comma.
    let p = pki();
    let value = format!(
        "Hash={};Subject=\",By=spiffe://gw;Hash={};Subject=\"CN=client-b\"",
        p.ec.sha256_hex, p.rsa.sha256_hex
    );
    assert_eq!(
        certificate::from_header(value.as_bytes(), HeaderFormat::Xfcc),
        Err(CertError::BadHeaderSyntax)
    );
    // A quote inside an unquoted value, a dangling escape.
    for bad in ["Hash=ab\"c", "Cert=\"abc\\", "Hash=\"abc"] {
        assert!(
            certificate::from_header(bad.as_bytes(), HeaderFormat::Xfcc).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn xfcc_with_a_second_hash_injected_through_an_unescaped_san_is_refused() {
    // Envoy writes URI/DNS SANs unescaped: a SAN `x;Hash=<victim>` adds a second Hash key.
    let p = pki();
    let value = format!("Hash={};URI=x;Hash={}", p.rsa.sha256_hex, p.ec.sha256_hex);
    assert_eq!(
        certificate::from_header(value.as_bytes(), HeaderFormat::Xfcc),
        Err(CertError::BadHeaderSyntax)
    );
}

#[test]
fn hex_digest_accepts_only_hex_digits() {
    let tricky = format!("+a{}", "0".repeat(62));
    assert_eq!(
        Thumbprint::from_hex(tricky.as_bytes()),
        Err(CertError::BadDigest)
    );
}

/// `x-forwarded-client-cert` exactly as a front Envoy with `SANITIZE_SET` writes it
/// (docs/hosts.md): `Hash` first, then `Cert`, `Subject` (quoted, RFC 2253-escaped), `URI` and
/// `DNS` (unquoted, unescaped: whatever the certificate's SANs hold).
fn envoy_xfcc(cert: &TestCert, subject: &str, uri: &str, dns: &str) -> String {
    format!(
        "Hash={};Cert=\"{}\";Subject=\"{}\";URI={};DNS={}",
        cert.sha256_hex,
        url_encode(&cert.pem),
        subject,
        uri,
        dns
    )
}

#[test]
fn xfcc_one_element_from_a_front_envoy_is_read() {
    let p = pki();
    let value = envoy_xfcc(
        &p.ec,
        "CN=client-ec,O=certbound tests",
        "spiffe://tests/client",
        "client.example",
    );
    let tp = certificate::from_header(value.as_bytes(), HeaderFormat::Xfcc).unwrap();
    assert_eq!(tp.thumbprint.to_x5t_s256(), p.ec.x5t_openssl);
    // Subject escapes (RFC 2253 inside a quoted string) and an empty URI are fine.
    let value = envoy_xfcc(&p.ec, r#"CN=a\,b\;c\=d\"e\\,O=x"#, "", "a.example");
    let tp = certificate::from_header(value.as_bytes(), HeaderFormat::Xfcc).unwrap();
    assert_eq!(tp.thumbprint.to_x5t_s256(), p.ec.x5t_openssl);
    // `By=` (the front proxy's own URI SANs) may come first, even repeated.
    let value = format!(
        "By=spiffe://gw;By=spiffe://gw2;{}",
        envoy_xfcc(&p.rsa, "CN=a", "", "")
    );
    let tp = certificate::from_header(value.as_bytes(), HeaderFormat::Xfcc).unwrap();
    assert_eq!(tp.thumbprint.to_x5t_s256(), p.rsa.x5t_openssl);
}

#[test]
fn xfcc_element_injected_through_a_uri_or_dns_san_is_refused() {
    // The attack: a certificate from the front proxy's CA whose URI or DNS SAN is
    // `x,Hash=<victim's hex>`. Envoy writes it unescaped, so the comma starts a second element
    // that carries the victim's thumbprint. Nothing inside the client's own certificate may
    // change which thumbprint is read: the header must hold exactly one element.
    let p = pki();
    let (attacker, victim) = (&p.other, &p.ec);
    for (uri, dns) in [
        (format!("x,Hash={}", victim.sha256_hex), String::new()),
        (String::new(), format!("x,Hash={}", victim.sha256_hex)),
        (
            format!("x,By=spiffe://gw;Hash={}", victim.sha256_hex),
            String::new(),
        ),
        (
            format!(
                "x,Hash={};Cert=\"{}\"",
                victim.sha256_hex,
                url_encode(&victim.pem)
            ),
            String::new(),
        ),
    ] {
        let value = envoy_xfcc(attacker, "CN=attacker", &uri, &dns);
        let read = certificate::from_header(value.as_bytes(), HeaderFormat::Xfcc);
        assert_eq!(read, Err(CertError::XfccElements), "{uri} {dns}");
    }
    // Without a comma the injected key repeats one of the element's keys, or disagrees.
    for uri in [
        format!("x;Hash={}", victim.sha256_hex),
        format!("x;Cert=\"{}\"", url_encode(&victim.pem)),
    ] {
        let value = envoy_xfcc(attacker, "CN=attacker", &uri, "");
        assert!(
            certificate::from_header(value.as_bytes(), HeaderFormat::Xfcc).is_err(),
            "{uri}"
        );
    }
    let hash_only = format!(
        "Hash={};URI=x;Cert=\"{}\"",
        attacker.sha256_hex,
        url_encode(&victim.pem)
    );
    assert_eq!(
        certificate::from_header(hash_only.as_bytes(), HeaderFormat::Xfcc),
        Err(CertError::Inconsistent)
    );
    // A quote in a SAN cannot open a quoted string that swallows the rest.
    let value = envoy_xfcc(attacker, "CN=attacker", "x\"y", "");
    assert!(certificate::from_header(value.as_bytes(), HeaderFormat::Xfcc).is_err());
}

#[test]
fn xfcc_with_more_than_one_element_is_refused() {
    // A proxy chain that appends (APPEND_FORWARD) cannot be told apart from an injected
    // element; the front proxy must replace the header (SANITIZE_SET).
    let p = pki();
    let value = format!(
        "{},{}",
        envoy_xfcc(&p.rsa, "CN=far", "", ""),
        envoy_xfcc(&p.ec, "CN=near", "", "")
    );
    assert_eq!(
        certificate::from_header(value.as_bytes(), HeaderFormat::Xfcc),
        Err(CertError::XfccElements)
    );
    assert_eq!(
        certificate::from_header(b"", HeaderFormat::Xfcc),
        Err(CertError::BadHeaderSyntax)
    );
}

#[test]
fn xfcc_needs_the_hash_envoy_always_writes() {
    let p = pki();
    let hash_only = format!("Hash={};Subject=\"CN=a\"", p.rsa.sha256_hex);
    assert_eq!(
        certificate::from_header(hash_only.as_bytes(), HeaderFormat::Xfcc)
            .unwrap()
            .thumbprint
            .to_x5t_s256(),
        p.rsa.x5t_openssl
    );
    // A Cert without a Hash: Envoy never writes that, so something else wrote the header.
    let cert_only = format!("Cert=\"{}\"", url_encode(&p.ed25519.pem));
    assert_eq!(
        certificate::from_header(cert_only.as_bytes(), HeaderFormat::Xfcc),
        Err(CertError::BadHeaderSyntax)
    );
}
