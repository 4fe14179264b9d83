//! Path-keyed lists kept sorted instead of trees: the listing and the view are built once from input that is nearly
//! always in order already, then read in order (merge-joins) or looked up now and then. A sorted `Vec` costs one pass
//! to build and no per-node allocation; a `BTreeMap` of 250k paths cost a tree build and a pointer chase per step.

/// Sorted by path; of items with the same path only the last one given stays (as a map built from them would keep). On
/// input already in order the (stable) sort is one pass.
pub(crate) fn sorted_unique<V>(mut items: Vec<(String, V)>) -> Vec<(String, V)> {
    items.sort_by(|a, b| a.0.cmp(&b.0));
    let mut unique: Vec<(String, V)> = Vec::with_capacity(items.len());
    for item in items {
        match unique.last_mut() {
            Some(last) if last.0 == item.0 => *last = item,
            _ => unique.push(item),
        }
    }
    unique
}

/// The value under `rel` in a list made by `sorted_unique` (or kept in its order).
pub(crate) fn find<'a, V>(items: &'a [(String, V)], rel: &str) -> Option<&'a V> {
    let at = items.binary_search_by(|(found, _)| found.as_str().cmp(rel)).ok()?;
    Some(&items[at].1)
}

/// Two lists made by `sorted_unique` as one; on a path found in both, `newer` wins.
pub(crate) fn merge_sorted<V>(older: Vec<(String, V)>, newer: Vec<(String, V)>) -> Vec<(String, V)> {
    let mut merged = Vec::with_capacity(older.len() + newer.len());
    let mut newer = newer.into_iter().peekable();
    for item in older {
        while let Some(next) = newer.next_if(|next| next.0 < item.0) {
            merged.push(next);
        }
        match newer.next_if(|next| next.0 == item.0) {
            Some(replacement) => merged.push(replacement),
            None => merged.push(item),
        }
    }
    merged.extend(newer);
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_unique_keeps_the_last_of_repeated_paths_and_find_finds_each() {
        let items: Vec<(String, u32)> =
            [("b", 1), ("a/c", 2), ("a", 3), ("b", 4), ("a.b", 5)].iter().map(|(k, v)| (k.to_string(), *v)).collect();
        let sorted = sorted_unique(items);
        let keys: Vec<(&str, u32)> = sorted.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(keys, [("a", 3), ("a.b", 5), ("a/c", 2), ("b", 4)]);
        for (rel, value) in keys {
            assert_eq!(find(&sorted, rel), Some(&value));
        }
        assert_eq!(find(&sorted, "a/"), None);
        assert_eq!(find::<u32>(&[], "a"), None);
    }
}
