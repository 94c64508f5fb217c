//! A fixed-size set of block indexes, one bit per block.
//!
//! Peers send their whole "have" and "want" sets to the coordinator when they join and whenever
//! it asks them to re-sync, so the serialized form is compact: the bit count plus the bits as
//! little-endian bytes in base64 (`{"len":4096,"bits":"..."}`, about 700 bytes for 4096
//! blocks). The scheduler combines sets a machine word at a time (`union_with`,
//! `intersect_with`, `difference_with`), which keeps its per-call work proportional to
//! blocks / 64 rather than to blocks.
//!
//! Bits at or past `len` are always zero: every operation keeps it so, and deserialization
//! rejects input that breaks it, so `count` and equality never see stray bits.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A set of indexes in `0..len`.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct BitSet {
    len: usize,
    words: Vec<u64>,
}

impl BitSet {
    /// An empty set over `0..len`.
    pub fn new(len: usize) -> BitSet {
        BitSet {
            len,
            words: vec![0; len.div_ceil(64)],
        }
    }

    /// The set holding every index in `0..len`.
    pub fn full(len: usize) -> BitSet {
        let mut s = BitSet {
            len,
            words: vec![u64::MAX; len.div_ceil(64)],
        };
        s.clear_tail();
        s
    }

    /// The set over `0..len` holding `ones`.
    ///
    /// # Panics
    /// If an index is not below `len`.
    pub fn from_ones(len: usize, ones: impl IntoIterator<Item = usize>) -> BitSet {
        let mut s = BitSet::new(len);
        for i in ones {
            s.set(i, true);
        }
        s
    }

    /// How many indexes the set ranges over (not how many it holds: see [`BitSet::count`]).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if the set ranges over no index at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `i` is in the set; false for any index past the end.
    pub fn get(&self, i: usize) -> bool {
        i < self.len && self.words[i / 64] & (1 << (i % 64)) != 0
    }

    /// Adds (`true`) or removes (`false`) `i`.
    ///
    /// # Panics
    /// If `i` is not below `len`.
    pub fn set(&mut self, i: usize, value: bool) {
        assert!(i < self.len, "bit {i} out of range 0..{}", self.len);
        let bit = 1 << (i % 64);
        if value {
            self.words[i / 64] |= bit;
        } else {
            self.words[i / 64] &= !bit;
        }
    }

    /// How many indexes the set holds.
    pub fn count(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// True if the set holds at least one index.
    pub fn any(&self) -> bool {
        self.words.iter().any(|&w| w != 0)
    }

    /// The indexes the set holds, in increasing order.
    pub fn iter_ones(&self) -> impl Iterator<Item = usize> + '_ {
        self.words.iter().enumerate().flat_map(|(wi, &w)| {
            let mut rest = w;
            std::iter::from_fn(move || {
                if rest == 0 {
                    return None;
                }
                let bit = rest.trailing_zeros() as usize;
                rest &= rest - 1;
                Some(wi * 64 + bit)
            })
        })
    }

    /// Adds every index of `other`.
    ///
    /// # Panics
    /// If the two sets have different lengths.
    pub fn union_with(&mut self, other: &BitSet) {
        self.zip_with(other, |a, b| a | b);
    }

    /// Keeps only the indexes also in `other`.
    ///
    /// # Panics
    /// If the two sets have different lengths.
    pub fn intersect_with(&mut self, other: &BitSet) {
        self.zip_with(other, |a, b| a & b);
    }

    /// Removes every index of `other`.
    ///
    /// # Panics
    /// If the two sets have different lengths.
    pub fn difference_with(&mut self, other: &BitSet) {
        self.zip_with(other, |a, b| a & !b);
    }

    /// True if every index of `self` is also in `other`.
    ///
    /// # Panics
    /// If the two sets have different lengths.
    pub fn is_subset(&self, other: &BitSet) -> bool {
        self.check_len(other);
        self.words
            .iter()
            .zip(&other.words)
            .all(|(a, b)| a & !b == 0)
    }

    /// True if the two sets share an index.
    ///
    /// # Panics
    /// If the two sets have different lengths.
    pub fn intersects(&self, other: &BitSet) -> bool {
        self.check_len(other);
        self.words.iter().zip(&other.words).any(|(a, b)| a & b != 0)
    }

    fn zip_with(&mut self, other: &BitSet, f: impl Fn(u64, u64) -> u64) {
        self.check_len(other);
        for (a, &b) in self.words.iter_mut().zip(&other.words) {
            *a = f(*a, b);
        }
    }

    fn check_len(&self, other: &BitSet) {
        assert_eq!(self.len, other.len, "bit sets of different lengths");
    }

    /// Zeroes the bits of the last word that lie past `len`.
    fn clear_tail(&mut self) {
        if let (Some(last), r @ 1..) = (self.words.last_mut(), self.len % 64) {
            *last &= (1u64 << r) - 1;
        }
    }

    fn to_le_bytes(&self) -> Vec<u8> {
        let mut out: Vec<u8> = self.words.iter().flat_map(|w| w.to_le_bytes()).collect();
        out.truncate(self.len.div_ceil(8));
        out
    }

