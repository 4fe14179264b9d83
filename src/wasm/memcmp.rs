//! `memcmp` and `bcmp` for wasm32, eight bytes at a time. The toolchain's own (compiler-builtins, linked weakly: a
//! strong definition replaces it) compares one byte per step, and sorted paths compare long shared prefixes: every
//! `str` ordering and equality in the core (tree builds, merge-joins, sorts) runs through here. Native builds use the
//! platform's.

use core::cmp::Ordering;
use core::ptr::read_unaligned;

/// # Safety
/// `left` and `right` must be valid for reads of `len` bytes (the C contract).
#[no_mangle]
pub unsafe extern "C" fn memcmp(left: *const u8, right: *const u8, len: usize) -> i32 {
    let mut at = 0;
    while at + 8 <= len {
        let a = read_unaligned(left.add(at).cast::<u64>());
        let b = read_unaligned(right.add(at).cast::<u64>());
        if a != b {
            // Little-endian loads: byte-swapped, the first differing byte decides, as in a byte-wise compare.
            return if a.swap_bytes() < b.swap_bytes() { -1 } else { 1 };
        }
        at += 8;
    }
    while at < len {
        let (a, b) = (*left.add(at), *right.add(at));
        match a.cmp(&b) {
            Ordering::Less => return -1,
            Ordering::Greater => return 1,
            Ordering::Equal => at += 1,
        }
    }
    0
}

/// # Safety
/// As `memcmp`; only zero versus non-zero matters.
#[no_mangle]
pub unsafe extern "C" fn bcmp(left: *const u8, right: *const u8, len: usize) -> i32 {
    memcmp(left, right, len)
}
