//! Byte sizes on the command line (`4096`, `64K`, `2M`, `1G`: K, M, G
//! and T are powers of 1024) and the size mix of a synthetic stream: a list that
//! items cycle through (`--sizes 56,64K,2M`) or a seeded random size per
//! item (`--sizes random:0..1M`), and the payload a run of them needs.

use crate::item::SplitMix;
use shmstream::{placement_align, DType, TensorMeta, MAX_ALIGN};
use std::fmt;
use std::str::FromStr;

/// The largest item the synthetic stream makes (1 GiB): the sender holds
/// one item in memory, the producer writes one in place.
pub const MAX_ITEM_BYTES: u64 = 1 << 30;
/// The most sizes a `--sizes` list may hold.
pub const MAX_SIZES: usize = 4096;

const SUFFIXES: [(char, u32); 4] = [('T', 40), ('G', 30), ('M', 20), ('K', 10)];

/// A byte count: a whole number, optionally followed by `K`, `M`, `G` or
/// `T` (powers of 1024; lower case too).
///
/// # Errors
///
/// Not of that form, or past 64 bits.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (digits, shift) = match t.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some(c) => match SUFFIXES.iter().find(|(k, _)| *k == c) {
            Some((_, shift)) => (&t[..t.len() - 1], *shift),
            None => (t, 0),
        },
        None => (t, 0),
    };
    let not_a_size = || {
        format!("{s:?} is not a byte size (a whole number, optionally followed by K, M, G or T)")
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(not_a_size());
    }
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is more bytes than fit in 64 bits"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{s:?} is more bytes than fit in 64 bits"))
}

/// `n` bytes as [`parse_bytes`] reads them, with the largest suffix that
/// divides it exactly (`65536` is `64K`, `1000` stays `1000`).
pub fn fmt_bytes(n: u64) -> String {
    for (suffix, shift) in SUFFIXES {
        if n != 0 && n.is_multiple_of(1 << shift) {
            return format!("{}{suffix}", n >> shift);
        }
    }
    n.to_string()
}

/// Payload bytes an item of `nbytes` may take in the ring: its bytes and
/// the padding that may precede it (less than its placement alignment).
pub fn footprint(nbytes: u64) -> u64 {
    nbytes.saturating_add(placement_align(nbytes) - 1)
}

/// The sizes of a synthetic stream's items.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SizeMix {
    /// Item `seq` has size `sizes[seq % len]`.
    Cycle(Vec<u64>),
    /// Item `seq` has a size from `min` to `max` (inclusive), log-uniform,
    /// drawn from a hash of the seed and `seq` (so both processes compute
    /// it without talking).
    Random {
        /// The smallest size.
        min: u64,
        /// The largest size.
        max: u64,
    },
}

impl FromStr for SizeMix {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let checked = |text: &str| -> Result<u64, String> {
            let n = parse_bytes(text)?;
            if n > MAX_ITEM_BYTES {
                return Err(format!(
                    "{} bytes is more than the limit of {} ({MAX_ITEM_BYTES} bytes) per item",
                    text.trim(),
                    fmt_bytes(MAX_ITEM_BYTES)
                ));
            }
            Ok(n)
        };
        if let Some(range) = s.strip_prefix("random:") {
            let (min, max) = range
                .split_once("..")
                .ok_or_else(|| format!("{s:?} is not of the form random:MIN..MAX"))?;
            let (min, max) = (checked(min)?, checked(max)?);
            if min > max {
                return Err(format!("{s:?}: the smallest size exceeds the largest"));
            }
            return Ok(SizeMix::Random { min, max });
        }
        let sizes = s.split(',').map(checked).collect::<Result<Vec<u64>, _>>()?;
        if sizes.len() > MAX_SIZES {
            return Err(format!(
                "{} sizes are more than the limit of {MAX_SIZES}",
                sizes.len()
            ));
        }
        Ok(SizeMix::Cycle(sizes))
    }
}

