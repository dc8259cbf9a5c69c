//! The seed of the engines' hash maps (sessions, connections, topic levels).
//!
//! Client ids and topics come from clients, so a map keyed by them with a hash anyone can
//! predict invites hash flooding: a client choosing keys that all collide. With `std`, every
//! map is seeded randomly (foldhash's `RandomState`: the address space layout, the time, an
//! allocation's address). Without `std` a microcontroller has none of those to offer, so the
//! firmware passes a seed from its hardware random number generator with [`set_hash_seed`]
//! before it creates an engine; until it does, the maps use what foldhash finds without `std`
//! (the addresses of a stack variable and of a static, the same at every start of a firmware
//! without address randomisation: predictable).

use alloc::boxed::Box;
use core::hash::{BuildHasher, Hasher};

use foldhash::SharedSeed;
use foldhash::fast::{FoldHasher, SeedableRandomState};
use once_cell::race::OnceBox;

/// The seed given by [`set_hash_seed`].
static SEED: OnceBox<SharedSeed> = OnceBox::new();

/// Seeds the hash maps of every engine created from now on with `seed`: call it once, at
/// start, with a number from a hardware random number generator. Needed without `std` (see the
/// module documentation); with `std` the maps are seeded randomly already, and a seed given here
/// replaces that (for a process that wants its own source of randomness).
///
/// Returns `false`, and changes nothing, when a seed was already set (the first one stays: maps
/// made before would otherwise hash differently from the ones made after).
pub fn set_hash_seed(seed: u64) -> bool {
    SEED.set(Box::new(SharedSeed::from_u64(seed))).is_ok()
}

/// The hasher of the engines' maps: seeded by [`set_hash_seed`], else by foldhash's own
/// randomness (random with `std`, weak without).
#[derive(Debug, Clone)]
pub(crate) struct HashState(SeedableRandomState);

impl Default for HashState {
    fn default() -> Self {
        if let Some(shared) = SEED.get() {
            // Each map its own per-map seed too, from foldhash's per-hasher source.
            let per_map = SeedableRandomState::random().build_hasher().finish();
            return Self(SeedableRandomState::with_seed(per_map, shared));
        }
        // (Without `std`: addresses only, see the module documentation.)
        Self(SeedableRandomState::random())
    }
}

impl BuildHasher for HashState {
    type Hasher = FoldHasher<'static>;

    #[inline]
    fn build_hasher(&self) -> FoldHasher<'static> {
        self.0.build_hasher()
    }
}

/// The engines' hash map.
pub(crate) type HashMap<K, V> = hashbrown::HashMap<K, V, HashState>;

#[cfg(test)]
mod tests {
    use core::hash::BuildHasher;

    use super::*;

    #[test]
    fn the_first_seed_stays_and_seeded_maps_still_differ_from_each_other() {
        // (The seed is process-wide: other tests of this binary may have set it first.)
        let _ = set_hash_seed(0x5eed);
        assert!(SEED.get().is_some());
        assert!(!set_hash_seed(1), "a second seed is refused");
        let (a, b) = (HashState::default(), HashState::default());
        assert_ne!(
            a.hash_one("client-1"),
            b.hash_one("client-1"),
            "each map has its own per-map seed"
        );
        let mut map: HashMap<&str, u32> = HashMap::default();
        map.insert("client-1", 1);
        assert_eq!(map.get("client-1"), Some(&1));
    }
}
