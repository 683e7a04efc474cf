//! Memory sizes as people write them (`16MiB`, systemd's `2G`): the WASM and evidence limits,
//! and a lane's `limits.memory`.

/// A byte count as people write it: `4 KiB`, `16 MiB`, `2 GiB`, or bytes.
pub fn format_size(bytes: u64) -> String {
    if bytes >= 1 << 30 && bytes.is_multiple_of(1 << 30) {
        format!("{} GiB", bytes >> 30)
    } else if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes.is_multiple_of(1 << 10) {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} bytes")
    }
}

/// Parses a memory size: a number of bytes, or a number with `KiB`, `MiB`, `GiB` or `TiB`
/// (or systemd's `K`, `M`, `G`, `T`: the same powers of 1024).
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "T" | "TiB" => 1 << 40,
        _ => 0,
    };
    match num.parse::<u64>() {
        Ok(n) if factor > 0 && n > 0 => n
            .checked_mul(factor)
            .ok_or_else(|| SizeError::TooLarge(t.to_string())),
        _ => Err(SizeError::NotASize(t.to_string())),
    }
}

/// A memory size that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// Not a number with a known unit.
    #[error("`{0}` is not a memory size; write bytes or e.g. 16MiB (units: KiB, MiB, GiB, TiB)")]
    NotASize(String),
    /// More bytes than fit in 64 bits.
    #[error("`{0}` is too large")]
    TooLarge(String),
    /// Zero bytes.
    #[error("0 is not a size")]
    Zero,
}
