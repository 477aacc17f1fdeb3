//! Human units on the command line: sizes (`64Mi`, `512M`, `1Gi`) and durations (`3s`,
//! `250ms`, `2m`), as clap value parsers with messages that show the accepted forms.

use std::time::Duration;

/// Bytes from `N`, `NK`/`NKi`, `NM`/`NMi`, `NG`/`NGi` (binary multiples either way, as
/// memory limits are).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size; write e.g. 128Mi, 512M, 1Gi or 4096"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "ki" | "kb" | "kib" => 10,
        "m" | "mi" | "mb" | "mib" => 20,
        "g" | "gi" | "gb" | "gib" => 30,
        other => return Err(format!("unknown size unit {other:?}; use Ki, Mi or Gi")),
    };
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// MiB from a size (`128Mi`, `1Gi`); a bare number means MiB.
pub fn parse_mebibytes(text: &str) -> Result<u32, String> {
    let bytes = if text.trim().bytes().all(|b| b.is_ascii_digit()) {
        parse_bytes(text)? << 20
    } else {
        parse_bytes(text)?
    };
    if bytes % (1 << 20) != 0 {
        return Err(format!("{text:?} is not a whole number of MiB"));
    }
    u32::try_from(bytes >> 20).map_err(|_| format!("{text:?} is too large"))
}

/// A duration with a unit: `ms`, `s`, `m`, `h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration; write e.g. 250ms, 3s or 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86_400.0,
        "" => return Err(format!("{text:?} needs a unit: ms, s, m, h or d")),
        other => {
            return Err(format!(
                "unknown duration unit {other:?}; use ms, s, m, h or d"
            ));
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

/// Milliseconds from a duration, for config fields stored in ms.
pub fn parse_millis(text: &str) -> Result<u64, String> {
    Ok(parse_duration(text)?.as_millis() as u64)
}

/// `KEY=VALUE`.
pub fn parse_key_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("{text:?} must be KEY=VALUE"))
}

/// A size for people: `74.1 KiB`, `3.2 MiB`.
pub fn human_size(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / (1 << 10) as f64),
        b => format!("{b} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("64Mi"), Ok(64 << 20));
        assert_eq!(parse_bytes("1G"), Ok(1 << 30));
        assert_eq!(parse_bytes("10"), Ok(10));
        assert!(parse_bytes("1Zi").is_err());
        assert!(parse_bytes("Mi").is_err());
        assert_eq!(parse_mebibytes("128"), Ok(128));
        assert_eq!(parse_mebibytes("128Mi"), Ok(128));
        assert_eq!(parse_mebibytes("1Gi"), Ok(1024));
        assert!(parse_mebibytes("1000K").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_millis("250ms"), Ok(250));
        assert_eq!(parse_millis("3s"), Ok(3000));
        assert_eq!(parse_millis("1.5s"), Ok(1500));
        assert_eq!(parse_millis("2m"), Ok(120_000));
        assert!(parse_duration("3").unwrap_err().contains("needs a unit"));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert!(parse_duration("3w").is_err());
    }

    #[test]
    fn key_values() {
        assert_eq!(parse_key_value("A=b=c"), Ok(("A".into(), "b=c".into())));
        assert_eq!(parse_key_value("A="), Ok(("A".into(), "".into())));
        assert!(parse_key_value("=x").is_err());
        assert!(parse_key_value("A").is_err());
    }
}
