//! Small per-socket collections: a vector while they hold a few entries (most sockets
//! have one or two handlers, rooms and namespaces), a hash table beyond.
//!
//! An empty one allocates nothing; a small one allocates exactly its entries.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;

/// Entries kept in a vector (linear search) before switching to a hash table.
const INLINE_MAX: usize = 16;

/// A map for few entries.
#[derive(Debug)]
pub(crate) enum SmallMap<K, V> {
    Vec(Vec<(K, V)>),
    Map(HashMap<K, V>),
}

impl<K, V> Default for SmallMap<K, V> {
    fn default() -> Self {
        SmallMap::Vec(Vec::new())
    }
}

impl<K: Eq + Hash, V> SmallMap<K, V> {
    pub(crate) fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        match self {
            SmallMap::Vec(v) => v.iter().find(|(k, _)| k.borrow() == key).map(|(_, v)| v),
            SmallMap::Map(m) => m.get(key),
        }
    }

    pub(crate) fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        self.get(key).is_some()
    }

    /// Insert or replace; returns the old value.
    pub(crate) fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self {
            SmallMap::Vec(v) => {
                if let Some(slot) = v.iter_mut().find(|(k, _)| *k == key) {
                    return Some(std::mem::replace(&mut slot.1, value));
                }
                if v.len() < INLINE_MAX {
                    // Exactly the entries: inserts are rare, memory is per socket.
                    v.reserve_exact(1);
                    v.push((key, value));
                    return None;
                }
                let mut m: HashMap<K, V> = std::mem::take(v).into_iter().collect();
                m.insert(key, value);
                *self = SmallMap::Map(m);
                None
            }
            SmallMap::Map(m) => m.insert(key, value),
        }
    }

    pub(crate) fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        match self {
            SmallMap::Vec(v) => {
                let i = v.iter().position(|(k, _)| k.borrow() == key)?;
                let (_, value) = v.swap_remove(i);
                if v.is_empty() {
                    *v = Vec::new();
                }
                Some(value)
            }
            SmallMap::Map(m) => m.remove(key),
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            SmallMap::Vec(v) => v.len(),
            SmallMap::Map(m) => m.len(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn iter(&self) -> Iter<'_, K, V> {
        match self {
            SmallMap::Vec(v) => Iter::Vec(v.iter()),
            SmallMap::Map(m) => Iter::Map(m.iter()),
        }
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = &K> + '_ {
        self.iter().map(|(k, _)| k)
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &V> + '_ {
        self.iter().map(|(_, v)| v)
    }

    /// Every entry, leaving the map empty (and without memory).
    pub(crate) fn take_all(&mut self) -> Vec<(K, V)> {
        match std::mem::take(self) {
            SmallMap::Vec(v) => v,
            SmallMap::Map(m) => m.into_iter().collect(),
        }
    }

    /// Drop every entry and the memory.
    pub(crate) fn clear(&mut self) {
        *self = SmallMap::default();
    }
}

/// The entries of a [`SmallMap`].
pub(crate) enum Iter<'a, K, V> {
    Vec(std::slice::Iter<'a, (K, V)>),
    Map(std::collections::hash_map::Iter<'a, K, V>),
}

impl<'a, K, V> Iterator for Iter<'a, K, V> {
    type Item = (&'a K, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Iter::Vec(i) => i.next().map(|(k, v)| (k, v)),
            Iter::Map(i) => i.next(),
        }
    }
}

/// A set for few entries.
#[derive(Debug)]
pub(crate) struct SmallSet<T>(SmallMap<T, ()>);

impl<T> Default for SmallSet<T> {
    fn default() -> Self {
        SmallSet(SmallMap::default())
    }
}

impl<T: Eq + Hash> SmallSet<T> {
    /// Add `value`; false when it was there already.
    pub(crate) fn insert(&mut self, value: T) -> bool {
        if self.0.contains_key(&value) {
            return false;
        }
        self.0.insert(value, ());
        true
    }

    pub(crate) fn remove<Q>(&mut self, value: &Q) -> bool
    where
        T: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        self.0.remove(value).is_some()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        self.0.keys()
    }

    /// Every value, leaving the set empty (and without memory).
    pub(crate) fn take_all(&mut self) -> Vec<T> {
        self.0.take_all().into_iter().map(|(k, ())| k).collect()
    }
}

