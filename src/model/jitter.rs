//! A lane's fixed delay within its `jitter` window (systemd's `FixedRandomDelay=`): drawn from
//! the lane and host names, so it is the same at every start and differs between lanes.

use std::time::Duration;

use sha2::{Digest, Sha256};

/// The delay in `[0, window)` of `lane` on `host`: SHA-256 of both, not a seeded hasher, so it
/// stays the same across versions and restarts.
pub fn offset(lane: &str, host: &str, window: Duration) -> Duration {
    let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
    if window_ms == 0 {
        return Duration::ZERO;
    }
    let digest = Sha256::new()
        .chain_update(host.as_bytes())
        .chain_update([0u8])
        .chain_update(lane.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    Duration::from_millis(u64::from_le_bytes(first) % window_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_stable_within_the_window_and_differ_between_lanes() {
        let w = Duration::from_secs(600);
        let a = offset("backup", "host", w);
        assert_eq!(a, offset("backup", "host", w));
        assert!(a < w);
        assert_ne!(a, offset("sandman", "host", w));
        assert_ne!(a, offset("backup", "other", w));
        assert_eq!(offset("x", "h", Duration::ZERO), Duration::ZERO);
    }
}
