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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

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