impl fmt::Display for SizeMix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SizeMix::Cycle(sizes) => {
                let parts: Vec<String> = sizes.iter().map(|&n| fmt_bytes(n)).collect();
                f.write_str(&parts.join(","))
            }
            SizeMix::Random { min, max } => {
                write!(f, "random:{}..{}", fmt_bytes(*min), fmt_bytes(*max))
            }
        }
    }
}

impl SizeMix {
    /// The size of item `seq` of a stream seeded with `seed`.
    pub fn size(&self, seq: u64, seed: u64) -> u64 {
        match self {
            SizeMix::Cycle(sizes) => sizes[(seq % sizes.len() as u64) as usize],
            SizeMix::Random { min, max } => {
                let bits = SplitMix::new(seed ^ seq.wrapping_mul(0xd6e8_feb8_6659_fd93)).next_u64();
                let u = (bits >> 11) as f64 / (1u64 << 53) as f64;
                // Log-uniform over [min + 1, max + 1], then back by one, so
                // that 0 is a size like any other.
                let (lo, hi) = (((min + 1) as f64).ln(), ((max + 1) as f64).ln());
                let n = ((lo + u * (hi - lo)).exp() - 1.0).floor() as u64;
                n.clamp(*min, *max)
            }
        }
    }

    /// The largest size.
    pub fn largest(&self) -> u64 {
        match self {
            SizeMix::Cycle(sizes) => sizes.iter().copied().max().unwrap_or(0),
            SizeMix::Random { max, .. } => *max,
        }
    }

    /// Payload bytes `window` consecutive items may take at most, padding
    /// included: what the ring must hold for a policy showing `window`
    /// items at once to make progress.
    pub fn window_bytes(&self, window: u64) -> u64 {
        let total = match self {
            SizeMix::Cycle(sizes) => {
                let costs: Vec<u128> = sizes.iter().map(|&n| footprint(n) as u128).collect();
                let len = costs.len() as u64;
                let lap: u128 = costs.iter().sum();
                let rest = (window % len) as usize;
                // The heaviest run of `rest` consecutive sizes, cyclically.
                let mut run: u128 = costs.iter().take(rest).sum();
                let mut heaviest = run;
                for start in 1..costs.len() {
                    run = run + costs[(start + rest - 1) % costs.len()] - costs[start - 1];
                    heaviest = heaviest.max(run);
                }
                (window / len) as u128 * lap + heaviest
            }
            SizeMix::Random { max, .. } => {
                window as u128 * max.saturating_add(MAX_ALIGN - 1) as u128
            }
        };
        u64::try_from(total).unwrap_or(u64::MAX)
    }
}

/// What each item of a synthetic stream is: one dtype and shape, or a
/// `u8` tensor of the size the mix gives it.
#[derive(Clone, Debug, PartialEq)]
pub enum ItemPlan {
    /// Every item has this dtype and shape (`--shape`, `--dtype`).
    Shape(TensorMeta),
    /// Item `seq` is `u8[mix.size(seq, seed)]` (`--sizes`, `--seed`).
    Mix {
        /// The sizes.
        mix: SizeMix,
        /// Their seed.
        seed: u64,
    },
}

impl ItemPlan {
    /// The metadata of item `seq`.
    pub fn meta(&self, seq: u64) -> TensorMeta {
        match self {
            ItemPlan::Shape(meta) => *meta,
            ItemPlan::Mix { mix, seed } => {
                TensorMeta::new(DType::U8, &[mix.size(seq, *seed)]).expect("one dimension")
            }
        }
    }

    /// The byte size of item `seq`.
    pub fn nbytes(&self, seq: u64) -> u64 {
        match self {
            ItemPlan::Shape(meta) => meta.nbytes(),
            ItemPlan::Mix { mix, seed } => mix.size(seq, *seed),
        }
    }

    /// The largest item.
    pub fn largest(&self) -> u64 {
        match self {
            ItemPlan::Shape(meta) => meta.nbytes(),
            ItemPlan::Mix { mix, .. } => mix.largest(),
        }
    }

