//! DynamoDB's number type: exact decimals with up to 38 significant digits and magnitudes in
//! `1E-130 ..= 9.99…E+125` (positive or negative), normalised on the way in.
//!
//! DynamoDB never stores `1.50` or `0010`: it keeps the value, not the spelling, and answers with
//! the plain decimal form (`1.5`, `10`, `-0` becomes `0`). Arithmetic (`ADD`, `SET a = a + :n`) is
//! exact; a result that no longer fits is refused rather than rounded. Floating point is never
//! involved, so `0.1 + 0.2` is `0.3` here as on AWS.

use std::cmp::Ordering;
use std::fmt;

/// Most significant digits a number may carry.
pub const MAX_DIGITS: usize = 38;
/// Largest decimal exponent of the most significant digit (numbers stay below 10^126).
const MAX_ADJUSTED_EXPONENT: i64 = 125;
/// Smallest decimal exponent of the most significant digit (numbers are at least 10^-130).
const MIN_ADJUSTED_EXPONENT: i64 = -130;
/// Exponents in the input are clamped here before range checks, so huge ones cannot overflow.
const EXPONENT_CLAMP: i64 = 1_000_000;

/// Why a string is not a DynamoDB number, with AWS's wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    /// Not a decimal number at all (`abc`, `1e`, ``).
    #[error("The parameter cannot be converted to a numeric value: {0}")]
    NotANumber(String),
    /// Magnitude of 10^126 or more.
    #[error(
        "Number overflow. Attempting to store a number with magnitude larger than supported range"
    )]
    Overflow,
    /// Non-zero magnitude below 10^-130.
    #[error(
        "Number underflow. Attempting to store a number with magnitude smaller than supported range"
    )]
    Underflow,
    /// More than 38 significant digits.
    #[error("Attempting to store more than 38 significant digits in a Number")]
    TooManyDigits,
}

/// An exact decimal: `coefficient × 10^exponent`, normalised so that equal values are equal
/// structs (no trailing zeros in the coefficient; zero is `+0 × 10^0`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Number {
    negative: bool,
    /// At most [`MAX_DIGITS`] decimal digits, so it always fits in a `u128` (10^38 < 2^127).
    coefficient: u128,
    exponent: i32,
}

impl Number {
    /// Zero.
    pub fn zero() -> Self {
        Self {
            negative: false,
            coefficient: 0,
            exponent: 0,
        }
    }

    /// Parses DynamoDB's number syntax: an optional sign, digits with an optional decimal point,
    /// and an optional exponent (`-1.5e3`, `.5`, `5.`, `+2E-7`).
    pub fn parse(text: &str) -> Result<Self, NumberError> {
        let not_a_number = || NumberError::NotANumber(text.to_owned());
        let bytes = text.as_bytes();
        let mut pos = 0;
        let negative = match bytes.first() {
            Some(b'-') => {
                pos += 1;
                true
            }
            Some(b'+') => {
                pos += 1;
                false
            }
            _ => false,
        };
        let mut digits: Vec<u8> = Vec::new();
        let mut fraction_digits: i64 = 0;
        let mut seen_point = false;
        let mut seen_digit = false;
        while let Some(&b) = bytes.get(pos) {
            match b {
                b'0'..=b'9' => {
                    seen_digit = true;
                    // Leading zeros carry no value; skipping them keeps `digits` short.
                    if !(digits.is_empty() && b == b'0') {
                        digits.push(b - b'0');
                    }
                    if seen_point {
                        fraction_digits += 1;
                    }
                }
                b'.' if !seen_point => seen_point = true,
                _ => break,
            }
            pos += 1;
        }
        if !seen_digit {
            return Err(not_a_number());
        }
        let mut exponent: i64 = 0;
        if let Some(b'e' | b'E') = bytes.get(pos) {
            pos += 1;
            let exp_negative = match bytes.get(pos) {
                Some(b'-') => {
                    pos += 1;
                    true
                }
                Some(b'+') => {
                    pos += 1;
                    false
                }
                _ => false,
            };
            let start = pos;
            while let Some(b) = bytes.get(pos).filter(|b| b.is_ascii_digit()) {
                exponent = (exponent * 10 + i64::from(b - b'0')).min(EXPONENT_CLAMP);
                pos += 1;
            }
            if pos == start {
                return Err(not_a_number());
            }
            if exp_negative {
                exponent = -exponent;
            }
        }
        if pos != bytes.len() {
            return Err(not_a_number());
        }
        Self::from_digits(negative, digits, exponent - fraction_digits)
    }

