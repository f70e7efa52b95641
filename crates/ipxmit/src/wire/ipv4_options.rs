//! IPv4 header options (RFC 791 section 3.1).
//!
//! Kernel: the `IPOPT_*` numbers of include/uapi/linux/ip.h;
//! `ip_options_compile()` and `ip_options_fragment()`, net/ipv4/ip_options.c.
//!
//! An option is either a single byte (End of list, No-operation) or a type
//! byte, a length byte counting the whole option, and `length - 2` data bytes.
//! The type byte's high bit is the *copied* flag: options with it set are
//! repeated in every fragment, the others appear in the first fragment only.

use core::fmt;

use super::{get_u16, Error, Result};

/// Option type numbers (the kernel's `IPOPT_*`).
pub mod kind {
    /// `IPOPT_END`: end of the option list.
    pub const END: u8 = 0;
    /// `IPOPT_NOOP`: one byte of padding.
    pub const NOOP: u8 = 1;
    /// `IPOPT_RR`: record route.
    pub const RR: u8 = 7;
    /// `IPOPT_TIMESTAMP`: internet timestamp.
    pub const TIMESTAMP: u8 = 68;
    /// `IPOPT_SEC`: security (RFC 1108).
    pub const SEC: u8 = 130;
    /// `IPOPT_LSRR`: loose source and record route.
    pub const LSRR: u8 = 131;
    /// `IPOPT_CIPSO`: commercial IP security option.
    pub const CIPSO: u8 = 134;
    /// `IPOPT_SSRR`: strict source and record route.
    pub const SSRR: u8 = 137;
    /// `IPOPT_RA`: router alert (RFC 2113).
    pub const RA: u8 = 148;
}

/// Whether options of type `kind` are copied into every fragment
/// (the kernel's `IPOPT_COPIED()`: the type byte's high bit).
#[inline]
pub const fn option_copied(kind: u8) -> bool {
    kind & 0x80 != 0
}

/// What is wrong with a malformed option (see [`Error::MalformedOption`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OptionProblem {
    /// The length byte is below 2, or below the minimum for the option type.
    BadLength,
    /// The option (or its length byte) runs past the end of the options area.
    RunsPastEnd,
    /// The pointer of a route or timestamp option is out of range.
    BadPointer,
    /// A full timestamp option whose overflow counter is already 15.
    CounterOverflow,
}

impl fmt::Display for OptionProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OptionProblem::BadLength => "bad length",
            OptionProblem::RunsPastEnd => "runs past the end of the options",
            OptionProblem::BadPointer => "pointer out of range",
            OptionProblem::CounterOverflow => "timestamp overflow counter full",
        })
    }
}

/// One option, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ipv4Option<'a> {
    /// End of option list (0). Nothing after it is an option.
    End,
    /// No-operation (1).
    Nop,
    /// Record route (7).
    RecordRoute {
        /// 1-based offset within the option of the next free slot.
        pointer: u8,
        /// The address slots (the option's bytes from the fourth on).
        route: &'a [u8],
    },
    /// Internet timestamp (68).
    Timestamp {
        /// 1-based offset within the option of the next free slot.
        pointer: u8,
        /// Hosts that could not record for lack of room (high nibble).
        overflow: u8,
        /// Format: 0 timestamps only, 1 address + timestamp, 3 prespecified.
        flags: u8,
        /// The slots (the option's bytes from the fifth on).
        data: &'a [u8],
    },
    /// Loose source and record route (131).
    Lsrr {
        /// 1-based offset within the option of the next address.
        pointer: u8,
        /// The route (the option's bytes from the fourth on).
        route: &'a [u8],
    },
    /// Strict source and record route (137).
    Ssrr {
        /// 1-based offset within the option of the next address.
        pointer: u8,
        /// The route (the option's bytes from the fourth on).
        route: &'a [u8],
    },
    /// Router alert (148); value 0 asks routers to examine the packet.
    RouterAlert {
        /// The 16-bit value.
        value: u16,
    },
    /// Any other type-length-value option.
    Unknown {
        /// The type byte.
        kind: u8,
        /// The data after the type and length bytes.
        data: &'a [u8],
    },
}

