//! Structure-aware XFCC: headers built from elements of `key=value` pairs (Hash, Cert, Chain,
//! By, Subject, URI, DNS, others; values quoted or not, hashes of the test certificates or
//! other hex, certificates URL-encoded, client-controlled text with injection attempts), then
//! `from_header(.., HeaderFormat::Xfcc)`.
//!
//! Asserted, for headers whose values are written cleanly (quoted values escaped, unquoted ones
//! without `;` `,` `"`): one element with one `Hash=H` (at most one agreeing `Cert`, at most one
//! `Chain`) gives H, anything else is refused, and two or more elements are always refused. For
//! headers as a front Envoy writes them (its fixed order: By, Hash, Cert, Chain, Subject, URI,
//! DNS; Hash in every element; URI and DNS values written raw, which a client controls through
//! its SANs): the thumbprint is always one of the Hash values the proxy wrote, never one a
//! client injected.
#![no_main]

use arbitrary::Arbitrary;
use certbound::binding::certificate::{HeaderFormat, Thumbprint, from_header};
use certbound_fuzz::CertChoice;
use libfuzzer_sys::fuzz_target;
use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};

/// What Envoy escapes in `Cert=` (URL encoding of the PEM).
const URL: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'%')
    .add(b'+')
    .add(b'/')
    .add(b'=')
    .add(b',')
    .add(b';')
    .add(b'\n');

#[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
enum Key {
    By,
    Hash,
    Cert,
    Chain,
    Subject,
    Uri,
    Dns,
}

impl Key {
    fn name(self) -> &'static str {
        match self {
            Key::By => "By",
            Key::Hash => "Hash",
            Key::Cert => "Cert",
            Key::Chain => "Chain",
            Key::Subject => "Subject",
            Key::Uri => "URI",
            Key::Dns => "DNS",
        }
    }
    /// Envoy's order within an element.
    fn rank(self) -> u8 {
        self as u8
    }
}

#[derive(Debug, Arbitrary)]
enum KeyName {
    Known(Key),
    /// The known name in another case, with spaces around.
    Cased(Key, u8, bool),
    Other(String),
}

/// Which certificate a value is about.
#[derive(Debug, Clone, Copy, Arbitrary)]
enum Which {
    A,
    B,
}

