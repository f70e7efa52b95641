//! The number readers tc's netem parser uses, with C's conversions.
//!
//! Stands for `strtod()`, `parse_percent()`/`get_percent()`,
//! `get_time()`, `get_ticks()`, `get_time64()`, `get_s32()` and the psched
//! tick conversions of iproute2 (`lib/utils.c`, `tc/tc_core.c`,
//! `tc/q_netem.c`) as tc 6.1 has them.

use crate::units::{parse_time, parse_time64};

/// `UINT32_MAX` as tc's percentages scale it (a `double`).
const PERCENT_SCALE: f64 = 4_294_967_295.0;

/// Psched ticks per microsecond on a kernel of 64 ns ticks
/// (`tick_in_usec` from `/proc/net/psched`).
pub const TICKS_PER_US: f64 = 15.625;

/// `PSCHED_SHIFT`: nanoseconds per tick, as a shift.
pub const PSCHED_SHIFT: u32 = 6;

/// C's `strtod()` on `s`: the value of the longest number at its front
/// (leading blanks skipped; decimal with fraction and exponent, `0x`
/// hexadecimal integers, `inf`, `nan`) and the rest of `s`; `(0, s)` for
/// no number.
pub fn strtod(s: &str) -> (f64, &str) {
    let t = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let b = t.as_bytes();
    let sign = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let neg = b.first() == Some(&b'-');
    let body = &t[sign..];
    let lower = body.get(..3).map(str::to_ascii_lowercase);
    if let Some(w @ ("inf" | "nan")) = lower.as_deref() {
        let v = if w == "inf" { f64::INFINITY } else { f64::NAN };
        return (if neg { -v } else { v }, &body[3..]);
    }
    if let Some(hex) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        let n = hex.bytes().take_while(u8::is_ascii_hexdigit).count();
        if n > 0 {
            let v = hex[..n].bytes().fold(0.0, |acc, c| {
                acc * 16.0 + f64::from((c as char).to_digit(16).unwrap_or(0))
            });
            return (if neg { -v } else { v }, &hex[n..]);
        }
    }
    let len = decimal_len(body.as_bytes());
    if len == 0 {
        return (0.0, s);
    }
    let v: f64 = body[..len].parse().unwrap_or(0.0);
    (if neg { -v } else { v }, &body[len..])
}

/// Length of the decimal number (`digits[.digits][e[+-]digits]`, at
/// least one digit) at the front of `b`; 0 for none.
fn decimal_len(b: &[u8]) -> usize {
    let digits = |from: usize| b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    let int = digits(0);
    let mut i = int;
    let mut frac = 0;
    if b.get(i) == Some(&b'.') {
        frac = digits(i + 1);
        i += 1 + frac;
    }
    if int + frac == 0 {
        return 0;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        let s = i + 1 + usize::from(matches!(b.get(i + 1), Some(b'+' | b'-')));
        let e = digits(s);
        if e > 0 {
            i = s + e;
        }
    }
    i
}

/// iproute2's `parse_percent()`: `30%` or `30` mean 0.3; `None` for other
/// text after the number or a value outside [0, 1].
pub fn parse_percent(s: &str) -> Option<f64> {
    let (v, rest) = strtod(s);
    let v = v / 100.0;
    if !(0.0..=1.0).contains(&v) {
        return None;
    }
    (rest.is_empty() || rest == "%").then_some(v)
}

/// `set_percent()`: a fraction scaled to `UINT32_MAX`, rounded to even.
pub fn set_percent(per: f64) -> u32 {
    (per * PERCENT_SCALE).round_ties_even() as u32
}

/// `get_percent()`.
pub fn get_percent(s: &str) -> Option<u32> {
    parse_percent(s).map(set_percent)
}

/// A scaled percentage as tc prints it (`%g`, in percent points).
pub fn percent_value(p: u32) -> f64 {
    100.0 * f64::from(p) / PERCENT_SCALE
}

/// A scaled percentage as a fraction (tc's JSON).
pub fn fraction_value(p: u32) -> f64 {
    f64::from(p) / PERCENT_SCALE
}

/// `get_time()` into an `unsigned`: whole microseconds (a bare number is
/// microseconds), wrapping above `u32::MAX` as tc's conversion does.
pub fn get_time_us(s: &str) -> Option<u32> {
    parse_time(s).ok().map(|d| d.as_micros() as u64 as u32)
}

/// `tc_core_time2big()`: a time whose ticks do not fit in 32 bits.
pub fn time_too_big(us: u32) -> bool {
    (f64::from(us) * TICKS_PER_US) as u64 >> 32 != 0
}

/// `tc_core_time2tick()`.
pub fn time_to_ticks(us: u32) -> u32 {
    (f64::from(us) * TICKS_PER_US) as u32
}

/// `tc_core_tick2time()`.
pub fn ticks_to_time(ticks: u32) -> u32 {
    (f64::from(ticks) / TICKS_PER_US) as u32
}

/// `get_time64()`: nanoseconds (a bare number is nanoseconds), negative
/// values included.
pub fn get_time64(s: &str) -> Option<i64> {
    let (neg, mag) = match s.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, s),
    };
    let ns = i64::try_from(parse_time64(mag).ok()?.as_nanos()).ok()?;
    Some(if neg { -ns } else { ns })
}

/// `get_s32()` in base 0: decimal, `0x` hexadecimal or `0` octal, signed.
pub fn get_s32(s: &str) -> Option<i32> {
    let (neg, mag) = match s.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (digits, radix) = match mag.strip_prefix("0x").or_else(|| mag.strip_prefix("0X")) {
        Some(h) => (h, 16),
        None if mag.len() > 1 && mag.starts_with('0') => (&mag[1..], 8),
        None => (mag, 10),
    };
    if digits.is_empty() || digits.starts_with(['+', '-']) {
        return None;
    }
    let v = i64::from_str_radix(digits, radix).ok()?;
    i32::try_from(if neg { -v } else { v }).ok()
}

/// `get_u32()` in base 0.
pub fn get_u32(s: &str) -> Option<u32> {
    crate::sched::spec::parse_unsigned(s)
}

/// tc's `NEXT_IS_NUMBER()` test on a word: it starts with a digit.
pub fn is_number(w: &str) -> bool {
    w.as_bytes().first().is_some_and(u8::is_ascii_digit)
}

/// tc's `NEXT_IS_SIGNED_NUMBER()` test: a digit or a minus first.
pub fn is_signed_number(w: &str) -> bool {
    is_number(w) || w.starts_with('-')
}
