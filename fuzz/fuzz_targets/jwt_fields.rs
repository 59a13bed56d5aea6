//! Structure-aware JWTs through the whole decider: each input is a valid token (an algorithm,
//! bound to a certificate or not) and a list of field changes (header alg, kid, typ, crit;
//! claims iss, aud, exp, nbf, iat, cnf, scope; extra members), signed by the IdP's key, another
//! algorithm's, an attacker's or with junk, maybe tampered with after signing. Few changes
//! keep a token close to valid, so inputs get past the cheap checks to the binding and the
//! signature.
//!
//! Asserted: an allowed token was signed by the IdP's key for its `alg` and not altered since,
//! and passes every check (`assert_allowed_ok`: binding per mode, issuer, lifetime, audience,
//! scope); and a token whose every field is right is allowed.
#![no_main]

use arbitrary::Arbitrary;
use certbound::binding::PopMode;
use certbound::flow::decider::Step;
use certbound::tokens::jwks::Alg;
use certbound_fuzz::{
    AUDIENCE, CertChoice, ISSUER, KeyOwner, LEEWAY, NOW, Presentation, Profile, SCOPE, Source,
    assert_allowed_ok, assert_idp_signed, b64url, decide, kid, payload_claims, sign,
};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};

#[derive(Debug, Arbitrary)]
enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn value(&self) -> Value {
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

/// The algorithm of index `i`: each of the nine, but signing with RSA costs milliseconds in
/// an instrumented build, so the six RSA ones take 6 of every 32 indices.
fn alg_of(i: u8) -> Alg {
    match usize::from(i % 32) {
        e @ 0..26 => [Alg::ES256, Alg::EdDSA, Alg::ES384][e % 3],
        r => Alg::RSA[r - 26],
    }
}

#[derive(Debug, Arbitrary)]
enum AlgField {
    Known(u8),
    None_,
    Hs256,
    Lowercase(u8),
    Other(String),
    Missing,
    Number,
}

#[derive(Debug, Arbitrary)]
enum KidField {
    Absent,
    Right,
    /// The kid of another algorithm's key.
    OtherKey(u8),
    Wrong(String),
    Number,
}

#[derive(Debug, Arbitrary)]
enum TypField {
    Absent,
    AtJwt,
    ApplicationAtJwt,
    Upper,
    Jwt,
    Other(String),
    Number,
}

#[derive(Debug, Arbitrary)]
enum CritField {
    Absent,
    Empty,
    Names(Vec<String>),
    Null,
}

#[derive(Debug, Arbitrary)]
enum IssField {
    Right,
    Absent,
    Wrong(String),
    TrailingSlash,
    Array,
}

#[derive(Debug, Arbitrary)]
enum AudField {
    Right,
    Among(Vec<String>),
    Absent,
    Wrong(String),
    Number(i64),
}

#[derive(Debug, Arbitrary)]
enum TimeField {
    Absent,
    /// Seconds from now.
    Offset(i32),
    Float(f64),
    Text,
    Negative(i64),
    Huge(u64),
}

#[derive(Debug, Arbitrary)]
enum CnfField {
    Absent,
    Null,
    X5t(CertChoice),
    /// The right thumbprint, padded (RFC 8705 wants it unpadded).
    X5tPadded(CertChoice),
    X5tHex(CertChoice),
    X5tText(String),
    X5tNumber,
    Jkt(String),
    NotObject(Json),
    /// x5t#S256 plus other members.
    X5tAnd(CertChoice, Vec<(String, Json)>),
}

#[derive(Debug, Arbitrary)]
enum ScopeField {
    Right,
    Among(Vec<String>),
    Absent,
    Scp(Vec<String>, bool),
    Wrong(String),
    Number,
}

#[derive(Debug, Arbitrary)]
enum Signature {
    /// The IdP's key for the header's algorithm.
    Idp,
    /// The IdP's key for another algorithm.
    IdpAs(u8),
    /// An attacker's key, same `kid`.
    Rogue,
    Junk(Vec<u8>),
    Empty,
}

#[derive(Debug, Arbitrary)]
enum Tamper {
    None,
    /// After signing, rebind the token to the presented certificate.
    Rebind,
    /// After signing, extend its life.
    Extend,
    /// The same claims re-serialised with spaces: other bytes, same JSON.
    Reformat,
    /// Flip one bit of the signature.
    FlipBit(u16),
    /// A fourth segment.
    ExtraSegment,
    /// `=` padding on the signature.
    Padding,
    /// Standard base64 (`+/`) for the signature.
    StdAlphabet,
}

/// One field changed from what the IdP would write.
#[derive(Debug, Arbitrary)]
enum Change {
    Alg(AlgField),
    Kid(KidField),
    Typ(TypField),
    Crit(CritField),
    HeaderExtra(String, Json),
    Iss(IssField),
    Aud(AudField),
    Exp(TimeField),
    Nbf(TimeField),
    Iat(TimeField),
    Cnf(CnfField),
    Scope(ScopeField),
    ClaimExtra(String, Json),
}

/// The fuzz input: a valid token for `bound_to` signed with `alg`, then `changes` (none: a
/// token every profile allows when `presented` is `bound_to`), the signature and tampering.
#[derive(Debug, Arbitrary)]
struct Input {
    profile: Profile,
    presented: CertChoice,
    bound_to: CertChoice,
    alg: u8,
    signature: Signature,
    tamper: Tamper,
    changes: Vec<Change>,
}

impl Input {
    fn build(self) -> Token {
        let mut t = Token {
            profile: self.profile,
            presented: self.presented,
            alg: AlgField::Known(self.alg),
            kid: KidField::Right,
            typ: TypField::AtJwt,
            crit: CritField::Absent,
            header_extra: Vec::new(),
            iss: IssField::Right,
            aud: AudField::Right,
            exp: TimeField::Offset(300),
            nbf: TimeField::Offset(-10),
            iat: TimeField::Offset(-10),
            cnf: match self.bound_to {
                CertChoice::None => CnfField::Absent,
                c => CnfField::X5t(c),
            },
            scope: ScopeField::Right,
            claims_extra: Vec::new(),
            signature: self.signature,
            tamper: self.tamper,
        };
        for change in self.changes {
            match change {
                Change::Alg(v) => t.alg = v,
                Change::Kid(v) => t.kid = v,
                Change::Typ(v) => t.typ = v,
                Change::Crit(v) => t.crit = v,
                Change::HeaderExtra(k, v) => t.header_extra.push((k, v)),
                Change::Iss(v) => t.iss = v,
                Change::Aud(v) => t.aud = v,
                Change::Exp(v) => t.exp = v,
                Change::Nbf(v) => t.nbf = v,
                Change::Iat(v) => t.iat = v,
                Change::Cnf(v) => t.cnf = v,
                Change::Scope(v) => t.scope = v,
                Change::ClaimExtra(k, v) => t.claims_extra.push((k, v)),
            }
        }
        t
    }
}

/// A token's every field.
#[derive(Debug)]
struct Token {
    profile: Profile,
    presented: CertChoice,
    alg: AlgField,
    kid: KidField,
    typ: TypField,
    crit: CritField,
    header_extra: Vec<(String, Json)>,
    iss: IssField,
    aud: AudField,
    exp: TimeField,
    nbf: TimeField,
    iat: TimeField,
    cnf: CnfField,
    scope: ScopeField,
    claims_extra: Vec<(String, Json)>,
    signature: Signature,
    tamper: Tamper,
}

fn time(t: &TimeField) -> Option<Value> {
    Some(match t {
        TimeField::Absent => return None,
        TimeField::Offset(o) => json!(NOW as i64 + i64::from(*o)),
        TimeField::Float(f) => json!(f),
        TimeField::Text => json!(NOW.to_string()),
        TimeField::Negative(n) => json!(-n.saturating_abs().max(1)),
        TimeField::Huge(n) => json!(u64::MAX - (n % 1000)),
    })
}

fn x5t(c: CertChoice) -> String {
    c.cert().map_or_else(|| "AAAA".into(), |c| c.x5t.clone())
}

impl Token {
    /// The algorithm the header names, if it names one we know.
    fn header_alg(&self) -> Option<Alg> {
        match self.alg {
            AlgField::Known(i) => Some(alg_of(i)),
            _ => None,
        }
    }

    fn header(&self) -> Value {
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
            "alg",
            match &self.alg {
                AlgField::Known(i) => Some(json!(alg_of(*i).name())),
                AlgField::None_ => Some(json!("none")),
                AlgField::Hs256 => Some(json!("HS256")),
                AlgField::Lowercase(i) => Some(json!(alg_of(*i).name().to_lowercase())),
                AlgField::Other(s) => Some(json!(s)),
                AlgField::Missing => None,
                AlgField::Number => Some(json!(256)),
            },
        );
        let own = self.header_alg().unwrap_or(Alg::RS256);
        set(
            "kid",
            match &self.kid {
                KidField::Absent => None,
                KidField::Right => Some(json!(kid(own))),
                KidField::OtherKey(i) => Some(json!(kid(alg_of(*i)))),
                KidField::Wrong(s) => Some(json!(s)),
                KidField::Number => Some(json!(1)),
            },
        );
        set(
            "typ",
            match &self.typ {
                TypField::Absent => None,
                TypField::AtJwt => Some(json!("at+jwt")),
                TypField::ApplicationAtJwt => Some(json!("application/at+jwt")),
                TypField::Upper => Some(json!("AT+JWT")),
                TypField::Jwt => Some(json!("JWT")),
                TypField::Other(s) => Some(json!(s)),
                TypField::Number => Some(json!(9068)),
            },
        );
        set(
            "crit",
            match &self.crit {
                CritField::Absent => None,
                CritField::Empty => Some(json!([])),
                CritField::Names(n) => Some(json!(n)),
                CritField::Null => Some(Value::Null),
            },
        );
        Value::Object(h)
    }

    fn claims(&self) -> Map<String, Value> {
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
            "iss",
            match &self.iss {
                IssField::Right => Some(json!(ISSUER)),
                IssField::Absent => None,
                IssField::Wrong(s) => Some(json!(s)),
                IssField::TrailingSlash => Some(json!(format!("{ISSUER}/"))),
                IssField::Array => Some(json!([ISSUER])),
            },
        );
        set(
            "aud",
            match &self.aud {
                AudField::Right => Some(json!(AUDIENCE)),
                AudField::Among(others) => {
                    let mut all = others.clone();
                    let at = others.len() / 2;
                    all.insert(at, AUDIENCE.into());
                    Some(json!(all))
                }
                AudField::Absent => None,
                AudField::Wrong(s) => Some(json!(s)),
                AudField::Number(n) => Some(json!(n)),
            },
        );
        set("exp", time(&self.exp));
        set("nbf", time(&self.nbf));
        set("iat", time(&self.iat));
        set(
            "cnf",
            match &self.cnf {
                CnfField::Absent => None,
                CnfField::Null => Some(Value::Null),
                CnfField::X5t(c) => Some(json!({"x5t#S256": x5t(*c)})),
                CnfField::X5tPadded(c) => Some(json!({"x5t#S256": format!("{}=", x5t(*c))})),
                CnfField::X5tHex(c) => Some(json!({"x5t#S256": c.cert().map(|c| c.hex.clone())})),
                CnfField::X5tText(s) => Some(json!({"x5t#S256": s})),
                CnfField::X5tNumber => Some(json!({"x5t#S256": 8705})),
                CnfField::Jkt(s) => Some(json!({"jkt": s})),
                CnfField::NotObject(j) => Some(j.value()),
                CnfField::X5tAnd(c, more) => {
                    let mut m: Map<String, Value> =
                        more.iter().map(|(k, v)| (k.clone(), v.value())).collect();
                    m.insert("x5t#S256".into(), json!(x5t(*c)));
                    Some(Value::Object(m))
                }
            },
        );
        set(
            "scope",
            match &self.scope {
                ScopeField::Right => Some(json!(format!("{SCOPE} accounts:write"))),
                ScopeField::Among(others) => {
                    let mut all = others.clone();
                    all.push(SCOPE.into());
                    Some(json!(all.join(" ")))
                }
                ScopeField::Absent => None,
                ScopeField::Scp(..) => None,
                ScopeField::Wrong(s) => Some(json!(s)),
                ScopeField::Number => Some(json!(1)),
            },
        );
        if let ScopeField::Scp(list, with_right) = &self.scope {
            let mut all = list.clone();
            if *with_right {
                all.push(SCOPE.into());
            }
            set("scp", Some(json!(all)));
        }
        c
    }

    /// The token, and whether its signature is the IdP's over exactly these bytes.
    fn token(&self, presented: CertChoice) -> (String, bool) {
        let header = self.header();
        let mut claims = self.claims();
        let h = b64url(header.to_string().as_bytes());
        let c = b64url(Value::Object(claims.clone()).to_string().as_bytes());
        let input = format!("{h}.{c}");
        let own = self.header_alg();
        let (sig, genuine) = match &self.signature {
            Signature::Idp => {
                let alg = own.unwrap_or(Alg::RS256);
                (sign(alg, KeyOwner::Idp, input.as_bytes()), own.is_some())
            }
            Signature::IdpAs(i) => {
                let alg = alg_of(*i);
                (sign(alg, KeyOwner::Idp, input.as_bytes()), own == Some(alg))
            }
            Signature::Rogue => (
                sign(own.unwrap_or(Alg::RS256), KeyOwner::Rogue, input.as_bytes()),
                false,
            ),
            Signature::Junk(j) => (j.clone(), false),
            Signature::Empty => (Vec::new(), false),
        };
        let s = b64url(&sig);
        match &self.tamper {
            Tamper::None => (format!("{input}.{s}"), genuine),
            Tamper::Rebind => {
                claims.insert("cnf".into(), json!({"x5t#S256": x5t(presented)}));
                let c2 = b64url(Value::Object(claims).to_string().as_bytes());
                (format!("{h}.{c2}.{s}"), genuine && c2 == c)
            }
            Tamper::Extend => {
                claims.insert("exp".into(), json!(NOW + 86_400));
                let c2 = b64url(Value::Object(claims).to_string().as_bytes());
                (format!("{h}.{c2}.{s}"), genuine && c2 == c)
            }
            Tamper::Reformat => {
                let pretty =
                    serde_json::to_string_pretty(&Value::Object(claims)).unwrap_or_default();
                let c2 = b64url(pretty.as_bytes());
                (format!("{h}.{c2}.{s}"), genuine && c2 == c)
            }
            Tamper::FlipBit(i) => {
                let mut sig = sig;
                let flipped = !sig.is_empty();
                if flipped {
                    let at = usize::from(*i) % (sig.len() * 8);
                    sig[at / 8] ^= 1 << (at % 8);
                }
                (format!("{input}.{}", b64url(&sig)), genuine && !flipped)
            }
            Tamper::ExtraSegment => (format!("{input}.{s}.{s}"), false),
            Tamper::Padding => {
                let pad = "=".repeat((4 - s.len() % 4) % 4);
                (format!("{input}.{s}{pad}"), genuine && pad.is_empty())
            }
            Tamper::StdAlphabet => {
                let std = s.replace('-', "+").replace('_', "/");
                let same = std == s;
                (format!("{input}.{std}"), genuine && same)
            }
        }
    }

    /// Every field as the IdP would write it for this profile and client.
    fn all_right(&self, token: &str, genuine: bool) -> bool {
        let p = self.profile;
        let Some(alg) = self.header_alg() else {
            return false;
        };
        let time_ok = |t: &TimeField, is_exp: bool| match t {
            TimeField::Absent => !is_exp,
            TimeField::Offset(o) => {
                let o = i64::from(*o);
                if is_exp {
                    o >= -(LEEWAY as i64)
                } else {
                    o <= LEEWAY as i64
                }
            }
            _ => false,
        };
        let typ_ok = match self.typ {
            TypField::AtJwt | TypField::ApplicationAtJwt | TypField::Upper => true,
            TypField::Absent | TypField::Jwt => p == Profile::Narrow,
            _ => false,
        };
        let bound_to = match self.cnf {
            CnfField::Absent | CnfField::Null => Some(CertChoice::None),
            CnfField::X5t(c) if c != CertChoice::None => Some(c),
            _ => None,
        };
        let binding_ok = match (p.mtls(), p.dpop()) {
            (PopMode::Off, PopMode::Off) => matches!(
                self.cnf,
                CnfField::Absent | CnfField::Null | CnfField::X5t(_) | CnfField::X5tPadded(_)
            ),
            // A bearer request where DPoP is required.
            (_, PopMode::Strict) => false,
            (mtls, _) => match (mtls, bound_to) {
                (_, None) => false,
                (PopMode::Optional | PopMode::Off, Some(CertChoice::None)) => true,
                (PopMode::Off, Some(_)) => false,
                (_, Some(c)) => c != CertChoice::None && c == self.presented,
            },
        };
        let scope_ok = match &self.scope {
            ScopeField::Right | ScopeField::Among(_) => true,
            ScopeField::Scp(_, with) => *with || p == Profile::Narrow,
            ScopeField::Absent => p == Profile::Narrow,
            _ => false,
        };
        genuine
            && matches!(self.tamper, Tamper::None)
            && p.algorithms().contains(&alg)
            && matches!(self.kid, KidField::Absent | KidField::Right)
            && typ_ok
            && matches!(self.crit, CritField::Absent)
            && self.header_extra.is_empty()
            && self.claims_extra.is_empty()
            && matches!(self.iss, IssField::Right)
            && matches!(self.aud, AudField::Right | AudField::Among(_))
            && time_ok(&self.exp, true)
            && time_ok(&self.nbf, false)
            && time_ok(&self.iat, false)
            && binding_ok
            && scope_ok
            && token.len() <= 16 * 1024
    }
}

