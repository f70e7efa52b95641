//! tc's units: sizes, rates and times, parsed and printed as `tc` does.
//!
//! Stands for iproute2's unit helpers (`tc/tc_util.c` and `lib/utils.c`):
//! `get_size`/`get_size64`, `get_rate64`, `get_time`, `get_time64` on input and
//! `sprint_size`, `sprint_rate` (`print_rate`) and `sprint_time64` on output.
//!
//! # Input
//!
//! A value is a number immediately followed by an optional unit. Units are
//! matched case-insensitively against the whole rest of the word (tc uses
//! `strcasecmp`), so `Mbps` means *mega-bytes* per second, exactly as in tc.
//!
//! | quantity | bare number  | units |
//! |----------|--------------|-------|
//! | size     | bytes        | `b`; `k`/`kb` = 1024; `m`/`mb` = 1024²; `g`/`gb` = 1024³; `kbit` = 1024/8; `mbit` = 1024²/8; `gbit` = 1024³/8 |
//! | rate     | bits/s       | `bit`; `kbit`/`mbit`/`gbit`/`tbit` (powers of 1000); `kibit`/`mibit`/`gibit`/`tibit` (powers of 1024); `bps` = 8 bit/s and `kbps`/`mbps`/`gbps`/`tbps`, `kibps`/`mibps`/`gibps`/`tibps` likewise |
//! | time     | microseconds | `s`/`sec`/`secs`, `ms`/`msec`/`msecs`, `us`/`usec`/`usecs` |
//! | time64   | nanoseconds  | the time units plus `ns`/`nsec`/`nsecs` |
//!
//! The number is what C's `strtod` reads in practice: an optional sign, decimal
//! digits with an optional fraction and exponent (`1.5k`, `1e3`), or a hexadecimal
//! integer (`0x10`). The result is truncated towards zero, as tc's conversion of
//! its `double` to an integer does. Two deliberate differences from tc: the
//! arithmetic is exact decimal rather than `double` (tc reads `1.005ms` as 1004 µs
//! because of binary rounding; we read 1005 µs), and negative, out-of-range,
//! infinite and NaN inputs are errors (tc silently wraps some of them). tc also
//! rejects sizes above `u32::MAX` in `get_size`; [`parse_size`] returns a `u64`
//! (tc's `get_size64`) and leaves 32-bit limits to the caller.
//!
//! # Output
//!
//! - [`format_size`]: `%gMb` when within 1 KiB of a whole number of MiB, `%gKb`
//!   when within 16 bytes of a whole number of KiB, else `%ub` (lossy: 1025 bytes
//!   prints as `1Kb`).
//! - [`format_rate`]: divides by 1000 while the value is at least 1000 and either
//!   divides exactly or is at least 1,000,000 (then truncating), up to `T`:
//!   `8bit`, `100Mbit`, `1234Kbit`.
//! - [`format_time`]: `%.3gs`, `%.3gms`, `%.3gus` or `%uns` by magnitude: `50ms`,
//!   `1.5s`, `100us`.
//!
//! Parsing what these print gives the value back whenever the printing was exact
//! (see the tests).

use std::fmt;
use std::time::Duration;

/// Which kind of quantity was being parsed (for error messages).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Quantity {
    /// A size in bytes.
    Size,
    /// A rate in bits per second.
    Rate,
    /// A time.
    Time,
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Quantity::Size => "size",
            Quantity::Rate => "rate",
            Quantity::Time => "time",
        })
    }
}

/// A size, rate or time that could not be parsed. Each variant names the input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// The input was empty (or only white space).
    #[error("invalid {what} \"\": empty")]
    Empty {
        /// What was being parsed.
        what: Quantity,
    },
    /// The input does not start with a number.
    #[error("invalid {what} \"{input}\": not a number")]
    NotANumber {
        /// What was being parsed.
        what: Quantity,
        /// The input as given.
        input: String,
    },
    /// The number is followed by something that is not a unit of this quantity.
    #[error("invalid {what} \"{input}\": unknown unit \"{unit}\"")]
    UnknownUnit {
        /// What was being parsed.
        what: Quantity,
        /// The input as given.
        input: String,
        /// The text after the number.
        unit: String,
    },
    /// The value is below zero.
    #[error("invalid {what} \"{input}\": negative")]
    Negative {
        /// What was being parsed.
        what: Quantity,
        /// The input as given.
        input: String,
    },
    /// The value does not fit in 64 bits (of bytes, bits/s or time units).
    #[error("invalid {what} \"{input}\": too large")]
    Overflow {
        /// What was being parsed.
        what: Quantity,
        /// The input as given.
        input: String,
    },
}