impl Ipv4Option<'_> {
    /// The option's type byte.
    pub fn kind(&self) -> u8 {
        match self {
            Ipv4Option::End => kind::END,
            Ipv4Option::Nop => kind::NOOP,
            Ipv4Option::RecordRoute { .. } => kind::RR,
            Ipv4Option::Timestamp { .. } => kind::TIMESTAMP,
            Ipv4Option::Lsrr { .. } => kind::LSRR,
            Ipv4Option::Ssrr { .. } => kind::SSRR,
            Ipv4Option::RouterAlert { .. } => kind::RA,
            Ipv4Option::Unknown { kind, .. } => *kind,
        }
    }

    /// Whether this option is copied into every fragment.
    pub fn copied(&self) -> bool {
        option_copied(self.kind())
    }
}

/// Iterator over the options area of an IPv4 header, validating as it goes.
///
/// Yields `Ok(option)` per option, stops after [`Ipv4Option::End`] or the end
/// of the area, and yields at most one `Err` (then stops). Checks follow the
/// kernel's `ip_options_compile()` for a received packet.
#[derive(Debug, Clone)]
pub struct Ipv4OptionsIter<'a> {
    data: &'a [u8],
    pos: usize,
    done: bool,
}

impl<'a> Ipv4OptionsIter<'a> {
    /// Iterates over `options` (the header bytes after the first 20).
    pub fn new(options: &'a [u8]) -> Self {
        Ipv4OptionsIter {
            data: options,
            pos: 0,
            done: false,
        }
    }

    /// Offset within the options area of the next option to be yielded.
    pub fn position(&self) -> usize {
        self.pos
    }

    fn fail(&mut self, kind: u8, problem: OptionProblem) -> Option<Result<Ipv4Option<'a>>> {
        self.done = true;
        Some(Err(Error::MalformedOption {
            kind,
            offset: self.pos,
            problem,
        }))
    }
}

impl<'a> Iterator for Ipv4OptionsIter<'a> {
    type Item = Result<Ipv4Option<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.pos >= self.data.len() {
            return None;
        }
        let rest = &self.data[self.pos..];
        let kind = rest[0];
        match kind {
            kind::END => {
                self.done = true;
                return Some(Ok(Ipv4Option::End));
            }
            kind::NOOP => {
                self.pos += 1;
                return Some(Ok(Ipv4Option::Nop));
            }
            _ => {}
        }
        if rest.len() < 2 {
            return self.fail(kind, OptionProblem::RunsPastEnd);
        }
        let len = usize::from(rest[1]);
        if len < 2 {
            return self.fail(kind, OptionProblem::BadLength);
        }
        if len > rest.len() {
            return self.fail(kind, OptionProblem::RunsPastEnd);
        }
        match decode(&rest[..len]) {
            Ok(option) => {
                self.pos += len;
                Some(Ok(option))
            }
            Err(problem) => self.fail(kind, problem),
        }
    }
}

/// Decodes one type-length-value option; `opt` is exactly the option's bytes
/// (`opt.len() == opt[1] >= 2`).
fn decode(opt: &[u8]) -> core::result::Result<Ipv4Option<'_>, OptionProblem> {
    let len = opt.len();
    match opt[0] {
        kind::RR | kind::LSRR | kind::SSRR => {
            if len < 3 {
                return Err(OptionProblem::BadLength);
            }
            let pointer = opt[2];
            let p = usize::from(pointer);
            // A pointer inside the option must leave room for a whole address;
            // past the end means the route is full.
            if p < 4 || (opt[0] == kind::RR && p <= len && p + 3 > len) {
                return Err(OptionProblem::BadPointer);
            }
            let route = &opt[3..];
            Ok(match opt[0] {
                kind::RR => Ipv4Option::RecordRoute { pointer, route },
                kind::LSRR => Ipv4Option::Lsrr { pointer, route },
                _ => Ipv4Option::Ssrr { pointer, route },
            })
        }
        kind::TIMESTAMP => decode_timestamp(opt),
        kind::RA => {
            if len < 4 {
                return Err(OptionProblem::BadLength);
            }
            Ok(Ipv4Option::RouterAlert {
                value: get_u16(opt, 2),
            })
        }
        other => Ok(Ipv4Option::Unknown {
            kind: other,
            data: &opt[2..],
        }),
    }
}

