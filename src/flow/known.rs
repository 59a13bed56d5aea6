//! What this worker knows about the tokens it has seen, by the whole token: a JWT's facts and
//! where its signature stands, or an introspection answer's facts until it expires. A client
//! reuses its token for its whole lifetime, so the next request with it is a hash-map lookup
//! that compares the whole token, then the per-request checks (time, binding, proof): no
//! base64, JSON, SHA-256 or signature work. Bounded in entries and in bytes, oldest out first;
//! emptied when the worker's keys change.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use foldhash::fast::RandomState;

use sha2::{Digest, Sha256};

use crate::binding::certificate::{CertError, Thumbprint};
use crate::binding::chain::ChainError;
use crate::reply::rejection::Rejection;
use crate::tokens::facts::Facts;
use crate::tokens::jwks::Alg;

/// Longest token kept: RFC 9068 tokens are around 1 KiB; a bigger one is checked in full
/// each time rather than let a few requests fill the memory.
pub const MAX_KEPT_TOKEN: usize = 4 * 1024;
/// Bytes kept per entry allowed, on average: the token, what is known of it, and the map's
/// own bookkeeping (`ENTRY_OVERHEAD`).
const BYTES_PER_ENTRY: usize = 2 * 1024;
/// What a worker's known tokens may take in all, whatever `cache_max_entries` says: at the
/// largest allowed count (1,000,000) the per-entry budget alone would be 2 GB per worker.
pub const MAX_KNOWN_BYTES: usize = 64 * 1024 * 1024;
/// The allocations an entry costs beside its strings (map slot, two `Rc`s, the order queue,
/// the facts' fixed part), measured from the types' sizes and rounded up.
const ENTRY_OVERHEAD: usize = 256;
/// Seconds a failed signature is remembered: a forger who binds the token to its own
/// certificate (or any token where binding is optional) passes every cheap check, and must
/// not buy a signature check per request. Then it is checked again (a key may have arrived).
pub const FAILED_SIGNATURE_MEMORY: u64 = 60;

/// Where a JWT's signature stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signature {
    /// Not checked yet (the token failed a cheaper check, or is being checked now).
    Unchecked,
    Verified,
    /// Failed at this time.
    Failed(u64),
}

/// What is known about one token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Known {
    /// A JWT that passed every check on its header and claims that does not depend on the
    /// time or the request (`typ`, `alg`, `crit`, `iss`, `aud`).
    Jwt {
        facts: Facts,
        alg: Alg,
        kid: Option<String>,
        signature: Signature,
    },
    /// An introspection answer (cached for this configuration's `cache_introspection`, and
    /// never past what the shared entry allows): its facts, or the refusal it gives whatever
    /// the request (inactive, wrong audience...).
    Answer {
        facts: Result<Facts, Rejection>,
        until: u64,
        signed: Option<Rc<str>>,
    },
}

impl Known {
    /// The heap bytes this holds beyond `ENTRY_OVERHEAD`: its strings.
    fn weight(&self) -> usize {
        let facts_bytes = |f: &Facts| {
            let cnf = f.cnf.x5t_s256.as_ref().map_or(0, String::len)
                + f.cnf.jkt.as_ref().map_or(0, String::len);
            let identity: usize = f
                .identity
                .iter()
                .map(|v| v.as_ref().map_or(0, String::len) + std::mem::size_of::<Option<String>>())
                .sum();
            cnf + identity
        };
        match self {
            Known::Jwt { facts, kid, .. } => {
                facts_bytes(facts) + kid.as_ref().map_or(0, String::len)
            }
            Known::Answer { facts, signed, .. } => {
                facts.as_ref().map_or(0, facts_bytes) + signed.as_ref().map_or(0, |s| s.len())
            }
        }
    }

    /// Whether the JWT's signature failed within `FAILED_SIGNATURE_MEMORY` of `now`.
    pub fn signature_failed_recently(signature: Signature, now: u64) -> bool {
        matches!(signature, Signature::Failed(at) if now < at.saturating_add(FAILED_SIGNATURE_MEMORY))
    }
}

/// What is known of a token, and the bytes its entry counts for.
type Weighed = (Rc<Known>, usize);

/// The tokens one worker knows.
pub struct KnownTokens {
    /// foldhash, seeded at random per worker: several times faster than SipHash over a
    /// kilobyte token, and an attacker who cannot see hashes cannot aim collisions.
    map: RefCell<HashMap<Rc<str>, Weighed, RandomState>>,
    /// Insertion order, for eviction.
    order: RefCell<VecDeque<Rc<str>>>,
    bytes: Cell<usize>,
    max_entries: usize,
    max_bytes: usize,
}