/// Size units (`get_size`): name and multiplier in bytes.
const SIZE_UNITS: &[(&str, u64)] = &[
    ("", 1),
    ("b", 1),
    ("k", 1024),
    ("kb", 1024),
    ("m", 1024 * 1024),
    ("mb", 1024 * 1024),
    ("g", 1024 * 1024 * 1024),
    ("gb", 1024 * 1024 * 1024),
    ("kbit", 1024 / 8),
    ("mbit", 1024 * 1024 / 8),
    ("gbit", 1024 * 1024 * 1024 / 8),
];

const KI: u64 = 1024;

/// Rate units (`get_rate64`'s suffix table): name and multiplier in bits/s.
const RATE_UNITS: &[(&str, u64)] = &[
    ("", 1),
    ("bit", 1),
    ("kibit", KI),
    ("kbit", 1_000),
    ("mibit", KI * KI),
    ("mbit", 1_000_000),
    ("gibit", KI * KI * KI),
    ("gbit", 1_000_000_000),
    ("tibit", KI * KI * KI * KI),
    ("tbit", 1_000_000_000_000),
    ("bps", 8),
    ("kibps", 8 * KI),
    ("kbps", 8_000),
    ("mibps", 8 * KI * KI),
    ("mbps", 8_000_000),
    ("gibps", 8 * KI * KI * KI),
    ("gbps", 8_000_000_000),
    ("tibps", 8 * KI * KI * KI * KI),
    ("tbps", 8_000_000_000_000),
];

/// Time units of `get_time`: name and multiplier in microseconds.
const TIME_UNITS_US: &[(&str, u64)] = &[
    ("", 1),
    ("s", 1_000_000),
    ("sec", 1_000_000),
    ("secs", 1_000_000),
    ("ms", 1_000),
    ("msec", 1_000),
    ("msecs", 1_000),
    ("us", 1),
    ("usec", 1),
    ("usecs", 1),
];

/// Time units of `get_time64`: name and multiplier in nanoseconds.
const TIME_UNITS_NS: &[(&str, u64)] = &[
    ("", 1),
    ("s", 1_000_000_000),
    ("sec", 1_000_000_000),
    ("secs", 1_000_000_000),
    ("ms", 1_000_000),
    ("msec", 1_000_000),
    ("msecs", 1_000_000),
    ("us", 1_000),
    ("usec", 1_000),
    ("usecs", 1_000),
    ("ns", 1),
    ("nsec", 1),
    ("nsecs", 1),
];

/// Parses a size in bytes (tc's `get_size64`): `1514`, `32kb`, `1.5m`, `1mbit`.
pub fn parse_size(s: &str) -> Result<u64, UnitError> {
    parse_with(s, Quantity::Size, SIZE_UNITS)
}

/// Parses a rate in bits per second (tc's `get_rate64`, before its division by
/// 8): `100mbit`, `1gbit`, `10kbps` (= 80,000 bit/s), `8` (= 8 bit/s).
pub fn parse_rate(s: &str) -> Result<u64, UnitError> {
    parse_with(s, Quantity::Rate, RATE_UNITS)
}

/// Parses a time as tc's `get_time` does: a bare number is in microseconds,
/// and the result is a whole number of microseconds: `50ms`, `1s`, `100us`, `100`.
pub fn parse_time(s: &str) -> Result<Duration, UnitError> {
    parse_with(s, Quantity::Time, TIME_UNITS_US).map(Duration::from_micros)
}

/// Parses a time as tc's `get_time64` does (netem, taprio, etf): a bare number is
/// in nanoseconds, `ns`/`nsec`/`nsecs` are accepted too, and the result is a whole
/// number of nanoseconds.
pub fn parse_time64(s: &str) -> Result<Duration, UnitError> {
    parse_with(s, Quantity::Time, TIME_UNITS_NS).map(Duration::from_nanos)
}

/// A number as read from the front of a word: `mantissa * 10^exp10`, signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Number {
    negative: bool,
    mantissa: u128,
    exp10: i32,
}

/// Significant digits kept in the mantissa; later fraction digits are dropped
/// (the result is truncated anyway) so that `mantissa * unit` fits in a `u128`.
const MAX_DIGITS: u32 = 25;

