//! DPoP replay detection (RFC 9449 §11.1): each proof is accepted once while it could still
//! pass the `iat` check. A proof is known by the SHA-256 of its key's thumbprint and its
//! `jti`. Proofs live in a fixed number of buckets, each one store entry holding up to
//! `BUCKET_SIZE` (id, expiry) pairs, so the memory is bounded and the same layout works per
//! worker or in the host's shared data (no listing, no expiry there).
//!
//! Each proof has two candidate buckets and goes into the emptier one ("two choices"), so
//! buckets overflow only near the configured capacity, and no one can fill a victim's place
//! with a handful of proofs. A bucket is updated by compare-and-swap; after its write a claim
//! reads the other candidate again and refuses if the same proof is there: of two workers
//! accepting one proof at the same instant into different buckets, the later re-read sees
//! the earlier write, so at most one accepts. Both buckets full refuses new proofs (fail
//! closed) rather than forget a live one, which would reopen its replay window.

use sha2::{Digest, Sha256};

use crate::flow::cache::Store;

/// Proofs one bucket holds.
pub const BUCKET_SIZE: usize = 16;
/// Bytes of the proof id kept: collisions need 2^64 work per bucket.
const ID_BYTES: usize = 16;
const ENTRY: usize = ID_BYTES + 8;
/// Bucket layout: magic, then entries (id prefix, expiry in big-endian seconds).
const MAGIC: &[u8; 4] = b"cbd1";
/// Attempts at a compare-and-swap write before giving up (other workers kept winning).
const ATTEMPTS: usize = 4;

/// A proof's identity: SHA-256 of its key's thumbprint and its `jti`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProofId([u8; 32]);

impl ProofId {
    pub fn of(jkt: &str, jti: &str) -> ProofId {
        let mut h = Sha256::new();
        h.update(jkt.as_bytes());
        h.update(b".");
        h.update(jti.as_bytes());
        ProofId(h.finalize().into())
    }

    fn short(&self) -> &[u8] {
        self.0.get(..ID_BYTES).unwrap_or_default()
    }
}

/// What recording a proof came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// First use: recorded.
    Fresh,
    /// Already recorded, still live.
    Replayed,
    /// Its bucket is full of live proofs.
    Full,
    /// The store failed, or other writers kept winning the race: not recorded.
    Unavailable(String),
}

/// The bucket layout of one configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofLedger {
    prefix: String,
    buckets: u32,
}

impl ProofLedger {
    /// Room for about `capacity` live proofs. The bucket count is in the key prefix, so
    /// configurations of another size never read these buckets with the wrong layout.
    pub fn new(capacity: u32) -> ProofLedger {
        let buckets = capacity.div_ceil(BUCKET_SIZE as u32).max(1);
        ProofLedger {
            prefix: format!("certbound.dpop.{buckets}."),
            buckets,
        }
    }

    /// The keys of the proof's two candidate buckets (the same one, now and then).
    fn keys(&self, id: &ProofId) -> [String; 2] {
        let [a, b, c, d, e, f, g, h, ..] = id.0;
        [[a, b, c, d], [e, f, g, h]]
            .map(|x| format!("{}{}", self.prefix, u32::from_be_bytes(x) % self.buckets))
    }

    /// Whether the proof is recorded and live: the cheap early refusal of a replay, before
    /// any signature work. `Err` when the store failed.
    pub fn seen(&self, store: &dyn Store, id: &ProofId, now: u64) -> Result<bool, String> {
        let [first, second] = self.keys(id);
        if holds(&read(store, &first)?.0, id, now) {
            return Ok(true);
        }
        Ok(second != first && holds(&read(store, &second)?.0, id, now))
    }

