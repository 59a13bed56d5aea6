//! Whether a certificate that arrived in a header chains to a configured CA: path
//! validation by rustls-webpki (chain building, validity, basicConstraints, name constraints,
//! the client-authentication EKU on every certificate of the path, CRLs), with the signature
//! checks of `sigalgs`. Nothing here is hand-written path validation.

use std::fmt;
use std::time::Duration;

use der::{Decode, Encode};
use pki_types::{CertificateDer, TrustAnchor, UnixTime};
use webpki::{
    CertRevocationList, EndEntityCert, ExpirationPolicy, KeyUsage, OwnedCertRevocationList,
    RevocationCheckDepth, RevocationOptionsBuilder, UnknownStatusPolicy,
};

use crate::sigalgs;

/// The CAs (and CRLs) header certificates must chain to, parsed once at configure time.
pub struct TrustStore {
    anchors: Vec<TrustAnchor<'static>>,
    /// Configured CAs that are not anchors (not self-issued, partial chains off): offered to
    /// the path builder as intermediates, as OpenSSL uses its store.
    intermediates: Vec<CertificateDer<'static>>,
    crls: Vec<CertRevocationList<'static>>,
    /// CRLs were configured: with none usable, no certificate's status is known.
    revocation_checked: bool,
}

impl fmt::Debug for TrustStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TrustStore({} anchors, {} intermediates, {} CRLs)",
            self.anchors.len(),
            self.intermediates.len(),
            self.crls.len()
        )
    }
}

/// Why a presented chain is refused, for the log (never the certificate itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainError {
    Expired,
    NotYetValid,
    UnknownIssuer,
    Revoked,
    /// CRLs are configured, but none from the certificate's issuer.
    RevocationUnknown,
    NotForClientAuth,
    BadSignature,
    Malformed,
    Other,
}

impl fmt::Display for ChainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChainError::Expired => "certificate expired",
            ChainError::NotYetValid => "certificate not valid yet",
            ChainError::UnknownIssuer => "does not chain to a configured CA",
            ChainError::Revoked => "certificate revoked",
            ChainError::RevocationUnknown => "no CRL from the certificate's issuer",
            ChainError::NotForClientAuth => "certificate not for client authentication",
            ChainError::BadSignature => "a signature in the chain does not verify",
            ChainError::Malformed => "not a usable certificate",
            ChainError::Other => "certificate path refused",
        })
    }
}

fn classify(e: &webpki::Error) -> ChainError {
    use webpki::Error as E;
    match e {
        E::CertExpired { .. } => ChainError::Expired,
        E::CertNotValidYet { .. } => ChainError::NotYetValid,
        E::UnknownIssuer => ChainError::UnknownIssuer,
        E::CertRevoked => ChainError::Revoked,
        E::UnknownRevocationStatus => ChainError::RevocationUnknown,
        E::RequiredEkuNotFoundContext(_) => ChainError::NotForClientAuth,
        E::InvalidSignatureForPublicKey
        | E::UnsupportedSignatureAlgorithmContext(_)
        | E::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => ChainError::BadSignature,
        E::BadDer | E::BadDerTime | E::TrailingData(_) | E::UnsupportedCertVersion => {
            ChainError::Malformed
        }
        _ => ChainError::Other,
    }
}

/// Forwarded intermediates offered to the path builder at most: real client chains have one or
/// two. Each extra candidate can multiply the paths webpki tries (and their signature checks).
pub const MAX_FORWARDED_INTERMEDIATES: usize = 4;
/// Candidates kept for one issuer name: a decoy may copy a real CA's name and key identifier.
const MAX_CANDIDATES_PER_ISSUER: usize = 2;

/// What path building needs to know of a certificate, read once.
struct Links {
    /// notAfter, seconds since the epoch.
    not_after: u64,
    subject: Vec<u8>,
    issuer: Vec<u8>,
    subject_key_id: Option<Vec<u8>>,
    authority_key_id: Option<Vec<u8>>,
    is_ca: bool,
}

