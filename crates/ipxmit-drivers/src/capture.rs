//! Capture taps and the capture-file device.
//!
//! [`PcapTap`] stands for an AF_PACKET socket on `ETH_P_ALL` (what `tcpdump -i
//! eth0 -w file` opens): attached to a device with [`NetDevice::add_tap`], it sees
//! every frame in `dev_queue_xmit_nit()` exactly as the driver is then given it and
//! writes it to a pcap or pcapng file. [`PcapDriver`] is a device whose wire *is*
//! a capture file (`link add eth0 type pcap file out.pcap`), modelled on smoltcp's
//! `PcapWriter` wrapped around a lower device.
//!
//! Timestamps are the stack's clock plus the wall-clock offset taken when the
//! capture starts, so files show real dates and tests with a manual clock get
//! exact, steppable times.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use ipxmit::dev::{Driver, LinkType as DevLink, NetDevice, Tap, TxStatus};
use ipxmit::{Instant, PacketBuf};
use parking_lot::Mutex;

use crate::pcap::{CaptureWriter, LinkType};

/// Most segments written without gathering (linear part, fragments, chain).
const MAX_SEGS: usize = 48;

/// The capture link type of a device's frames.
pub fn link_type_of(link: DevLink) -> LinkType {
    match link {
        DevLink::Ethernet => LinkType::Ethernet,
        DevLink::L3 => LinkType::Raw,
    }
}

/// Writes `pkt` as one record, its segments in order.
pub fn write_packet<W: Write>(
    w: &mut CaptureWriter<W>,
    ts: u64,
    pkt: &PacketBuf,
) -> io::Result<()> {
    let mut segs: [&[u8]; MAX_SEGS] = [&[]; MAX_SEGS];
    let mut n = 0;
    let mut overflow = false;
    pkt.for_each_segment(&mut |s| {
        if n < MAX_SEGS {
            segs[n] = s;
            n += 1;
        } else {
            overflow = true;
        }
    });
    if overflow {
        return w.write_frame(ts, &[&pkt.to_vec()]);
    }
    w.write_frame(ts, &segs[..n])
}

/// Converts stack time to wall-clock nanoseconds.
#[derive(Clone, Copy, Debug)]
pub struct WallClock {
    offset: u64,
}

impl WallClock {
    /// Anchors stack time `now` to the current wall-clock time.
    pub fn anchor(now: Instant) -> WallClock {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        WallClock {
            offset: wall.saturating_sub(now.as_nanos()),
        }
    }

    /// Wall-clock nanoseconds of stack time `t`.
    pub fn at(&self, t: Instant) -> u64 {
        self.offset + t.as_nanos()
    }
}

/// A capture tap writing a device's transmitted frames to a file.
pub struct PcapTap<W: Write + Send> {
    writer: Mutex<CaptureWriter<W>>,
    clock: WallClock,
    errors: std::sync::atomic::AtomicU64,
}

impl PcapTap<BufWriter<File>> {
    /// A tap writing to `path` (pcapng when it ends in `.pcapng`).
    pub fn create(path: &Path, dev: &NetDevice, now: Instant) -> io::Result<Arc<Self>> {
        let w = crate::pcap::create(path, link_type_of(dev.link()), dev.name())?;
        Ok(PcapTap::new(w, now))
    }
}

impl<W: Write + Send> PcapTap<W> {
    /// A tap writing through `writer`, anchored at stack time `now`.
    pub fn new(writer: CaptureWriter<W>, now: Instant) -> Arc<Self> {
        Arc::new(PcapTap {
            writer: Mutex::new(writer),
            clock: WallClock::anchor(now),
            errors: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Frames written.
    pub fn frames(&self) -> u64 {
        self.writer.lock().frames_written()
    }

    /// Write errors (frames lost to the file).
    pub fn errors(&self) -> u64 {
        self.errors.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Flushes buffered records to the file.
    pub fn flush(&self) -> io::Result<()> {
        self.writer.lock().flush()
    }

    /// Runs `f` on the writer (tests read an in-memory capture back).
    pub fn with_writer<R>(&self, f: impl FnOnce(&mut CaptureWriter<W>) -> R) -> R {
        f(&mut self.writer.lock())
    }
}

impl<W: Write + Send> Tap for PcapTap<W> {
    fn tap(&self, _dev: &NetDevice, pkt: &PacketBuf, now: Instant) {
        let ts = self.clock.at(now);
        if write_packet(&mut self.writer.lock(), ts, pkt).is_err() {
            self.errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// A driver whose wire is a capture file: every frame is written and freed.
/// All queues of the device share one writer.
pub struct PcapDriver {
    writer: Arc<Mutex<CaptureWriter<BufWriter<File>>>>,
    clock: Arc<dyn ipxmit::Clock>,
    wall: WallClock,
}

impl PcapDriver {
    /// `n` queue drivers writing `link`-type frames to `path`, timestamped with
    /// `clock`.
    pub fn create(
        path: &Path,
        link: DevLink,
        if_name: &str,
        n: usize,
        clock: Arc<dyn ipxmit::Clock>,
    ) -> io::Result<Vec<Box<dyn Driver>>> {
        let w = Arc::new(Mutex::new(crate::pcap::create(
            path,
            link_type_of(link),
            if_name,
        )?));
        let wall = WallClock::anchor(clock.now());
        Ok((0..n.max(1))
            .map(|_| {
                Box::new(PcapDriver {
                    writer: w.clone(),
                    clock: clock.clone(),
                    wall,
                }) as Box<dyn Driver>
            })
            .collect())
    }
}

impl Driver for PcapDriver {
    fn start_xmit(&mut self, pkt: PacketBuf, more: bool) -> TxStatus {
        let ts = self.wall.at(self.clock.now());
        let mut w = self.writer.lock();
        let r = write_packet(&mut w, ts, &pkt);
        if !more {
            let _ = w.flush();
        }
        match r {
            Ok(()) => TxStatus::Ok,
            Err(_) => TxStatus::Error,
        }
    }

    fn flush(&mut self) {
        let _ = self.writer.lock().flush();
    }
}
