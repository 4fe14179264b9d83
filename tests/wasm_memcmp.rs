//! `marsh::wasm::memcmp` (the word-at-a-time `memcmp`/`bcmp` linked into the wasm module) against a byte-by-byte
//! reference, run by `wasm-pack test --node`: every length up to 40, a difference at every position, byte values on
//! both sides of 0x80 (the order is unsigned), and two differences within one word (the first decides). Slice and
//! `str` comparisons in this test binary go through the same symbol, so they are checked too.
#![cfg(target_arch = "wasm32")]

use std::cmp::Ordering;

use marsh::wasm::memcmp::{bcmp, memcmp};
use wasm_bindgen_test::wasm_bindgen_test;

fn reference(a: &[u8], b: &[u8]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        if x != y {
            return x.cmp(y);
        }
    }
    Ordering::Equal
}

fn sign(value: i32) -> Ordering {
    value.cmp(&0)
}

#[wasm_bindgen_test]
fn memcmp_orders_as_a_byte_by_byte_compare() {
    let base: Vec<u8> = (0..40u8).map(|i| i.wrapping_mul(37).wrapping_add(0x70)).collect();
    let mut checked = 0;
    for len in 0..=base.len() {
        for at in 0..len {
            for replacement in [0x00, 0x7f, 0x80, 0xff, base[at].wrapping_add(1), base[at].wrapping_sub(1)] {
                let mut other = base[..len].to_vec();
                other[at] = replacement;
                let (a, b) = (&base[..len], &other[..]);
                let expected = reference(a, b);
                // SAFETY: both slices hold `len` bytes.
                let (ordered, equal) =
                    unsafe { (memcmp(a.as_ptr(), b.as_ptr(), len), bcmp(a.as_ptr(), b.as_ptr(), len)) };
                assert_eq!(sign(ordered), expected, "len {len}, byte {at} -> {replacement:#x}");
                assert_eq!(equal == 0, expected == Ordering::Equal, "len {len}, byte {at}");
                assert_eq!(a.cmp(b), expected);
                assert_eq!(a == b, expected == Ordering::Equal);
                checked += 1;
            }
        }
        // Two bytes of one word changed in opposite directions: only the first may decide.
        for at in 0..len {
            for second in at + 1..len.min(at + 8) {
                let mut other = base[..len].to_vec();
                other[at] = base[at].wrapping_add(1);
                other[second] = base[second].wrapping_sub(1);
                let (a, b) = (&base[..len], &other[..]);
                // SAFETY: both slices hold `len` bytes.
                let ordered = unsafe { memcmp(a.as_ptr(), b.as_ptr(), len) };
                assert_eq!(sign(ordered), reference(a, b), "len {len}, bytes {at} and {second}");
                assert_eq!(a.cmp(b), reference(a, b));
                checked += 1;
            }
        }
        // SAFETY: as above.
        assert_eq!(unsafe { memcmp(base.as_ptr(), base.as_ptr(), len) }, 0);
    }
    assert!(checked > 4000, "{checked}");
    assert!("data/a/b/c/d/0001.json" < "data/a/b/c/d/0001.jsoo");
    assert!("data/a/b/c/d/é.json" > "data/a/b/c/d/z.json");
}
