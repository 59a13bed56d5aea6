//! `pki_types::SignatureVerificationAlgorithm` implementations for `chain` (rustls-webpki),
//! and the same primitives for `jws` (DPoP proofs): adapters backed by the RustCrypto crates
//! that jwt-simple 0.15 (feature "pure-rust") already links: p256/p384 0.14 (ecdsa 0.17, signature 3),
//! rsa 0.9.10 (+ its sha2 0.10 re-export), ed25519-compact 2.6. No ring, no aws-lc, no C.
//!
//! Hashing goes through hmac-sha256 / hmac-sha512 (their digest-0.10 impls, feature "traits010"),
//! the same SHA-2 code superboring (jwt-simple's RSA) already uses, so no second SHA-2 copy lands
//! in the .wasm (sha2 0.10 via rsa and sha2 0.11 would each add their own compress functions).
//!
//! This is the only crypto glue; path building, validity, EKU, basicConstraints, name constraints
//! and CRL processing are all rustls-webpki's.

use hmac_sha256::Hash as Sha256;
use hmac_sha512::Hash as Sha512;
use hmac_sha512::sha384::Hash as Sha384;
use pki_types::{AlgorithmIdentifier, InvalidSignature, SignatureVerificationAlgorithm, alg_id};

#[derive(Debug, Clone, Copy)]
enum Kind {
    P256Sha256,
    P256Sha384,
    P384Sha256,
    P384Sha384,
    RsaPkcs1Sha256,
    RsaPkcs1Sha384,
    RsaPkcs1Sha512,
    RsaPssSha256,
    RsaPssSha384,
    RsaPssSha512,
    Ed25519,
}

#[derive(Debug)]
pub struct Alg {
    public_key_alg_id: AlgorithmIdentifier,
    signature_alg_id: AlgorithmIdentifier,
    kind: Kind,
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
        match self.kind {
            Kind::P256Sha256 => ecdsa_p256(&Sha256::hash(msg), public_key, Ecdsa::Der(sig)),
            Kind::P256Sha384 => ecdsa_p256(&Sha384::hash(msg), public_key, Ecdsa::Der(sig)),
            Kind::P384Sha256 => ecdsa_p384(&Sha256::hash(msg), public_key, Ecdsa::Der(sig)),
            Kind::P384Sha384 => ecdsa_p384(&Sha384::hash(msg), public_key, Ecdsa::Der(sig)),
            Kind::RsaPkcs1Sha256 => rsa_pkcs1::<Sha256>(&rsa_key(public_key)?, msg, sig),
            Kind::RsaPkcs1Sha384 => rsa_pkcs1::<Sha384>(&rsa_key(public_key)?, msg, sig),
            Kind::RsaPkcs1Sha512 => rsa_pkcs1::<Sha512>(&rsa_key(public_key)?, msg, sig),
            Kind::RsaPssSha256 => rsa_pss::<Sha256>(&rsa_key(public_key)?, msg, sig),
            Kind::RsaPssSha384 => rsa_pss::<Sha384>(&rsa_key(public_key)?, msg, sig),
            Kind::RsaPssSha512 => rsa_pss::<Sha512>(&rsa_key(public_key)?, msg, sig),
            Kind::Ed25519 => ed25519(public_key, msg, sig),
        }
    }
}