fn links(der: &[u8]) -> Option<Links> {
    use x509_cert::ext::pkix::{AuthorityKeyIdentifier, BasicConstraints, SubjectKeyIdentifier};
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    let tbs = cert.tbs_certificate();
    let ski = tbs.get_extension::<SubjectKeyIdentifier>().ok()?;
    let aki = tbs.get_extension::<AuthorityKeyIdentifier>().ok()?;
    let bc = tbs.get_extension::<BasicConstraints>().ok()?;
    Some(Links {
        not_after: tbs.validity().not_after.to_unix_duration().as_secs(),
        subject: tbs.subject().to_der().ok()?,
        issuer: tbs.issuer().to_der().ok()?,
        subject_key_id: ski.map(|(_, k)| k.0.as_bytes().to_vec()),
        authority_key_id: aki
            .and_then(|(_, a)| a.key_identifier)
            .map(|k| k.as_bytes().to_vec()),
        is_ca: bc.is_some_and(|(_, b)| b.ca),
    })
}

/// The forwarded intermediates that can be on a path from `leaf` upwards, in the order to try
/// them: CA certificates only, each once, each named as the issuer of a certificate already
/// on the path, one whose key identifier matches first and one whose key identifier differs
/// never (OpenSSL and BoringSSL skip those too), at most `MAX_CANDIDATES_PER_ISSUER` per
/// issuer and `MAX_FORWARDED_INTERMEDIATES` in all. Decoys carrying a real CA's name cost
/// nothing then: what path building sees is bounded whatever the header holds.
pub fn plausible_intermediates<'a>(leaf: &[u8], forwarded: &'a [Vec<u8>]) -> Vec<&'a [u8]> {
    let Some(leaf) = links(leaf) else {
        return Vec::new();
    };
    let mut pool: Vec<(&'a [u8], Links)> = Vec::new();
    for der in forwarded {
        if pool.iter().any(|(d, _)| *d == der.as_slice()) {
            continue;
        }
        if let Some(l) = links(der).filter(|l| l.is_ca) {
            pool.push((der.as_slice(), l));
        }
    }
    let mut chosen: Vec<usize> = Vec::new();
    let mut frontier: Vec<&Links> = vec![&leaf];
    while let Some(child) = frontier.pop() {
        let mut candidates: Vec<(bool, usize)> = pool
            .iter()
            .enumerate()
            .filter(|(i, (_, l))| {
                !chosen.contains(i)
                    && l.subject == child.issuer
                    && match (&child.authority_key_id, &l.subject_key_id) {
                        (Some(want), Some(have)) => want == have,
                        _ => true,
                    }
            })
            .map(|(i, (_, l))| {
                (
                    l.subject_key_id.is_some() && child.authority_key_id.is_some(),
                    i,
                )
            })
            .collect();
        // Key-identifier matches first, then the header's order.
        candidates.sort_by_key(|(matched, i)| (!matched, *i));
        for (_, i) in candidates.into_iter().take(MAX_CANDIDATES_PER_ISSUER) {
            if chosen.len() >= MAX_FORWARDED_INTERMEDIATES {
                break;
            }
            chosen.push(i);
            if let Some((_, l)) = pool.get(i)
                && l.subject != l.issuer
            {
                frontier.push(l);
            }
        }
    }
    chosen
        .into_iter()
        .filter_map(|i| pool.get(i).map(|(d, _)| *d))
        .collect()
}

/// Whether the certificate's issuer and subject names are byte-equal (self-issued), which is
/// how webpki matches names too.
fn self_issued(der: &[u8]) -> Option<bool> {
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    let tbs = cert.tbs_certificate();
    Some(tbs.subject().to_der().ok()? == tbs.issuer().to_der().ok()?)
}

/// The DER blobs of the `label` blocks of a PEM text, and a warning per block that does not
/// decode.
pub fn pem_blocks(text: &str, label: &str) -> (Vec<Vec<u8>>, Vec<String>) {
    let (mut blocks, mut problems) = (Vec::new(), Vec::new());
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut rest = text;
    let mut index = 0;
    while let Some(start) = rest.find(&begin) {
        let Some(tail) = rest.get(start..) else { break };
        let Some(stop) = tail.find(&end) else {
            problems.push(format!("block {index}: no {end} line"));
            break;
        };
        let block = tail.get(..stop + end.len()).unwrap_or_default();
        match der::pem::decode_vec(block.as_bytes()) {
            Ok((found, der)) if found == label => blocks.push(der),
            _ => problems.push(format!("block {index}: not valid PEM")),
        }
        index += 1;
        rest = tail.get(stop + end.len()..).unwrap_or_default();
    }
    (blocks, problems)
}