    /// Builds a number from most-significant-first digits and an exponent, normalising and
    /// enforcing DynamoDB's limits.
    fn from_digits(
        negative: bool,
        mut digits: Vec<u8>,
        mut exponent: i64,
    ) -> Result<Self, NumberError> {
        let leading = digits.iter().take_while(|&&d| d == 0).count();
        digits.drain(..leading);
        while digits.last() == Some(&0) {
            digits.pop();
            exponent += 1;
        }
        if digits.is_empty() {
            return Ok(Self::zero());
        }
        let adjusted = exponent + digits.len() as i64 - 1;
        if adjusted > MAX_ADJUSTED_EXPONENT {
            return Err(NumberError::Overflow);
        }
        if adjusted < MIN_ADJUSTED_EXPONENT {
            return Err(NumberError::Underflow);
        }
        if digits.len() > MAX_DIGITS {
            return Err(NumberError::TooManyDigits);
        }
        let coefficient = digits
            .iter()
            .fold(0u128, |acc, &d| acc * 10 + u128::from(d));
        Ok(Self {
            negative,
            coefficient,
            // In range: |adjusted| ≤ 130 and at most 38 digits.
            exponent: exponent as i32,
        })
    }

    /// True for zero.
    pub fn is_zero(&self) -> bool {
        self.coefficient == 0
    }

    /// Significant digits, most significant first (empty for zero).
    fn digits(&self) -> Vec<u8> {
        if self.coefficient == 0 {
            return Vec::new();
        }
        self.coefficient
            .to_string()
            .bytes()
            .map(|b| b - b'0')
            .collect()
    }

    fn digit_count(&self) -> i64 {
        if self.coefficient == 0 {
            0
        } else {
            i64::from(self.coefficient.ilog10()) + 1
        }
    }

    /// The decimal exponent of the most significant digit.
    fn adjusted_exponent(&self) -> i64 {
        i64::from(self.exponent) + self.digit_count() - 1
    }

    /// The coefficient padded to exactly 38 digits, for comparing magnitudes that share an
    /// adjusted exponent.
    fn scaled_coefficient(&self) -> u128 {
        let pad = MAX_DIGITS as u32 - self.digit_count() as u32;
        self.coefficient * 10u128.pow(pad)
    }

    fn cmp_magnitude(&self, other: &Self) -> Ordering {
        match (self.is_zero(), other.is_zero()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
            (false, false) => self
                .adjusted_exponent()
                .cmp(&other.adjusted_exponent())
                .then_with(|| self.scaled_coefficient().cmp(&other.scaled_coefficient())),
        }
    }

    /// The negated value.
    pub fn negate(&self) -> Self {
        let mut out = self.clone();
        out.negative = !self.negative && !self.is_zero();
        out
    }

    /// Exact sum; fails when the result does not fit DynamoDB's limits.
    pub fn checked_add(&self, other: &Self) -> Result<Self, NumberError> {
        if self.is_zero() {
            return Ok(other.clone());
        }
        if other.is_zero() {
            return Ok(self.clone());
        }
        let exponent = i64::from(self.exponent.min(other.exponent));
        let a = self.aligned_digits(exponent);
        let b = other.aligned_digits(exponent);
        let (negative, magnitude) = if self.negative == other.negative {
            (self.negative, add_magnitudes(&a, &b))
        } else {
            match self.cmp_magnitude(other) {
                Ordering::Equal => return Ok(Self::zero()),
                Ordering::Greater => (self.negative, sub_magnitudes(&a, &b)),
                Ordering::Less => (other.negative, sub_magnitudes(&b, &a)),
            }
        };
        let most_significant_first: Vec<u8> = magnitude.into_iter().rev().collect();
        Self::from_digits(negative, most_significant_first, exponent)
    }

    /// Exact difference; fails when the result does not fit DynamoDB's limits.
    pub fn checked_sub(&self, other: &Self) -> Result<Self, NumberError> {
        self.checked_add(&other.negate())
    }

