//! Structure-aware DPoP proofs (RFC 9449 §4.2) for `dpop_proof` and `dpop_decider`: a valid
//! proof by a fixed-seed client key for the request, then changes to its fields (`typ`, `alg`,
//! the `jwk` and its members, `htm`, `htu`, `iat`, `jti`, `ath`, `nonce`, extra members), a
//! signature by that key, another client's, the same key for another algorithm or junk, and
//! tampering after signing. With few changes a proof stays close to valid, so the checks
//! past the cheap ones (the key, the claims, the signature) are reached.

use arbitrary::Arbitrary;
use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use certbound::binding::dpop::{NONCE_STEP, nonce};
use certbound::tokens::jwks::Alg;
use serde_json::{Map, Value, json};

use crate::{KeyOwner, NONCE_SECRET, b64url, hex, public_jwk, rfc7638, sha256_b64url, sign};

/// Free-form JSON.
#[derive(Debug, Clone, Arbitrary)]
pub enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    pub fn value(&self) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => json!(b),
            Json::Int(i) => json!(i),
            Json::Float(f) => json!(f),
            Json::Str(s) => json!(s),
            Json::Arr(a) => Value::Array(a.iter().map(Json::value).collect()),
            Json::Obj(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), v.value())).collect()),
        }
    }
}

/// The algorithm of index `i`: ES256, EdDSA and ES384 mostly; signing with RSA costs
/// milliseconds in an instrumented build, so the six RSA ones take 6 of every 32 indices.
pub fn proof_alg(i: u8) -> Alg {
    match usize::from(i % 32) {
        e @ 0..26 => [Alg::ES256, Alg::EdDSA, Alg::ES384][e % 3],
        r => Alg::RSA[r - 26],
    }
}

/// Methods and normalised URLs (as `extract` makes them) a request may have.
pub const METHODS: [&str; 4] = ["GET", "POST", "DELETE", "PATCH"];
pub const URLS: [&str; 3] = [
    "https://api.example/accounts",
    "http://api.example:8080/a/b",
    "https://[::1]:8443/x",
];

/// The request a proof is for (and, mostly, made for).
#[derive(Debug, Clone, Copy, Arbitrary)]
pub struct Request {
    pub method: u8,
    pub url: u8,
}

impl Request {
    pub fn method(&self) -> &'static str {
        METHODS[usize::from(self.method) % METHODS.len()]
    }
    pub fn url(&self) -> &'static str {
        URLS[usize::from(self.url) % URLS.len()]
    }
}

#[derive(Debug, Clone, Arbitrary)]
pub enum TypField {
    Right,
    Upper,
    Missing,
    Jwt,
    AtJwt,
    Other(String),
    Number,
}

#[derive(Debug, Clone, Arbitrary)]
pub enum AlgField {
    Right,
    /// Another algorithm's name.
    Named(u8),
    None_,
    Hs256,
    Lower,
    Missing,
    Number,
    Text(String),
}

/// Whose key the header's `jwk` is.
#[derive(Debug, Clone, Arbitrary)]
pub enum JwkKey {
    Own,
    /// Another client's key for the same algorithm.
    OtherOwner,
    /// The client's key for another algorithm.
    OtherAlg(u8),
    Missing,
    NotObject(Json),
}

/// A change to one member of the `jwk` (byte members: `x`, `y` of EC, `n`, `e` of RSA, `x` of
/// OKP, by index).
#[derive(Debug, Clone, Arbitrary)]
pub enum JwkEdit {
    Kty(String),
    KtyOf(u8),
    Crv(String),
    CrvOf(u8),
    Drop(u8),
    Extra(String, Json),
    /// A private-key member (`d`, `p`, ..., `k`).
    Private(u8),
    /// Bytes cut (negative) or added.
    Resize(u8, i8),
    LeadingZero(u8),
    Padded(u8),
    StdAlphabet(u8),
    Number(u8),
    Exponent(Vec<u8>),
}

#[derive(Debug, Clone, Arbitrary)]
pub enum HtmField {
    Right,
    Lower,
    Other(u8),
    Text(String),
    Missing,
    Number,
}