fn decode_timestamp(opt: &[u8]) -> core::result::Result<Ipv4Option<'_>, OptionProblem> {
    let len = opt.len();
    if len < 4 {
        return Err(OptionProblem::BadLength);
    }
    let pointer = opt[2];
    let p = usize::from(pointer);
    let overflow = opt[3] >> 4;
    let flags = opt[3] & 0x0f;
    if p < 5 {
        return Err(OptionProblem::BadPointer);
    }
    if p <= len {
        // Room for the next slot: 4 bytes of timestamp, 8 with an address.
        let slot = if flags == 1 || flags == 3 { 8 } else { 4 };
        if p + slot - 1 > len {
            return Err(OptionProblem::BadPointer);
        }
    } else if overflow == 15 {
        return Err(OptionProblem::CounterOverflow);
    }
    Ok(Ipv4Option::Timestamp {
        pointer,
        overflow,
        flags,
        data: &opt[4..],
    })
}

/// Checks a whole options area; the first problem is the error.
pub fn check_options(options: &[u8]) -> Result<()> {
    Ipv4OptionsIter::new(options).try_for_each(|o| o.map(drop))
}

/// Prepares the options of a first fragment's header for the fragments after
/// it: every option whose copied flag is clear is overwritten with NOP bytes,
/// so the header keeps its length. End stops the walk; so does a length byte
/// that is below 2 or runs past the area.
///
/// Kernel: `ip_options_fragment()`, net/ipv4/ip_options.c.
pub fn options_fragment(opts: &mut [u8]) {
    let mut pos = 0;
    while pos < opts.len() {
        match opts[pos] {
            kind::END => return,
            kind::NOOP => {
                pos += 1;
                continue;
            }
            _ => {}
        }
        let left = opts.len() - pos;
        if left < 2 {
            return;
        }
        let len = usize::from(opts[pos + 1]);
        if len < 2 || len > left {
            return;
        }
        if !option_copied(opts[pos]) {
            opts[pos..pos + len].fill(kind::NOOP);
        }
        pos += len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn collect(opts: &[u8]) -> Vec<Result<Ipv4Option<'_>>> {
        Ipv4OptionsIter::new(opts).collect()
    }

    fn malformed(kind: u8, offset: usize, problem: OptionProblem) -> Error {
        Error::MalformedOption {
            kind,
            offset,
            problem,
        }
    }

    #[test]
    fn typed_options() {
        let opts = [
            1, // NOP
            7, 7, 4, 0, 0, 0, 0, // RR, empty slot
            148, 4, 0, 0, // RA
            68, 8, 5, 0x10, 1, 2, 3, 4, // TS, full, overflow 1
            131, 7, 8, 10, 0, 0, 1, // LSRR, pointer past end
            137, 3, 4, // SSRR, empty
            30, 2, // unknown
            0, 0xaa, // END then garbage
        ];
        let got = collect(&opts);
        assert_eq!(
            got,
            vec![
                Ok(Ipv4Option::Nop),
                Ok(Ipv4Option::RecordRoute {
                    pointer: 4,
                    route: &[0, 0, 0, 0]
                }),
                Ok(Ipv4Option::RouterAlert { value: 0 }),
                Ok(Ipv4Option::Timestamp {
                    pointer: 5,
                    overflow: 1,
                    flags: 0,
                    data: &[1, 2, 3, 4]
                }),
                Ok(Ipv4Option::Lsrr {
                    pointer: 8,
                    route: &[10, 0, 0, 1]
                }),
                Ok(Ipv4Option::Ssrr {
                    pointer: 4,
                    route: &[]
                }),
                Ok(Ipv4Option::Unknown {
                    kind: 30,
                    data: &[]
                }),
                Ok(Ipv4Option::End),
            ]
        );
        assert!(check_options(&opts).is_ok());
        let kinds: Vec<u8> = got.iter().map(|o| o.as_ref().unwrap().kind()).collect();
        assert_eq!(kinds, [1, 7, 148, 68, 131, 137, 30, 0]);
    }

    #[test]
    fn copied_flag() {
        assert!(!option_copied(kind::RR));
        assert!(!option_copied(kind::TIMESTAMP));
        assert!(option_copied(kind::LSRR));
        assert!(option_copied(kind::SSRR));
        assert!(option_copied(kind::RA));
        assert!(option_copied(kind::SEC));
        assert!(Ipv4Option::RouterAlert { value: 0 }.copied());
        assert!(!Ipv4Option::Nop.copied());
    }

    #[test]
    fn malformed_options() {
        use OptionProblem::*;
        let cases: &[(&[u8], Error)] = &[
            (&[7], malformed(7, 0, RunsPastEnd)),
            (&[1, 30, 1, 0, 0], malformed(30, 1, BadLength)),
            (&[30, 0], malformed(30, 0, BadLength)),
            (&[30, 6, 0, 0], malformed(30, 0, RunsPastEnd)),
            (&[7, 2, 0, 0], malformed(7, 0, BadLength)),
            (&[7, 7, 3, 0, 0, 0, 0, 0], malformed(7, 0, BadPointer)),
            (&[7, 7, 5, 0, 0, 0, 0, 0], malformed(7, 0, BadPointer)),
            (&[131, 3, 3, 0], malformed(131, 0, BadPointer)),
            (&[68, 3, 5, 0], malformed(68, 0, BadLength)),
            (&[68, 8, 4, 0, 0, 0, 0, 0], malformed(68, 0, BadPointer)),
            (&[68, 8, 6, 0, 0, 0, 0, 0], malformed(68, 0, BadPointer)),
            (&[68, 8, 5, 1, 0, 0, 0, 0], malformed(68, 0, BadPointer)),
            (
                &[68, 8, 9, 0xf0, 0, 0, 0, 0],
                malformed(68, 0, CounterOverflow),
            ),
            (&[148, 3, 0, 0], malformed(148, 0, BadLength)),
        ];
        for (bytes, err) in cases {
            assert_eq!(check_options(bytes), Err(*err), "{bytes:?}");
            let items = collect(bytes);
            assert_eq!(items.last(), Some(&Err(*err)), "{bytes:?}");
        }
        // A full RR (pointer past the end) is fine.
        assert!(check_options(&[7, 7, 8, 1, 2, 3, 4, 0]).is_ok());
        // Full timestamp with room in the overflow counter is fine.
        assert!(check_options(&[68, 8, 9, 0x20, 0, 0, 0, 0]).is_ok());
    }

    #[test]
    fn fragment_options() {
        // RR (not copied), NOP, LSRR (copied), TS (not copied), RA (copied), END, pad.
        let mut opts = [
            7, 7, 4, 0, 0, 0, 0, //
            1, //
            131, 7, 4, 10, 0, 0, 1, //
            68, 8, 5, 0, 0, 0, 0, 0, //
            148, 4, 0, 0, //
            0, 7, 3, //
        ];
        options_fragment(&mut opts);
        assert_eq!(
            opts,
            [
                1, 1, 1, 1, 1, 1, 1, //
                1, //
                131, 7, 4, 10, 0, 0, 1, //
                1, 1, 1, 1, 1, 1, 1, 1, //
                148, 4, 0, 0, //
                0, 7, 3, // after END: untouched
            ]
        );
    }

    #[test]
    fn fragment_options_stops_on_bad_length() {
        let mut opts = [7, 1, 68, 4, 5, 0, 0, 0];
        let before = opts;
        options_fragment(&mut opts);
        assert_eq!(opts, before);
        let mut opts = [68, 4, 5, 0, 7, 9, 0, 0];
        options_fragment(&mut opts);
        assert_eq!(opts, [1, 1, 1, 1, 7, 9, 0, 0]);
        let mut opts = [1, 1, 1, 7];
        options_fragment(&mut opts);
        assert_eq!(opts, [1, 1, 1, 7]);
    }

    proptest! {
        #[test]
        fn iterator_never_panics(data in proptest::collection::vec(any::<u8>(), 0..40)) {
            let mut errors = 0;
            for item in Ipv4OptionsIter::new(&data) {
                if item.is_err() { errors += 1; }
            }
            prop_assert!(errors <= 1);
        }

        #[test]
        fn fragment_keeps_copied(data in proptest::collection::vec(any::<u8>(), 0..40)) {
            let mut out = data.clone();
            options_fragment(&mut out);
            prop_assert_eq!(out.len(), data.len());
            // Only non-copied option bytes change, and only to NOP.
            for (a, b) in data.iter().zip(&out) {
                prop_assert!(a == b || *b == kind::NOOP);
            }
            // Doing it twice changes nothing more.
            let mut again = out.clone();
            options_fragment(&mut again);
            prop_assert_eq!(again, out);
        }
    }
}