    /// Digits least significant first, scaled so that index 0 is the `10^exponent` place.
    /// Exponents of valid numbers differ by at most a few hundred, so this stays small.
    fn aligned_digits(&self, exponent: i64) -> Vec<u8> {
        let shift = (i64::from(self.exponent) - exponent).max(0) as usize;
        let mut out = vec![0u8; shift];
        out.extend(self.digits().into_iter().rev());
        out
    }

    /// Bytes this number occupies in DynamoDB's item-size accounting: about one byte per two
    /// significant digits plus one.
    pub fn size(&self) -> usize {
        let digits = self.digit_count() as usize;
        1 + digits.div_ceil(2) + usize::from(self.negative)
    }
}

/// Sum of two little-endian digit vectors.
fn add_magnitudes(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(a.len().max(b.len()) + 1);
    let mut carry = 0;
    for i in 0..a.len().max(b.len()) {
        let sum = a.get(i).copied().unwrap_or(0) + b.get(i).copied().unwrap_or(0) + carry;
        out.push(sum % 10);
        carry = sum / 10;
    }
    if carry > 0 {
        out.push(carry);
    }
    out
}

/// `a - b` for little-endian digit vectors with `a ≥ b`.
fn sub_magnitudes(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(a.len());
    let mut borrow = 0i8;
    for (i, &digit) in a.iter().enumerate() {
        let mut diff = digit as i8 - b.get(i).copied().unwrap_or(0) as i8 - borrow;
        borrow = 0;
        if diff < 0 {
            diff += 10;
            borrow = 1;
        }
        out.push(diff as u8);
    }
    out
}

impl Ord for Number {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self.negative, other.negative) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (false, false) => self.cmp_magnitude(other),
            (true, true) => other.cmp_magnitude(self),
        }
    }
}

impl PartialOrd for Number {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Number {
    /// Plain decimal notation, as DynamoDB answers: `100000`, `0.000015`, `-1.5`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_zero() {
            return f.write_str("0");
        }
        if self.negative {
            f.write_str("-")?;
        }
        let digits = self.coefficient.to_string();
        if self.exponent >= 0 {
            f.write_str(&digits)?;
            for _ in 0..self.exponent {
                f.write_str("0")?;
            }
            return Ok(());
        }
        let fraction = (-self.exponent) as usize;
        if fraction >= digits.len() {
            f.write_str("0.")?;
            for _ in 0..fraction - digits.len() {
                f.write_str("0")?;
            }
            f.write_str(&digits)
        } else {
            let (int, frac) = digits.split_at(digits.len() - fraction);
            write!(f, "{int}.{frac}")
        }
    }
}