fuzz_target!(|input: Input| {
    let input = input.build();
    let (token, genuine) = input.token(input.presented);
    let p = input.profile;
    let decision = decide(p, &token, input.presented.thumbprint());
    match &decision.step {
        Step::Allow(verdict) => {
            assert!(verdict.proof.is_none(), "a proof from a bearer request");
            assert_idp_signed(p, &token);
            let claims = payload_claims(&token).expect("allowed a token without a payload");
            assert!(
                genuine,
                "allowed a token the IdP did not sign: {input:#?}\n{token}"
            );
            let alg = input.header_alg().expect("genuine implies a known alg");
            assert!(p.algorithms().contains(&alg), "allowed {alg:?} under {p:?}");
            assert!(
                matches!(input.kid, KidField::Absent | KidField::Right)
                    || matches!(input.kid, KidField::OtherKey(i) if kid(alg_of(i)) == kid(alg)),
                "allowed with kid {:?}",
                input.kid
            );
            assert!(
                matches!(input.crit, CritField::Absent),
                "allowed with crit {:?}",
                input.crit
            );
            if p != Profile::Narrow {
                assert!(
                    matches!(
                        input.typ,
                        TypField::AtJwt | TypField::ApplicationAtJwt | TypField::Upper
                    ) || matches!(&input.typ, TypField::Other(t)
                        if t.eq_ignore_ascii_case("at+jwt")
                            || t.eq_ignore_ascii_case("application/at+jwt")),
                    "allowed with typ {:?} under strict typ",
                    input.typ
                );
            }
            let presented = input.presented.thumbprint();
            assert_allowed_ok(
                p,
                Source::Jwt,
                &claims,
                &Presentation::bearer(presented.as_ref()),
            );
        }
        Step::NeedKeys(_) => panic!("NeedKeys without a jwks_endpoint"),
        Step::Deny(_) | Step::Introspect(..) => {}
    }
    if input.all_right(&token, genuine) {
        assert!(
            matches!(decision.step, Step::Allow(_)),
            "a token with every field right was not allowed: {:?}\n{input:#?}\n{token}",
            decision.step
        );
    }
});
