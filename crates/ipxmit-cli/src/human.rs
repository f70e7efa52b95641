//! Numbers for people: SI prefixes (`16.12 M`), bytes (`27.60 GB`), and
//! nouns that agree with their count (`1 datagram`, `2 datagrams`).

/// `x` with an SI prefix and a space before the unit that follows:
/// `999.0 `, `16.12 k`, `16.12 M`, `27.60 G`.
pub fn si(x: f64) -> String {
    let (v, p) = match x.abs() {
        a if a >= 1e12 => (x / 1e12, "T"),
        a if a >= 1e9 => (x / 1e9, "G"),
        a if a >= 1e6 => (x / 1e6, "M"),
        a if a >= 1e3 => (x / 1e3, "k"),
        _ => return format!("{x:.1} "),
    };
    format!("{v:.2} {p}")
}

/// A byte count as `512 B`, `1.47 kB`, `27.60 GB` (powers of 1000).
pub fn bytes(n: u64) -> String {
    if n < 1000 {
        format!("{n} B")
    } else {
        format!("{}B", si(n as f64))
    }
}

/// `n noun` with the noun's plural (`s`) unless `n` is 1.
pub fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_and_plurals() {
        assert_eq!(si(16_122_000.0), "16.12 M");
        assert_eq!(si(12.0), "12.0 ");
        assert_eq!(bytes(27_601_810_000), "27.60 GB");
        assert_eq!(bytes(999), "999 B");
        assert_eq!(count(1, "datagram"), "1 datagram");
        assert_eq!(count(0, "frame"), "0 frames");
    }
}
