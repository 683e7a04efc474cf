//! Content fingerprints of configuration files, recorded with every decision so that a past
//! decision can be matched to the exact rules and plugins that made it.

use sha2::{Digest, Sha256};

/// The first 16 hex digits of the SHA-256 of `bytes` (enough to tell versions apart, short
/// enough to read; compare with `sha256sum FILE | cut -c1-16`).
pub fn content_hash(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn matches_sha256sum_prefix() {
        // printf 'abc' | sha256sum -> ba7816bf8f01cfea…
        assert_eq!(super::content_hash(b"abc"), "ba7816bf8f01cfea");
    }
}