#[derive(Debug, Clone, Arbitrary)]
pub enum HtuField {
    Right,
    /// The same URL written otherwise (bits: upper-case scheme, upper-case authority, the
    /// default port, a query, a fragment).
    Same(u8),
    Path(String),
    Host(String),
    Port(u16),
    /// http for https and back.
    OtherScheme,
    Userinfo,
    TrailingSlash,
    UpperPath,
    OtherUrl(u8),
    Missing,
    Number,
    Text(String),
}

#[derive(Debug, Clone, Arbitrary)]
pub enum IatField {
    /// Seconds from now.
    Offset(i32),
    /// Seconds from now and a fraction (1/65536ths).
    Fraction(i16, u16),
    Float(f64),
    Text,
    Negative(i64),
    Huge(u64),
    Missing,
}

#[derive(Debug, Clone, Arbitrary)]
pub enum JtiField {
    Right,
    Empty,
    Long(u16),
    Missing,
    Number,
    Text(String),
}

#[derive(Debug, Clone, Arbitrary)]
pub enum AthField {
    Right,
    OtherToken,
    Missing,
    Padded,
    Hex,
    Text(String),
}

#[derive(Debug, Clone, Arbitrary)]
pub enum NonceField {
    /// The current nonce when one is required, none otherwise.
    Default,
    Absent,
    Current,
    Previous,
    /// 2 + n steps old.
    Stale(u8),
    OtherKey,
    Text(String),
}

/// One field changed from what a client would write.
#[derive(Debug, Clone, Arbitrary)]
pub enum Change {
    Typ(TypField),
    Alg(AlgField),
    Jwk(JwkKey),
    JwkEdit(JwkEdit),
    Htm(HtmField),
    Htu(HtuField),
    Iat(IatField),
    Jti(JtiField),
    Ath(AthField),
    Nonce(NonceField),
    HeaderExtra(String, Json),
    ClaimExtra(String, Json),
}

/// Who signs.
#[derive(Debug, Clone, Arbitrary)]
pub enum SigField {
    /// The client's key for the proof's algorithm.
    Own,
    /// Another client's key, same algorithm.
    OtherOwner,
    /// The client's key for another algorithm (RS256 for PS256 is the same RSA key).
    OtherAlg(u8),
    Junk(Vec<u8>),
    Empty,
}

/// What happens after signing.
#[derive(Debug, Clone, Arbitrary)]
pub enum Tamper {
    None,
    FlipBit(u16),
    /// ECDSA: (r, n - s), the other valid signature of the same bytes.
    HighS,
    /// A field changed after signing, the signature kept.
    ChangeAfter(Change),
    /// The header re-serialised with spaces: same JSON, other bytes.
    HeaderPretty,
    ExtraSegment,
    Padding,
    StdAlphabet,
    Truncate(u8),
    /// Whatever text.
    Raw(String),
}

/// The fuzz input for a proof: a valid one by the client's key for `alg`, then `changes`,
/// the signature and the tampering.
#[derive(Debug, Clone, Arbitrary)]
pub struct ProofSpec {
    pub alg: u8,
    pub changes: Vec<Change>,
    pub signature: SigField,
    pub tamper: Tamper,
}

/// What the proof is made for.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub method: &'a str,
    pub url: &'a str,
    pub token: &'a str,
    pub now: u64,
    pub nonce_key: Option<&'a [u8]>,
}

/// A proof built, and what is known about it.
#[derive(Debug, Clone)]
pub struct Built {
    pub proof: String,
    /// Signed by the key its header's `jwk` is, with its header's `alg`, over exactly its
    /// first two segments.
    pub genuine: bool,
    /// The RFC 7638 thumbprint of the key that signed, when a key did.
    pub signer_jkt: Option<String>,
    /// Every `htu` text written, for `normalize_htu`.
    pub htus: Vec<String>,
}

/// Every field of a proof.
#[derive(Debug, Clone)]
struct Fields {
    own: Alg,
    typ: TypField,
    alg: AlgField,
    jwk: JwkKey,
    edits: Vec<JwkEdit>,
    htm: HtmField,
    htu: HtuField,
    iat: IatField,
    jti: JtiField,
    ath: AthField,
    nonce: NonceField,
    header_extra: Vec<(String, Json)>,
    claims_extra: Vec<(String, Json)>,
}

