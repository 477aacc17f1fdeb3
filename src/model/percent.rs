//! Traffic shares in basis points (1 = 0.01 %, 10,000 = 100 %), and their text form.

/// Weights are basis points: 1 = 0.01 %, 10,000 = 100 %.
pub const FULL: u32 = 10_000;

/// Parses a percentage with at most two decimals (`"90"`, `"12.5"`, `"0.01"`) into basis points.
pub fn parse_percent(text: &str) -> Result<u32, String> {
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
    if bp > FULL {
        return Err(invalid());
    }
    Ok(bp)
}

/// Renders basis points as a percentage (`1250` -> `"12.5"`).
pub fn format_percent(bp: u32) -> String {
    let (whole, fraction) = (bp / 100, bp % 100);
    match fraction {
        0 => whole.to_string(),
        f if f % 10 == 0 => format!("{whole}.{}", f / 10),
        f => format!("{whole}.{f:02}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_parse_to_basis_points() {
        assert_eq!(parse_percent("90"), Ok(9000));
        assert_eq!(parse_percent("12.5"), Ok(1250));
        assert_eq!(parse_percent("0.01"), Ok(1));
        assert_eq!(parse_percent("100"), Ok(10_000));
        assert_eq!(parse_percent("0"), Ok(0));
        for bad in [
            "100.01", "1.234", "-1", "", ".5", "5.", "1e2", "abc", "1000",
        ] {
            assert!(parse_percent(bad).is_err(), "{bad}");
        }
        assert_eq!(format_percent(1250), "12.5");
        assert_eq!(format_percent(1), "0.01");
        assert_eq!(format_percent(9000), "90");
    }
}