impl KnownTokens {
    pub fn new(max_entries: u32) -> KnownTokens {
        let max_entries = (max_entries as usize).max(1);
        KnownTokens {
            map: RefCell::new(HashMap::with_hasher(RandomState::default())),
            order: RefCell::new(VecDeque::new()),
            bytes: Cell::new(0),
            max_entries,
            max_bytes: max_entries
                .saturating_mul(BYTES_PER_ENTRY)
                .min(MAX_KNOWN_BYTES),
        }
    }

    pub fn get(&self, token: &str) -> Option<Rc<Known>> {
        self.map.borrow().get(token).map(|(k, _)| Rc::clone(k))
    }

    /// Records what is known about `token` (replacing what was), evicting the oldest entries
    /// beyond the bounds. Tokens over `MAX_KEPT_TOKEN` are not kept.
    pub fn put(&self, token: &str, known: Rc<Known>) {
        if token.len() > MAX_KEPT_TOKEN {
            return;
        }
        let weight = token.len() + known.weight() + ENTRY_OVERHEAD;
        let mut map = self.map.borrow_mut();
        let mut bytes = self.bytes.get();
        if let Some(entry) = map.get_mut(token) {
            bytes = bytes.saturating_sub(entry.1).saturating_add(weight);
            *entry = (known, weight);
            self.bytes.set(bytes);
            return;
        }
        let key: Rc<str> = Rc::from(token);
        let mut order = self.order.borrow_mut();
        bytes = bytes.saturating_add(weight);
        while map.len() >= self.max_entries || bytes > self.max_bytes {
            let Some(oldest) = order.pop_front() else {
                break;
            };
            if let Some((_, w)) = map.remove(&oldest) {
                bytes = bytes.saturating_sub(w);
            }
        }
        order.push_back(Rc::clone(&key));
        map.insert(key, (known, weight));
        self.bytes.set(bytes);
    }

    pub fn clear(&self) {
        self.map.borrow_mut().clear();
        self.order.borrow_mut().clear();
        self.bytes.set(0);
    }

    pub fn len(&self) -> usize {
        self.map.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.borrow().is_empty()
    }

    /// Bytes held: tokens, what is known of them, and the bookkeeping per entry.
    pub fn bytes(&self) -> usize {
        self.bytes.get()
    }
}

/// Client certificates (PEM, as Kong's engine hands them over on every request) this worker
/// has hashed: the same client's next request skips the base64 and SHA-256 of its DER. And
/// the path-validation verdicts of certificates forwarded in headers, by the SHA-256 of leaf
/// and chain: an honest client's next request skips path building (several signature checks),
/// and a refused chain sent again costs a lookup.
pub struct KnownCertificates {
    map: RefCell<HashMap<Vec<u8>, Thumbprint, RandomState>>,
    chains: RefCell<HashMap<[u8; 32], ChainVerdict, RandomState>>,
}

/// A path-validation verdict and until when it holds.
type ChainVerdict = (Result<(), ChainError>, u64);

/// Certificates kept; past that the memory starts over (clients reconnect with the same one).
const MAX_KNOWN_CERTIFICATES: usize = 256;
/// Chain verdicts kept (about 50 bytes each), and for how long: a certificate's validity is
/// judged at most this long after it was checked, and a CRL change shows within it.
const MAX_KNOWN_CHAINS: usize = 4096;
pub const CHAIN_VERDICT_SECONDS: u64 = 60;

impl Default for KnownCertificates {
    fn default() -> Self {
        KnownCertificates {
            map: RefCell::new(HashMap::with_hasher(RandomState::default())),
            chains: RefCell::new(HashMap::with_hasher(RandomState::default())),
        }
    }
}

impl KnownCertificates {
    /// `Thumbprint::from_pem`, remembered.
    pub fn thumbprint_of_pem(&self, pem: &[u8]) -> Result<Thumbprint, CertError> {
        if let Some(tp) = self.map.borrow().get(pem) {
            return Ok(*tp);
        }
        let tp = Thumbprint::from_pem(pem)?;
        let mut map = self.map.borrow_mut();
        if map.len() >= MAX_KNOWN_CERTIFICATES {
            map.clear();
        }
        map.insert(pem.to_vec(), tp);
        Ok(tp)
    }