/// The common parser: number, then a unit from `units`, then the product.
fn parse_with(input: &str, what: Quantity, units: &[(&str, u64)]) -> Result<u64, UnitError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(UnitError::Empty { what });
    }
    let owned = || s.to_owned();
    let (num, rest) = read_number(s).ok_or_else(|| UnitError::NotANumber {
        what,
        input: owned(),
    })?;
    let mult = units
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(rest))
        .map(|&(_, m)| m)
        .ok_or_else(|| UnitError::UnknownUnit {
            what,
            input: owned(),
            unit: rest.to_owned(),
        })?;
    if num.negative && num.mantissa != 0 {
        return Err(UnitError::Negative {
            what,
            input: owned(),
        });
    }
    scale(num, mult).ok_or_else(|| UnitError::Overflow {
        what,
        input: owned(),
    })
}

/// `floor(num * mult)`, or `None` when it does not fit in a `u64`.
fn scale(num: Number, mult: u64) -> Option<u64> {
    if num.mantissa == 0 {
        return Some(0);
    }
    // mantissa < 10^25 and mult < 2^44, so the product fits in a u128.
    let base = num.mantissa.checked_mul(u128::from(mult))?;
    let value = if num.exp10 >= 0 {
        // 10^39 > u128::MAX: any larger exponent overflows (mantissa is non-zero).
        let p = 10u128.checked_pow(u32::try_from(num.exp10).ok()?)?;
        base.checked_mul(p)?
    } else {
        match 10u128.checked_pow(num.exp10.unsigned_abs()) {
            Some(p) => base / p,
            None => 0, // divisor beyond u128: the quotient is below one
        }
    };
    u64::try_from(value).ok()
}

/// Reads the number at the front of `s` (what `strtod` would consume, without
/// `inf`/`nan` and hexadecimal fractions) and returns it with the rest of `s`.
fn read_number(s: &str) -> Option<(Number, &str)> {
    let bytes = s.as_bytes();
    let (negative, mut i) = match bytes.first() {
        Some(b'-') => (true, 1),
        Some(b'+') => (false, 1),
        _ => (false, 0),
    };
    let body = &s[i..];
    if body.len() > 2 && (body.starts_with("0x") || body.starts_with("0X")) {
        if let Some((mantissa, used)) = read_hex(&body[2..]) {
            let num = Number {
                negative,
                mantissa,
                exp10: 0,
            };
            return Some((num, &body[2 + used..]));
        }
    }
    let mut acc = DecimalAcc::default();
    while let Some(&c) = bytes.get(i).filter(|c| c.is_ascii_digit()) {
        acc.push_int(c - b'0');
        i += 1;
    }
    if bytes.get(i) == Some(&b'.') {
        i += 1;
        while let Some(&c) = bytes.get(i).filter(|c| c.is_ascii_digit()) {
            acc.push_frac(c - b'0');
            i += 1;
        }
    }
    if !acc.seen_digit {
        return None;
    }
    let (exp, used) = read_exponent(&s[i..]);
    let num = Number {
        negative,
        mantissa: acc.mantissa,
        exp10: acc.exp10.saturating_add(exp),
    };
    Some((num, &s[i + used..]))
}

/// Accumulates decimal digits into a bounded mantissa and a power of ten.
#[derive(Default)]
struct DecimalAcc {
    mantissa: u128,
    exp10: i32,
    significant: u32,
    seen_digit: bool,
}

impl DecimalAcc {
    /// A digit before the decimal point.
    fn push_int(&mut self, d: u8) {
        self.seen_digit = true;
        if self.significant < MAX_DIGITS {
            self.push_significant(d);
        } else {
            // Too many integer digits to keep: scale instead (it will overflow).
            self.exp10 = self.exp10.saturating_add(1);
        }
    }

    /// A digit after the decimal point.
    fn push_frac(&mut self, d: u8) {
        self.seen_digit = true;
        if self.significant < MAX_DIGITS {
            self.push_significant(d);
            self.exp10 -= 1;
        }
    }

    fn push_significant(&mut self, d: u8) {
        self.mantissa = self.mantissa * 10 + u128::from(d);
        if self.mantissa != 0 {
            self.significant += 1;
        }
    }
}