/// An ECDSA signature as X.509 writes it (DER Ecdsa-Sig-Value) or as JOSE does (r || s).
#[derive(Debug, Clone, Copy)]
pub(super) enum Ecdsa<'a> {
    Der(&'a [u8]),
    Fixed(&'a [u8]),
}

// ECDSA: `public_key` is the SEC1 point. The hash may differ from the curve size (P-256 with
// SHA-384 etc.), so hash here and use the prehash verifier.
pub(super) fn ecdsa_p256(
    prehash: &[u8],
    pk: &[u8],
    sig: Ecdsa<'_>,
) -> Result<(), InvalidSignature> {
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

pub(super) fn ecdsa_p384(
    prehash: &[u8],
    pk: &[u8],
    sig: Ecdsa<'_>,
) -> Result<(), InvalidSignature> {
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

/// Same bounds as webpki's ring/aws-lc `RSA_*_2048_8192_*` algorithms. rsa 0.9's `RsaPublicKey::new`
/// caps keys at 4096 bits, so build the key with an explicit max size.
const RSA_MIN_BITS: usize = 2048;
const RSA_MAX_BITS: usize = 8192;

// RSA: `public_key` is the PKCS#1 RSAPublicKey DER.
fn rsa_key(pk: &[u8]) -> Result<rsa::RsaPublicKey, InvalidSignature> {
    use rsa::pkcs1::der::Decode;
    let parsed = rsa::pkcs1::RsaPublicKey::from_der(pk).map_err(|_| InvalidSignature)?;
    rsa_public(parsed.modulus.as_bytes(), parsed.public_exponent.as_bytes())
}

/// An RSA key from its big-endian modulus and exponent, 2048 to 8192 bits.
pub(super) fn rsa_public(n: &[u8], e: &[u8]) -> Result<rsa::RsaPublicKey, InvalidSignature> {
    use rsa::traits::PublicKeyParts;
    let n = rsa::BigUint::from_bytes_be(n);
    let e = rsa::BigUint::from_bytes_be(e);
    let key =
        rsa::RsaPublicKey::new_with_max_size(n, e, RSA_MAX_BITS).map_err(|_| InvalidSignature)?;
    if key.n().bits() < RSA_MIN_BITS {
        return Err(InvalidSignature);
    }
    Ok(key)
}

pub(super) fn rsa_pkcs1<D>(
    key: &rsa::RsaPublicKey,
    msg: &[u8],
    sig: &[u8],
) -> Result<(), InvalidSignature>
where
    D: rsa::signature::digest::Digest + rsa::pkcs8::AssociatedOid,
{
    key.verify(rsa::Pkcs1v15Sign::new::<D>(), &D::digest(msg), sig)
        .map_err(|_| InvalidSignature)
}

// webpki only accepts the RSASSA-PSS AlgorithmIdentifiers whose salt length equals the hash
// length and MGF1 uses the same hash (alg_id::RSA_PSS_SHA*), which is what `Pss::new` checks;
// JWA's PS* (RFC 7518 §3.5) are the same.
pub(super) fn rsa_pss<D>(
    key: &rsa::RsaPublicKey,
    msg: &[u8],
    sig: &[u8],
) -> Result<(), InvalidSignature>
where
    D: rsa::signature::digest::Digest + rsa::signature::digest::DynDigest + Send + Sync + 'static,
{
    key.verify(rsa::Pss::new::<D>(), &D::digest(msg), sig)
        .map_err(|_| InvalidSignature)
}

pub(super) fn ed25519(pk: &[u8], msg: &[u8], sig: &[u8]) -> Result<(), InvalidSignature> {
    let key = ed25519_compact::PublicKey::from_slice(pk).map_err(|_| InvalidSignature)?;
    let sig = ed25519_compact::Signature::from_slice(sig).map_err(|_| InvalidSignature)?;
    key.verify(msg, &sig).map_err(|_| InvalidSignature)
}

macro_rules! alg {
    ($name:ident, $pk:expr, $sig:expr, $kind:ident) => {
        pub static $name: &dyn SignatureVerificationAlgorithm = &Alg {
            public_key_alg_id: $pk,
            signature_alg_id: $sig,
            kind: Kind::$kind,
        };
    };
}

alg!(
    ECDSA_P256_SHA256,
    alg_id::ECDSA_P256,
    alg_id::ECDSA_SHA256,
    P256Sha256
);
alg!(
    ECDSA_P256_SHA384,
    alg_id::ECDSA_P256,
    alg_id::ECDSA_SHA384,
    P256Sha384
);
alg!(
    ECDSA_P384_SHA256,
    alg_id::ECDSA_P384,
    alg_id::ECDSA_SHA256,
    P384Sha256
);
alg!(
    ECDSA_P384_SHA384,
    alg_id::ECDSA_P384,
    alg_id::ECDSA_SHA384,
    P384Sha384
);
alg!(
    RSA_PKCS1_SHA256,
    alg_id::RSA_ENCRYPTION,
    alg_id::RSA_PKCS1_SHA256,
    RsaPkcs1Sha256
);
alg!(
    RSA_PKCS1_SHA384,
    alg_id::RSA_ENCRYPTION,
    alg_id::RSA_PKCS1_SHA384,
    RsaPkcs1Sha384
);
alg!(
    RSA_PKCS1_SHA512,
    alg_id::RSA_ENCRYPTION,
    alg_id::RSA_PKCS1_SHA512,
    RsaPkcs1Sha512
);
alg!(
    RSA_PSS_SHA256,
    alg_id::RSA_ENCRYPTION,
    alg_id::RSA_PSS_SHA256,
    RsaPssSha256
);
alg!(
    RSA_PSS_SHA384,
    alg_id::RSA_ENCRYPTION,
    alg_id::RSA_PSS_SHA384,
    RsaPssSha384
);
alg!(
    RSA_PSS_SHA512,
    alg_id::RSA_ENCRYPTION,
    alg_id::RSA_PSS_SHA512,
    RsaPssSha512
);
alg!(ED25519, alg_id::ED25519, alg_id::ED25519, Ed25519);

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
