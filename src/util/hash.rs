//! Hashes the agent keeps or compares.
//!
//! - [`Fnv`]: FNV-1a, 64 bits, stable across runs and versions: slot-map
//!   signatures, alert fingerprints, queue file names.
//! - [`digest`]: a fast, well-mixed 64-bit hash of values within one run,
//!   to tell cheaply whether a large reply changed (a reading's digest is
//!   compared, not the reading).

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hash, Hasher};

/// FNV-1a, 64 bits.
pub struct Fnv(pub u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    /// Adds bytes.
    pub fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// A word-at-a-time hasher (the Fx scheme: rotate, xor, multiply) whose
/// result is finished with a full-avalanche mix, so that sums of digests
/// stay well spread. Not stable across versions: for comparisons within
/// one process only.
#[derive(Default)]
pub struct Fast(u64);

const K: u64 = 0xf135_7aea_2e62_a9c5;

impl Fast {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(26) ^ word).wrapping_mul(K);
    }
}

impl Hasher for Fast {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
        // The length ends each write, so that ("ab", "c") and ("a", "bc") differ.
        self.add(bytes.len() as u64);
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        mix(self.0)
    }
}

/// The finaliser of MurmurHash3: every input bit affects every output bit.
fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Hash maps and sets keyed by node ids and addresses within one
/// derivation: several times faster than the default SipHash on such keys,
/// and nothing outside the agent chooses them adversarially enough to matter
/// (a lying node can only slow its own deployment's derivation).
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<Fast>>;

/// See [`FastMap`].
pub type FastSet<K> = HashSet<K, BuildHasherDefault<Fast>>;

/// The digest of one value.
pub fn digest<T: Hash + ?Sized>(value: &T) -> u64 {
    let mut h = Fast::default();
    value.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_is_the_reference_fnv_1a() {
        let mut h = Fnv::default();
        h.write(b"a");
        assert_eq!(h.0, 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn digests_tell_values_apart() {
        assert_eq!(digest("abc"), digest("abc"));
        assert_ne!(digest(&("ab", "c")), digest(&("a", "bc")));
        assert_ne!(digest(&[1u64, 2]), digest(&[2u64, 1]));
        assert_ne!(digest(&0u64), digest(&1u64));
        // One bit in a long value changes the digest.
        let long = vec![7u8; 1000];
        let mut other = long.clone();
        other[999] ^= 1;
        assert_ne!(digest(&long), digest(&other));
    }
}