impl TrustStore {
    /// From the configured CAs and CRLs (PEM). What cannot be used is skipped with a warning:
    /// fewer anchors or CRLs only ever refuse more certificates (a missing CRL makes its CA's
    /// certificates unverifiable, not unrevoked).
    pub fn new(
        ca_pem: &str,
        crl_pem: Option<&str>,
        allow_partial_chain: bool,
        warnings: &mut Vec<String>,
    ) -> TrustStore {
        let mut store = TrustStore {
            anchors: Vec::new(),
            intermediates: Vec::new(),
            crls: Vec::new(),
            revocation_checked: crl_pem.is_some(),
        };
        let (cas, problems) = pem_blocks(ca_pem, "CERTIFICATE");
        for p in problems {
            warnings.push(format!("client_certificate.ca_certificates: {p}; skipped"));
        }
        for (i, der) in cas.into_iter().enumerate() {
            let anchor = webpki::anchor_from_trusted_cert(&CertificateDer::from(der.as_slice()))
                .map(|a| a.to_owned());
            match (anchor, self_issued(&der)) {
                (Ok(anchor), Some(root)) if root || allow_partial_chain => {
                    store.anchors.push(anchor);
                }
                (Ok(_), Some(_)) => store.intermediates.push(CertificateDer::from(der)),
                _ => warnings.push(format!(
                    "client_certificate.ca_certificates: certificate {i} is not a usable CA \
                     certificate; skipped"
                )),
            }
        }
        if store.anchors.is_empty() {
            warnings.push(
                "client_certificate.ca_certificates: no trust anchor (a self-issued CA, or any \
                 CA with allow_partial_chain): every header certificate will be refused"
                    .into(),
            );
        }
        if let Some(crl_pem) = crl_pem {
            let (crls, problems) = pem_blocks(crl_pem, "X509 CRL");
            for p in problems {
                warnings.push(format!("client_certificate.crls: {p}; skipped"));
            }
            for (i, der) in crls.iter().enumerate() {
                match OwnedCertRevocationList::from_der(der) {
                    Ok(crl) => store.crls.push(CertRevocationList::from(crl)),
                    Err(e) => warnings.push(format!(
                        "client_certificate.crls: CRL {i} cannot be used ({e:?}); the \
                         certificates of its CA will be refused"
                    )),
                }
            }
        }
        store
    }

    /// Whether `leaf` (with the intermediates the header carried) chains to a configured CA
    /// at `now`, allows client authentication, and (when CRLs are configured) is not revoked
    /// by its issuer's CRL, which must be among them. `Ok`: until when that holds at most (the
    /// earliest notAfter of the leaf and the forwarded intermediates offered).
    pub fn verify(
        &self,
        leaf: &[u8],
        intermediates: &[Vec<u8>],
        now: u64,
    ) -> Result<u64, ChainError> {
        self.verify_offered(leaf, &plausible_intermediates(leaf, intermediates), now)
    }

    /// `verify` with the intermediates `plausible_intermediates` chose.
    pub fn verify_offered(
        &self,
        leaf: &[u8],
        offered: &[&[u8]],
        now: u64,
    ) -> Result<u64, ChainError> {
        let until = std::iter::once(leaf)
            .chain(offered.iter().copied())
            .filter_map(|d| links(d).map(|l| l.not_after))
            .min()
            .unwrap_or(now);
        let leaf = CertificateDer::from(leaf);
        let end_entity = EndEntityCert::try_from(&leaf).map_err(|e| classify(&e))?;
        let mut chain: Vec<CertificateDer<'_>> =
            offered.iter().map(|d| CertificateDer::from(*d)).collect();
        chain.extend(
            self.intermediates
                .iter()
                .map(|c| CertificateDer::from(c.as_ref())),
        );
        if self.revocation_checked && self.crls.is_empty() {
            // Not a pass: the configured CRLs all failed to load.
            return Err(ChainError::RevocationUnknown);
        }
        let crls: Vec<&CertRevocationList<'_>> = self.crls.iter().collect();
        let revocation = RevocationOptionsBuilder::new(&crls).ok().map(|b| {
            b.with_depth(RevocationCheckDepth::EndEntity)
                .with_status_policy(UnknownStatusPolicy::Deny)
                .with_expiration_policy(ExpirationPolicy::Ignore)
                .build()
        });
        end_entity
            .verify_for_usage(
                sigalgs::ALL,
                &self.anchors,
                &chain,
                UnixTime::since_unix_epoch(Duration::from_secs(now)),
                KeyUsage::client_auth(),
                revocation,
                None,
            )
            .map(|_| until)
            .map_err(|e| classify(&e))
    }
}