    fn from_le_bytes(len: usize, bytes: &[u8]) -> Result<BitSet, String> {
        if bytes.len() != len.div_ceil(8) {
            return Err(format!(
                "{} bytes of bits for a length of {len} (want {})",
                bytes.len(),
                len.div_ceil(8)
            ));
        }
        let mut s = BitSet::new(len);
        for (w, chunk) in s.words.iter_mut().zip(bytes.chunks(8)) {
            let mut buf = [0u8; 8];
            buf[..chunk.len()].copy_from_slice(chunk);
            *w = u64::from_le_bytes(buf);
        }
        let before = s.words.last().copied();
        s.clear_tail();
        if s.words.last().copied() != before {
            return Err(format!("bits set past the length {len}"));
        }
        Ok(s)
    }
}

impl fmt::Debug for BitSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.len <= 64 {
            f.debug_set().entries(self.iter_ones()).finish()
        } else {
            write!(f, "BitSet({} of {})", self.count(), self.len)
        }
    }
}

/// The serialized form: the length and the little-endian bytes, base64.
#[derive(Serialize, Deserialize)]
struct Wire<'a> {
    len: usize,
    #[serde(borrow)]
    bits: std::borrow::Cow<'a, str>,
}

impl Serialize for BitSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Wire {
            len: self.len,
            bits: STANDARD.encode(self.to_le_bytes()).into(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for BitSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = Wire::deserialize(d)?;
        // Checked before decoding, so a hostile length cannot make us allocate.
        let want = w.len.div_ceil(8);
        if w.bits.len().div_ceil(4) * 3 < want {
            return Err(serde::de::Error::custom(format!(
                "bit set of length {} carries too few bits",
                w.len
            )));
        }
        let bytes = STANDARD
            .decode(w.bits.as_bytes())
            .map_err(serde::de::Error::custom)?;
        BitSet::from_le_bytes(w.len, &bytes).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_count_across_word_boundaries() {
        for len in [0usize, 1, 63, 64, 65, 128, 1000] {
            let ones: Vec<usize> = [0, 1, 62, 63, 64, 65, 127, 128, 999]
                .into_iter()
                .filter(|&i| i < len)
                .collect();
            let mut s = BitSet::from_ones(len, ones.iter().copied());
            assert_eq!(s.len(), len);
            assert_eq!(s.count(), ones.len(), "len {len}");
            assert_eq!(s.iter_ones().collect::<Vec<_>>(), ones, "len {len}");
            assert_eq!(s.any(), !ones.is_empty());
            assert!(!s.get(len), "past the end reads as absent");
            if let Some(&first) = ones.first() {
                s.set(first, false);
                assert!(!s.get(first));
                assert_eq!(s.count(), ones.len() - 1);
            }
            let full = BitSet::full(len);
            assert_eq!(full.count(), len, "full({len})");
            assert_eq!(full.iter_ones().last(), len.checked_sub(1));
        }
    }

    #[test]
    #[should_panic(expected = "out of range")]
    fn set_past_the_end_panics() {
        BitSet::new(10).set(10, true);
    }

    #[test]
    fn word_wise_operations() {
        let a = BitSet::from_ones(130, [1, 64, 129]);
        let b = BitSet::from_ones(130, [64, 100]);
        let mut u = a.clone();
        u.union_with(&b);
        assert_eq!(u.iter_ones().collect::<Vec<_>>(), [1, 64, 100, 129]);
        let mut i = a.clone();
        i.intersect_with(&b);
        assert_eq!(i.iter_ones().collect::<Vec<_>>(), [64]);
        let mut d = a.clone();
        d.difference_with(&b);
        assert_eq!(d.iter_ones().collect::<Vec<_>>(), [1, 129]);
        assert!(i.is_subset(&a) && i.is_subset(&b));
        assert!(!a.is_subset(&b));
        assert!(a.intersects(&b));
        assert!(!d.intersects(&b));
    }

    #[test]
    fn serde_round_trip_is_compact() {
        for len in [0usize, 5, 64, 4096, 4099] {
            let s = BitSet::from_ones(len, (0..len).filter(|i| i % 3 == 0));
            let json = serde_json::to_string(&s).unwrap();
            let back: BitSet = serde_json::from_str(&json).unwrap();
            assert_eq!(back, s, "len {len}");
            // base64 of len/8 bytes plus a small envelope.
            assert!(json.len() <= len.div_ceil(8) * 4 / 3 + 30, "{json}");
        }
        let json = serde_json::to_string(&BitSet::from_ones(10, [0, 9])).unwrap();
        assert_eq!(json, r#"{"len":10,"bits":"AQI="}"#);
    }

    #[test]
    fn deserialize_rejects_inconsistent_input() {
        for bad in [
            r#"{"len":10,"bits":"AQ=="}"#,      // one byte for ten bits
            r#"{"len":10,"bits":"AQIA"}"#,      // three bytes for ten bits
            r#"{"len":10,"bits":"AQQ="}"#,      // bit 10 set
            r#"{"len":10,"bits":"!!"}"#,        // not base64
            r#"{"len":99999999999,"bits":""}"#, // huge length, no bits
        ] {
            assert!(serde_json::from_str::<BitSet>(bad).is_err(), "{bad}");
        }
    }
}