    /// `verify()` (`Ok`: valid until) of `leaf` with the intermediates `offered` to path
    /// building, remembered by the SHA-256 of leaf and those intermediates in a fixed order
    /// (each length-prefixed, so no two inputs share a key: what the header adds that path
    /// building never sees cannot make a new entry) for `CHAIN_VERDICT_SECONDS`, and an
    /// acceptance never past the moment its certificates expire.
    pub fn chain_verdict(
        &self,
        leaf: &[u8],
        offered: &[&[u8]],
        now: u64,
        verify: impl FnOnce() -> Result<u64, ChainError>,
    ) -> Result<(), ChainError> {
        let mut sorted: Vec<&[u8]> = offered.to_vec();
        sorted.sort_unstable();
        let mut h = Sha256::new();
        for der in std::iter::once(leaf).chain(sorted) {
            h.update((der.len() as u64).to_le_bytes());
            h.update(der);
        }
        let key: [u8; 32] = h.finalize().into();
        if let Some((verdict, until)) = self.chains.borrow().get(&key)
            && now < *until
        {
            return *verdict;
        }
        let checked = verify();
        let until = match checked {
            Ok(expires) => expires.min(now.saturating_add(CHAIN_VERDICT_SECONDS)),
            Err(_) => now.saturating_add(CHAIN_VERDICT_SECONDS),
        };
        let verdict = checked.map(|_| ());
        let mut chains = self.chains.borrow_mut();
        if chains.len() >= MAX_KNOWN_CHAINS {
            chains.retain(|_, (_, until)| now < *until);
            if chains.len() >= MAX_KNOWN_CHAINS {
                chains.clear();
            }
        }
        chains.insert(key, (verdict, until));
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(until: u64) -> Rc<Known> {
        Rc::new(Known::Answer {
            facts: Err(Rejection::Inactive),
            until,
            signed: None,
        })
    }

    #[test]
    fn the_whole_token_is_the_key() {
        let k = KnownTokens::new(8);
        k.put("token-a", answer(1));
        assert!(k.get("token-a").is_some());
        assert!(k.get("token-").is_none());
        assert!(k.get("token-ab").is_none());
        k.put("token-a", answer(2));
        assert_eq!(k.len(), 1);
        assert!(matches!(
            *k.get("token-a").unwrap(),
            Known::Answer { until: 2, .. }
        ));
    }

    #[test]
    fn bounded_in_entries_and_bytes_oldest_out_first() {
        let k = KnownTokens::new(4);
        for i in 0..10 {
            k.put(&format!("t{i}"), answer(i));
        }
        assert_eq!(k.len(), 4);
        assert!(k.get("t5").is_none() && k.get("t6").is_some());
        // 4 entries allow 8 KiB: three 3 KiB tokens do not fit together.
        let k = KnownTokens::new(4);
        for c in ['a', 'b', 'c'] {
            k.put(&c.to_string().repeat(3 * 1024), answer(0));
        }
        assert_eq!(k.len(), 2);
        assert!(k.bytes() <= 8 * 1024);
        k.put(&"x".repeat(MAX_KEPT_TOKEN + 1), answer(0));
        assert_eq!(k.len(), 2, "over-long tokens are not kept");
        k.clear();
        assert!(k.is_empty() && k.bytes() == 0);
    }

    #[test]
    fn an_entry_weighs_what_it_holds_and_a_worker_holds_at_most_its_cap() {
        // The copies of claims count, not only the token (an answer with a signed response
        // forwarded is mostly that response).
        let k = KnownTokens::new(16);
        let signed: Rc<str> = Rc::from("s".repeat(1500).as_str());
        k.put(
            "tok",
            Rc::new(Known::Answer {
                facts: Err(Rejection::Inactive),
                until: 1,
                signed: Some(signed),
            }),
        );
        assert!(k.bytes() >= 3 + 1500 + ENTRY_OVERHEAD, "{}", k.bytes());
        // Replacing an entry replaces its weight.
        k.put("tok", answer(2));
        assert_eq!(k.bytes(), 3 + ENTRY_OVERHEAD);
        // Whatever cache_max_entries is, the bytes stay under the cap.
        let big = KnownTokens::new(1_000_000);
        assert_eq!(big.max_bytes, MAX_KNOWN_BYTES);
        let token = "t".repeat(4000);
        for i in 0..20_000 {
            big.put(&format!("{i}{token}"), answer(0));
        }
        assert!(big.bytes() <= MAX_KNOWN_BYTES, "{}", big.bytes());
        assert!(big.len() < 20_000);
    }

    #[test]
    fn a_failed_signature_is_remembered_for_a_minute() {
        assert!(Known::signature_failed_recently(
            Signature::Failed(100),
            159
        ));
        assert!(!Known::signature_failed_recently(
            Signature::Failed(100),
            160
        ));
        assert!(!Known::signature_failed_recently(Signature::Verified, 100));
    }
}
