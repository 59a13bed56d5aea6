//! The signature primitives every verifier here shares, backed by RustCrypto crates: ECDSA
//! with p256/p384 0.14 and Ed25519 with ed25519-compact 2.6 (the crates jwt-simple 0.15's
//! "pure-rust" feature links), RSA with rsa 0.10. No ring, no aws-lc, no C.
//!
//! Users: `binding::chain` (rustls-webpki's `SignatureVerificationAlgorithm`, below),
//! `binding::jws` (DPoP proofs) and `tokens::jwks` (RSA-signed JWTs: jwt-simple's own RSA is
//! rsa 0.9, whose 64-bit limbs become emulated 128-bit multiplications on wasm32; rsa 0.10's
//! crypto-bigint uses 32-bit limbs there and was measured 3-4x faster per verification).
//!
//! ECDSA hashes with hmac-sha256 / hmac-sha512 (the SHA-2 code jwt-simple already links); RSA
//! with sha2 0.11, whose OIDs rsa 0.10's PKCS#1 v1.5 prefixes need.
//!
//! This is the only crypto glue; path building, validity, EKU, basicConstraints, name constraints
//! and CRL processing are all rustls-webpki's.

use hmac_sha256::Hash as Sha256;
use hmac_sha512::sha384::Hash as Sha384;
use pki_types::{AlgorithmIdentifier, InvalidSignature, SignatureVerificationAlgorithm, alg_id};

#[derive(Debug, Clone, Copy)]
enum Kind {
    P256Sha256,
    P256Sha384,
    P384Sha256,
    P384Sha384,
    Rsa(RsaScheme),
    Ed25519,
}

#[derive(Debug)]
pub struct Alg {
    public_key_alg_id: AlgorithmIdentifier,
    signature_alg_id: AlgorithmIdentifier,
    kind: Kind,
}

thread_local! {
    static CHECKS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// How many signatures path validation has checked on this thread (each wasm worker is one):
/// what a forwarded chain costs, for the tests and the benchmark.
pub fn path_signature_checks() -> u64 {
    CHECKS.with(std::cell::Cell::get)
}

impl SignatureVerificationAlgorithm for Alg {
    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        self.public_key_alg_id
    }
    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        self.signature_alg_id
    }
    fn verify_signature(
        &self,
        public_key: &[u8],
        msg: &[u8],
        sig: &[u8],
    ) -> Result<(), InvalidSignature> {
        CHECKS.with(|c| c.set(c.get().saturating_add(1)));
        match self.kind {
            Kind::P256Sha256 => ecdsa_p256(&Sha256::hash(msg), public_key, Ecdsa::Der(sig)),
            Kind::P256Sha384 => ecdsa_p256(&Sha384::hash(msg), public_key, Ecdsa::Der(sig)),
            Kind::P384Sha256 => ecdsa_p384(&Sha256::hash(msg), public_key, Ecdsa::Der(sig)),
            Kind::P384Sha384 => ecdsa_p384(&Sha384::hash(msg), public_key, Ecdsa::Der(sig)),
            Kind::Rsa(scheme) => rsa_verify(&rsa_key(public_key)?, scheme, msg, sig),
            Kind::Ed25519 => ed25519(public_key, msg, sig),
        }
    }
}

