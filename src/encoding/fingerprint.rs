//! A fast non-cryptographic fingerprint of a file's bytes, to tell "the file I last saw" from "another" (the local
//! view, which another instance may rewrite between our pull and our push). Computed in one go or piece by piece with
//! the same result, so a host can feed a large file through a small buffer instead of copying it whole into wasm.
//!
//! An FNV-style hash over the bytes, 8 at a time, seeded with the length. Each step is a bijection of the state for a
//! given word (xor, odd multiply, rotate), so files of one length that differ in a single word never collide; a
//! collision needs several words to differ in a way that cancels exactly. A SHA-256 of the view of a 250k-file cache
//! would be too slow in wasm to run on every check. A missing file has its own value, 0.

const PRIME: u64 = 0x0000_0100_0000_01b3;

/// The fingerprint of a whole file (`None`: no file).
pub fn fingerprint(bytes: Option<&[u8]>) -> u64 {
    let Some(bytes) = bytes else { return 0 };
    let mut hasher = Fingerprinter::new(bytes.len());
    hasher.update(bytes);
    hasher.finish()
}

/// The same fingerprint, fed in pieces of any sizes whose lengths add up to the length given at the start.
pub struct Fingerprinter {
    hash: u64,
    /// Bytes of a word not complete yet (fewer than 8).
    pending: [u8; 8],
    pending_len: usize,
}

impl Fingerprinter {
    pub fn new(total_len: usize) -> Self {
        Fingerprinter { hash: 0xcbf2_9ce4_8422_2325 ^ total_len as u64, pending: [0; 8], pending_len: 0 }
    }

    pub fn update(&mut self, mut bytes: &[u8]) {
        if self.pending_len > 0 {
            let take = (8 - self.pending_len).min(bytes.len());
            self.pending[self.pending_len..self.pending_len + take].copy_from_slice(&bytes[..take]);
            self.pending_len += take;
            bytes = &bytes[take..];
            if self.pending_len < 8 {
                return;
            }
            self.word(u64::from_le_bytes(self.pending));
            self.pending_len = 0;
        }
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.word(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        self.pending[..rest.len()].copy_from_slice(rest);
        self.pending_len = rest.len();
    }

    fn word(&mut self, word: u64) {
        self.hash = (self.hash ^ word).wrapping_mul(PRIME).rotate_left(29);
    }

    pub fn finish(self) -> u64 {
        let mut hash = self.hash;
        for &byte in &self.pending[..self.pending_len] {
            hash = (hash ^ u64::from(byte)).wrapping_mul(PRIME);
        }
        // 0 stands for "no file".
        hash.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_of_any_sizes_give_the_fingerprint_of_the_whole() {
        let bytes: Vec<u8> = (0..200u32).map(|n| (n * 37 % 251) as u8).collect();
        for length in [0, 1, 7, 8, 9, 63, 64, 65, 200] {
            let whole = fingerprint(Some(&bytes[..length]));
            for piece in [1, 3, 5, 8, 13, 64, 1000] {
                let mut hasher = Fingerprinter::new(length);
                for part in bytes[..length].chunks(piece) {
                    hasher.update(part);
                }
                assert_eq!(hasher.finish(), whole, "length {length}, pieces of {piece}");
            }
        }
    }

    #[test]
    fn a_change_anywhere_or_of_length_changes_it_and_no_file_is_zero() {
        let bytes = b"{\"version\":1,\"files\":{\"a/b.json\":{\"size\":3}}}".to_vec();
        let original = fingerprint(Some(&bytes));
        for at in 0..bytes.len() {
            let mut changed = bytes.clone();
            changed[at] ^= 0x20;
            assert_ne!(fingerprint(Some(&changed)), original, "byte {at}");
        }
        assert_ne!(fingerprint(Some(&bytes[..bytes.len() - 1])), original);
        assert_eq!(fingerprint(None), 0);
        assert_ne!(fingerprint(Some(b"")), 0);
    }
}
