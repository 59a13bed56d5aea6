//! Certificate inputs: `from_header` in every `HeaderFormat` (RFC 9440, XFCC, URL-encoded PEM,
//! base64 DER) and `Thumbprint::from_pem`, `from_der`, `from_hex`, all on every input.
//!
//! Asserted: the forms agree (a DER that parses gives the same thumbprint as base64 DER, as
//! RFC 9440 and as PEM; a PEM the same URL-encoded); a hex digest reads back as itself; an XFCC
//! thumbprint is one the header spelled out.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use certbound::binding::certificate::{HeaderFormat, Thumbprint, from_header};
use certbound_fuzz::{certs, hex, thumbprint_bytes, write_seeds};
use libfuzzer_sys::fuzz_target;
use percent_encoding::{NON_ALPHANUMERIC, percent_encode};

const MAX: usize = 32 * 1024;

fn pem_of(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

fn seeds() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (i, c) in certs().iter().enumerate() {
        let url = percent_encode(c.pem.as_bytes(), NON_ALPHANUMERIC).to_string();
        let b64 = STANDARD.encode(&c.der);
        for (name, v) in [
            ("pem", c.pem.to_string()),
            ("url-pem", url.clone()),
            ("rfc9440", format!(":{b64}:")),
            ("base64-der", b64.clone()),
            ("hex", c.hex.clone()),
            (
                "xfcc",
                format!(
                    "Hash={};Cert=\"{url}\";Subject=\"CN=fuzz\";URI=;DNS=a.example",
                    c.hex
                ),
            ),
            (
                "xfcc-by",
                format!("By=spiffe://gw;Hash={};Subject=\"CN=a\\,b\\\"c\"", c.hex),
            ),
            (
                "xfcc-two",
                format!("Hash={};URI=x,By=spiffe://gw;Hash={}", c.hex, c.hex),
            ),
        ] {
            out.push((format!("{name}-{i}"), v.into_bytes()));
        }
        out.push((format!("der-{i}"), c.der.clone()));
    }
    out
}

fuzz_target!(
    init: write_seeds("certificate", seeds),
    |data: &[u8]| {
        let formats = [
            HeaderFormat::Rfc9440,
            HeaderFormat::Xfcc,
            HeaderFormat::UrlEncodedPem,
            HeaderFormat::Base64Der,
        ];
        let headers = formats.map(|f| from_header(data, f).map(|c| c.thumbprint));
        // A certificate read whole is kept as the DER it was read from, and an XFCC hash
        // alone has none.
        for (f, got) in formats.iter().zip(formats.map(|f| from_header(data, f))) {
            if let Ok(c) = got {
                match &c.der {
                    Some(der) => assert_eq!(Thumbprint::from_der(der), Ok(c.thumbprint), "{f:?}"),
                    None => assert_eq!(*f, HeaderFormat::Xfcc, "no DER from {f:?}"),
                }
            }
        }
        let pem = Thumbprint::from_pem(data);
        let der = Thumbprint::from_der(data);
        let hexed = Thumbprint::from_hex(data);

        if let Ok(tp) = &der {
            let b64 = STANDARD.encode(data);
            if b64.len() + 2 <= MAX {
                let got = from_header(b64.as_bytes(), HeaderFormat::Base64Der);
                assert_eq!(got.as_ref().map(|c| &c.thumbprint), Ok(tp));
                assert_eq!(got.ok().and_then(|c| c.der).as_deref(), Some(data));
                let sf = format!(":{b64}:");
                let got = from_header(sf.as_bytes(), HeaderFormat::Rfc9440);
                assert_eq!(got.as_ref().map(|c| &c.thumbprint), Ok(tp));
                assert_eq!(got.ok().and_then(|c| c.der).as_deref(), Some(data));
            }
            let p = pem_of(data);
            if p.len() <= MAX {
                assert_eq!(Thumbprint::from_pem(p.as_bytes()).as_ref(), Ok(tp));
            }
        }
        if let Ok(tp) = &pem {
            let url = percent_encode(data, NON_ALPHANUMERIC).to_string();
            if url.len() <= MAX {
                let got = from_header(url.as_bytes(), HeaderFormat::UrlEncodedPem);
                assert_eq!(got.map(|c| c.thumbprint).as_ref(), Ok(tp));
            }
        }
        if let Ok(tp) = &hexed {
            let text = std::str::from_utf8(data).expect("hex is ASCII");
            assert_eq!(hex(&thumbprint_bytes(tp)), text.trim().to_ascii_lowercase());
        }
        if let Ok(tp) = &headers[1] {
            let text = String::from_utf8_lossy(data).to_ascii_lowercase();
            let h = hex(&thumbprint_bytes(tp));
            assert!(text.contains(&h), "XFCC gave {h}, which it does not spell out");
        }
    }
);
