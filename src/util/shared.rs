//! [`Shared`]: a vector that successive snapshots share in chunks.
//!
//! The monitor publishes a snapshot after every batch of polls. Copying
//! every target and shard into each one would cost the size of the
//! deployment per poll; with `Shared`, a snapshot copies one pointer per
//! chunk, and changing one element copies that element's chunk of pointers
//! only (when an earlier snapshot still holds it): elements themselves are
//! never copied, so a shard of many nodes costs no more than a target.

use std::sync::Arc;

/// Elements per chunk: a small copy when one changes, few pointers to copy
/// for the whole.
const CHUNK: usize = 32;

/// An immutable-looking vector whose chunks are shared between clones.
#[derive(Debug, Clone)]
pub struct Shared<T> {
    chunks: Vec<Arc<Vec<Arc<T>>>>,
    len: usize,
}

impl<T> Default for Shared<T> {
    fn default() -> Self {
        Shared {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Shared<T> {
    /// The elements of `items`, in order.
    pub fn from_vec(items: Vec<T>) -> Self {
        let len = items.len();
        let mut chunks = Vec::with_capacity(len.div_ceil(CHUNK));
        let mut items = items.into_iter().peekable();
        while items.peek().is_some() {
            chunks.push(Arc::new(items.by_ref().take(CHUNK).map(Arc::new).collect()));
        }
        Shared { chunks, len }
    }

    /// Replaces element `i`; copies its chunk's pointers if a clone shares it.
    ///
    /// # Panics
    /// If `i` is out of bounds, as indexing does.
    pub fn set(&mut self, i: usize, value: T) {
        assert!(i < self.len, "index {i} out of bounds ({})", self.len);
        Arc::make_mut(&mut self.chunks[i / CHUNK])[i % CHUNK] = Arc::new(value);
    }

    /// Element `i`.
    pub fn get(&self, i: usize) -> Option<&T> {
        self.chunks.get(i / CHUNK)?.get(i % CHUNK).map(|e| &**e)
    }

    /// How many elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The elements in order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &T> + Clone + '_ {
        self.chunks.iter().flat_map(|c| c.iter().map(|e| &**e))
    }
}

impl<T: PartialEq> PartialEq for Shared<T> {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl<T> std::ops::Index<usize> for Shared<T> {
    type Output = T;

    fn index(&self, i: usize) -> &T {
        self.get(i).expect("index in bounds")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_copies_one_chunk_and_leaves_clones_alone() {
        let v: Vec<u32> = (0..100).collect();
        let mut a = Shared::from_vec(v.clone());
        let b = a.clone();
        a.set(70, 7000);
        assert_eq!(
            b.iter().copied().collect::<Vec<_>>(),
            v,
            "the clone is untouched"
        );
        assert_eq!(a[70], 7000);
        assert_eq!((a.len(), a.get(100)), (100, None));
        // Only the changed chunk is a new allocation.
        let shared = a
            .chunks
            .iter()
            .zip(&b.chunks)
            .filter(|(x, y)| Arc::ptr_eq(x, y))
            .count();
        assert_eq!(shared, a.chunks.len() - 1);
        assert_ne!(a, b);
        assert_eq!(Shared::from_vec(v.clone()), b);
        assert!(Shared::<u32>::from_vec(Vec::new()).is_empty());
    }
}
