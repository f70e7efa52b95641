//! One timed run: what was sent, what the sink counted, the wall time and the
//! sending thread's CPU time; medians over rounds; memcpy bandwidth.

use std::hint::black_box;
use std::time::{Duration, Instant};

use super::sys;

/// Sends between two looks at the clock.
pub const CHECK_EVERY: u64 = 64;

/// The outcome of one run of one sender.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    /// Send operations (syscalls for the kernel: `sendto` or `sendmmsg` calls).
    pub calls: u64,
    /// Sends that succeeded (datagrams written, GSO super-datagrams counted once).
    pub sends: u64,
    /// UDP datagrams on the wire (GSO segments counted one each).
    pub datagrams: u64,
    /// Frames the sink counted.
    pub frames: u64,
    /// Frames the sink should have counted for `sends`.
    pub frames_expected: u64,
    /// UDP payload bytes sent.
    pub payload_bytes: u64,
    /// Sends refused with `ENOBUFS`/`EAGAIN`.
    pub errors: u64,
    /// Wall time of the run.
    pub wall_ns: u64,
    /// CPU time of the sending thread (user + system).
    pub cpu_ns: u64,
}

impl Sample {
    fn secs(&self) -> f64 {
        (self.wall_ns as f64 / 1e9).max(1e-9)
    }

    /// UDP datagrams per second (wall time).
    pub fn datagram_rate(&self) -> f64 {
        self.datagrams as f64 / self.secs()
    }

    /// Frames per second at the sink (wall time).
    pub fn frame_rate(&self) -> f64 {
        self.frames as f64 / self.secs()
    }

    /// Payload Gbit/s (wall time).
    pub fn gbps(&self) -> f64 {
        self.payload_bytes as f64 * 8.0 / self.secs() / 1e9
    }

    /// CPU nanoseconds per datagram.
    pub fn cpu_ns_per_datagram(&self) -> f64 {
        self.cpu_ns as f64 / (self.datagrams.max(1)) as f64
    }

    /// Share of the wall time the thread was on the CPU (1.0: never preempted).
    pub fn cpu_share(&self) -> f64 {
        self.cpu_ns as f64 / (self.wall_ns.max(1)) as f64
    }

    /// True when the sink counted exactly the frames expected.
    pub fn frames_ok(&self) -> bool {
        self.frames == self.frames_expected
    }
}

/// Runs `batch` (which sends and returns `(calls, sends, errors)`) until
/// `dur` passed or a stop signal came, timing wall and thread CPU.
pub fn timed<E>(
    dur: Duration,
    mut batch: impl FnMut() -> Result<(u64, u64, u64), E>,
) -> Result<Sample, E> {
    let mut s = Sample::default();
    let cpu0 = sys::thread_cpu_ns();
    let t0 = Instant::now();
    let deadline = t0 + dur;
    loop {
        let (calls, sends, errors) = batch()?;
        s.calls += calls;
        s.sends += sends;
        s.errors += errors;
        if Instant::now() >= deadline || sys::stopped() {
            break;
        }
    }
    s.wall_ns = t0.elapsed().as_nanos() as u64;
    s.cpu_ns = sys::thread_cpu_ns() - cpu0;
    Ok(s)
}

/// The median of `f` over `samples` (mean of the middle two for even counts).
pub fn median(samples: &[Sample], f: impl Fn(&Sample) -> f64) -> f64 {
    median_of(samples.iter().map(f).collect())
}

/// The median of `v` (mean of the middle two for even counts; 0 when empty).
pub fn median_of(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// memcpy bandwidth of this core for `len`-byte copies between two buffers
/// that stay in cache, in Gbit/s of bytes copied.
pub fn memcpy_gbps(len: usize, dur: Duration) -> f64 {
    let src: Vec<u8> = (0..len).map(|i| i as u8).collect();
    let mut dst = vec![0u8; len];
    let mut copies = 0u64;
    let t0 = Instant::now();
    while t0.elapsed() < dur && !sys::stopped() {
        for _ in 0..CHECK_EVERY {
            dst.copy_from_slice(black_box(&src));
            black_box(&mut dst);
        }
        copies += CHECK_EVERY;
    }
    let secs = t0.elapsed().as_secs_f64().max(1e-9);
    copies as f64 * len as f64 * 8.0 / secs / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        let s = |d| Sample {
            datagrams: d,
            wall_ns: 1_000_000_000,
            ..Sample::default()
        };
        assert_eq!(median(&[s(3), s(1), s(2)], Sample::datagram_rate), 2.0);
        assert_eq!(
            median(&[s(4), s(1), s(2), s(3)], Sample::datagram_rate),
            2.5
        );
        assert_eq!(median(&[], Sample::datagram_rate), 0.0);
    }

    #[test]
    fn timed_stops_at_the_deadline() {
        let s = timed::<()>(Duration::from_millis(20), || Ok((1, 1, 0))).unwrap();
        assert!(s.sends > 0 && s.wall_ns >= 20_000_000);
    }
}
