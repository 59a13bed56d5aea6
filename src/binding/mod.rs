//! Proofs of possession: what binds a token to the client that presents it. Certificate
//! binding (RFC 8705) lives in `certificate`; this module holds the mode and the check of a
//! token's `cnf` against what the request presented.

pub mod certificate;
pub mod chain;
mod sigalgs;

use serde::{Deserialize, Serialize};

use crate::binding::certificate::Thumbprint;
use crate::reply::rejection::Rejection;
use crate::tokens::claims::{Claims, Confirmation};

/// Binding enforcement (RFC 8705 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PopMode {
    /// Every token must carry `cnf["x5t#S256"]` equal to the connection's certificate thumbprint.
    #[default]
    Strict,
    /// Tokens that carry `cnf` must match; unbound tokens pass.
    Optional,
    /// No binding check (plain bearer tokens). For migration only.
    Off,
}

/// RFC 8705 §3: the token's `cnf["x5t#S256"]` against the connection's certificate.
pub fn check_certificate(
    mode: PopMode,
    claims: &Claims,
    presented: Option<&Thumbprint>,
) -> Result<(), Rejection> {
    if mode == PopMode::Off {
        return Ok(());
    }
    match claims.confirmation() {
        Confirmation::None if mode == PopMode::Strict => Err(Rejection::Unbound),
        Confirmation::None => Ok(()),
        // A token bound to a key we cannot check (a DPoP `jkt`, say) must not pass as bearer.
        Confirmation::Other => Err(Rejection::UnsupportedConfirmation),
        Confirmation::X5tS256(claimed) => match presented {
            None => Err(Rejection::CertificateRequired),
            Some(tp) if tp.matches_x5t_s256(&claimed) => Ok(()),
            Some(_) => Err(Rejection::ThumbprintMismatch),
        },
    }
}
