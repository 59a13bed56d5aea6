//! The client certificate's SHA-256 thumbprint (RFC 8705 §3.1 `x5t#S256`), from whatever
//! form the host or a trusted proxy hands it over in.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use der::Decode;
use ipnet::IpNet;
use percent_encoding::percent_decode_str;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use x509_cert::Certificate;

/// Largest certificate blob we look at; real client certificates are 1-3 KiB.
const MAX_CERT_INPUT: usize = 32 * 1024;

/// Standard base64 that tolerates missing padding (RFC 8941 parsers should).
const STANDARD_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeaderFormat {
    /// RFC 9440 `Client-Cert: :<base64 DER>:`.
    Rfc9440,
    /// Envoy `x-forwarded-client-cert` (`Hash=` / `Cert=` of the last element).
    Xfcc,
    /// URL-encoded PEM (nginx `$ssl_client_escaped_cert`).
    UrlEncodedPem,
    /// Base64 of the DER certificate.
    Base64Der,
}

/// SHA-256 of a certificate's DER encoding.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Thumbprint([u8; 32]);

/// Why a presented certificate could not be used. Never carries certificate bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertError {
    TooLarge,
    NotPem,
    NotDer,
    NotCertificate,
    BadDigest,
    BadHeaderSyntax,
    /// An XFCC element whose `Hash` and `Cert` describe different certificates.
    Inconsistent,
    /// An XFCC header that is not exactly one element.
    XfccElements,
}

impl fmt::Display for CertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CertError::TooLarge => "certificate input too large",
            CertError::NotPem => "not a PEM certificate",
            CertError::NotDer => "not base64 of DER",
            CertError::NotCertificate => "not an X.509 certificate",
            CertError::BadDigest => "not a hex SHA-256 digest",
            CertError::BadHeaderSyntax => "malformed certificate header",
            CertError::Inconsistent => "XFCC Hash and Cert disagree",
            CertError::XfccElements => "XFCC must hold exactly one element",
        })
    }
}

impl Thumbprint {
    /// From the certificate's DER, which must parse as an X.509 certificate: an arbitrary blob
    /// hashed as if it were one would let a proxy bug masquerade as a binding.
    pub fn from_der(der: &[u8]) -> Result<Thumbprint, CertError> {
        if der.len() > MAX_CERT_INPUT {
            return Err(CertError::TooLarge);
        }
        Certificate::from_der(der).map_err(|_| CertError::NotCertificate)?;
        Ok(Thumbprint(Sha256::digest(der).into()))
    }

    /// From PEM text; the first certificate block is the leaf.
    pub fn from_pem(pem: &[u8]) -> Result<Thumbprint, CertError> {
        Thumbprint::from_der(&first_pem_certificate(pem)?)
    }

    /// From a hex SHA-256 digest (Envoy's `sha256_peer_certificate_digest`, XFCC `Hash=`).
    pub fn from_hex(hex: &[u8]) -> Result<Thumbprint, CertError> {
        let hex = hex.trim_ascii();
        if hex.len() != 64 {
            return Err(CertError::BadDigest);
        }
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        };
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
            let (Some(hi), Some(lo)) = (
                pair.first().copied().and_then(nibble),
                pair.get(1).copied().and_then(nibble),
            ) else {
                return Err(CertError::BadDigest);
            };
            *byte = hi << 4 | lo;
        }
        Ok(Thumbprint(out))
    }

    /// The `x5t#S256` form: base64url without padding.
    pub fn to_x5t_s256(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// Constant-time comparison with a token's `cnf["x5t#S256"]`. Only the exact RFC 8705
    /// encoding matches: hex or padded values are refused, not normalised.
    pub fn matches_x5t_s256(&self, claimed: &str) -> bool {
        let Ok(bytes) = URL_SAFE_NO_PAD.decode(claimed) else {
            return false;
        };
        bytes.len() == 32 && bool::from(bytes.as_slice().ct_eq(&self.0))
    }
}