impl Fields {
    fn apply(&mut self, change: Change) {
        match change {
            Change::Typ(v) => self.typ = v,
            Change::Alg(v) => self.alg = v,
            Change::Jwk(v) => self.jwk = v,
            Change::JwkEdit(v) => self.edits.push(v),
            Change::Htm(v) => self.htm = v,
            Change::Htu(v) => self.htu = v,
            Change::Iat(v) => self.iat = v,
            Change::Jti(v) => self.jti = v,
            Change::Ath(v) => self.ath = v,
            Change::Nonce(v) => self.nonce = v,
            Change::HeaderExtra(k, v) => self.header_extra.push((k, v)),
            Change::ClaimExtra(k, v) => self.claims_extra.push((k, v)),
        }
    }

    fn header(&self) -> Map<String, Value> {
        let mut h: Map<String, Value> = self
            .header_extra
            .iter()
            .map(|(k, v)| (k.clone(), v.value()))
            .collect();
        let mut set = |k: &str, v: Option<Value>| {
            match v {
                Some(v) => h.insert(k.into(), v),
                None => h.remove(k),
            };
        };
        set(
            "typ",
            match &self.typ {
                TypField::Right => Some(json!("dpop+jwt")),
                TypField::Upper => Some(json!("DPoP+JWT")),
                TypField::Missing => None,
                TypField::Jwt => Some(json!("JWT")),
                TypField::AtJwt => Some(json!("at+jwt")),
                TypField::Other(s) => Some(json!(s)),
                TypField::Number => Some(json!(9449)),
            },
        );
        set(
            "alg",
            match &self.alg {
                AlgField::Right => Some(json!(self.own.name())),
                AlgField::Named(i) => Some(json!(proof_alg(*i).name())),
                AlgField::None_ => Some(json!("none")),
                AlgField::Hs256 => Some(json!("HS256")),
                AlgField::Lower => Some(json!(self.own.name().to_lowercase())),
                AlgField::Missing => None,
                AlgField::Number => Some(json!(256)),
                AlgField::Text(s) => Some(json!(s)),
            },
        );
        let jwk = match &self.jwk {
            JwkKey::Own => Some(public_jwk(KeyOwner::Client, self.own).clone()),
            JwkKey::OtherOwner => Some(public_jwk(KeyOwner::Rogue, self.own).clone()),
            JwkKey::OtherAlg(i) => Some(public_jwk(KeyOwner::Client, proof_alg(*i)).clone()),
            JwkKey::Missing => None,
            JwkKey::NotObject(j) => {
                set("jwk", Some(j.value()));
                return h;
            }
        };
        set(
            "jwk",
            jwk.map(|mut jwk| {
                for e in &self.edits {
                    edit(&mut jwk, e);
                }
                Value::Object(jwk)
            }),
        );
        h
    }

