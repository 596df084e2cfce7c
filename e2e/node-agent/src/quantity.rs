//! Kubernetes resource quantities (`500m`, `16Gi`, `1e3`), as far as the downward API needs
//! them: exact values in nano-units, and the kubelet's rounding for `resourceFieldRef`.

/// A quantity as an exact count of nano-units (10^-9), so that `1m` and `1Ki` are both exact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quantity(pub i128);

const NANO: i128 = 1_000_000_000;

impl Quantity {
    pub fn parse(s: &str) -> Result<Quantity, String> {
        let s = s.trim();
        let bad = || format!("quantity {s:?} is not valid");
        let (sign, rest) = match s.as_bytes().first() {
            Some(b'-') => (-1, &s[1..]),
            Some(b'+') => (1, &s[1..]),
            _ => (1, s),
        };
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, suffix) = rest.split_at(num_end);
        if num.is_empty() || num.matches('.').count() > 1 || num == "." {
            return Err(bad());
        }
        let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
        // value = digits / 10^frac_len, kept as a rational (numerator, power of ten).
        let digits = format!("{int_part}{frac_part}");
        let mut numerator: i128 = if digits.is_empty() {
            0
        } else {
            digits.parse().map_err(|_| bad())?
        };
        let mut ten_exp: i32 = -(frac_part.len() as i32);
        let mut binary: i128 = 1;
        match suffix {
            "" => {}
            "n" => ten_exp -= 9,
            "u" => ten_exp -= 6,
            "m" => ten_exp -= 3,
            "k" => ten_exp += 3,
            "M" => ten_exp += 6,
            "G" => ten_exp += 9,
            "T" => ten_exp += 12,
            "P" => ten_exp += 15,
            "E" => ten_exp += 18,
            "Ki" => binary = 1 << 10,
            "Mi" => binary = 1 << 20,
            "Gi" => binary = 1 << 30,
            "Ti" => binary = 1 << 40,
            "Pi" => binary = 1 << 50,
            "Ei" => binary = 1 << 60,
            e if e.starts_with(['e', 'E']) => {
                ten_exp += e[1..].parse::<i32>().map_err(|_| bad())?;
            }
            _ => return Err(bad()),
        }
        numerator *= binary;
        // To nano-units: multiply by 10^(ten_exp + 9), rounding up what is finer than a nano.
        let shift = ten_exp + 9;
        let nanos = if shift >= 0 {
            numerator
                .checked_mul(10i128.checked_pow(shift as u32).ok_or_else(bad)?)
                .ok_or_else(bad)?
        } else {
            let div = 10i128.checked_pow((-shift) as u32).ok_or_else(bad)?;
            (numerator + div - 1) / div
        };
        Ok(Quantity(sign * nanos))
    }

    /// Go's `Quantity.Value()`: whole units, rounded up.
    pub fn value(self) -> i128 {
        ceil_div(self.0, NANO)
    }

    /// Go's `Quantity.MilliValue()`: thousandths, rounded up.
    pub fn milli_value(self) -> i128 {
        ceil_div(self.0, NANO / 1000)
    }
}

fn ceil_div(a: i128, b: i128) -> i128 {
    let q = a / b;
    if a % b != 0 && ((a > 0) == (b > 0)) {
        q + 1
    } else {
        q
    }
}

/// The kubelet's `resourceFieldRef` value: CPU as `ceil(milli / divisor milli)`, anything else
/// as `ceil(value / divisor value)` (pkg/api/v1/resource `convertResourceCPUToString` and
/// friends). The divisor defaults to 1.
pub fn resource_field_value(resource: &str, value: Quantity, divisor: Option<Quantity>) -> String {
    let divisor = divisor.filter(|d| d.0 != 0).unwrap_or(Quantity(NANO));
    let out = if resource.ends_with("cpu") {
        ceil_div(value.milli_value(), divisor.milli_value().max(1))
    } else {
        ceil_div(value.value(), divisor.value().max(1))
    };
    out.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap()
    }

    #[test]
    fn parses_suffixes() {
        assert_eq!(q("1").0, NANO);
        assert_eq!(q("500m").milli_value(), 500);
        assert_eq!(q("0.5").milli_value(), 500);
        assert_eq!(q("16Gi").value(), 16 << 30);
        assert_eq!(q("1Ki").value(), 1024);
        assert_eq!(q("1k").value(), 1000);
        assert_eq!(q("1e3").value(), 1000);
        assert_eq!(q("1.5M").value(), 1_500_000);
        assert_eq!(q("100n").0, 100);
        assert!(Quantity::parse("abc").is_err());
        assert!(Quantity::parse("1Qi").is_err());
    }

    #[test]
    fn resource_field_refs_round_up_like_the_kubelet() {
        assert_eq!(resource_field_value("limits.cpu", q("500m"), None), "1");
        assert_eq!(
            resource_field_value("limits.cpu", q("500m"), Some(q("1m"))),
            "500"
        );
        assert_eq!(resource_field_value("requests.cpu", q("8"), None), "8");
        assert_eq!(
            resource_field_value("limits.memory", q("1Gi"), Some(q("1Mi"))),
            "1024"
        );
        assert_eq!(
            resource_field_value("limits.memory", q("1Gi"), None),
            "1073741824"
        );
        assert_eq!(
            resource_field_value("requests.memory", q("1500"), Some(q("1k"))),
            "2"
        );
    }
}
