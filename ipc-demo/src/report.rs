//! The consumer's report: what arrived, how fast, how late, and what was
//! copied. Printed as a table, or as one JSON line for the launcher and
//! the tests.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Latency from an item's commit (the producer's CLOCK_MONOTONIC stamp in
/// the item) to the moment the consumer held the first chunk showing it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Items measured (those large enough to carry a timestamp).
    pub samples: u64,
    /// Median, ns.
    pub p50_ns: u64,
    /// 99th percentile, ns.
    pub p99_ns: u64,
    /// 99.9th percentile, ns.
    pub p999_ns: u64,
    /// Largest, ns.
    pub max_ns: u64,
}

impl Latency {
    /// Percentiles of the samples in `histogram` (nearest rank, to the
    /// histogram's precision); `None` without samples.
    pub fn of(histogram: &Histogram<u64>) -> Option<Latency> {
        if histogram.is_empty() {
            return None;
        }
        Some(Latency {
            samples: histogram.len(),
            p50_ns: histogram.value_at_quantile(0.5),
            p99_ns: histogram.value_at_quantile(0.99),
            p999_ns: histogram.value_at_quantile(0.999),
            max_ns: histogram.max(),
        })
    }
}

/// How often the producer found the ring full and waited, by what ran
/// out: every item slot, or the payload bytes. The producer prints it as
/// its last stdout line, `backpressure items=N payload_bytes=M`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waits {
    /// Registrations that waited for an item slot.
    pub items: u64,
    /// Registrations that waited for payload bytes.
    pub payload_bytes: u64,
}

impl Waits {
    /// The producer's line: `backpressure items=N payload_bytes=M`.
    pub fn line(&self) -> String {
        format!(
            "backpressure items={} payload_bytes={}",
            self.items, self.payload_bytes
        )
    }

    /// Reads what follows `backpressure ` in [`line`](Self::line).
    pub fn parse(rest: &str) -> Option<Waits> {
        let mut waits = Waits::default();
        for field in rest.split_whitespace() {
            match field.split_once('=')? {
                ("items", n) => waits.items = n.parse().ok()?,
                ("payload_bytes", n) => waits.payload_bytes = n.parse().ok()?,
                _ => return None,
            }
        }
        Some(waits)
    }
}

/// Everything the consumer measured.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The segment's name.
    pub segment: String,
    /// The chunk policy, by name.
    pub policy: String,
    /// Distinct items received, in order, each verified.
    pub items: u64,
    /// Items the stream had to carry (`--items`), when given.
    pub expected_items: Option<u64>,
    /// Expected items that never arrived (0 without an expectation).
    pub lost: u64,
    /// Chunks popped.
    pub chunks: u64,
    /// Chunks marked final (exactly 1, or 0 under a continue-after-done policy).
    pub final_chunks: u64,
    /// Chunks with no item (the empty final chunk, or the first empty one
    /// of a continue-after-done policy, after which the consumer stops).
    pub empty_chunks: u64,
    /// Items shown again as the leading context of a later chunk.
    pub context_items: u64,
    /// Windows read as one stacked tensor view (`chunk.stacked()`).
    pub stacked_windows: u64,
    /// Windows of mixed items, read item by item.
    pub unstacked_windows: u64,
    /// Bytes of the distinct items.
    pub bytes: u64,
    /// From the first item's commit to the final chunk, seconds.
    pub seconds: f64,
    /// Distinct items per second.
    pub items_per_s: f64,
    /// Distinct item bytes per second, in 10^9.
    pub gb_per_s: f64,
    /// Commit-to-chunk latency, when items carry timestamps.
    pub latency: Option<Latency>,
    /// Item bytes the consumer copied: 0, items are read in place.
    pub bytes_copied: u64,
    /// Item bytes read in place to verify them: reads, not copies. A new
    /// item is read whole; an item shown again as context only its
    /// sequence number and checksum (its slot must still hold it).
    pub bytes_verified: u64,
    /// The consumer's voluntary context switches while streaming: an upper
    /// bound on its futex waits (it sleeps only in the library's waits).
    pub consumer_sleeps: u64,
    /// The producer's waits for a full ring (added by `ipc-demo run`, from
    /// the producer's last line; absent in the consumer's own report).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backpressure: Option<Waits>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let expected = match self.expected_items {
            Some(n) => format!(" of {n} expected, {} lost", self.lost),
            None => String::new(),
        };
        writeln!(f, "segment        {}", self.segment)?;
        writeln!(f, "policy         {}", self.policy)?;
        writeln!(
            f,
            "items          {}{expected}, every one verified",
            self.items
        )?;
        writeln!(
            f,
            "chunks         {} ({} final, {} empty, {} stacked views, {} context items re-shown)",
            self.chunks,
            self.final_chunks,
            self.empty_chunks,
            self.stacked_windows,
            self.context_items
        )?;
        writeln!(
            f,
            "throughput     {:.0} items/s, {:.3} GB/s over {:.3} s",
            self.items_per_s, self.gb_per_s, self.seconds
        )?;
        match &self.latency {
            Some(l) => writeln!(
                f,
                "latency        p50 {}  p99 {}  p99.9 {}  max {}  (commit to chunk, {} items)",
                us(l.p50_ns),
                us(l.p99_ns),
                us(l.p999_ns),
                us(l.max_ns),
                l.samples
            )?,
            None => writeln!(
                f,
                "latency        not measured (items under 24 bytes carry no timestamp)"
            )?,
        }
        writeln!(
            f,
            "copied         {} bytes on the consumer side ({} bytes read in place to verify)",
            self.bytes_copied, self.bytes_verified
        )?;
        write!(
            f,
            "sleeps         {} (voluntary context switches of the consumer)",
            self.consumer_sleeps
        )?;
        if let Some(w) = &self.backpressure {
            write!(
                f,
                "\nbackpressure   the producer waited {} times for an item slot, {} times for payload bytes",
                w.items, w.payload_bytes
            )?;
        }
        Ok(())
    }
}

fn us(ns: u64) -> String {
    format!("{:.1} us", ns as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backpressure_line_reads_back() {
        let w = Waits {
            items: 3,
            payload_bytes: 12,
        };
        assert_eq!(w.line(), "backpressure items=3 payload_bytes=12");
        let rest = w.line();
        let rest = rest.strip_prefix("backpressure ").unwrap();
        assert_eq!(Waits::parse(rest), Some(w));
        assert_eq!(Waits::parse("items=x"), None);
        assert_eq!(Waits::parse("slots=1"), None);
    }

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let mut h = crate::verify::new_latency_histogram();
        assert!(Latency::of(&h).is_none());
        for v in (1..=1000).rev() {
            h.record(v).unwrap();
        }
        let l = Latency::of(&h).unwrap();
        assert_eq!(
            (l.samples, l.p50_ns, l.p99_ns, l.p999_ns, l.max_ns),
            (1000, 500, 990, 999, 1000)
        );
        // Large values keep 3 significant digits.
        let mut h = crate::verify::new_latency_histogram();
        h.record(123_456_789).unwrap();
        let l = Latency::of(&h).unwrap();
        assert!(l.max_ns.abs_diff(123_456_789) <= 123_456, "{}", l.max_ns);
    }
}