    fn claims(&self, cx: &Context<'_>) -> Map<String, Value> {
        let mut c: Map<String, Value> = self
            .claims_extra
            .iter()
            .map(|(k, v)| (k.clone(), v.value()))
            .collect();
        let mut set = |k: &str, v: Option<Value>| {
            match v {
                Some(v) => c.insert(k.into(), v),
                None => c.remove(k),
            };
        };
        set(
            "htm",
            match &self.htm {
                HtmField::Right => Some(json!(cx.method)),
                HtmField::Lower => Some(json!(cx.method.to_lowercase())),
                HtmField::Other(i) => Some(json!(METHODS[usize::from(*i) % METHODS.len()])),
                HtmField::Text(s) => Some(json!(s)),
                HtmField::Missing => None,
                HtmField::Number => Some(json!(1)),
            },
        );
        set("htu", htu(&self.htu, cx.url));
        let now = cx.now as i64;
        set(
            "iat",
            match &self.iat {
                IatField::Offset(o) => Some(json!(now + i64::from(*o))),
                IatField::Fraction(o, f) => Some(json!(
                    (now + i64::from(*o)) as f64 + f64::from(*f) / 65536.0
                )),
                IatField::Float(f) => Some(json!(f)),
                IatField::Text => Some(json!(cx.now.to_string())),
                IatField::Negative(n) => Some(json!(-n.saturating_abs().max(1))),
                IatField::Huge(n) => Some(json!(u64::MAX - (n % 1000))),
                IatField::Missing => None,
            },
        );
        set(
            "jti",
            match &self.jti {
                JtiField::Right => Some(json!("e1j3V_bKic8-LAEB")),
                JtiField::Empty => Some(json!("")),
                JtiField::Long(n) => Some(json!("j".repeat(usize::from(*n) % 600))),
                JtiField::Missing => None,
                JtiField::Number => Some(json!(42)),
                JtiField::Text(s) => Some(json!(s)),
            },
        );
        let ath = sha256_b64url(cx.token.as_bytes());
        set(
            "ath",
            match &self.ath {
                AthField::Right => Some(json!(ath)),
                AthField::OtherToken => Some(json!(sha256_b64url(b"another-token"))),
                AthField::Missing => None,
                AthField::Padded => Some(json!(format!("{ath}="))),
                AthField::Hex => Some(json!(hex(&URL_SAFE_NO_PAD
                    .decode(&ath)
                    .unwrap_or_default()))),
                AthField::Text(s) => Some(json!(s)),
            },
        );
        let key = cx.nonce_key.unwrap_or(NONCE_SECRET.as_bytes());
        set(
            "nonce",
            match &self.nonce {
                NonceField::Default => cx.nonce_key.map(|k| json!(nonce(k, cx.now))),
                NonceField::Absent => None,
                NonceField::Current => Some(json!(nonce(key, cx.now))),
                NonceField::Previous => Some(json!(nonce(key, cx.now - NONCE_STEP))),
                NonceField::Stale(n) => {
                    Some(json!(nonce(key, cx.now - NONCE_STEP * (2 + u64::from(*n)))))
                }
                NonceField::OtherKey => Some(json!(nonce(
                    b"another secret, another secret, another",
                    cx.now
                ))),
                NonceField::Text(s) => Some(json!(s)),
            },
        );
        c
    }
}

/// The `htu` for the request's `url` (`scheme://authority/path`, normalised).
fn htu(field: &HtuField, url: &str) -> Option<Value> {
    let (scheme, rest) = url.split_once("://").unwrap_or(("https", url));
    let at = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(at);
    // The host without the port (an IPv6 literal keeps its brackets).
    let host = match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => &authority[..i],
        _ => authority,
    };
    let has_port = host.len() < authority.len();
    Some(json!(match field {
        HtuField::Right => url.to_string(),
        HtuField::Same(bits) => {
            let scheme = if bits & 1 != 0 {
                scheme.to_ascii_uppercase()
            } else {
                scheme.to_string()
            };
            let mut authority = if bits & 2 != 0 {
                authority.to_ascii_uppercase()
            } else {
                authority.to_string()
            };
            if bits & 4 != 0 && !has_port {
                authority.push_str(if scheme.eq_ignore_ascii_case("https") {
                    ":443"
                } else {
                    ":80"
                });
            }
            let mut u = format!("{scheme}://{authority}{path}");
            if bits & 8 != 0 {
                u.push_str("?q=1&access_token=x");
            }
            if bits & 16 != 0 {
                u.push_str("#frag");
            }
            u
        }
        HtuField::Path(p) => format!("{scheme}://{authority}/{p}"),
        HtuField::Host(h) => format!("{scheme}://{h}{path}"),
        HtuField::Port(p) => format!("{scheme}://{host}:{p}{path}"),
        HtuField::OtherScheme => {
            let other = if scheme == "https" { "http" } else { "https" };
            format!("{other}://{authority}{path}")
        }
        HtuField::Userinfo => format!("{scheme}://user@{authority}{path}"),
        HtuField::TrailingSlash => format!("{url}/"),
        HtuField::UpperPath => format!("{scheme}://{authority}{}", path.to_ascii_uppercase()),
        HtuField::OtherUrl(i) => URLS[usize::from(*i) % URLS.len()].to_string(),
        HtuField::Missing => return None,
        HtuField::Number => return Some(json!(443)),
        HtuField::Text(s) => s.clone(),
    }))
}