impl fmt::Debug for Thumbprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Thumbprint({})", self.to_x5t_s256())
    }
}

/// The DER of the first certificate block of PEM text.
fn first_pem_certificate(pem: &[u8]) -> Result<Vec<u8>, CertError> {
    if pem.len() > MAX_CERT_INPUT {
        return Err(CertError::TooLarge);
    }
    let text = std::str::from_utf8(pem)
        .map_err(|_| CertError::NotPem)?
        .trim();
    const END: &str = "-----END CERTIFICATE-----";
    let first = text
        .find(END)
        .and_then(|i| text.get(..i + END.len()))
        .ok_or(CertError::NotPem)?;
    let (label, der) = der::pem::decode_vec(first.as_bytes()).map_err(|_| CertError::NotPem)?;
    if label != "CERTIFICATE" {
        return Err(CertError::NotPem);
    }
    Ok(der)
}

/// A certificate a TLS-terminating proxy put in a header: its thumbprint, the certificate
/// itself when the header carried it (XFCC may carry only the hash), and the intermediates
/// it carried (XFCC `Chain=`, RFC 9440 `Client-Cert-Chain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderCertificate {
    pub thumbprint: Thumbprint,
    pub der: Option<Vec<u8>>,
    pub chain: Vec<Vec<u8>>,
}

impl HeaderCertificate {
    fn from_der(der: Vec<u8>) -> Result<HeaderCertificate, CertError> {
        Ok(HeaderCertificate {
            thumbprint: Thumbprint::from_der(&der)?,
            der: Some(der),
            chain: Vec::new(),
        })
    }
}

/// RFC 9440 `Client-Cert-Chain`: a list of byte sequences, `:<base64 DER>:` each; an item
/// that does not decode is left out (the path is then unlikely to verify: fail closed).
pub fn chain_from_rfc9440(value: &[u8]) -> Vec<Vec<u8>> {
    if value.len() > MAX_CERT_INPUT * 4 {
        return Vec::new();
    }
    let Ok(text) = std::str::from_utf8(value) else {
        return Vec::new();
    };
    text.split(',')
        .filter_map(|item| {
            let inner = item.trim().strip_prefix(':')?.strip_suffix(':')?;
            STANDARD_LENIENT.decode(inner).ok()
        })
        .collect()
}

/// The certificate in a header set by a TLS-terminating proxy.
pub fn from_header(value: &[u8], format: HeaderFormat) -> Result<HeaderCertificate, CertError> {
    if value.len() > MAX_CERT_INPUT {
        return Err(CertError::TooLarge);
    }
    let text = std::str::from_utf8(value)
        .map_err(|_| CertError::BadHeaderSyntax)?
        .trim();
    match format {
        HeaderFormat::Rfc9440 => {
            let inner = text
                .strip_prefix(':')
                .and_then(|t| t.strip_suffix(':'))
                .ok_or(CertError::BadHeaderSyntax)?;
            let der = STANDARD_LENIENT
                .decode(inner)
                .map_err(|_| CertError::NotDer)?;
            HeaderCertificate::from_der(der)
        }
        HeaderFormat::Base64Der => {
            let der = STANDARD_LENIENT
                .decode(text)
                .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')))
                .map_err(|_| CertError::NotDer)?;
            HeaderCertificate::from_der(der)
        }
        HeaderFormat::UrlEncodedPem => {
            let pem = percent_decode_str(text).collect::<Vec<u8>>();
            HeaderCertificate::from_der(first_pem_certificate(&pem)?)
        }
        HeaderFormat::Xfcc => from_xfcc(text),
    }
}

