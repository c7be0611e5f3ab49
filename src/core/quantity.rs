//! Resource quantities (`500m`, `1.5Gi`, `2e3`): upstream's resource.Quantity grammar, read as a
//! whole number of thousandths, rounded up as upstream's MilliValue is.

/// A quantity in thousandths of its unit (millicores for cpu, millibytes for memory).
pub fn parse_milli(s: &str) -> Result<i128, String> {
    let invalid = || {
        format!("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {s:?}")
    };
    let number_end = s.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-')).unwrap_or(s.len());
    let (number, suffix) = s.split_at(number_end);
    let (negative, digits) = match number.as_bytes().first() {
        Some(b'-') => (true, &number[1..]),
        Some(b'+') => (false, &number[1..]),
        _ => (false, number),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !all_digits(whole) || !all_digits(fraction) {
        return Err(invalid());
    }
    let (base, exponent) = scale(suffix).ok_or_else(invalid)?;
    // value = digits × base^exponent / 10^fraction_len; kept exact in i128 until the final rounding up.
    let mantissa: i128 = format!("{whole}{fraction}").parse().map_err(|_| invalid())?;
    let mut numerator = mantissa.checked_mul(1000).ok_or_else(invalid)?;
    let fraction_len = u32::try_from(fraction.len()).map_err(|_| invalid())?;
    let mut denominator = 10i128.checked_pow(fraction_len).ok_or_else(invalid)?;
    if exponent >= 0 {
        numerator =
            numerator.checked_mul(base.checked_pow(exponent as u32).ok_or_else(invalid)?).ok_or_else(invalid)?;
    } else {
        denominator = denominator.checked_mul(base.pow(exponent.unsigned_abs())).ok_or_else(invalid)?;
    }
    let milli = numerator / denominator + i128::from(numerator % denominator != 0);
    Ok(if negative { -milli } else { milli })
}

/// The base and exponent a suffix stands for.
fn scale(suffix: &str) -> Option<(i128, i32)> {
    let binary = |power: i32| Some((1024, power));
    let decimal = |power: i32| Some((10, power));
    match suffix {
        "" => decimal(0),
        "Ki" => binary(1),
        "Mi" => binary(2),
        "Gi" => binary(3),
        "Ti" => binary(4),
        "Pi" => binary(5),
        "Ei" => binary(6),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        _ => {
            let exponent = suffix.strip_prefix(['e', 'E'])?;
            let exponent: i32 = exponent.parse().ok()?;
            (exponent.abs() <= 30).then_some((10, exponent))
        }
    }
}

/// A quantity as a whole number of its unit (bytes, pods), rounded up.
pub fn parse_whole(s: &str) -> Result<i128, String> {
    let milli = parse_milli(s)?;
    Ok(if milli >= 0 { (milli + 999) / 1000 } else { milli / 1000 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_suffix_kind() {
        assert_eq!(parse_milli("500m"), Ok(500));
        assert_eq!(parse_milli("2"), Ok(2000));
        assert_eq!(parse_milli("0.1"), Ok(100));
        assert_eq!(parse_milli("1.5"), Ok(1500));
        assert_eq!(parse_whole("1Ki"), Ok(1024));
        assert_eq!(parse_whole("1.5Gi"), Ok(1_610_612_736));
        assert_eq!(parse_whole("128974848"), Ok(128_974_848));
        assert_eq!(parse_whole("129e6"), Ok(129_000_000));
        assert_eq!(parse_whole("123M"), Ok(123_000_000));
        assert_eq!(parse_whole("110"), Ok(110));
        assert_eq!(parse_milli("-1"), Ok(-1000));
        assert_eq!(parse_whole("8Ei"), Ok(8 * 1024i128.pow(6)));
    }

    #[test]
    fn rounds_up_below_a_thousandth() {
        assert_eq!(parse_milli("1n"), Ok(1));
        assert_eq!(parse_milli("100u"), Ok(1));
        assert_eq!(parse_milli("0.0001"), Ok(1));
        assert_eq!(parse_milli(&format!("0.{}1", "0".repeat(33))), Ok(1));
        assert_eq!(parse_whole("1m"), Ok(1));
    }

    #[test]
    fn refuses_what_upstream_refuses() {
        for bad in ["", "m", "1x", "1..2", "1.2.3", "Gi", "1Gb", "--1", "1e", "1e99", " 1", "1 "] {
            assert!(parse_milli(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
