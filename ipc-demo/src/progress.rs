//! The consumer's running numbers and how the launcher shows them: the
//! `progress items=N p50_ns=X p99_ns=Y` line the consumer prints on
//! stdout (`consume --progress`, every [`PROGRESS_EVERY`]) and the
//! launcher reads back ([`Progress`]), and the bar's message
//! ([`bar_message`]).

use std::time::Duration;

/// How often the consumer reports its [`Progress`] when asked
/// (`consume --progress`, which the launcher passes for one stream).
pub const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// The consumer's running numbers, one stdout line
/// `progress items=N p50_ns=X p99_ns=Y` (the percentiles of every
/// commit-to-chunk latency so far, from its histogram; without them until
/// an item carried a time stamp), which the launcher shows in its bar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Items verified so far.
    pub items: u64,
    /// Running (p50, p99) latency, ns.
    pub latency: Option<(u64, u64)>,
}

impl Progress {
    /// The key the line starts with.
    pub const KEY: &'static str = "progress";

    /// The line the consumer prints.
    pub fn line(&self) -> String {
        match self.latency {
            Some((p50, p99)) => format!(
                "{} items={} p50_ns={p50} p99_ns={p99}",
                Self::KEY,
                self.items
            ),
            None => format!("{} items={}", Self::KEY, self.items),
        }
    }

    /// Reads what follows the key (as [`crate::child::Proc`] hands it):
    /// `items=N` and optionally `p50_ns=X p99_ns=Y`, in any order; `None`
    /// for anything else (an unknown or repeated field, a p50 without a
    /// p99, p50 > p99).
    pub fn parse(rest: &str) -> Option<Progress> {
        let (mut items, mut p50, mut p99) = (None, None, None);
        for field in rest.split_ascii_whitespace() {
            let (key, value) = field.split_once('=')?;
            let slot = match key {
                "items" => &mut items,
                "p50_ns" => &mut p50,
                "p99_ns" => &mut p99,
                _ => return None,
            };
            if slot.replace(value.parse::<u64>().ok()?).is_some() {
                return None;
            }
        }
        let latency = match (p50, p99) {
            (Some(a), Some(b)) if a <= b => Some((a, b)),
            (None, None) => None,
            _ => return None,
        };
        Some(Progress {
            items: items?,
            latency,
        })
    }
}

/// A latency for the bar: `850 ns`, `12.3 µs`, `4.56 ms`, `1.20 s`.
fn short_ns(ns: u64) -> String {
    let x = ns as f64;
    match ns {
        0..=999 => format!("{ns} ns"),
        1_000..=99_999 => format!("{:.1} µs", x / 1e3),
        100_000..=999_999 => format!("{:.0} µs", x / 1e3),
        1_000_000..=999_999_999 => format!("{:.2} ms", x / 1e6),
        _ => format!("{:.2} s", x / 1e9),
    }
}

/// The bar's message: the rate, the consumer's running latency (once it
/// reported one) and what the ring holds.
pub fn bar_message(
    per_s: f64,
    progress: Option<&Progress>,
    in_ring: u64,
    bytes_in_use: u64,
) -> String {
    let latency = match progress.and_then(|p| p.latency) {
        Some((p50, p99)) => format!(", p50 {} p99 {}", short_ns(p50), short_ns(p99)),
        None => String::new(),
    };
    format!(
        "{per_s:.0} items/s{latency}, {in_ring} items and {:.1} MiB in the ring",
        bytes_in_use as f64 / (1 << 20) as f64
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_progress_line_reads_back_and_bad_ones_are_refused() {
        for p in [
            Progress {
                items: 12,
                latency: Some((850, 12_300)),
            },
            Progress {
                items: 0,
                latency: None,
            },
        ] {
            let line = p.line();
            let rest = line.strip_prefix("progress ").unwrap();
            assert_eq!(Progress::parse(rest), Some(p), "{line}");
        }
        assert_eq!(
            Progress::parse("p99_ns=9 items=3 p50_ns=4"),
            Some(Progress {
                items: 3,
                latency: Some((4, 9))
            })
        );
        for bad in [
            "",
            "items=",
            "items=-1",
            "items=1 items=2",
            "items=1 p50_ns=5",
            "items=1 p50_ns=9 p99_ns=4",
            "items=1 speed=3",
            "{\"items\":1}",
        ] {
            assert_eq!(Progress::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_bar_shows_the_running_latency_once_reported() {
        assert_eq!(
            bar_message(1234.4, None, 3, 1 << 20),
            "1234 items/s, 3 items and 1.0 MiB in the ring"
        );
        let p = Progress {
            items: 9,
            latency: Some((850, 12_345)),
        };
        assert_eq!(
            bar_message(10.0, Some(&p), 0, 0),
            "10 items/s, p50 850 ns p99 12.3 µs, 0 items and 0.0 MiB in the ring"
        );
        assert_eq!(short_ns(456_000), "456 µs");
        assert_eq!(short_ns(4_560_000), "4.56 ms");
        assert_eq!(short_ns(1_200_000_000), "1.20 s");
    }
}