impl From<u64> for Number {
    fn from(value: u64) -> Self {
        let mut out = Self {
            negative: false,
            coefficient: u128::from(value),
            exponent: 0,
        };
        while out.coefficient != 0 && out.coefficient.is_multiple_of(10) {
            out.coefficient /= 10;
            out.exponent += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn n(text: &str) -> Number {
        Number::parse(text).unwrap()
    }

    #[test]
    fn spellings_normalise_to_the_plain_value() {
        for (input, expected) in [
            ("1.50", "1.5"),
            ("0010", "10"),
            ("-0", "0"),
            ("-0.000", "0"),
            ("+7", "7"),
            (".5", "0.5"),
            ("5.", "5"),
            ("1e5", "100000"),
            ("1.5E-5", "0.000015"),
            ("-12.340e1", "-123.4"),
            (
                "123456789012345678901234567890123456780000",
                "123456789012345678901234567890123456780000",
            ),
        ] {
            assert_eq!(n(input).to_string(), expected, "input {input}");
        }
    }

    #[test]
    fn malformed_numbers_are_rejected() {
        for input in [
            "", "-", "abc", "1e", "1e+", "1.2.3", " 1", "1 ", "0x10", "1_000", "e5", ".",
        ] {
            assert!(
                matches!(Number::parse(input), Err(NumberError::NotANumber(_))),
                "input {input:?}"
            );
        }
    }

    #[test]
    fn limits_follow_dynamodb() {
        assert!(Number::parse("9.9999999999999999999999999999999999999E+125").is_ok());
        assert_eq!(Number::parse("1E+126"), Err(NumberError::Overflow));
        assert!(Number::parse("1E-130").is_ok());
        assert_eq!(Number::parse("1E-131"), Err(NumberError::Underflow));
        assert!(Number::parse("12345678901234567890123456789012345678").is_ok());
        assert_eq!(
            Number::parse("123456789012345678901234567890123456789"),
            Err(NumberError::TooManyDigits)
        );
        assert_eq!(
            Number::parse("1e99999999999999999999"),
            Err(NumberError::Overflow)
        );
        assert_eq!(n("0e99999999999999"), Number::zero());
    }

    #[test]
    fn comparison_is_numeric() {
        assert!(n("10") > n("9"));
        assert!(n("-10") < n("-9"));
        assert!(n("0.1") < n("0.11"));
        assert!(n("-0.1") > n("-0.11"));
        assert!(n("0") > n("-1E-130"));
        assert_eq!(n("1.0").cmp(&n("1")), Ordering::Equal);
        assert!(n("1e2") > n("99.99"));
    }

    #[test]
    fn arithmetic_is_exact_decimal() {
        assert_eq!(n("0.1").checked_add(&n("0.2")).unwrap().to_string(), "0.3");
        assert_eq!(n("1").checked_sub(&n("1")).unwrap().to_string(), "0");
        assert_eq!(n("5").checked_sub(&n("7.5")).unwrap().to_string(), "-2.5");
        assert_eq!(
            n("-5").checked_add(&n("-7.5")).unwrap().to_string(),
            "-12.5"
        );
        assert_eq!(
            n("99999").checked_add(&n("1")).unwrap().to_string(),
            "100000"
        );
        assert_eq!(
            n("1e5").checked_sub(&n("99999.9")).unwrap().to_string(),
            "0.1"
        );
    }

    #[test]
    fn arithmetic_refuses_results_that_do_not_fit() {
        let big = n("99999999999999999999999999999999999999");
        assert_eq!(
            big.checked_add(&n("1")).unwrap().to_string(),
            format!("1{}", "0".repeat(38))
        );
        assert_eq!(big.checked_add(&n("0.1")), Err(NumberError::TooManyDigits));
        assert_eq!(
            n("9.9999999999999999999999999999999999999E+125").checked_add(&n("1E+125")),
            Err(NumberError::Overflow)
        );
    }

    fn decimal_string() -> impl Strategy<Value = String> {
        (
            any::<bool>(),
            "[0-9]{1,20}",
            proptest::option::of("[0-9]{1,15}"),
            -40i32..40,
        )
            .prop_map(|(neg, int, frac, exp)| {
                let sign = if neg { "-" } else { "" };
                match frac {
                    Some(frac) => format!("{sign}{int}.{frac}e{exp}"),
                    None => format!("{sign}{int}e{exp}"),
                }
            })
    }

    proptest! {
        #[test]
        fn parse_never_panics(text in "\\PC{0,60}") {
            let _ = Number::parse(&text);
        }

        #[test]
        fn display_round_trips(text in decimal_string()) {
            let value = n(&text);
            prop_assert_eq!(n(&value.to_string()), value);
        }

        #[test]
        fn addition_matches_i128(a in -1_000_000_000_000i64..1_000_000_000_000, b in -1_000_000_000_000i64..1_000_000_000_000) {
            let sum = n(&a.to_string()).checked_add(&n(&b.to_string())).unwrap();
            prop_assert_eq!(sum.to_string(), (i128::from(a) + i128::from(b)).to_string());
            let diff = n(&a.to_string()).checked_sub(&n(&b.to_string())).unwrap();
            prop_assert_eq!(diff.to_string(), (i128::from(a) - i128::from(b)).to_string());
        }

        #[test]
        fn ordering_matches_i64(a in any::<i64>(), b in any::<i64>()) {
            prop_assert_eq!(n(&a.to_string()).cmp(&n(&b.to_string())), a.cmp(&b));
        }

        #[test]
        fn scaling_by_powers_of_ten_preserves_order(a in any::<i32>(), b in any::<i32>(), exp in -60i32..60) {
            let x = n(&format!("{a}e{exp}"));
            let y = n(&format!("{b}e{exp}"));
            prop_assert_eq!(x.cmp(&y), a.cmp(&b));
        }
    }
}
