//! The one SHA-256 helper. Every hash the operator stores (revision
//! identities, applied-spec hashes, alert keys, long retry tokens) is a
//! prefix of a SHA-256 digest in lower-case hex; the prefix length is part
//! of what is stored, so each caller keeps its own.

use serde::Serialize;
use sha2::{Digest, Sha256};

/// The first `bytes` bytes of `data`'s SHA-256, as hex (two characters a
/// byte).
pub fn sha256_hex(data: &[u8], bytes: usize) -> String {
    Sha256::digest(data)
        .iter()
        .take(bytes)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The same over a value's JSON form, which is deterministic for the
/// operator's types (struct field order, BTreeMap keys).
pub fn json_sha256_hex<T: Serialize>(value: &T, bytes: usize) -> Result<String, serde_json::Error> {
    Ok(sha256_hex(&serde_json::to_vec(value)?, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_hex_prefixes_of_sha256() {
        // SHA-256("abc") = ba7816bf8f01cfea414140de5dae2223...
        assert_eq!(sha256_hex(b"abc", 4), "ba7816bf");
        assert_eq!(sha256_hex(b"abc", 0), "");
        assert_eq!(sha256_hex(b"abc", 64).len(), 64, "at most the whole digest");
        assert_eq!(
            json_sha256_hex(&serde_json::json!("abc"), 8).unwrap(),
            sha256_hex(b"\"abc\"", 8)
        );
    }
}
