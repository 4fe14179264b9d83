//! Path-keyed lists kept sorted instead of trees: the index, the listing and the view are built once from input that
//! is nearly always in order already, then read in order (merge-joins) or looked up now and then. A sorted `Vec` costs
//! one pass to build and no per-node allocation, where a tree costs both and a pointer chase per step.

/// Sorted by path; of items with the same path only the last one given stays (as a map built from them would keep).
/// Input already in order, one item per path (the common case: our own files, a walk of sorted directories), is checked
/// in one pass and returned as it is, without a move.
pub(crate) fn sorted_unique<V>(items: Vec<(String, V)>) -> Vec<(String, V)> {
    if items.windows(2).all(|pair| pair[0].0 < pair[1].0) {
        return items;
    }
    let keys: Vec<&str> = items.iter().map(|(rel, _)| rel.as_str()).collect();
    let order = key_order(&keys);
    // Of a run of equal paths, the one given last ends the run: it stays.
    let kept: Vec<usize> = order
        .iter()
        .enumerate()
        .filter(|&(at, &position)| order.get(at + 1).is_none_or(|&next| keys[next] != keys[position]))
        .map(|(_, &position)| position)
        .collect();
    drop(keys);
    permuted(items, kept)
}

/// Sorted by path, stably (items with the same path stay in the order given).
pub(crate) fn sort_by_path<V>(items: &mut [(String, V)]) {
    let order = key_order(&items.iter().map(|(rel, _)| rel.as_str()).collect::<Vec<_>>());
    permute_in_place(items, order);
}

/// Sorted (the order of equal strings cannot be told apart).
pub(crate) fn sort_paths(items: &mut [String]) {
    let order = key_order(&items.iter().map(String::as_str).collect::<Vec<_>>());
    permute_in_place(items, order);
}

/// Positions in `keys` in key order; of equal keys, the one given first comes first, as a stable sort leaves them.
/// Every sort by path goes through this one: a sort instantiated per item type is a large piece of the wasm module
/// each time.
#[inline(never)]
fn key_order(keys: &[&str]) -> Vec<usize> {
    let mut order: Vec<(&str, usize)> = keys.iter().copied().zip(0..).collect();
    // The position breaks ties, so the unstable sort gives the order a stable one would.
    order.sort_unstable();
    order.into_iter().map(|(_, position)| position).collect()
}

/// Reorder `items` so that the item at `order[i]` ends at `i` (`order` a permutation), by swaps along its cycles: no
/// second list of the items, which at 250,000 index entries was tens of MB of peak memory on top of the index.
fn permute_in_place<T>(items: &mut [T], mut order: Vec<usize>) {
    const PLACED: usize = usize::MAX;
    for start in 0..items.len() {
        let mut current = start;
        while order[current] != PLACED {
            let source = order[current];
            order[current] = PLACED;
            if source == start {
                break; // the item that began the cycle, moved along by the swaps, is already here
            }
            items.swap(current, source);
            current = source;
        }
    }
}

/// The items at `positions` (each at most once), in that order.
fn permuted<T>(items: Vec<T>, positions: Vec<usize>) -> Vec<T> {
    let mut slots: Vec<Option<T>> = items.into_iter().map(Some).collect();
    positions.into_iter().filter_map(|position| slots[position].take()).collect()
}

/// The value under `rel` in a list made by `sorted_unique` (or kept in its order).
pub(crate) fn find<'a, V>(items: &'a [(String, V)], rel: &str) -> Option<&'a V> {
    let at = items.binary_search_by(|(found, _)| found.as_str().cmp(rel)).ok()?;
    Some(&items[at].1)
}

/// Two lists made by `sorted_unique` as one; on a path found in both, `newer` wins.
pub(crate) fn merge_sorted<V>(older: Vec<(String, V)>, newer: Vec<(String, V)>) -> Vec<(String, V)> {
    merge_changes(older, newer.into_iter().map(|(rel, value)| (rel, Some(value))))
}

/// A list made by `sorted_unique` with changes applied (`changes` in path order, one per path, as `sorted_unique`
/// leaves them): `Some` adds or replaces the value under its path, `None` removes it. One pass over both, and no list
/// of the changes is built for it.
pub(crate) fn merge_changes<V>(
    older: Vec<(String, V)>,
    changes: impl ExactSizeIterator<Item = (String, Option<V>)>,
) -> Vec<(String, V)> {
    let mut merged = Vec::with_capacity(older.len() + changes.len());
    let mut older = older.into_iter().peekable();
    for (rel, change) in changes {
        while let Some(kept) = older.next_if(|(old, _)| *old < rel) {
            merged.push(kept);
        }
        older.next_if(|(old, _)| *old == rel);
        if let Some(value) = change {
            merged.push((rel, value));
        }
    }
    merged.extend(older);
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
        // Already in order, one per path: the same list back, not a copy.
        let in_order: Vec<(String, u32)> = ["a", "a.b", "a/c"].iter().map(|k| (k.to_string(), 0)).collect();
        let buffer = in_order.as_ptr();
        let returned = sorted_unique(in_order);
        assert_eq!(returned.as_ptr(), buffer);
    }

    #[test]
    fn sorts_in_place_stably_whatever_the_cycles() {
        // Pseudo-random paths from a small alphabet, so that long cycles, fixed points and repeated paths all occur.
        let mut seed = 0x9e37_79b9_u32;
        for n in [0, 1, 2, 3, 17, 1000] {
            let mut items: Vec<(String, usize)> = (0..n)
                .map(|at| {
                    seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    (format!("{}/{}", seed >> 29, (seed >> 20) % 7), at)
                })
                .collect();
            let mut expected = items.clone();
            expected.sort_by(|a, b| a.0.cmp(&b.0)); // std's stable sort: equal paths keep their given order
            let mut paths: Vec<String> = items.iter().map(|(rel, _)| rel.clone()).collect();
            sort_by_path(&mut items);
            assert_eq!(items, expected, "n = {n}");
            sort_paths(&mut paths);
            assert_eq!(paths, expected.iter().map(|(rel, _)| rel.clone()).collect::<Vec<_>>(), "n = {n}");
        }
    }

    #[test]
    fn changes_add_replace_and_remove_in_one_merge() {
        let list =
            |items: &[(&str, u32)]| -> Vec<(String, u32)> { items.iter().map(|(k, v)| (k.to_string(), *v)).collect() };
        let older = list(&[("b", 1), ("d", 2), ("f", 3)]);
        let changes: Vec<(String, Option<u32>)> =
            [("a", Some(10)), ("d", None), ("e", Some(50)), ("f", Some(60)), ("g", None)]
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect();
        assert_eq!(
            merge_changes(older.clone(), changes.into_iter()),
            list(&[("a", 10), ("b", 1), ("e", 50), ("f", 60)])
        );
        assert_eq!(merge_sorted(older, list(&[("0", 0), ("d", 20)])), list(&[("0", 0), ("b", 1), ("d", 20), ("f", 3)]));
        assert_eq!(find::<u32>(&[], "a"), None);
    }
}