/// Reads hexadecimal digits; `None` when there are none or they overflow.
fn read_hex(s: &str) -> Option<(u128, usize)> {
    let used = s.bytes().take_while(u8::is_ascii_hexdigit).count();
    if used == 0 {
        return None;
    }
    u128::from_str_radix(&s[..used], 16).ok().map(|v| (v, used))
}

/// Reads `e[+-]digits` at the front of `s`; returns (exponent, bytes used), or
/// (0, 0) when `s` does not start with a complete exponent (then the `e` belongs
/// to the unit, as with `strtod`).
fn read_exponent(s: &str) -> (i32, usize) {
    let b = s.as_bytes();
    if !matches!(b.first(), Some(b'e' | b'E')) {
        return (0, 0);
    }
    let (neg, start) = match b.get(1) {
        Some(b'-') => (true, 2),
        Some(b'+') => (false, 2),
        _ => (false, 1),
    };
    let n = b[start..].iter().take_while(|c| c.is_ascii_digit()).count();
    if n == 0 {
        return (0, 0);
    }
    let mut e: i32 = 0;
    for &c in &b[start..start + n] {
        e = e.saturating_mul(10).saturating_add(i32::from(c - b'0'));
    }
    // Clamp far beyond any meaningful range; `scale` turns these into 0 or overflow.
    let e = e.min(10_000);
    (if neg { -e } else { e }, start + n)
}

/// Prints a size as tc's `sprint_size` does: `1514b`, `32Kb`, `2Mb`.
pub fn format_size(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    const MIB: f64 = 1024.0 * 1024.0;
    let sz = bytes as f64;
    let mb = (sz / MIB).round_ties_even();
    let kb = (sz / KIB).round_ties_even();
    if sz >= MIB && (MIB * mb - sz).abs() < 1024.0 {
        format!("{}Mb", format_g(mb, 6))
    } else if sz >= KIB && (KIB * kb - sz).abs() < 16.0 {
        format!("{}Kb", format_g(kb, 6))
    } else {
        format!("{bytes}b")
    }
}

/// Prints a rate in bits per second as tc's `sprint_rate` does: `8bit`,
/// `100Mbit`, `1Gbit`, `1234Kbit`.
pub fn format_rate(bits_per_sec: u64) -> String {
    format_rate_with(bits_per_sec, 1000, "")
}

/// Prints a rate as `tc -iec` does (powers of 1024): `1Mibit`, `100Kibit`.
pub fn format_rate_iec(bits_per_sec: u64) -> String {
    format_rate_with(bits_per_sec, 1024, "i")
}

fn format_rate_with(bits_per_sec: u64, kilo: u64, iec: &str) -> String {
    const UNITS: [&str; 5] = ["", "K", "M", "G", "T"];
    let mut rate = bits_per_sec;
    let mut i = 0;
    while i < UNITS.len() - 1 {
        if rate < kilo || (!rate.is_multiple_of(kilo) && rate < 1000 * kilo) {
            break;
        }
        rate /= kilo;
        i += 1;
    }
    // tc prints the IEC "i" only after a prefix: `1000bit`, `1Kibit`.
    let iec = if i == 0 { "" } else { iec };
    format!("{rate}{}{iec}bit", UNITS[i])
}

/// Prints a time as tc's `sprint_time64` does: `1.5s`, `50ms`, `100us`, `500ns`
/// (three significant digits). For whole microseconds below a second this is also
/// what `sprint_time` prints.
pub fn format_time(d: Duration) -> String {
    const NSEC_PER_SEC: u128 = 1_000_000_000;
    const NSEC_PER_MSEC: u128 = 1_000_000;
    const NSEC_PER_USEC: u128 = 1_000;
    let ns = d.as_nanos();
    let v = ns as f64;
    if ns >= NSEC_PER_SEC {
        format!("{}s", format_g(v / NSEC_PER_SEC as f64, 3))
    } else if ns >= NSEC_PER_MSEC {
        format!("{}ms", format_g(v / NSEC_PER_MSEC as f64, 3))
    } else if ns >= NSEC_PER_USEC {
        format!("{}us", format_g(v / NSEC_PER_USEC as f64, 3))
    } else {
        format!("{ns}ns")
    }
}

/// Prints a time of `us` microseconds as tc's `sprint_time` does:
/// `1.02s`, `5ms`, `999us`, `0us` (under a millisecond, whole
/// microseconds).
pub fn format_time_us(us: u64) -> String {
    if us < 1000 {
        format!("{us}us")
    } else {
        format_time(Duration::from_micros(us))
    }
}

