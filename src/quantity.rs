//! Kubernetes resource quantities ("500m", "2Gi", "1e3"), parsed the way the
//! API server does, so the operator can refuse a bad one before a child is
//! built and compare canonical forms ("1000m" is "1") without calling drift.

/// The quantity's value, or `None` when the API server would refuse it.
pub fn parse(s: &str) -> Option<f64> {
    let (number, suffix) = split(s)?;
    let value: f64 = number.parse().ok()?;
    Some(value * multiplier(suffix)?)
}

/// Splits "1.5Gi" into ("1.5", "Gi"): an optionally signed decimal number
/// with at most one point, then the suffix.
fn split(s: &str) -> Option<(&str, &str)> {
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    let digits_end = unsigned
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(unsigned.len());
    let digits = &unsigned[..digits_end];
    if digits.is_empty() || digits == "." || digits.matches('.').count() > 1 {
        return None;
    }
    let number_len = s.len() - unsigned.len() + digits_end;
    Some((&s[..number_len], &s[number_len..]))
}

fn multiplier(suffix: &str) -> Option<f64> {
    let binary = |power: i32| Some(1024f64.powi(power));
    let decimal = |power: i32| Some(10f64.powi(power));
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
        exponent => {
            let digits = exponent.strip_prefix(['e', 'E'])?;
            let unsigned = digits.strip_prefix(['+', '-']).unwrap_or(digits);
            if unsigned.is_empty() || !unsigned.chars().all(|c| c.is_ascii_digit()) {
                return None;
            }
            decimal(digits.parse().ok()?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases = [
            ("1", Some(1.0)),
            ("500m", Some(0.5)),
            ("1.5", Some(1.5)),
            ("2Gi", Some(2.0 * 1024.0 * 1024.0 * 1024.0)),
            ("1k", Some(1000.0)),
            ("1e3", Some(1000.0)),
            ("1E-3", Some(0.001)),
            ("+4", Some(4.0)),
            ("0", Some(0.0)),
            ("lots", None),
            ("", None),
            ("1.2.3", None),
            ("Gi", None),
            ("1GB", None),
            ("1 Gi", None),
            ("inf", None),
            ("NaN", None),
            ("1e", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input), want, "{input:?}");
        }
    }
}
