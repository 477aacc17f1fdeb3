//! Percentages on the wire.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::model::BasisPoints;

/// A traffic share written as a JSON number of percent with at most two decimals (`12.5`).
/// Read from the number's text, so `0.01` is exactly 1 basis point; more decimals, negative
/// numbers or more than 100 are refused with the rule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Percent(pub BasisPoints);

impl Serialize for Percent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.0.percent())
    }
}

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let number = serde_json::Number::deserialize(d)?;
        BasisPoints::parse(&number.to_string())
            .map(Percent)
            .map_err(serde::de::Error::custom)
    }
}

impl From<BasisPoints> for Percent {
    fn from(bp: BasisPoints) -> Self {
        Self(bp)
    }
}

/// `12.5`, `100`, `0.01`: the number without a `%`.
impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_exactly_and_refuses_what_is_not_a_share() {
        for bp in [0, 1, 1250, 9999, 10_000] {
            let text = serde_json::to_string(&Percent(BasisPoints::new(bp))).unwrap();
            let back: Percent = serde_json::from_str(&text).unwrap();
            assert_eq!(back.0.get(), bp, "{text}");
        }
        let exact: Percent = serde_json::from_str("0.01").unwrap();
        assert_eq!(exact.0.get(), 1);
        for bad in ["0.001", "-1", "100.5", "\"10\""] {
            assert!(serde_json::from_str::<Percent>(bad).is_err(), "{bad}");
        }
    }
}