impl Which {
    fn cert(self) -> CertChoice {
        match self {
            Which::A => CertChoice::A,
            Which::B => CertChoice::B,
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Value {
    HashOf(Which),
    HashUpper(Which),
    /// Hex of these bytes (a digest of 32 bytes, or not).
    Hex(Vec<u8>),
    CertOf(Which),
    /// A certificate PEM with one byte changed.
    CertCorrupt(Which, u16),
    Text(String),
    /// Client-controlled text that tries to add a Hash of `Which`: `x,Hash=..`, `x;Hash=..`,
    /// with a quote, ...
    Inject(Injection, Which),
}

#[derive(Debug, Clone, Copy, Arbitrary)]
enum Injection {
    Element,
    Pair,
    ElementBy,
    QuoteOpen,
    QuoteClose,
    Backslash,
    Cert,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
enum Quoting {
    Plain,
    Quoted,
    /// Quoted without escaping what is inside (a proxy that gets it wrong).
    QuotedRaw,
}

#[derive(Debug, Arbitrary)]
struct Pair {
    key: KeyName,
    value: Value,
    quoting: Quoting,
    /// Spaces after the separator before this pair.
    space: bool,
}

#[derive(Debug, Arbitrary)]
struct Input {
    elements: Vec<Vec<Pair>>,
    /// Sort each element's pairs in Envoy's order.
    envoy_order: bool,
}

fn hex_of(c: Which) -> String {
    c.cert().cert().map(|c| c.hex.clone()).unwrap_or_default()
}

fn url_pem(c: Which) -> String {
    let pem = c.cert().cert().map(|c| c.pem).unwrap_or_default();
    utf8_percent_encode(pem, URL).to_string()
}

impl Pair {
    fn key_text(&self) -> String {
        match &self.key {
            KeyName::Known(k) => k.name().into(),
            KeyName::Cased(k, mask, spaced) => {
                let cased: String = k
                    .name()
                    .chars()
                    .enumerate()
                    .map(|(i, c)| {
                        if mask >> (i % 8) & 1 == 1 {
                            c.to_ascii_uppercase()
                        } else {
                            c.to_ascii_lowercase()
                        }
                    })
                    .collect();
                if *spaced { format!(" {cased} ") } else { cased }
            }
            KeyName::Other(s) => s.clone(),
        }
    }

    fn known(&self) -> Option<Key> {
        match &self.key {
            KeyName::Known(k) | KeyName::Cased(k, ..) => Some(*k),
            KeyName::Other(_) => None,
        }
    }

    fn value_text(&self) -> String {
        match &self.value {
            Value::HashOf(c) => hex_of(*c),
            Value::HashUpper(c) => hex_of(*c).to_ascii_uppercase(),
            Value::Hex(b) => b.iter().map(|b| format!("{b:02x}")).collect(),
            Value::CertOf(c) => url_pem(*c),
            Value::CertCorrupt(c, at) => {
                let mut pem = c
                    .cert()
                    .cert()
                    .map(|c| c.pem.as_bytes().to_vec())
                    .unwrap_or_default();
                if !pem.is_empty() {
                    let i = usize::from(*at) % pem.len();
                    pem[i] = pem[i].wrapping_add(1);
                }
                percent_encoding::percent_encode(&pem, URL).to_string()
            }
            Value::Text(s) => s.clone(),
            Value::Inject(how, c) => {
                let h = hex_of(*c);
                match how {
                    Injection::Element => format!("x,Hash={h}"),
                    Injection::Pair => format!("x;Hash={h}"),
                    Injection::ElementBy => format!("x,By=spiffe://gw;Hash={h}"),
                    Injection::QuoteOpen => format!("x\";Hash={h};Subject=\""),
                    Injection::QuoteClose => format!("\";Hash={h}"),
                    Injection::Backslash => format!("x\\\";Hash={h}"),
                    Injection::Cert => format!("x;Cert=\"{}\"", url_pem(*c)),
                }
            }
        }
    }

    fn written(&self) -> String {
        let v = self.value_text();
        let v = match self.quoting {
            Quoting::Plain => v,
            Quoting::Quoted => format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")),
            Quoting::QuotedRaw => format!("\"{v}\""),
        };
        let space = if self.space { " " } else { "" };
        format!("{space}{}={v}", self.key_text())
    }

    /// Written so that the parser reads back exactly this key and value.
    fn clean(&self) -> bool {
        let k = self.key_text();
        let key_ok = !k.trim().is_empty() && !k.contains(['=', ';', ',', '"']);
        let v = self.value_text();
        let value_ok = match self.quoting {
            Quoting::Plain => !v.contains([';', ',', '"']),
            Quoting::Quoted => true,
            Quoting::QuotedRaw => !v.contains(['"', '\\']),
        };
        key_ok && value_ok
    }

    /// The key as the parser compares it.
    fn is(&self, name: &str) -> bool {
        self.key_text().trim().eq_ignore_ascii_case(name)
    }
}

impl Input {
    fn header(&self) -> String {
        self.elements
            .iter()
            .map(|e| {
                let mut pairs: Vec<&Pair> = e.iter().collect();
                if self.envoy_order {
                    pairs.sort_by_key(|p| p.known().map_or(u8::MAX, Key::rank));
                }
                pairs
                    .iter()
                    .map(|p| p.written())
                    .collect::<Vec<_>>()
                    .join(";")
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The result for a cleanly written header.
    fn expected(&self) -> Option<Thumbprint> {
        let [element] = self.elements.as_slice() else {
            return None;
        };
        let hashes: Vec<&Pair> = element.iter().filter(|p| p.is("hash")).collect();
        let certs: Vec<&Pair> = element.iter().filter(|p| p.is("cert")).collect();
        let chains = element.iter().filter(|p| p.is("chain")).count();
        let [hash] = hashes.as_slice() else {
            return None;
        };
        // A repeated Hash, Cert or Chain makes the header unusable.
        if certs.len() > 1 || chains > 1 {
            return None;
        }
        let h = Thumbprint::from_hex(hash.value_text().trim().as_bytes()).ok()?;
        if let Some(c) = certs.first() {
            let pem: Vec<u8> = percent_decode_str(c.value_text().trim()).collect();
            if Thumbprint::from_pem(&pem).ok()? != h {
                return None;
            }
        }
        Some(h)
    }

    /// As a front Envoy writes it: its order, a Hash it wrote in every element, its own values
    /// (By, Hash, Cert, Chain) clean, Subject quoted and escaped; URI and DNS raw.
    fn envoy_like(&self) -> bool {
        self.envoy_order
            && !self.elements.is_empty()
            && self.elements.iter().all(|e| {
                e.iter().any(|p| {
                    p.known() == Some(Key::Hash)
                        && matches!(p.value, Value::HashOf(_) | Value::HashUpper(_))
                }) && e.iter().all(|p| match p.known() {
                    Some(Key::By | Key::Hash | Key::Cert | Key::Chain) => {
                        p.clean() && matches!(p.key, KeyName::Known(_))
                    }
                    Some(Key::Subject) => p.quoting == Quoting::Quoted,
                    Some(Key::Uri | Key::Dns) => p.quoting == Quoting::Plain,
                    None => false,
                })
            })
    }
}

fuzz_target!(|input: Input| {
    let header = input.header();
    let got = from_header(header.as_bytes(), HeaderFormat::Xfcc).map(|c| c.thumbprint);
    let clean = !input.elements.is_empty()
        && input
            .elements
            .iter()
            .all(|e| !e.is_empty() && e.iter().all(Pair::clean));
    if clean {
        if input.elements.len() > 1 {
            assert!(
                got.is_err(),
                "{} elements gave {got:?}: {header}",
                input.elements.len()
            );
        }
        assert_eq!(
            got.as_ref().ok(),
            input.expected().as_ref(),
            "{header}\n{input:#?}"
        );
    }
    if input.envoy_like()
        && let Ok(tp) = got
    {
        let proxy_hashes: Vec<Thumbprint> = input
            .elements
            .iter()
            .flatten()
            .filter(|p| p.known() == Some(Key::Hash))
            .filter_map(|p| Thumbprint::from_hex(p.value_text().as_bytes()).ok())
            .collect();
        assert!(
            proxy_hashes.contains(&tp),
            "a client-injected thumbprint {tp:?} was read: {header}"
        );
    }
});