/// The byte members of a JWK, by its `kty`.
fn byte_members(jwk: &Map<String, Value>) -> &'static [&'static str] {
    match jwk.get("kty").and_then(Value::as_str) {
        Some("EC") => &["x", "y"],
        Some("RSA") => &["n", "e"],
        _ => &["x"],
    }
}

fn edit(jwk: &mut Map<String, Value>, e: &JwkEdit) {
    let pick = |jwk: &Map<String, Value>, i: u8| {
        let m = byte_members(jwk);
        m[usize::from(i) % m.len()]
    };
    let bytes = |jwk: &Map<String, Value>, k: &str| {
        jwk.get(k)
            .and_then(Value::as_str)
            .and_then(|t| URL_SAFE_NO_PAD.decode(t).ok())
            .unwrap_or_default()
    };
    match e {
        JwkEdit::Kty(s) => {
            jwk.insert("kty".into(), json!(s));
        }
        JwkEdit::KtyOf(i) => {
            jwk.insert(
                "kty".into(),
                json!(["EC", "RSA", "OKP", "oct"][usize::from(*i) % 4]),
            );
        }
        JwkEdit::Crv(s) => {
            jwk.insert("crv".into(), json!(s));
        }
        JwkEdit::CrvOf(i) => {
            let crv = ["P-256", "P-384", "P-521", "Ed25519", "X25519"][usize::from(*i) % 5];
            jwk.insert("crv".into(), json!(crv));
        }
        JwkEdit::Drop(i) => {
            let keys: Vec<String> = jwk.keys().cloned().collect();
            if !keys.is_empty() {
                jwk.remove(&keys[usize::from(*i) % keys.len()]);
            }
        }
        JwkEdit::Extra(k, v) => {
            jwk.insert(k.clone(), v.value());
        }
        JwkEdit::Private(i) => {
            let m = ["d", "p", "q", "dp", "dq", "qi", "k"][usize::from(*i) % 7];
            jwk.insert(m.into(), json!("AQAB"));
        }
        JwkEdit::Resize(i, d) => {
            let k = pick(jwk, *i);
            let mut b = bytes(jwk, k);
            if *d < 0 {
                b.truncate(b.len().saturating_sub(usize::from(d.unsigned_abs())));
            } else {
                b.extend(std::iter::repeat_n(1u8, usize::from(d.unsigned_abs())));
            }
            jwk.insert(k.into(), json!(b64url(&b)));
        }
        JwkEdit::LeadingZero(i) => {
            let k = pick(jwk, *i);
            let b = [&[0u8][..], &bytes(jwk, k)].concat();
            jwk.insert(k.into(), json!(b64url(&b)));
        }
        JwkEdit::Padded(i) => {
            let k = pick(jwk, *i);
            let b = bytes(jwk, k);
            jwk.insert(k.into(), json!(URL_SAFE.encode(b)));
        }
        JwkEdit::StdAlphabet(i) => {
            let k = pick(jwk, *i);
            let t = b64url(&bytes(jwk, k)).replace('-', "+").replace('_', "/");
            jwk.insert(k.into(), json!(t));
        }
        JwkEdit::Number(i) => {
            let k = pick(jwk, *i);
            jwk.insert(k.into(), json!(65537));
        }
        JwkEdit::Exponent(e) => {
            jwk.insert("e".into(), json!(b64url(e)));
        }
    }
}

/// (r, n - s) for an ECDSA signature (r || s) of `alg`; `None` for other algorithms.
fn high_s(alg: Alg, sig: &[u8]) -> Option<Vec<u8>> {
    match alg {
        Alg::ES256 => {
            let s = p256::ecdsa::Signature::from_slice(sig).ok()?;
            let (r, s) = s.split_scalars();
            let flipped = p256::ecdsa::Signature::from_scalars(r, -s).ok()?;
            Some(flipped.to_bytes().to_vec())
        }
        Alg::ES384 => {
            let s = p384::ecdsa::Signature::from_slice(sig).ok()?;
            let (r, s) = s.split_scalars();
            let flipped = p384::ecdsa::Signature::from_scalars(r, -s).ok()?;
            Some(flipped.to_bytes().to_vec())
        }
        _ => None,
    }
}