    /// Payload bytes `window` consecutive items may take at most.
    pub fn window_bytes(&self, window: u64) -> u64 {
        match self {
            ItemPlan::Shape(meta) => footprint(meta.nbytes()).saturating_mul(window),
            ItemPlan::Mix { mix, .. } => mix.window_bytes(window),
        }
    }

    /// The sizes as a mix (one size for a shape): what the consumer checks.
    pub fn as_mix(&self) -> (SizeMix, u64) {
        match self {
            ItemPlan::Shape(meta) => (SizeMix::Cycle(vec![meta.nbytes()]), 0),
            ItemPlan::Mix { mix, seed } => (mix.clone(), *seed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_suffixes_and_print_back() {
        assert_eq!(parse_bytes("56"), Ok(56));
        assert_eq!(parse_bytes("64K"), Ok(65536));
        assert_eq!(parse_bytes("2m"), Ok(2 << 20));
        assert_eq!(parse_bytes("1G"), Ok(1 << 30));
        assert!(parse_bytes("1.5M").is_err());
        assert!(parse_bytes("M").is_err());
        assert!(parse_bytes("-1").is_err());
        assert_eq!(parse_bytes("1T"), Ok(1 << 40));
        assert!(parse_bytes("17179869184G").unwrap_err().contains("64 bits"));
        for n in [0, 1, 1000, 4096, 65536, 3 << 20, 1 << 30] {
            assert_eq!(parse_bytes(&fmt_bytes(n)), Ok(n));
        }
        assert_eq!(fmt_bytes(65536), "64K");
        let mix: SizeMix = "56,64K,2M,0".parse().unwrap();
        assert_eq!(mix, SizeMix::Cycle(vec![56, 65536, 2 << 20, 0]));
        assert_eq!(mix.to_string().parse::<SizeMix>(), Ok(mix));
        let random: SizeMix = "random:0..1M".parse().unwrap();
        assert_eq!(random.to_string(), "random:0..1M");
        assert!("random:2M..1M".parse::<SizeMix>().is_err());
        assert!("2G".parse::<SizeMix>().unwrap_err().contains("limit of 1G"));
        assert!("56,,64".parse::<SizeMix>().is_err());
    }

    #[test]
    fn random_sizes_are_seeded_within_bounds_and_spread() {
        let mix = SizeMix::Random {
            min: 0,
            max: 1 << 20,
        };
        let sizes: Vec<u64> = (0..10_000).map(|s| mix.size(s, 7)).collect();
        assert!(sizes.iter().all(|&n| n <= 1 << 20));
        assert_eq!(
            sizes,
            (0..10_000).map(|s| mix.size(s, 7)).collect::<Vec<_>>()
        );
        assert_ne!(
            sizes,
            (0..10_000).map(|s| mix.size(s, 8)).collect::<Vec<_>>()
        );
        // Log-uniform: every decade gets a share, small ones included.
        assert!(sizes.iter().any(|&n| n < 10));
        assert!(sizes.iter().any(|&n| n > 100_000));
        let fixed = SizeMix::Random { min: 5, max: 5 };
        assert!((0..100).all(|s| fixed.size(s, 1) == 5));
    }

    #[test]
    fn a_window_of_a_cycle_takes_its_heaviest_run() {
        let mix = SizeMix::Cycle(vec![8, 1024, 8, 8]);
        // Footprints 8 (+7 padding), 1024 (+63).
        assert_eq!(mix.window_bytes(1), 1087);
        assert_eq!(mix.window_bytes(2), 1087 + 15);
        assert_eq!(mix.window_bytes(4), 1087 + 3 * 15);
        assert_eq!(mix.window_bytes(5), 1087 * 2 + 3 * 15);
        assert_eq!(
            ItemPlan::Shape(TensorMeta::new(DType::I64, &[7]).unwrap()).window_bytes(28),
            28 * 63
        );
    }
}