/// An ECDSA signature as X.509 writes it (DER Ecdsa-Sig-Value) or as JOSE does (r || s).
#[derive(Debug, Clone, Copy)]
pub enum Ecdsa<'a> {
    Der(&'a [u8]),
    Fixed(&'a [u8]),
}

// ECDSA: `public_key` is the SEC1 point. The hash may differ from the curve size (P-256 with
// SHA-384 etc.), so hash here and use the prehash verifier.
pub fn ecdsa_p256(prehash: &[u8], pk: &[u8], sig: Ecdsa<'_>) -> Result<(), InvalidSignature> {
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(pk).map_err(|_| InvalidSignature)?;
    let sig = match sig {
        Ecdsa::Der(der) => p256::ecdsa::Signature::from_der(der),
        Ecdsa::Fixed(raw) => p256::ecdsa::Signature::from_slice(raw),
    }
    .map_err(|_| InvalidSignature)?;
    key.verify_prehash(prehash, &sig)
        .map_err(|_| InvalidSignature)
}

pub fn ecdsa_p384(prehash: &[u8], pk: &[u8], sig: Ecdsa<'_>) -> Result<(), InvalidSignature> {
    use p384::ecdsa::signature::hazmat::PrehashVerifier;
    let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(pk).map_err(|_| InvalidSignature)?;
    let sig = match sig {
        Ecdsa::Der(der) => p384::ecdsa::Signature::from_der(der),
        Ecdsa::Fixed(raw) => p384::ecdsa::Signature::from_slice(raw),
    }
    .map_err(|_| InvalidSignature)?;
    key.verify_prehash(prehash, &sig)
        .map_err(|_| InvalidSignature)
}

/// Same bounds as webpki's ring/aws-lc `RSA_*_2048_8192_*` algorithms.
const RSA_BITS: std::ops::RangeInclusive<usize> = 2048..=8192;

// RSA: `public_key` is the PKCS#1 RSAPublicKey DER.
fn rsa_key(pk: &[u8]) -> Result<rsa::PublicKey, InvalidSignature> {
    use rsa::pkcs1::der::Decode;
    let parsed = rsa::pkcs1::RsaPublicKeyRef::from_der(pk).map_err(|_| InvalidSignature)?;
    rsa_public(parsed.modulus.as_bytes(), parsed.public_exponent.as_bytes())
}

/// An RSA key from its big-endian modulus and exponent, 2048 to 8192 bits (rsa 0.10 also
/// refuses an even modulus and an exponent below 3 or above 2^33 - 1). Its Montgomery
/// parameters are computed here, once: keep the key, not its parts.
pub fn rsa_public(n: &[u8], e: &[u8]) -> Result<rsa::PublicKey, InvalidSignature> {
    let strip = |b: &[u8]| -> Vec<u8> { b.iter().copied().skip_while(|x| *x == 0).collect() };
    let (n, e) = (strip(n), strip(e));
    let bits = |b: &[u8]| u32::try_from(b.len().saturating_mul(8)).map_err(|_| InvalidSignature);
    if n.is_empty() || e.is_empty() || n.len() > RSA_BITS.end() / 8 {
        return Err(InvalidSignature);
    }
    let n = rsa::BoxedUint::from_be_slice(&n, bits(&n)?).map_err(|_| InvalidSignature)?;
    let e = rsa::BoxedUint::from_be_slice(&e, bits(&e)?).map_err(|_| InvalidSignature)?;
    rsa::PublicKey::new_with_size_limits(n, e, RSA_BITS).map_err(|_| InvalidSignature)
}

/// The RSA signature schemes of X.509 and JWA (RFC 7518 §3.3, §3.5). PSS as webpki accepts
/// it and JWA defines PS*: MGF1 with the same hash, salt length equal to the hash length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RsaScheme {
    Pkcs1Sha256,
    Pkcs1Sha384,
    Pkcs1Sha512,
    PssSha256,
    PssSha384,
    PssSha512,
}

/// Checks `sig` over `msg` (hashed here) with `key`.
pub fn rsa_verify(
    key: &rsa::PublicKey,
    scheme: RsaScheme,
    msg: &[u8],
    sig: &[u8],
) -> Result<(), InvalidSignature> {
    use rsa::{Pkcs1v15Sign, pss::Pss};
    use sha2::{Digest, Sha256, Sha384, Sha512};
    match scheme {
        RsaScheme::Pkcs1Sha256 => {
            key.verify(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(msg), sig)
        }
        RsaScheme::Pkcs1Sha384 => {
            key.verify(Pkcs1v15Sign::new::<Sha384>(), &Sha384::digest(msg), sig)
        }
        RsaScheme::Pkcs1Sha512 => {
            key.verify(Pkcs1v15Sign::new::<Sha512>(), &Sha512::digest(msg), sig)
        }
        RsaScheme::PssSha256 => key.verify(Pss::<Sha256>::new(), &Sha256::digest(msg), sig),
        RsaScheme::PssSha384 => key.verify(Pss::<Sha384>::new(), &Sha384::digest(msg), sig),
        RsaScheme::PssSha512 => key.verify(Pss::<Sha512>::new(), &Sha512::digest(msg), sig),
    }
    .map_err(|_| InvalidSignature)
}

