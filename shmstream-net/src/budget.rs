//! Bytes held against a bound, with their peak: what the receiver keeps
//! for a peer (offers waiting for their turn, acknowledgements not yet
//! sent) is charged here, and a charge that would pass the bound is
//! refused, so the caller can end the offending stream.

/// A charge refused: the bytes that would be held with it, and the bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OverBound {
    pub held: u64,
    pub limit: u64,
}

/// Bytes charged, at most `limit` after any successful [`charge`].
///
/// [`charge`]: ByteBudget::charge
#[derive(Debug)]
pub(crate) struct ByteBudget {
    held: u64,
    peak: u64,
    limit: u64,
}

impl ByteBudget {
    pub fn new(limit: u64) -> ByteBudget {
        ByteBudget {
            held: 0,
            peak: 0,
            limit,
        }
    }

    /// Charges `cost` when the total stays within the bound (exactly at it
    /// is allowed); otherwise charges nothing.
    pub fn charge(&mut self, cost: u64) -> Result<(), OverBound> {
        let held = self.held.saturating_add(cost);
        if held > self.limit {
            return Err(OverBound {
                held,
                limit: self.limit,
            });
        }
        self.restore(cost);
        Ok(())
    }

    /// Charges `cost` unchecked: what was charged before and taken back
    /// for a moment (within the bound then, so within it again).
    pub fn restore(&mut self, cost: u64) {
        self.held += cost;
        self.peak = self.peak.max(self.held);
    }

    /// Gives back `cost`, charged before.
    pub fn credit(&mut self, cost: u64) {
        self.held -= cost;
    }

    /// Gives back everything (the stream ended; its holdings went).
    pub fn clear(&mut self) {
        self.held = 0;
    }

    pub fn held(&self) -> u64 {
        self.held
    }

    pub fn peak(&self) -> u64 {
        self.peak
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_stop_exactly_at_the_bound() {
        let mut b = ByteBudget::new(100);
        b.charge(60).unwrap();
        assert_eq!(
            b.charge(41),
            Err(OverBound {
                held: 101,
                limit: 100
            })
        );
        assert_eq!(b.held(), 60);
        b.charge(40).unwrap();
        assert_eq!((b.held(), b.peak()), (100, 100));
        assert_eq!(
            b.charge(1),
            Err(OverBound {
                held: 101,
                limit: 100
            })
        );
        b.credit(30);
        assert_eq!((b.held(), b.peak()), (70, 100));
        b.charge(10).unwrap();
        assert_eq!((b.held(), b.peak()), (80, 100));
        b.clear();
        assert_eq!((b.held(), b.peak()), (0, 100));
    }

    #[test]
    fn the_peak_follows_restored_charges_and_huge_costs_saturate() {
        let mut b = ByteBudget::new(10);
        b.restore(12);
        assert_eq!((b.held(), b.peak()), (12, 12));
        b.credit(12);
        assert_eq!(
            b.charge(u64::MAX),
            Err(OverBound {
                held: u64::MAX,
                limit: 10
            })
        );
        assert_eq!((b.held(), b.peak()), (0, 12));
    }
}