impl ProofSpec {
    pub fn build(&self, cx: &Context<'_>) -> Built {
        let own = proof_alg(self.alg);
        let mut f = Fields {
            own,
            typ: TypField::Right,
            alg: AlgField::Right,
            jwk: JwkKey::Own,
            edits: Vec::new(),
            htm: HtmField::Right,
            htu: HtuField::Right,
            iat: IatField::Offset(0),
            jti: JtiField::Right,
            ath: AthField::Right,
            nonce: NonceField::Default,
            header_extra: Vec::new(),
            claims_extra: Vec::new(),
        };
        for c in &self.changes {
            f.apply(c.clone());
        }
        let mut htus = Vec::new();
        let encode = |f: &Fields, htus: &mut Vec<String>, pretty: bool| {
            let header = Value::Object(f.header());
            let claims = f.claims(cx);
            if let Some(Value::String(u)) = claims.get("htu") {
                htus.push(u.clone());
            }
            let header = if pretty {
                serde_json::to_string_pretty(&header).unwrap_or_default()
            } else {
                header.to_string()
            };
            format!(
                "{}.{}",
                b64url(header.as_bytes()),
                b64url(Value::Object(claims).to_string().as_bytes())
            )
        };
        let signed_input = encode(&f, &mut htus, false);
        let signer = match &self.signature {
            SigField::Own => Some((KeyOwner::Client, own)),
            SigField::OtherOwner => Some((KeyOwner::Rogue, own)),
            SigField::OtherAlg(i) => Some((KeyOwner::Client, proof_alg(*i))),
            SigField::Junk(_) | SigField::Empty => None,
        };
        let sig = match (&self.signature, signer) {
            (_, Some((owner, alg))) => sign(alg, owner, signed_input.as_bytes()),
            (SigField::Junk(j), None) => j.clone(),
            _ => Vec::new(),
        };
        let s = b64url(&sig);
        let proof = match &self.tamper {
            Tamper::None => format!("{signed_input}.{s}"),
            Tamper::FlipBit(i) => {
                let mut sig = sig.clone();
                if !sig.is_empty() {
                    let at = usize::from(*i) % (sig.len() * 8);
                    sig[at / 8] ^= 1 << (at % 8);
                }
                format!("{signed_input}.{}", b64url(&sig))
            }
            Tamper::HighS => {
                let flipped = signer.and_then(|(_, alg)| high_s(alg, &sig));
                format!("{signed_input}.{}", flipped.map_or(s, |f| b64url(&f)))
            }
            Tamper::ChangeAfter(c) => {
                let mut after = f.clone();
                after.apply(c.clone());
                format!("{}.{s}", encode(&after, &mut htus, false))
            }
            Tamper::HeaderPretty => format!("{}.{s}", encode(&f, &mut htus, true)),
            Tamper::ExtraSegment => format!("{signed_input}.{s}.{s}"),
            Tamper::Padding => {
                let pad = "=".repeat((4 - s.len() % 4) % 4);
                format!("{signed_input}.{s}{pad}")
            }
            Tamper::StdAlphabet => {
                format!("{signed_input}.{}", s.replace('-', "+").replace('_', "/"))
            }
            Tamper::Truncate(n) => {
                let keep = s.len().saturating_sub(usize::from(n % 8) + 1);
                format!("{signed_input}.{}", &s[..keep])
            }
            Tamper::Raw(text) => text.clone(),
        };
        let signer_jkt = signer.and_then(|(owner, alg)| rfc7638(public_jwk(owner, alg)));
        // Genuine: the bytes signed are the proof's first two segments, and its header names
        // the signer's algorithm and carries the signer's key.
        let genuine = signer.is_some_and(|(_, alg)| {
            let input = proof.rsplit_once('.').map(|(i, _)| i);
            let jws = crate::split_jws(&proof);
            input == Some(signed_input.as_str())
                && jws.as_ref().is_some_and(|j| {
                    j.header.get("alg").and_then(Value::as_str) == Some(alg.name())
                        && j.header
                            .get("jwk")
                            .and_then(Value::as_object)
                            .and_then(rfc7638)
                            == signer_jkt
                })
        });
        Built {
            proof,
            genuine,
            signer_jkt,
            htus,
        }
    }
}