pub fn ed25519(pk: &[u8], msg: &[u8], sig: &[u8]) -> Result<(), InvalidSignature> {
    let key = ed25519_compact::PublicKey::from_slice(pk).map_err(|_| InvalidSignature)?;
    let sig = ed25519_compact::Signature::from_slice(sig).map_err(|_| InvalidSignature)?;
    key.verify(msg, &sig).map_err(|_| InvalidSignature)
}

macro_rules! alg {
    ($name:ident, $pk:expr, $sig:expr, $kind:expr) => {
        pub static $name: &dyn SignatureVerificationAlgorithm = &Alg {
            public_key_alg_id: $pk,
            signature_alg_id: $sig,
            kind: $kind,
        };
    };
}

alg!(
    ECDSA_P256_SHA256,
    alg_id::ECDSA_P256,
    alg_id::ECDSA_SHA256,
    Kind::P256Sha256
);
alg!(
    ECDSA_P256_SHA384,
    alg_id::ECDSA_P256,
    alg_id::ECDSA_SHA384,
    Kind::P256Sha384
);
alg!(
    ECDSA_P384_SHA256,
    alg_id::ECDSA_P384,
    alg_id::ECDSA_SHA256,
    Kind::P384Sha256
);
alg!(
    ECDSA_P384_SHA384,
    alg_id::ECDSA_P384,
    alg_id::ECDSA_SHA384,
    Kind::P384Sha384
);
alg!(
    RSA_PKCS1_SHA256,
    alg_id::RSA_ENCRYPTION,
    alg_id::RSA_PKCS1_SHA256,
    Kind::Rsa(RsaScheme::Pkcs1Sha256)
);
alg!(
    RSA_PKCS1_SHA384,
    alg_id::RSA_ENCRYPTION,
    alg_id::RSA_PKCS1_SHA384,
    Kind::Rsa(RsaScheme::Pkcs1Sha384)
);
alg!(
    RSA_PKCS1_SHA512,
    alg_id::RSA_ENCRYPTION,
    alg_id::RSA_PKCS1_SHA512,
    Kind::Rsa(RsaScheme::Pkcs1Sha512)
);
alg!(
    RSA_PSS_SHA256,
    alg_id::RSA_ENCRYPTION,
    alg_id::RSA_PSS_SHA256,
    Kind::Rsa(RsaScheme::PssSha256)
);
alg!(
    RSA_PSS_SHA384,
    alg_id::RSA_ENCRYPTION,
    alg_id::RSA_PSS_SHA384,
    Kind::Rsa(RsaScheme::PssSha384)
);
alg!(
    RSA_PSS_SHA512,
    alg_id::RSA_ENCRYPTION,
    alg_id::RSA_PSS_SHA512,
    Kind::Rsa(RsaScheme::PssSha512)
);
alg!(ED25519, alg_id::ED25519, alg_id::ED25519, Kind::Ed25519);

/// Every algorithm we accept for certificate and CRL signatures. (No SHA-1, no P-521, no Ed448:
/// webpki's own ring/aws-lc sets don't have SHA-1 either.)
pub static ALL: &[&dyn SignatureVerificationAlgorithm] = &[
    ECDSA_P256_SHA256,
    ECDSA_P256_SHA384,
    ECDSA_P384_SHA256,
    ECDSA_P384_SHA384,
    RSA_PKCS1_SHA256,
    RSA_PKCS1_SHA384,
    RSA_PKCS1_SHA512,
    RSA_PSS_SHA256,
    RSA_PSS_SHA384,
    RSA_PSS_SHA512,
    ED25519,
];