/// The local members of a room: most rooms are a socket's own, with one member, kept
/// inline (no allocation, and the room table's entries stay small); more members go to
/// a boxed [`SmallSet`].
#[derive(Debug)]
pub(crate) enum Members<T> {
    One(T),
    Many(Box<SmallSet<T>>),
}

impl<T: Eq + Hash> Members<T> {
    pub(crate) fn one(value: T) -> Self {
        Members::One(value)
    }

    /// Add `value`; false when it was there already.
    pub(crate) fn insert(&mut self, value: T) -> bool {
        match self {
            Members::One(v) if *v == value => false,
            Members::One(_) => {
                let Members::One(first) = std::mem::replace(self, Members::Many(Box::default()))
                else {
                    return false;
                };
                if let Members::Many(set) = self {
                    set.insert(first);
                    set.insert(value);
                }
                true
            }
            Members::Many(set) => set.insert(value),
        }
    }

    /// Remove `value`; true when the room is now empty (drop it then).
    pub(crate) fn remove<Q>(&mut self, value: &Q) -> bool
    where
        T: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        match self {
            Members::One(v) => (*v).borrow() == value,
            Members::Many(set) => {
                set.remove(value);
                set.iter().next().is_none()
            }
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        let (one, many) = match self {
            Members::One(v) => (Some(v), None),
            Members::Many(set) => (None, Some(set.iter())),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn members_one_then_many() {
        let mut m = Members::one("a".to_string());
        assert!(!m.insert("a".into()));
        assert_eq!(m.iter().count(), 1);
        assert!(m.insert("b".into()));
        assert!(m.insert("c".into()));
        let mut all: Vec<&String> = m.iter().collect();
        all.sort();
        assert_eq!(all, ["a", "b", "c"]);
        assert!(!m.remove("a"));
        assert!(!m.remove("zz"));
        assert!(!m.remove("b"));
        assert!(m.remove("c"));
        assert_eq!(std::mem::size_of::<Members<crate::proto::Str>>(), 32);
        let mut solo = Members::one("x".to_string());
        assert!(!solo.remove("y"));
        assert!(solo.remove("x"));
    }

    use super::*;

    #[test]
    fn map_small_and_large() {
        let mut m: SmallMap<String, usize> = SmallMap::default();
        assert!(m.is_empty());
        for i in 0..40 {
            assert_eq!(m.insert(format!("k{i}"), i), None);
            assert_eq!(m.len(), i + 1);
            assert!(matches!(m, SmallMap::Vec(_)) == (i < INLINE_MAX));
        }
        for i in 0..40 {
            assert_eq!(m.get(format!("k{i}").as_str()), Some(&i));
        }
        assert_eq!(m.insert("k3".into(), 99), Some(3));
        assert_eq!(m.get("k3"), Some(&99));
        assert_eq!(m.remove("k3"), Some(99));
        assert_eq!(m.remove("k3"), None);
        assert_eq!(m.values().count(), 39);
        assert_eq!(m.take_all().len(), 39);
        assert!(m.is_empty());

        let mut small: SmallMap<String, u8> = SmallMap::default();
        small.insert("a".into(), 1);
        small.insert("b".into(), 2);
        if let SmallMap::Vec(v) = &small {
            assert_eq!(v.capacity(), 2);
        }
        assert_eq!(small.remove("a"), Some(1));
        assert_eq!(small.get("b"), Some(&2));
        assert!(small.contains_key("b"));
        assert_eq!(small.keys().count(), 1);
        small.clear();
        assert!(small.is_empty());
    }

    #[test]
    fn set_semantics() {
        let mut s: SmallSet<String> = SmallSet::default();
        assert!(s.insert("a".into()));
        assert!(!s.insert("a".into()));
        for i in 0..30 {
            s.insert(format!("r{i}"));
        }
        assert!(!s.insert("r7".into()));
        assert!(s.remove("r7"));
        assert!(!s.remove("r7"));
        let mut all = s.take_all();
        all.sort();
        assert_eq!(all.len(), 30);
        assert!(s.iter().next().is_none());
    }
}
