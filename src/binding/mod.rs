//! Proofs of possession: what binds a token to the client that presents it. Certificate
//! binding (RFC 8705) lives in `certificate` (and `chain` for certificates from headers),
//! DPoP (RFC 9449) in `dpop`; this module holds the modes and the check of a token's `cnf`
//! against what the request presented.

pub mod certificate;
pub mod chain;
pub mod dpop;
pub mod jws;

use serde::{Deserialize, Serialize};

use subtle::ConstantTimeEq;

use crate::binding::certificate::Thumbprint;
use crate::reply::rejection::{Rejection, Scheme};
use crate::tokens::claims::Confirmation;

/// How a binding is enforced (`proof_of_possession_mtls`, `proof_of_possession_dpop`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PopMode {
    /// Every token must carry this binding, and it must hold.
    #[default]
    Strict,
    /// A token that carries this binding must satisfy it; others pass.
    Optional,
    /// This binding is not checked (and a token that carries it is refused, unless both
    /// modes are off).
    Off,
}

/// What the request presented to prove possession: its client certificate, and the key of
/// its DPoP proof (parsed, its signature not yet checked) when it used the DPoP scheme.
#[derive(Debug, Clone, Copy)]
pub struct Possession<'a> {
    pub certificate: Option<&'a Thumbprint>,
    pub scheme: Scheme,
    /// The RFC 7638 thumbprint of the DPoP proof's key.
    pub proof_jkt: Option<&'a str>,
}

/// The token's `cnf` against what the request presented. The two mechanisms are independent:
/// a token bound both ways must satisfy both, and a mode that is `strict` requires its own
/// binding. A binding neither mode checks never passes as a bearer token.
pub fn check(
    mtls: PopMode,
    dpop: PopMode,
    cnf: &Confirmation,
    presented: &Possession<'_>,
) -> Result<(), Rejection> {
    if mtls == PopMode::Off && dpop == PopMode::Off {
        return Ok(());
    }
    // RFC 8705 §3: `cnf["x5t#S256"]` against the connection's certificate. Bound to a
    // certificate while only DPoP is checked: the binding cannot hold, refuse it.
    match (mtls, &cnf.x5t_s256) {
        (PopMode::Off, Some(_)) => return Err(Rejection::UnsupportedConfirmation),
        (PopMode::Off, None) | (PopMode::Optional, None) => {}
        (_, Some(claimed)) => match presented.certificate {
            None => return Err(Rejection::CertificateRequired),
            Some(tp) if tp.matches_x5t_s256(claimed) => {}
            Some(_) => return Err(Rejection::ThumbprintMismatch),
        },
        (PopMode::Strict, None) => return Err(Rejection::Unbound),
    }
    // RFC 9449 §6-7: `cnf.jkt` against the DPoP proof's key, and the scheme.
    match (dpop, &cnf.jkt, presented.scheme) {
        (PopMode::Off, Some(_), _) => return Err(Rejection::UnsupportedConfirmation),
        (PopMode::Off, None, _) | (PopMode::Optional, None, Scheme::Bearer) => {}
        (_, Some(_), Scheme::Bearer) => return Err(Rejection::DpopDowngrade),
        (_, Some(claimed), Scheme::Dpop) => {
            let same = presented
                .proof_jkt
                .is_some_and(|jkt| bool::from(jkt.as_bytes().ct_eq(claimed.as_bytes())));
            if !same {
                return Err(Rejection::DpopKeyMismatch);
            }
        }
        (_, None, Scheme::Dpop) => return Err(Rejection::TokenNotDpopBound),
        (PopMode::Strict, None, Scheme::Bearer) => return Err(Rejection::DpopRequired),
    }
    // A `cnf` that binds to something else (a raw `jwk`, a malformed member): not a pass.
    if cnf.unknown && cnf.x5t_s256.is_none() && cnf.jkt.is_none() {
        return Err(Rejection::UnsupportedConfirmation);
    }
    Ok(())
}
