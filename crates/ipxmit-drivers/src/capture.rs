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

use crate::pcap::{Annotation, CaptureFormat, CaptureWriter, LinkType, EPB_OUTBOUND};
use ipxmit::stats::DropSite;

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
    write_packet_annotated(w, ts, pkt, Annotation::default())
}

/// [`write_packet`] with a comment and flags (pcapng).
pub fn write_packet_annotated<W: Write>(
    w: &mut CaptureWriter<W>,
    ts: u64,
    pkt: &PacketBuf,
    ann: Annotation<'_>,
) -> io::Result<()> {
    write_prefixed(w, ts, &[], pkt, ann)
}

/// Writes `prefix` then `pkt` as one record (a link header a packet
/// dropped above the device does not have yet).
fn write_prefixed<W: Write>(
    w: &mut CaptureWriter<W>,
    ts: u64,
    prefix: &[u8],
    pkt: &PacketBuf,
    ann: Annotation<'_>,
) -> io::Result<()> {
    let mut segs: [&[u8]; MAX_SEGS] = [&[]; MAX_SEGS];
    segs[0] = prefix;
    let mut n = 1;
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
        return w.write_annotated(0, ts, &[prefix, &pkt.to_vec()], ann);
    }
    w.write_annotated(0, ts, &segs[..n], ann)
}

/// The Ethernet header a capture shows on an IP packet dropped above the
/// device (a hook, the neighbour layer): the device's address as source,
/// the destination zero (no neighbour gave one), IPv4.
fn unresolved_eth_header(dev: &NetDevice) -> [u8; 14] {
    let mut h = [0u8; 14];
    h[6..12].copy_from_slice(&dev.hw_addr().0);
    h[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    h
}

/// The comment of a frame captured at `now` (stack time): its socket
/// (`skb->sk`, 0 for none), how long it waited in the qdisc (enqueue to
/// transmit; 0 for one that bypassed it), which qdisc and, of a classful
/// one, which class, and for a frame captured at a drop point the drop's
/// reason and where it happened (a frame dropped above the device, by a
/// hook or the neighbour layer, never reached a qdisc: none is named).
/// Written into `out`, cleared first (no allocation once it has room).
pub fn frame_comment(out: &mut String, pkt: &PacketBuf, now: Instant, drop: Option<DropSite>) {
    use std::fmt::Write as _;
    out.clear();
    let m = &pkt.meta;
    let _ = write!(out, "sock {}", m.sk.id());
    match (m.qdisc, drop) {
        (_, Some(s)) if s.above_device() => {}
        (Some(h), _) => {
            let waited = now.as_nanos().saturating_sub(m.enqueued);
            let _ = write!(out, " queue {waited} ns qdisc ");
            write_handle(out, h);
            if m.class & 0xffff != 0 {
                out.push_str(" class ");
                write_handle(out, m.class);
            } else if m.class != 0 {
                out.push_str(" class direct");
            }
        }
        (None, _) => out.push_str(" queue 0 ns qdisc bypass"),
    }
    if let Some(s) = drop {
        let _ = write!(
            out,
            " drop {} at {} (ipxmit {})",
            s.reason(),
            s.kernel(),
            s.function()
        );
    }
}

/// A handle as tc prints it: `1:` for a major alone, `1:10` with a minor.
fn write_handle(out: &mut String, h: u32) {
    use std::fmt::Write as _;
    let _ = write!(out, "{:x}:", h >> 16);
    if h & 0xffff != 0 {
        let _ = write!(out, "{:x}", h & 0xffff);
    }
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

/// A capture tap writing a device's transmitted frames to a file. In a
/// pcapng file each frame carries a comment ([`frame_comment`]) and the
/// outbound direction flag; frames the device layer or its qdisc drop are
/// written too, their comment naming the drop.
pub struct PcapTap<W: Write + Send> {
    writer: Mutex<(CaptureWriter<W>, String)>,
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
            writer: Mutex::new((writer, String::with_capacity(256))),
            clock: WallClock::anchor(now),
            errors: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Frames written.
    pub fn frames(&self) -> u64 {
        self.writer.lock().0.frames_written()
    }

    /// Write errors (frames lost to the file).
    pub fn errors(&self) -> u64 {
        self.errors.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Flushes buffered records to the file.
    pub fn flush(&self) -> io::Result<()> {
        self.writer.lock().0.flush()
    }

    /// Runs `f` on the writer (tests read an in-memory capture back).
    pub fn with_writer<R>(&self, f: impl FnOnce(&mut CaptureWriter<W>) -> R) -> R {
        f(&mut self.writer.lock().0)
    }

    /// Writes `pkt` behind `prefix`, annotated in a pcapng file.
    fn write(&self, prefix: &[u8], pkt: &PacketBuf, now: Instant, drop: Option<DropSite>) {
        let ts = self.clock.at(now);
        let mut g = self.writer.lock();
        let (w, note) = &mut *g;
        let r = if w.format() == CaptureFormat::PcapNg {
            frame_comment(note, pkt, now, drop);
            let ann = Annotation {
                comment: note,
                flags: Some(EPB_OUTBOUND),
            };
            write_prefixed(w, ts, prefix, pkt, ann)
        } else if drop.is_some() {
            // A classic file shows what left, as before.
            Ok(())
        } else {
            write_packet(w, ts, pkt)
        };
        if r.is_err() {
            self.errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

impl<W: Write + Send> Tap for PcapTap<W> {
    fn tap(&self, _dev: &NetDevice, pkt: &PacketBuf, now: Instant) {
        self.write(&[], pkt, now, None);
    }

    fn drop_point(&self, dev: &NetDevice, pkt: &PacketBuf, site: DropSite, now: Instant) {
        let eth;
        let prefix: &[u8] = if site.above_device() && dev.link() == DevLink::Ethernet {
            eth = unresolved_eth_header(dev);
            &eth
        } else {
            &[]
        };
        self.write(prefix, pkt, now, Some(site));
    }
}

/// A driver whose wire is a capture file: every frame is written and freed
/// (in a pcapng file with its comment, [`frame_comment`], and the outbound
/// flag). All queues of the device share one writer.
pub struct PcapDriver {
    writer: Arc<Mutex<CaptureWriter<BufWriter<File>>>>,
    clock: Arc<dyn ipxmit::Clock>,
    wall: WallClock,
    note: String,
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
                    note: String::with_capacity(256),
                }) as Box<dyn Driver>
            })
            .collect())
    }
}

impl Driver for PcapDriver {
    fn start_xmit(&mut self, pkt: PacketBuf, more: bool) -> TxStatus {
        let now = self.clock.now();
        let ts = self.wall.at(now);
        let mut w = self.writer.lock();
        let r = if w.format() == CaptureFormat::PcapNg {
            frame_comment(&mut self.note, &pkt, now, None);
            let ann = Annotation {
                comment: &self.note,
                flags: Some(EPB_OUTBOUND),
            };
            write_packet_annotated(&mut w, ts, &pkt, ann)
        } else {
            write_packet(&mut w, ts, &pkt)
        };
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
