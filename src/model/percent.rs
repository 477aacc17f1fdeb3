//! Traffic shares in basis points (1 = 0.01 %, 10,000 = 100 %), and their text form.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A traffic share in basis points: 1 = 0.01 %, 10,000 = 100 %. Stored and sent as the bare
/// number. Values above 100 % can be held, so that validation can say what was asked.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct BasisPoints(u32);

/// All of the traffic.
pub const FULL: BasisPoints = BasisPoints(10_000);

impl BasisPoints {
    pub const ZERO: Self = Self(0);

    pub const fn new(bp: u32) -> Self {
        Self(bp)
    }

    pub const fn get(self) -> u32 {
        self.0
    }

    /// The share as a percentage (`1250` -> `12.5`).
    pub fn percent(self) -> f64 {
        f64::from(self.0) / 100.0
    }

    /// This share of `n`, rounded up (`2500` of 10 is 3).
    pub fn ceil_of(self, n: u64) -> u64 {
        (n * u64::from(self.0)).div_ceil(u64::from(FULL.0))
    }

    /// What is left of all traffic after this share.
    pub fn rest(self) -> Self {
        Self(FULL.0.saturating_sub(self.0))
    }

    /// Parses a percentage with at most two decimals (`"90"`, `"12.5"`, `"0.01"`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let invalid =
            || format!("{text:?} is not a percentage between 0 and 100 with at most two decimals");
        let (whole, fraction) = match text.split_once('.') {
            Some((_, "")) => return Err(invalid()),
            Some(parts) => parts,
            None => (text, ""),
        };
        if whole.is_empty()
            || fraction.len() > 2
            || !whole.bytes().all(|b| b.is_ascii_digit())
            || !fraction.bytes().all(|b| b.is_ascii_digit())
            || whole.len() > 3
        {
            return Err(invalid());
        }
        let whole: u32 = whole.parse().map_err(|_| invalid())?;
        let fraction: u32 = format!("{fraction:0<2}").parse().map_err(|_| invalid())?;
        let bp = whole * 100 + fraction;
        if bp > FULL.0 {
            return Err(invalid());
        }
        Ok(Self(bp))
    }
}

/// The percentage without needless decimals (`1250` -> `12.5`, `9000` -> `90`).
impl fmt::Display for BasisPoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (whole, fraction) = (self.0 / 100, self.0 % 100);
        match fraction {
            0 => write!(f, "{whole}"),
            x if x % 10 == 0 => write!(f, "{whole}.{}", x / 10),
            x => write!(f, "{whole}.{x:02}"),
        }
    }
}

impl std::iter::Sum for BasisPoints {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        Self(iter.map(|b| b.0).fold(0, u32::saturating_add))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_parse_to_basis_points() {
        let parse = |t| BasisPoints::parse(t).map(BasisPoints::get);
        assert_eq!(parse("90"), Ok(9000));
        assert_eq!(parse("12.5"), Ok(1250));
        assert_eq!(parse("0.01"), Ok(1));
        assert_eq!(parse("100"), Ok(10_000));
        assert_eq!(parse("0"), Ok(0));
        for bad in [
            "100.01", "1.234", "-1", "", ".5", "5.", "1e2", "abc", "1000",
        ] {
            assert!(BasisPoints::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(BasisPoints::new(1250).to_string(), "12.5");
        assert_eq!(BasisPoints::new(1).to_string(), "0.01");
        assert_eq!(BasisPoints::new(9000).to_string(), "90");
        assert_eq!(BasisPoints::new(2500).rest(), BasisPoints::new(7500));
    }
}
