//! Ordered lookups for merge-joins. The index, a walk and the view are all sorted by path, so one pass over any of them
//! finds the others' entries by moving a cursor forward instead of searching per entry (comparing paths with long shared
//! prefixes is the main cost of planning a large index).

use std::cmp::Ordering;
use std::iter::Peekable;

pub(super) struct Cursor<'a, V: 'a, I: Iterator<Item = (&'a str, V)>> {
    items: Peekable<I>,
}

impl<'a, V: 'a, I: Iterator<Item = (&'a str, V)>> Cursor<'a, V, I> {
    /// `items` must be in increasing key order (a `BTreeMap`'s order: bytewise).
    pub fn new(items: I) -> Self {
        Cursor { items: items.peekable() }
    }

    /// The value under `key`. Successive calls must ask for increasing keys (a smaller key than the previous one
    /// is not found: the callers iterate another sorted list in the same order).
    pub fn seek(&mut self, key: &str) -> Option<V> {
        // One comparison per item passed (keys share long prefixes: `<` then `==` would compare the match twice).
        loop {
            match self.items.peek()?.0.cmp(key) {
                Ordering::Less => drop(self.items.next()),
                Ordering::Equal => return self.items.next().map(|(_, value)| value),
                Ordering::Greater => return None,
            }
        }
    }
}

/// Every key of three sequences, each in increasing order, once each and in order: the paths a three-way decision
/// looks at (known to the index, the cache or the base).
pub(super) fn sorted_union<'a>(
    a: impl Iterator<Item = &'a str>,
    b: impl Iterator<Item = &'a str>,
    c: impl Iterator<Item = &'a str>,
) -> Vec<&'a str> {
    let (mut a, mut b, mut c) = (a.peekable(), b.peekable(), c.peekable());
    let mut union = Vec::new();
    loop {
        let next = [a.peek(), b.peek(), c.peek()].into_iter().flatten().min().copied();
        let Some(key) = next else { break };
        for source in [&mut a as &mut dyn PeekNext<'a>, &mut b, &mut c] {
            source.skip_if(key);
        }
        union.push(key);
    }
    union
}

/// Advance past `key` if it is next (one step of `sorted_union`).
trait PeekNext<'a> {
    fn skip_if(&mut self, key: &str);
}

impl<'a, I: Iterator<Item = &'a str>> PeekNext<'a> for Peekable<I> {
    fn skip_if(&mut self, key: &str) {
        if self.peek() == Some(&key) {
            self.next();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn the_union_of_three_sorted_lists_is_sorted_and_has_each_key_once() {
        let union = sorted_union(["a", "c", "e"].into_iter(), ["b", "c"].into_iter(), ["a", "d", "e", "f"].into_iter());
        assert_eq!(union, ["a", "b", "c", "d", "e", "f"]);
        assert!(sorted_union([].into_iter(), [].into_iter(), [].into_iter()).is_empty());
    }

    #[test]
    fn finds_every_present_key_and_nothing_else() {
        let map: BTreeMap<String, u32> =
            ["a", "a/b", "a.b", "ab", "b/c/d"].iter().enumerate().map(|(i, k)| (k.to_string(), i as u32)).collect();
        let wanted = ["0", "a", "a.b", "a/", "a/b", "aa", "b/c/d", "z"];
        let mut sorted = wanted;
        sorted.sort();
        let mut cursor = Cursor::new(map.iter().map(|(k, v)| (k.as_str(), v)));
        for key in sorted {
            assert_eq!(cursor.seek(key), map.get(key), "{key}");
        }
    }
}