    /// Records the proof until `until`, unless it is recorded already. Expired entries are
    /// dropped on the way.
    pub fn claim(&self, store: &dyn Store, id: &ProofId, now: u64, until: u64) -> Claim {
        let [first, second] = self.keys(id);
        for _ in 0..ATTEMPTS {
            let (one, other) = match (read(store, &first), read(store, &second)) {
                (Ok(one), Ok(other)) => (one, other),
                (Err(e), _) | (_, Err(e)) => return Claim::Unavailable(e),
            };
            if holds(&one.0, id, now) || holds(&other.0, id, now) {
                return Claim::Replayed;
            }
            let (n_one, n_other) = (live(&one.0, now).count(), live(&other.0, now).count());
            // The emptier candidate; the first on a tie (and when both keys are the same).
            let (key, (bytes, version), recheck) = if n_other < n_one && second != first {
                (&second, &other, Some(&first))
            } else if n_one < BUCKET_SIZE {
                (&first, &one, (second != first).then_some(&second))
            } else {
                return Claim::Full;
            };
            let mut value = Vec::with_capacity(MAGIC.len() + (BUCKET_SIZE + 1) * ENTRY);
            value.extend_from_slice(MAGIC);
            for (i, expires) in live(bytes, now).chain([(id.short(), until)]) {
                value.extend_from_slice(i);
                value.extend_from_slice(&expires.to_be_bytes());
            }
            match store.save_versioned(key, &value, *version) {
                Ok(true) => {}
                Ok(false) => continue, // another worker wrote the bucket: read both again
                Err(e) => return Claim::Unavailable(e),
            }
            // The same proof recorded meanwhile in the other candidate by another worker: of
            // the two, at least the later re-read sees it, so never both accept.
            return match recheck.map(|k| read(store, k)) {
                None => Claim::Fresh,
                Some(Ok((other_now, _))) if holds(&other_now, id, now) => Claim::Replayed,
                Some(Ok(_)) => Claim::Fresh,
                Some(Err(e)) => Claim::Unavailable(e),
            };
        }
        Claim::Unavailable("the replay buckets kept changing under us".to_string())
    }
}

/// A bucket's bytes (empty when absent) and version.
fn read(store: &dyn Store, key: &str) -> Result<(Vec<u8>, Option<u32>), String> {
    Ok(match store.load_versioned(key)? {
        Some((bytes, version)) => (bytes, Some(version)),
        None => (Vec::new(), None),
    })
}

/// Whether a bucket holds the proof, live.
fn holds(bytes: &[u8], id: &ProofId, now: u64) -> bool {
    live(bytes, now).any(|(i, _)| i == id.short())
}