/// Envoy XFCC, read by one rule: the header holds exactly one element, with exactly one `Hash`
/// (which Envoy always writes) and at most one `Cert` that must agree with it.
///
/// Why one element: a front Envoy writes the client's URI and DNS SANs unquoted and unescaped
/// (docs/hosts.md), so a certificate whose SAN is `x,Hash=<victim>` makes its own element look
/// like two, and with `x;Hash=...` like one with two hashes. No parse can tell an appended
/// element of a proxy chain from one a client wrote into its certificate, so a second element,
/// a repeated `Hash`/`Cert`, a stray quote or an unterminated one make the header unusable.
/// The front proxy must replace the header (`SANITIZE_SET`), not append to it.
fn from_xfcc(text: &str) -> Result<HeaderCertificate, CertError> {
    let mut elements = parse_xfcc(text)?;
    if elements.len() != 1 {
        return Err(CertError::XfccElements);
    }
    let element = elements.pop().ok_or(CertError::BadHeaderSyntax)?;
    let (mut hash, mut cert, mut chain) = (None, None, None);
    for (key, value) in element {
        let slot = match key.to_ascii_lowercase().as_str() {
            "hash" => &mut hash,
            "cert" => &mut cert,
            "chain" => &mut chain,
            _ => continue,
        };
        if slot.is_some() {
            return Err(CertError::BadHeaderSyntax);
        }
        *slot = Some(value);
    }
    let thumbprint = Thumbprint::from_hex(hash.ok_or(CertError::BadHeaderSyntax)?.as_bytes())?;
    let der = match cert {
        Some(cert) => {
            let der = first_pem_certificate(&percent_decode_str(&cert).collect::<Vec<u8>>())?;
            if Thumbprint::from_der(&der)? != thumbprint {
                return Err(CertError::Inconsistent);
            }
            Some(der)
        }
        None => None,
    };
    // Envoy's Chain= is the whole chain, leaf included; extra certificates do not hurt path
    // building.
    let chain = chain
        .map(|c| {
            let pem = percent_decode_str(&c).decode_utf8_lossy().into_owned();
            crate::binding::chain::pem_blocks(&pem, "CERTIFICATE").0
        })
        .unwrap_or_default();
    Ok(HeaderCertificate {
        thumbprint,
        der,
        chain,
    })
}

type XfccElement = Vec<(String, String)>;

/// Elements of `key=value` pairs; a value is a token (no `"`, `;`, `,`) or a quoted string
/// (backslash escapes).
fn parse_xfcc(text: &str) -> Result<Vec<XfccElement>, CertError> {
    let bad = CertError::BadHeaderSyntax;
    let mut elements = Vec::new();
    let mut pairs = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_ascii_whitespace()).is_some() {}
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| !matches!(c, '=' | ';' | ',' | '"')) {
            key.push(c);
        }
        if chars.next() != Some('=') || key.trim().is_empty() {
            return Err(bad);
        }
        let mut value = String::new();
        if chars.next_if_eq(&'"').is_some() {
            loop {
                match chars.next().ok_or(bad)? {
                    '"' => break,
                    '\\' => value.push(chars.next().ok_or(bad)?),
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !matches!(c, ';' | ',')) {
                if c == '"' {
                    return Err(bad);
                }
                value.push(c);
            }
        }
        pairs.push((key.trim().to_string(), value.trim().to_string()));
        while chars.next_if(|c| c.is_ascii_whitespace()).is_some() {}
        match chars.next() {
            Some(';') => {}
            Some(',') => elements.push(std::mem::take(&mut pairs)),
            None => {
                elements.push(pairs);
                return Ok(elements);
            }
            Some(_) => return Err(bad),
        }
    }
}

/// The peer address from `source.address`: `ip:port` on Envoy, a bare `ip` on Kong's engine.
pub fn parse_source_address(raw: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(raw).ok()?.trim();
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .map(|ip| ip.to_canonical())
}

/// Whether `peer` is one of the proxies allowed to assert the client certificate.
pub fn is_trusted(peer: Option<IpAddr>, trusted: &[IpNet]) -> bool {
    peer.is_some_and(|ip| trusted.iter().any(|net| net.contains(&ip)))
}
