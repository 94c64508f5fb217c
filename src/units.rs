//! Small wrapper types for sizes and rates, so they print and parse one way everywhere.

use std::fmt;
use std::str::FromStr;

/// A number of bytes. Parses `1048576`, `64k`, `4M`, `4MiB`, `1G` (binary multiples: a
/// container image is measured the way `docker images` measures it is not worth a second
/// convention here, so every suffix is a power of 1024).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("invalid size {s:?} (examples: 1048576, 512k, 4MiB)"))?;
        let shift = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 0,
            "k" | "kb" | "kib" => 10,
            "m" | "mb" | "mib" => 20,
            "g" | "gb" | "gib" => 30,
            _ => return Err(format!("invalid size unit in {s:?} (use k, M or G)")),
        };
        n.checked_mul(1u64 << shift)
            .map(ByteSize)
            .ok_or_else(|| format!("size {s:?} is too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
        let mut v = self.0 as f64;
        let mut i = 0;
        while v >= 1024.0 && i + 1 < UNITS.len() {
            v /= 1024.0;
            i += 1;
        }
        if i == 0 {
            write!(f, "{} B", self.0)
        } else {
            write!(f, "{v:.1} {}", UNITS[i])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let cases = [
            ("0", 0),
            ("4096", 4096),
            ("64k", 64 << 10),
            ("4M", 4 << 20),
            ("4MiB", 4 << 20),
            ("1G", 1 << 30),
        ];
        for (s, want) in cases {
            assert_eq!(s.parse::<ByteSize>().unwrap(), ByteSize(want), "{s}");
        }
        assert!("4X".parse::<ByteSize>().is_err());
        assert!("".parse::<ByteSize>().is_err());
        assert_eq!(ByteSize(3 << 20).to_string(), "3.0 MiB");
        assert_eq!(ByteSize(12).to_string(), "12 B");
    }
}
