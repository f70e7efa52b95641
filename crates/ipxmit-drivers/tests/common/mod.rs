//! Shared helpers of the real-wire tests (`tap.rs`, `packet.rs`): the skip
//! rule, payloads, and the namespace topologies in [`netns`].
#![allow(dead_code)]

pub mod netns;

use std::io::Write;

/// True (after printing the SKIPPED line) when the test cannot run here: it
/// needs root and working network namespaces. The line goes straight to the
/// process's stderr, past the test harness's capture, so a skip never passes
/// silently.
pub fn skip(test: &str) -> bool {
    match ipxmit_drivers::netns::unavailable() {
        None => false,
        Some(why) => {
            let line = format!("SKIPPED (needs root and network namespaces): {test} [{why}]\n");
            let _ = std::io::stderr().write_all(line.as_bytes());
            true
        }
    }
}

/// A recognisable payload: `len` bytes depending on `k`.
pub fn payload(len: usize, k: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((7 * i + 13 * k + 1) % 251) as u8)
        .collect()
}

/// Prints a line past the harness's capture (for figures worth seeing).
pub fn report(line: &str) {
    let _ = std::io::stderr().write_all(format!("{line}\n").as_bytes());
}
