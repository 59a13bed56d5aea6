//! Bounded caches keyed by the SHA-256 of a token (the token itself is never stored):
//! introspection answers, verified and failed JWT signatures. Direct-mapped: a fixed number
//! of slots, each holding one entry, so the size is bounded without any eviction
//! bookkeeping, and the same layout works per worker or in the host's shared data (which has
//! no way to list or expire keys). An entry records when it was written, so a reader can
//! refuse one older than its own lifetime: configurations sharing an IdP and client share
//! entries, and a route caching for 5 s must not take an answer another caches for an hour.

use std::cell::RefCell;
use std::collections::HashMap;

use sha2::{Digest, Sha256};

/// Largest payload stored; bigger answers are simply not cached.
pub const MAX_PAYLOAD: usize = 4 * 1024;
/// Entry layout: magic, token hash, written at, expires at (big-endian seconds), payload.
/// Entries of another layout (an older filter's, in shared data) are misses.
const MAGIC: &[u8; 4] = b"cb2\0";
const HEADER: usize = MAGIC.len() + 32 + 8 + 8;

/// SHA-256 of an access token.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    pub fn of(token: &str) -> TokenHash {
        TokenHash(Sha256::digest(token.as_bytes()).into())
    }
}

/// Where entries live: per-worker memory or the host's shared data.
pub trait Store {
    fn load(&self, key: &str) -> Option<Vec<u8>>;
    /// Best effort: a failed write only costs a later miss.
    fn save(&self, key: &str, value: &[u8]);
    /// The value and its version, for `save_versioned`; `Err` when the store failed.
    fn load_versioned(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, String>;
    /// Writes only if the key still has `version` (`None`: only if absent); `Ok(false)` when
    /// another write came first. On Envoy a write for an absent key is not conditional
    /// (docs/hosts.md).
    fn save_versioned(&self, key: &str, value: &[u8], version: Option<u32>)
    -> Result<bool, String>;
}

impl<T: Store + ?Sized> Store for &T {
    fn load(&self, key: &str) -> Option<Vec<u8>> {
        (**self).load(key)
    }
    fn save(&self, key: &str, value: &[u8]) {
        (**self).save(key, value)
    }
    fn load_versioned(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, String> {
        (**self).load_versioned(key)
    }
    fn save_versioned(
        &self,
        key: &str,
        value: &[u8],
        version: Option<u32>,
    ) -> Result<bool, String> {
        (**self).save_versioned(key, value, version)
    }
}

/// Per-worker store; its keys are slot names, so it is bounded by the slot count.
#[derive(Default)]
pub struct LocalStore(RefCell<HashMap<String, (Vec<u8>, u32)>>);

impl LocalStore {
    pub fn clear(&self) {
        self.0.borrow_mut().clear();
    }

    /// Entries held (for tests of the bounds).
    pub fn len(&self) -> usize {
        self.0.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.borrow().is_empty()
    }
}

impl Store for LocalStore {
    fn load(&self, key: &str) -> Option<Vec<u8>> {
        self.0.borrow().get(key).map(|(v, _)| v.clone())
    }
    fn save(&self, key: &str, value: &[u8]) {
        let mut map = self.0.borrow_mut();
        let version = map.get(key).map_or(1, |(_, v)| v.wrapping_add(1));
        map.insert(key.to_string(), (value.to_vec(), version));
    }
    fn load_versioned(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, String> {
        Ok(self.0.borrow().get(key).cloned())
    }
    fn save_versioned(
        &self,
        key: &str,
        value: &[u8],
        version: Option<u32>,
    ) -> Result<bool, String> {
        let current = self.0.borrow().get(key).map(|(_, v)| *v);
        if current != version {
            return Ok(false);
        }
        self.save(key, value);
        Ok(true)
    }
}

/// The slot layout of one filter configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotCache {
    prefix: String,
    slots: u32,
}

impl SlotCache {
    /// `scope` separates filter configurations that share one store (two routes with two
    /// IdPs must never see each other's answers); it is hashed into the key prefix.
    pub fn new(scope: &str, slots: u32) -> SlotCache {
        let digest = Sha256::digest(scope.as_bytes());
        let tag: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
        SlotCache {
            prefix: format!("certbound.{tag}.introspection."),
            slots: slots.max(1),
        }
    }

    pub fn key(&self, hash: &TokenHash) -> String {
        let [a, b, c, d, ..] = hash.0;
        format!(
            "{}{}",
            self.prefix,
            u32::from_be_bytes([a, b, c, d]) % self.slots
        )
    }

    /// The payload stored for `hash`, if it has not expired and was written less than
    /// `max_age` seconds ago.
    pub fn get(
        &self,
        store: &dyn Store,
        hash: &TokenHash,
        now: u64,
        max_age: u64,
    ) -> Option<Vec<u8>> {
        self.get_until(store, hash, now, max_age).map(|(p, _)| p)
    }

    /// `get`, and until when the payload may be used (its expiry, or `max_age` after it was
    /// written, whichever comes first).
    pub fn get_until(
        &self,
        store: &dyn Store,
        hash: &TokenHash,
        now: u64,
        max_age: u64,
    ) -> Option<(Vec<u8>, u64)> {
        let bytes = store.load(&self.key(hash))?;
        let entry = Entry::parse(&bytes)?;
        let until = entry.expires.min(entry.written.saturating_add(max_age));
        (entry.hash == hash.0 && now < until).then(|| (entry.payload.to_vec(), until))
    }

    /// Like `put`, but leaves a slot alone that holds another token's live entry.
    pub fn put_if_free(
        &self,
        store: &dyn Store,
        hash: &TokenHash,
        now: u64,
        expires_at: u64,
        payload: &[u8],
    ) -> bool {
        let occupied = store.load(&self.key(hash)).is_some_and(|bytes| {
            Entry::parse(&bytes).is_some_and(|e| e.hash != hash.0 && now < e.expires)
        });
        !occupied && self.put(store, hash, now, expires_at, payload)
    }

