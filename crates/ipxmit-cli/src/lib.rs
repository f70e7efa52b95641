//! The `ipxmit` tool's script language — the parser and executor of
//! `ipxmit run` ([`script`]) and the statistics printers it shares with
//! `ipxmit send` — as a library, so that the fuzz targets in `fuzz/` reach
//! them. The binary (`src/main.rs`) is the tool; nothing here is a stable API.

pub mod diff;
pub mod plot;
pub mod report;
pub mod script;
pub mod values;