/// C's `%.<prec>g`: `prec` significant digits, trailing zeros removed, scientific
/// notation (`1e+06`) when the exponent is below -4 or at least `prec`.
pub fn format_g(v: f64, prec: usize) -> String {
    let prec = prec.max(1);
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let sci = format!("{:.*e}", prec - 1, v);
    let (mant, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if exp < -4 || exp >= prec as i32 {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", strip_zeros(mant), exp.unsigned_abs())
    } else {
        let decimals = usize::try_from(prec as i32 - 1 - exp).unwrap_or(0);
        strip_zeros(&format!("{v:.decimals$}")).to_owned()
    }
}

/// Removes trailing zeros after a decimal point, and the point if it is left last.
fn strip_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn size_units() {
        let cases: &[(&str, u64)] = &[
            ("1514", 1514),
            ("0", 0),
            ("100b", 100),
            ("100B", 100),
            ("32k", 32 * 1024),
            ("32kb", 32 * 1024),
            ("32KB", 32 * 1024),
            ("2m", 2 << 20),
            ("2mb", 2 << 20),
            ("3g", 3 << 30),
            ("3gb", 3 << 30),
            ("1kbit", 128),
            ("1KBIT", 128),
            ("1mbit", 131_072),
            ("1gbit", 134_217_728),
            ("1.5k", 1536),
            ("1.9", 1),
            ("1e3", 1000),
            ("1E3b", 1000),
            ("0x10", 16),
            ("+7", 7),
            ("-0", 0),
            (" 64 ", 64),
        ];
        for &(s, want) in cases {
            assert_eq!(parse_size(s), Ok(want), "{s}");
        }
    }

    #[test]
    fn rate_units() {
        let cases: &[(&str, u64)] = &[
            ("8", 8),
            ("8bit", 8),
            ("1kbit", 1_000),
            ("1Kibit", 1_024),
            ("1mbit", 1_000_000),
            ("1mibit", 1 << 20),
            ("1gbit", 1_000_000_000),
            ("1gibit", 1 << 30),
            ("1tbit", 1_000_000_000_000),
            ("1tibit", 1 << 40),
            ("1bps", 8),
            ("1Bps", 8),
            ("1kbps", 8_000),
            ("1kibps", 8 * 1024),
            ("1mbps", 8_000_000),
            ("1Mbps", 8_000_000),
            ("1mibps", 8 << 20),
            ("1gbps", 8_000_000_000),
            ("1gibps", 8 << 30),
            ("1tbps", 8_000_000_000_000),
            ("1tibps", 8 << 40),
            ("100Mbit", 100_000_000),
            ("1.5mbit", 1_500_000),
            ("1.5bit", 1),
            ("2.5e2kbit", 250_000),
        ];
        for &(s, want) in cases {
            assert_eq!(parse_rate(s), Ok(want), "{s}");
        }
    }

    #[test]
    fn time_units() {
        let us = Duration::from_micros;
        let cases: &[(&str, Duration)] = &[
            ("100", us(100)),
            ("1s", us(1_000_000)),
            ("2sec", us(2_000_000)),
            ("3secs", us(3_000_000)),
            ("50ms", us(50_000)),
            ("5msec", us(5_000)),
            ("5MSECS", us(5_000)),
            ("100us", us(100)),
            ("7usec", us(7)),
            ("7usecs", us(7)),
            ("1.5ms", us(1_500)),
            ("1.005ms", us(1_005)),
            ("0.5", us(0)),
            ("1.9us", us(1)),
        ];
        for &(s, want) in cases {
            assert_eq!(parse_time(s), Ok(want), "{s}");
        }
    }

    #[test]
    fn time64_units() {
        let ns = Duration::from_nanos;
        let cases: &[(&str, Duration)] = &[
            ("100", ns(100)),
            ("100ns", ns(100)),
            ("1nsec", ns(1)),
            ("2nsecs", ns(2)),
            ("1.5us", ns(1_500)),
            ("1usec", ns(1_000)),
            ("1usecs", ns(1_000)),
            ("2ms", ns(2_000_000)),
            ("1msec", ns(1_000_000)),
            ("1msecs", ns(1_000_000)),
            ("1s", ns(1_000_000_000)),
            ("1sec", ns(1_000_000_000)),
            ("1secs", ns(1_000_000_000)),
        ];
        for &(s, want) in cases {
            assert_eq!(parse_time64(s), Ok(want), "{s}");
        }
    }

    #[test]
    fn errors_name_the_input() {
        let e = parse_size("32kq").unwrap_err();
        assert_eq!(e.to_string(), "invalid size \"32kq\": unknown unit \"kq\"");
        assert_eq!(
            parse_size("").unwrap_err(),
            UnitError::Empty {
                what: Quantity::Size
            }
        );
        assert_eq!(
            parse_size("  ").unwrap_err().to_string(),
            "invalid size \"\": empty"
        );
        assert_eq!(
            parse_size("kb").unwrap_err().to_string(),
            "invalid size \"kb\": not a number"
        );
        assert_eq!(
            parse_size(".").unwrap_err().to_string(),
            "invalid size \".\": not a number"
        );
        assert_eq!(
            parse_size("-1").unwrap_err().to_string(),
            "invalid size \"-1\": negative"
        );
        assert_eq!(
            parse_rate("-5mbit").unwrap_err().to_string(),
            "invalid rate \"-5mbit\": negative"
        );
        assert_eq!(
            parse_size("18446744073709551616").unwrap_err().to_string(),
            "invalid size \"18446744073709551616\": too large"
        );
        assert_eq!(
            parse_rate("1e30bit").unwrap_err().to_string(),
            "invalid rate \"1e30bit\": too large"
        );
        assert_eq!(
            parse_time("1ns").unwrap_err().to_string(),
            "invalid time \"1ns\": unknown unit \"ns\""
        );
        assert_eq!(
            parse_rate("inf").unwrap_err().to_string(),
            "invalid rate \"inf\": not a number"
        );
        assert_eq!(
            parse_size("1kbits").unwrap_err(),
            UnitError::UnknownUnit {
                what: Quantity::Size,
                input: "1kbits".into(),
                unit: "kbits".into()
            }
        );
    }

    #[test]
    fn edge_numbers() {
        assert_eq!(parse_size("18446744073709551615"), Ok(u64::MAX));
        assert!(matches!(
            parse_size("1t"),
            Err(UnitError::UnknownUnit { .. })
        ));
        assert_eq!(parse_size("1e-400"), Ok(0));
        assert!(matches!(
            parse_size("1e400"),
            Err(UnitError::Overflow { .. })
        ));
        assert!(matches!(
            parse_size("1234567890123456789012345678901234567890"),
            Err(UnitError::Overflow { .. })
        ));
        assert_eq!(parse_size("0.000000000000000000000000000001"), Ok(0));
        // 'e' without digits belongs to the unit, as with strtod.
        assert!(matches!(
            parse_size("1e"),
            Err(UnitError::UnknownUnit { .. })
        ));
        assert_eq!(
            parse_size("0x"),
            Err(UnitError::UnknownUnit {
                what: Quantity::Size,
                input: "0x".into(),
                unit: "x".into()
            })
        );
        assert_eq!(parse_size("1."), Ok(1));
        assert_eq!(parse_size(".5k"), Ok(512));
    }

    #[test]
    fn size_printing_matches_tc() {
        // Observed from `tc qdisc show` (iproute2 6.1) for bfifo limits.
        let cases: &[(u64, &str)] = &[
            (1514, "1514b"),
            (32768, "32Kb"),
            (1_500_000, "1500000b"),
            (1_514_000, "1514000b"),
            (131_072, "128Kb"),
            (1 << 20, "1Mb"),
            (1_048_570, "1024Kb"),
            (1_047_552, "1023Kb"),
            (1_047_553, "1023Kb"),
            (1025, "1Kb"),
            (1040, "1040b"),
            (3_221_225_472, "3072Mb"),
            (0, "0b"),
            (1 << 50, "1.07374e+09Mb"),
            // `%g` keeps six significant digits, as in tc.
            (1_024_001_024, "1e+06Kb"),
            (1_234_567_168, "1.20563e+06Kb"),
            (1_073_741_840, "1024Mb"),
            (4_294_967_295, "4096Mb"),
        ];
        for &(v, want) in cases {
            assert_eq!(format_size(v), want, "{v}");
        }
    }

    #[test]
    fn rate_printing_matches_tc() {
        let cases: &[(u64, &str)] = &[
            (8, "8bit"),
            (999, "999bit"),
            (1000, "1Kbit"),
            (1500, "1500bit"),
            (1_000_000, "1Mbit"),
            (100_000_000, "100Mbit"),
            (1_000_000_000, "1Gbit"),
            (1_234_567, "1234Kbit"),
            (1_500_000, "1500Kbit"),
            (1_000_000_000_000, "1Tbit"),
            (5_000_000_000_000_000, "5000Tbit"),
            (0, "0bit"),
        ];
        for &(v, want) in cases {
            assert_eq!(format_rate(v), want, "{v}");
        }
        assert_eq!(format_rate_iec(1 << 20), "1Mibit");
        assert_eq!(format_rate_iec(100 * 1024), "100Kibit");
        // Observed from `tc -iec qdisc show` (tbf rates).
        assert_eq!(format_rate_iec(1000), "1000bit");
        assert_eq!(format_rate_iec(1_000_000), "1000000bit");
        assert_eq!(format_rate_iec(100_000_000), "97656Kibit");
        assert_eq!(format_rate_iec(1_000_000_000), "976562Kibit");
        assert_eq!(format_rate_iec(10_000_000_000_000), "9313Gibit");
    }

    #[test]
    fn time_printing_matches_tc() {
        let cases: &[(Duration, &str)] = &[
            (Duration::from_millis(50), "50ms"),
            (Duration::from_secs(1), "1s"),
            (Duration::from_micros(100), "100us"),
            (Duration::from_micros(1500), "1.5ms"),
            (Duration::from_micros(1_234_567), "1.23s"),
            (Duration::from_nanos(1500), "1.5us"),
            (Duration::from_nanos(999), "999ns"),
            (Duration::ZERO, "0ns"),
            (Duration::from_secs(4000), "4e+03s"),
            (Duration::from_secs(2650), "2.65e+03s"),
            (Duration::from_micros(48_100), "48.1ms"),
            (Duration::from_micros(999_999), "1e+03ms"),
        ];
        for &(d, want) in cases {
            assert_eq!(format_time(d), want, "{d:?}");
        }
    }

    #[test]
    fn g_format() {
        assert_eq!(format_g(1.0, 6), "1");
        assert_eq!(format_g(123456.0, 6), "123456");
        assert_eq!(format_g(1234567.0, 6), "1.23457e+06");
        assert_eq!(format_g(0.0001, 3), "0.0001");
        assert_eq!(format_g(0.00001, 3), "1e-05");
        assert_eq!(format_g(1.125, 3), "1.12");
        assert_eq!(format_g(99.96, 3), "100");
    }

    proptest! {
        #[test]
        fn size_roundtrip_bytes(x in 0u64..1024) {
            prop_assert_eq!(parse_size(&format_size(x)), Ok(x));
        }

        #[test]
        fn size_roundtrip_kib(k in 0u64..1_000_000) {
            let x = k * 1024;
            prop_assert_eq!(parse_size(&format_size(x)), Ok(x));
        }

        #[test]
        fn size_print_is_close(x in 0u64..(1u64 << 40)) {
            // Within 1 KiB while `%g` prints every digit (below a million KiB),
            // then within its six significant digits.
            let back = parse_size(&format_size(x)).unwrap();
            let tolerance = if x < 1_000_000 * 1024 { 1024 } else { x / 100_000 };
            prop_assert!(back.abs_diff(x) < tolerance, "{} -> {}", x, back);
        }

        #[test]
        fn rate_roundtrip(m in 0u64..1_000_000, k in 0u32..5) {
            let x = m * 1000u64.pow(k);
            prop_assert_eq!(parse_rate(&format_rate(x)), Ok(x));
        }

        #[test]
        fn rate_print_never_overstates(x in any::<u64>()) {
            let back = parse_rate(&format_rate(x)).unwrap();
            prop_assert!(back <= x);
            prop_assert!(back >= x - x / 1000, "{} -> {}", x, back);
        }

        #[test]
        fn time_roundtrip_3_digits(m in 1u64..1000, scale in 0u32..7) {
            // Three significant digits print exactly.
            let d = Duration::from_nanos(m * 10u64.pow(scale));
            prop_assert_eq!(parse_time64(&format_time(d)), Ok(d));
            if d.subsec_nanos().is_multiple_of(1000) {
                prop_assert_eq!(parse_time(&format_time(d)), Ok(d));
            }
        }

        #[test]
        fn parsers_never_panic(s in "\\PC{0,12}") {
            let _ = parse_size(&s);
            let _ = parse_rate(&s);
            let _ = parse_time(&s);
            let _ = parse_time64(&s);
        }
    }
}
