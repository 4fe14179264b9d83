//! Eight bytes at a time: exact per-byte masks over a little-endian `u64` word, shared by the JSON scanner (where a
//! string stops being plain) and the path check (unusual bytes, suspicious segments). Each function sets the high bit
//! of exactly the bytes it names and no other, so masks can be combined with `|` and `&` and the lowest set bit is the
//! first such byte in memory order.

const LOW_SEVENS: u64 = 0x7f7f_7f7f_7f7f_7f7f;

/// The bytes of `word` equal to `byte`.
pub(crate) fn bytes_equal(word: u64, byte: u8) -> u64 {
    let x = word ^ (0x0101_0101_0101_0101 * u64::from(byte));
    !(((x & LOW_SEVENS).wrapping_add(LOW_SEVENS)) | x | LOW_SEVENS)
}

/// The bytes of `word` below 0x20 (the C0 controls): none of their bits 5, 6, 7 is set.
pub(crate) fn bytes_below_0x20(word: u64) -> u64 {
    bytes_equal(word & 0xe0e0_e0e0_e0e0_e0e0, 0)
}

/// The word at `bytes[at..at + 8]`, little-endian (byte `at` is the lowest).
pub(crate) fn word_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_flag_exactly_the_named_bytes_at_every_position() {
        for value in 0..=255u8 {
            for position in 0..8 {
                let mut bytes = [b'a'; 8];
                bytes[position] = value;
                let word = word_at(&bytes, 0);
                let high_bit = 0x80u64 << (8 * position);
                let others = !(0xffu64 << (8 * position)) & 0x8080_8080_8080_8080;
                assert!(bytes_equal(word, value) & high_bit != 0, "{value:#x} at {position}");
                assert_eq!(bytes_equal(word, value) & others, if value == b'a' { others } else { 0 });
                assert_eq!(bytes_below_0x20(word) & high_bit != 0, value < 0x20, "{value:#x} at {position}");
                assert_eq!(bytes_below_0x20(word) & others, 0);
            }
        }
    }
}