/// The live entries of a bucket; a bucket of another layout holds none.
fn live(bytes: &[u8], now: u64) -> impl Iterator<Item = (&[u8], u64)> {
    let body = bytes.strip_prefix(MAGIC.as_slice()).unwrap_or_default();
    body.chunks_exact(ENTRY)
        .filter_map(|e| {
            let (id, expires) = e.split_at_checked(ID_BYTES)?;
            Some((id, u64::from_be_bytes(expires.try_into().ok()?)))
        })
        .filter(move |(_, expires)| now < *expires)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::cache::LocalStore;

    #[test]
    fn a_proof_is_accepted_once_while_live_and_forgotten_after() {
        let store = LocalStore::default();
        let ledger = ProofLedger::new(1024);
        let id = ProofId::of("key", "jti-1");
        assert_eq!(ledger.seen(&store, &id, 100), Ok(false));
        assert_eq!(ledger.claim(&store, &id, 100, 400), Claim::Fresh);
        assert_eq!(ledger.seen(&store, &id, 399), Ok(true));
        assert_eq!(ledger.claim(&store, &id, 399, 700), Claim::Replayed);
        assert_eq!(ledger.seen(&store, &id, 400), Ok(false));
        assert_eq!(ledger.claim(&store, &id, 400, 700), Claim::Fresh);
    }

    #[test]
    fn the_same_jti_under_another_key_is_another_proof() {
        let store = LocalStore::default();
        let ledger = ProofLedger::new(1024);
        assert_eq!(
            ledger.claim(&store, &ProofId::of("a", "j"), 0, 10),
            Claim::Fresh
        );
        assert_eq!(
            ledger.claim(&store, &ProofId::of("b", "j"), 0, 10),
            Claim::Fresh
        );
    }

    #[test]
    fn a_full_bucket_refuses_rather_than_forgets() {
        let store = LocalStore::default();
        let ledger = ProofLedger::new(1); // one bucket
        for i in 0..BUCKET_SIZE {
            let id = ProofId::of("k", &format!("{i}"));
            assert_eq!(ledger.claim(&store, &id, 0, 100), Claim::Fresh);
        }
        let extra = ProofId::of("k", "extra");
        assert_eq!(ledger.claim(&store, &extra, 1, 100), Claim::Full);
        // Every earlier proof is still refused as a replay.
        let first = ProofId::of("k", "0");
        assert_eq!(ledger.claim(&store, &first, 1, 100), Claim::Replayed);
        // Expired entries make room.
        assert_eq!(ledger.claim(&store, &extra, 100, 200), Claim::Fresh);
        assert_eq!(store.len(), 1);
    }

    /// A store where another worker acts just before our first versioned write (`rival`
    /// runs then, on the same memory).
    struct Contested<F: Fn(&LocalStore, &str)> {
        inner: LocalStore,
        done: std::cell::Cell<bool>,
        rival: F,
    }

    impl<F: Fn(&LocalStore, &str)> Contested<F> {
        fn new(rival: F) -> Self {
            Contested {
                inner: LocalStore::default(),
                done: std::cell::Cell::new(false),
                rival,
            }
        }
    }

    impl<F: Fn(&LocalStore, &str)> Store for Contested<F> {
        fn load(&self, key: &str) -> Option<Vec<u8>> {
            self.inner.load(key)
        }
        fn save(&self, key: &str, value: &[u8]) {
            self.inner.save(key, value)
        }
        fn load_versioned(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, String> {
            self.inner.load_versioned(key)
        }
        fn save_versioned(
            &self,
            key: &str,
            value: &[u8],
            version: Option<u32>,
        ) -> Result<bool, String> {
            if !self.done.replace(true) {
                (self.rival)(&self.inner, key);
            }
            self.inner.save_versioned(key, value, version)
        }
    }

    #[test]
    fn two_workers_racing_with_one_proof_accept_it_once() {
        let id = ProofId::of("k", "same");
        // The rival records the very same proof first, in the same (only) bucket.
        let store = Contested::new(|inner: &LocalStore, _: &str| {
            assert_eq!(ProofLedger::new(1).claim(inner, &id, 0, 100), Claim::Fresh);
        });
        assert_eq!(
            ProofLedger::new(1).claim(&store, &id, 0, 100),
            Claim::Replayed
        );
    }

    #[test]
    fn a_proof_written_into_its_other_bucket_meanwhile_is_refused() {
        let ledger = ProofLedger::new(1024);
        let id = (0..)
            .map(|i| ProofId::of("k", &format!("{i}")))
            .find(|id| {
                let [a, b] = ledger.keys(id);
                a != b
            })
            .unwrap();
        let [first, second] = ledger.keys(&id);
        let mut entry = MAGIC.to_vec();
        entry.extend_from_slice(id.short());
        entry.extend_from_slice(&100u64.to_be_bytes());
        // Our claim writes the first candidate (both empty); the rival's copy goes to the second.
        let rival_key = second.clone();
        let store = Contested::new(move |inner: &LocalStore, ours: &str| {
            assert_ne!(ours, rival_key);
            inner.save(&rival_key, &entry);
        });
        assert_eq!(ledger.claim(&store, &id, 0, 100), Claim::Replayed);
        assert!(ledger.seen(&store, &id, 1).unwrap());
        assert!(store.inner.load(&first).is_some());
    }

    #[test]
    fn buckets_do_not_overflow_below_the_configured_capacity() {
        // Two choices: at 80% of the capacity no proof is refused (16-slot buckets with one
        // choice refuse ~2% at 75% and ~10% at 100%).
        let capacity = 131_072u32;
        let ledger = ProofLedger::new(capacity);
        let store = LocalStore::default();
        let full = (0..capacity / 10 * 8)
            .filter(|n| {
                ledger.claim(&store, &ProofId::of("client", &format!("{n}")), 0, 1_000)
                    == Claim::Full
            })
            .count();
        assert_eq!(full, 0);
    }

    #[test]
    fn garbage_buckets_hold_nothing() {
        let store = LocalStore::default();
        let ledger = ProofLedger::new(1);
        let id = ProofId::of("k", "j");
        store.save(&ledger.keys(&id)[0], b"cbd1short");
        assert_eq!(ledger.seen(&store, &id, 0), Ok(false));
        assert_eq!(ledger.claim(&store, &id, 0, 10), Claim::Fresh);
    }
}