    /// Stores `payload`, written at `now`, until `expires_at`; returns false if it was too
    /// large to cache.
    pub fn put(
        &self,
        store: &dyn Store,
        hash: &TokenHash,
        now: u64,
        expires_at: u64,
        payload: &[u8],
    ) -> bool {
        if payload.len() > MAX_PAYLOAD {
            return false;
        }
        let mut entry = Vec::with_capacity(HEADER + payload.len());
        entry.extend_from_slice(MAGIC);
        entry.extend_from_slice(&hash.0);
        entry.extend_from_slice(&now.to_be_bytes());
        entry.extend_from_slice(&expires_at.to_be_bytes());
        entry.extend_from_slice(payload);
        store.save(&self.key(hash), &entry);
        true
    }
}

/// One stored entry, read without trusting it (shared data may hold anything).
struct Entry<'a> {
    hash: [u8; 32],
    written: u64,
    expires: u64,
    payload: &'a [u8],
}

impl<'a> Entry<'a> {
    fn parse(bytes: &'a [u8]) -> Option<Entry<'a>> {
        let rest = bytes.strip_prefix(MAGIC.as_slice())?;
        let (hash, rest) = rest.split_first_chunk::<32>()?;
        let (written, rest) = rest.split_first_chunk::<8>()?;
        let (expires, payload) = rest.split_first_chunk::<8>()?;
        Some(Entry {
            hash: *hash,
            written: u64::from_be_bytes(*written),
            expires: u64::from_be_bytes(*expires),
            payload,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_until_expiry() {
        let store = LocalStore::default();
        let cache = SlotCache::new("idp-a", 16);
        let h = TokenHash::of("token-1");
        assert!(cache.put(&store, &h, 0, 100, b"payload"));
        assert_eq!(
            cache.get(&store, &h, 99, u64::MAX).as_deref(),
            Some(&b"payload"[..])
        );
        assert_eq!(cache.get(&store, &h, 100, u64::MAX), None);
    }

    #[test]
    fn colliding_tokens_never_read_each_others_entry() {
        let store = LocalStore::default();
        let cache = SlotCache::new("idp-a", 1);
        let (a, b) = (TokenHash::of("a"), TokenHash::of("b"));
        cache.put(&store, &a, 0, 100, b"for a");
        assert_eq!(cache.get(&store, &b, 1, u64::MAX), None);
        cache.put(&store, &b, 0, 100, b"for b");
        assert_eq!(
            cache.get(&store, &a, 1, u64::MAX),
            None,
            "b evicted a from the single slot"
        );
        assert_eq!(
            cache.get(&store, &b, 1, u64::MAX).as_deref(),
            Some(&b"for b"[..])
        );
    }

    #[test]
    fn the_store_is_bounded_by_the_slot_count() {
        let store = LocalStore::default();
        let cache = SlotCache::new("idp-a", 8);
        for i in 0..1000 {
            cache.put(&store, &TokenHash::of(&format!("t{i}")), 0, 100, b"x");
        }
        assert!(store.len() <= 8);
    }

    #[test]
    fn configurations_do_not_share_entries() {
        let store = LocalStore::default();
        let (one, two) = (SlotCache::new("idp-a", 8), SlotCache::new("idp-b", 8));
        let h = TokenHash::of("t");
        one.put(&store, &h, 0, 100, b"x");
        assert_eq!(two.get(&store, &h, 1, u64::MAX), None);
    }

    #[test]
    fn keys_hold_no_token_material_and_oversized_payloads_are_skipped() {
        let store = LocalStore::default();
        let cache = SlotCache::new("idp-a", 8);
        let h = TokenHash::of("secret-token");
        cache.put(&store, &h, 0, 100, b"x");
        for (k, (v, _)) in store.0.borrow().iter() {
            assert!(!k.contains("secret-token"));
            assert!(!v.windows(12).any(|w| w == b"secret-token"));
        }
        assert!(!cache.put(&store, &h, 0, 100, &vec![b'x'; MAX_PAYLOAD + 1]));
    }

    #[test]
    fn garbage_entries_are_misses() {
        let store = LocalStore::default();
        let cache = SlotCache::new("idp-a", 1);
        let h = TokenHash::of("t");
        store.save(&cache.key(&h), b"cb2\0short");
        assert_eq!(cache.get(&store, &h, 1, u64::MAX), None);
    }

    #[test]
    fn a_reader_refuses_an_entry_older_than_its_own_lifetime() {
        // Two configurations share the entry; the one caching for 5 s must not use an
        // answer written 10 s ago by the one caching for an hour.
        let store = LocalStore::default();
        let cache = SlotCache::new("idp-a", 8);
        let h = TokenHash::of("t");
        cache.put(&store, &h, 1000, 1000 + 3600, b"x");
        assert!(cache.get(&store, &h, 1010, 3600).is_some());
        assert!(cache.get(&store, &h, 1010, 5).is_none());
        assert!(cache.get(&store, &h, 1004, 5).is_some());
    }

    #[test]
    fn entries_of_an_older_layout_are_misses() {
        let store = LocalStore::default();
        let cache = SlotCache::new("idp-a", 1);
        let h = TokenHash::of("t");
        let mut old = b"cb1\0".to_vec();
        old.extend_from_slice(&h.0);
        old.extend_from_slice(&u64::MAX.to_be_bytes());
        old.extend_from_slice(b"payload");
        store.save(&cache.key(&h), &old);
        assert_eq!(cache.get(&store, &h, 1, u64::MAX), None);
    }
}
