//! Money: integer micro-dollars, parsed from and printed as decimal text without a float.

use chrono::NaiveDate;

/// Money in millionths of a US dollar.
pub type MicroUsd = i64;

/// Parses a Cost Explorer amount (`"12.3456789"`, `"-0.01"`, `"1.2E-7"`) to micro-dollars,
/// rounding half away from zero; no float is involved.
pub fn parse_amount(s: &str) -> Result<MicroUsd, String> {
    let bad = || format!("`{s}` is not an amount");
    let t = s.trim();
    let (neg, t) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (mantissa, exp) = match t.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().map_err(|_| bad())?),
        None => (t, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    // All the digits, and where the decimal point sits among them after the exponent.
    let digits: Vec<u8> = int.bytes().chain(frac.bytes()).map(|b| b - b'0').collect();
    let point = int.len() as i64 + i64::from(exp);
    // Keep six digits after the point, and look at the seventh to round.
    let keep = point + 6;
    // Work linear in the input, whatever the exponent: all zeros is zero, and more than 19
    // places after the first non-zero digit overflow an i64.
    let Some(first) = digits.iter().position(|&d| d != 0) else {
        return Ok(0);
    };
    if keep - first as i64 > 19 {
        return Err(bad());
    }
    let mut value: i64 = 0;
    for i in 0..keep.max(0) {
        let d = usize::try_from(i)
            .ok()
            .and_then(|i| digits.get(i))
            .copied()
            .unwrap_or(0);
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(i64::from(d)))
            .ok_or_else(bad)?;
    }
    let next = usize::try_from(keep)
        .ok()
        .and_then(|i| digits.get(i))
        .copied()
        .unwrap_or(0);
    if keep >= 0 && next >= 5 {
        value = value.checked_add(1).ok_or_else(bad)?;
    }
    Ok(if neg { -value } else { value })
}

/// `12.345678` (six decimals, as stored).
pub fn format_usd(m: MicroUsd) -> String {
    let sign = if m < 0 { "-" } else { "" };
    let a = m.unsigned_abs();
    format!("{sign}{}.{:06}", a / 1_000_000, a % 1_000_000)
}

/// Dollars as a metric value (the one place money becomes a float).
pub fn usd_f64(m: MicroUsd) -> f64 {
    m as f64 / 1_000_000.0
}

/// Spend of one tag value in one region on one day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaySpend {
    pub day: NaiveDate,
    /// The tag's value; empty for spend without the tag.
    pub key: String,
    pub region: String,
    pub micro_usd: MicroUsd,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_exact_micro_dollars() {
        for (s, want) in [
            ("0", 0),
            ("12.3456789", 12_345_679),
            ("12.3456784", 12_345_678),
            ("0.0000005", 1),
            ("0.0000004999", 0),
            ("-0.01", -10_000),
            ("1.2E-7", 0),
            ("6E-7", 1),
            ("1.5e3", 1_500_000_000),
            ("+3", 3_000_000),
            (".5", 500_000),
            ("7.", 7_000_000),
            ("123456789.123456", 123_456_789_123_456),
            // Huge exponents cost nothing: zero is zero, a tiny value rounds to zero.
            ("0e2000000000", 0),
            ("0.000e-2000000000", 0),
            ("5e-2000000000", 0),
            ("00000000000000000000000001", 1_000_000),
            ("9223372036854.775807", i64::MAX),
        ] {
            assert_eq!(parse_amount(s), Ok(want), "{s}");
        }
        for bad in [
            "",
            "abc",
            "1.2.3",
            "1e",
            "--1",
            "1,5",
            "99999999999999999999",
            "1e2000000000",
            "9223372036854.775808",
        ] {
            assert!(parse_amount(bad).is_err(), "{bad}");
        }
        assert_eq!(format_usd(12_345_679), "12.345679");
        assert_eq!(format_usd(-10_000), "-0.010000");
        assert_eq!(format_usd(0), "0.000000");
    }
}
