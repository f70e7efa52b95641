//! Capture files: a pcap and pcapng writer for the frames a device transmits.
//!
//! This is the file `tcpdump -w` produces when it listens on an interface: in the
//! kernel every frame handed to a driver first passes `dev_queue_xmit_nit()`
//! (net/core/dev.c), which clones it to each AF_PACKET tap, and libpcap writes what
//! the tap reads into a savefile. A [`CaptureWriter`] stands for that tap plus the
//! savefile: a driver (or a test) gives it every frame it puts on the wire, with the
//! time it was sent, and gets a file that tcpdump, tshark and Wireshark read.
//!
//! Frames arrive the way a `PacketBuf` holds them — scattered: a linear part plus
//! page fragments, whose concatenation is the frame. They are written segment by
//! segment with the record header from a stack array, never gathered into a new
//! buffer: writing a frame allocates nothing.
//!
//! # Formats
//!
//! - [`CaptureFormat::Pcap`] — the classic libpcap savefile format
//!   (`pcap-savefile(5)`; IETF draft-ietf-opsawg-pcap): a 24-byte file header, then
//!   per frame a 16-byte record header (`ts_sec`, `ts_frac`, `incl_len`,
//!   `orig_len`) and the captured bytes. One link type per file.
//! - [`CaptureFormat::PcapNg`] — the pcapng format (IETF draft-ietf-opsawg-pcapng):
//!   a Section Header Block, one Interface Description Block per interface (so
//!   several devices, even of different link types, can share a file), and one
//!   Enhanced Packet Block per frame, its data padded to 32 bits.
//!
//! # Choices
//!
//! - **Byte order**: native, as libpcap writes its own savefiles. Readers detect
//!   it from the magic number (pcap) or the byte-order magic (pcapng).
//! - **Resolution**: nanoseconds everywhere. Classic pcap uses the nanosecond magic
//!   `0xa1b23c4d` (not the microsecond `0xa1b2c3d4`); pcapng writes
//!   `if_tsresol = 9` (10^-9 s) in each Interface Description Block and 64-bit
//!   nanosecond timestamps in each Enhanced Packet Block.
//! - **Snap length**: [`DEFAULT_SNAPLEN`] (262144, tcpdump's default) unless given;
//!   a longer frame keeps its full length in `orig_len` and its first `snaplen`
//!   bytes in the file, as a tap with that snap length would have cut it.

use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::str::FromStr;

/// Snap length used when none is given (or 0 is given): tcpdump's default,
/// libpcap's `MAXIMUM_SNAPLEN`.
pub const DEFAULT_SNAPLEN: u32 = 262_144;

/// Classic pcap magic number for nanosecond timestamps, written in native order.
const PCAP_MAGIC_NANOS: u32 = 0xa1b2_3c4d;
/// pcapng block type of the Section Header Block.
const SHB_TYPE: u32 = 0x0a0d_0d0a;
/// pcapng byte-order magic in the Section Header Block.
const SHB_BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;
/// pcapng block type of the Interface Description Block.
const IDB_TYPE: u32 = 1;
/// pcapng block type of the Enhanced Packet Block.
const EPB_TYPE: u32 = 6;
/// pcapng option code `opt_endofopt`.
const OPT_END: u16 = 0;
/// pcapng option code `opt_comment` (UTF-8 text, any block).
const OPT_COMMENT: u16 = 1;
/// pcapng option code `epb_flags` (32 bits, Enhanced Packet Block).
const OPT_EPB_FLAGS: u16 = 2;
/// Longest comment written (longer ones are cut at a character boundary).
pub const MAX_COMMENT: usize = 1024;
/// pcapng option code `shb_userappl`.
const OPT_SHB_USERAPPL: u16 = 4;
/// pcapng option code `if_name`.
const OPT_IF_NAME: u16 = 2;
/// pcapng option code `if_tsresol`.
const OPT_IF_TSRESOL: u16 = 9;
/// `if_tsresol` value: 10^-9 seconds.
const TSRESOL_NANOS: u8 = 9;
/// Size of an Enhanced Packet Block without data and options: block type, block
/// total length, interface id, timestamp high, timestamp low, captured length,
/// original length (28 bytes) and the trailing block total length (4 bytes).
const EPB_OVERHEAD: u32 = 32;
/// Nanoseconds in a second.
const NANOS_PER_SEC: u64 = 1_000_000_000;

/// The link-layer header type of the frames of one interface: the LINKTYPE_ value
/// written in the pcap file header or the pcapng Interface Description Block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// `LINKTYPE_ETHERNET` = 1: frames start with an Ethernet II header.
    Ethernet,
    /// `LINKTYPE_RAW` = 101: bare IPv4 packets with no link-layer header, as an L3
    /// device (TUN, an IP tunnel) transmits them.
    Raw,
}

impl LinkType {
    /// The LINKTYPE_ number of this link type (1 for Ethernet, 101 for Raw).
    pub const fn number(self) -> u32 {
        match self {
            LinkType::Ethernet => 1,
            LinkType::Raw => 101,
        }
    }
}

/// The file format of a capture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CaptureFormat {
    /// Classic libpcap savefile, nanosecond resolution; one interface.
    Pcap,
    /// pcapng; one or more interfaces, nanosecond resolution.
    PcapNg,
}

impl CaptureFormat {
    /// The format a file's name asks for: pcapng for a `.pcapng` extension (any
    /// case), classic pcap otherwise — as tcpdump and tshark users expect.
    pub fn from_path(path: &Path) -> Self {
        match path.extension() {
            Some(ext) if ext.eq_ignore_ascii_case("pcapng") => CaptureFormat::PcapNg,
            _ => CaptureFormat::Pcap,
        }
    }
}

impl FromStr for CaptureFormat {
    type Err = io::Error;

    /// Parses `pcap` or `pcapng` (any case); anything else is `InvalidInput`.
    fn from_str(s: &str) -> io::Result<Self> {
        if s.eq_ignore_ascii_case("pcap") {
            Ok(CaptureFormat::Pcap)
        } else if s.eq_ignore_ascii_case("pcapng") {
            Ok(CaptureFormat::PcapNg)
        } else {
            Err(invalid(format!(
                "unknown capture format {s:?} (expected \"pcap\" or \"pcapng\")"
            )))
        }
    }
}

impl fmt::Display for CaptureFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CaptureFormat::Pcap => "pcap",
            CaptureFormat::PcapNg => "pcapng",
        })
    }
}

/// What an Enhanced Packet Block carries besides the frame: an
/// `opt_comment` and the `epb_flags` word (pcapng only; a classic pcap
/// record has no place for them and writes the frame alone).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Annotation<'a> {
    /// The frame's comment (`opt_comment`); empty for none.
    pub comment: &'a str,
    /// The `epb_flags` word, `None` for none (see [`EPB_OUTBOUND`]).
    pub flags: Option<u32>,
}

/// `epb_flags` bits 0-1 = 2: the frame was outbound.
pub const EPB_OUTBOUND: u32 = 0b10;

/// What a [`CaptureWriter`] has written so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Frames written (one record or Enhanced Packet Block each).
    pub frames: u64,
    /// Bytes written to the underlying writer: headers, blocks, frame data and
    /// padding — the file's length when the writer started at its beginning.
    pub bytes: u64,
    /// Sum of the frames' original lengths (before snap-length truncation).
    pub frame_bytes: u64,
}

/// One interface of the capture: what its frames are and where they are cut.
#[derive(Clone, Copy, Debug)]
struct Interface {
    link: LinkType,
    snaplen: u32,
}

/// A pcap or pcapng writer over any [`Write`].
///
/// Kernel: the AF_PACKET taps fed by `dev_queue_xmit_nit()`, net/core/dev.c, plus
/// the savefile tcpdump writes from them.
///
/// Interface 0 is the one given to [`CaptureWriter::new`]; pcapng files can have
/// more ([`CaptureWriter::add_interface`]). Each frame is written straight through
/// to `W`: wrap a file in a [`BufWriter`] (as [`create`] does) and call
/// [`CaptureWriter::flush`] before reading the file back.
#[derive(Debug)]
pub struct CaptureWriter<W: Write> {
    out: W,
    format: CaptureFormat,
    interfaces: Vec<Interface>,
    stats: CaptureStats,
}

impl<W: Write> CaptureWriter<W> {
    /// Starts a capture on `w`: writes the pcap file header, or the pcapng Section
    /// Header Block and the Interface Description Block of interface 0.
    ///
    /// `snaplen` 0 means [`DEFAULT_SNAPLEN`]. `if_name` is recorded in pcapng's
    /// `if_name` option (classic pcap has no place for it).
    pub fn new(
        w: W,
        format: CaptureFormat,
        link: LinkType,
        snaplen: u32,
        if_name: &str,
    ) -> io::Result<Self> {
        let mut writer = CaptureWriter {
            out: w,
            format,
            interfaces: Vec::new(),
            stats: CaptureStats::default(),
        };
        match format {
            CaptureFormat::Pcap => {
                let snaplen = effective_snaplen(snaplen);
                writer.write_pcap_header(link, snaplen)?;
                writer.interfaces.push(Interface { link, snaplen });
            }
            CaptureFormat::PcapNg => {
                writer.write_section_header()?;
                writer.add_interface(if_name, link, snaplen)?;
            }
        }
        Ok(writer)
    }

    /// Adds an interface (pcapng only): writes its Interface Description Block and
    /// returns its id for [`CaptureWriter::write_frame_on`]. Ids count from 0 in
    /// the order interfaces were added; `snaplen` 0 means [`DEFAULT_SNAPLEN`].
    ///
    /// A classic pcap file has exactly one interface: `Unsupported` there.
    /// Wireshark and tshark read interfaces of different link types in one file;
    /// libpcap (so tcpdump) stops at the first interface whose link type differs
    /// from interface 0's.
    pub fn add_interface(&mut self, name: &str, link: LinkType, snaplen: u32) -> io::Result<u32> {
        if self.format != CaptureFormat::PcapNg {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a classic pcap file has a single interface; use pcapng for more",
            ));
        }
        let id = u32::try_from(self.interfaces.len())
            .map_err(|_| invalid("too many interfaces".to_string()))?;
        let snaplen = effective_snaplen(snaplen);
        let block = interface_description_block(name, link, snaplen)?;
        self.emit(&block)?;
        self.interfaces.push(Interface { link, snaplen });
        Ok(id)
    }

    /// Writes one frame on interface 0, sent at `ts_nanos` nanoseconds since the
    /// Unix epoch. The frame is the concatenation of `segments`; its original
    /// length is their total, and only its first `snaplen` bytes are stored.
    pub fn write_frame(&mut self, ts_nanos: u64, segments: &[&[u8]]) -> io::Result<()> {
        self.write_frame_on(0, ts_nanos, segments)
    }

    /// Writes one frame on interface `if_id` (see [`CaptureWriter::write_frame`]).
    /// An unknown interface is `InvalidInput`; so is a frame longer than 4 GiB, or
    /// a classic pcap timestamp past the year 2106 (its seconds are 32-bit).
    pub fn write_frame_on(
        &mut self,
        if_id: u32,
        ts_nanos: u64,
        segments: &[&[u8]],
    ) -> io::Result<()> {
        self.write_annotated(if_id, ts_nanos, segments, Annotation::default())
    }

    /// [`CaptureWriter::write_frame_on`] with a comment and flags in the
    /// Enhanced Packet Block (pcapng); a classic pcap file gets the frame
    /// alone. Nothing is allocated: the options are written from a stack
    /// array after the frame.
    pub fn write_annotated(
        &mut self,
        if_id: u32,
        ts_nanos: u64,
        segments: &[&[u8]],
        ann: Annotation<'_>,
    ) -> io::Result<()> {
        let iface = usize::try_from(if_id)
            .ok()
            .and_then(|i| self.interfaces.get(i).copied())
            .ok_or_else(|| invalid(format!("no capture interface {if_id}")))?;
        let total: u64 = segments.iter().map(|s| s.len() as u64).sum();
        let orig_len = u32::try_from(total)
            .map_err(|_| invalid(format!("frame of {total} bytes is too long to capture")))?;
        let incl_len = orig_len.min(iface.snaplen);
        match self.format {
            CaptureFormat::Pcap => {
                self.write_pcap_record(ts_nanos, incl_len, orig_len, segments)?
            }
            CaptureFormat::PcapNg => {
                let lens = (incl_len, orig_len);
                self.write_enhanced_packet(if_id, ts_nanos, lens, segments, ann)?
            }
        }
        self.stats.frames += 1;
        self.stats.frame_bytes += u64::from(orig_len);
        Ok(())
    }

    /// Flushes the underlying writer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Gives back the underlying writer (not flushed by this call; a
    /// [`BufWriter`]'s own `into_inner` flushes).
    pub fn into_inner(self) -> W {
        self.out
    }

    /// The underlying writer.
    pub fn get_ref(&self) -> &W {
        &self.out
    }

    /// The format being written.
    pub fn format(&self) -> CaptureFormat {
        self.format
    }

    /// Link type of interface `if_id`, if there is one.
    pub fn link_type(&self, if_id: u32) -> Option<LinkType> {
        self.interface(if_id).map(|i| i.link)
    }

    /// Snap length of interface `if_id`, if there is one.
    pub fn snaplen(&self, if_id: u32) -> Option<u32> {
        self.interface(if_id).map(|i| i.snaplen)
    }

    /// Number of interfaces (1 for classic pcap).
    pub fn interface_count(&self) -> u32 {
        self.interfaces.len() as u32
    }

    /// Counters: frames and bytes written so far.
    pub fn stats(&self) -> CaptureStats {
        self.stats
    }

    /// Frames written so far.
    pub fn frames_written(&self) -> u64 {
        self.stats.frames
    }

    /// Bytes written to the underlying writer so far (see [`CaptureStats::bytes`]).
    pub fn bytes_written(&self) -> u64 {
        self.stats.bytes
    }

    fn interface(&self, if_id: u32) -> Option<&Interface> {
        self.interfaces.get(usize::try_from(if_id).ok()?)
    }

    /// Writes `bytes` and counts them.
    fn emit(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.stats.bytes += bytes.len() as u64;
        Ok(())
    }

    /// Writes the first `incl_len` bytes of the concatenation of `segments`.
    fn emit_segments(&mut self, incl_len: u32, segments: &[&[u8]]) -> io::Result<()> {
        let mut left = incl_len as usize;
        for seg in segments {
            if left == 0 {
                break;
            }
            let n = seg.len().min(left);
            self.emit(&seg[..n])?;
            left -= n;
        }
        Ok(())
    }

    /// The classic pcap file header (24 bytes), native byte order.
    fn write_pcap_header(&mut self, link: LinkType, snaplen: u32) -> io::Result<()> {
        let mut hdr = [0u8; 24];
        hdr[0..4].copy_from_slice(&PCAP_MAGIC_NANOS.to_ne_bytes());
        hdr[4..6].copy_from_slice(&2u16.to_ne_bytes()); // version_major
        hdr[6..8].copy_from_slice(&4u16.to_ne_bytes()); // version_minor
                                                        // thiszone (8..12) and sigfigs (12..16) are 0.
        hdr[16..20].copy_from_slice(&snaplen.to_ne_bytes());
        hdr[20..24].copy_from_slice(&link.number().to_ne_bytes());
        self.emit(&hdr)
    }

    /// One classic pcap record: 16-byte header, then the captured bytes.
    fn write_pcap_record(
        &mut self,
        ts_nanos: u64,
        incl_len: u32,
        orig_len: u32,
        segments: &[&[u8]],
    ) -> io::Result<()> {
        let secs = u32::try_from(ts_nanos / NANOS_PER_SEC)
            .map_err(|_| invalid(format!("timestamp {ts_nanos} ns does not fit classic pcap")))?;
        let nanos = (ts_nanos % NANOS_PER_SEC) as u32;
        let mut hdr = [0u8; 16];
        hdr[0..4].copy_from_slice(&secs.to_ne_bytes());
        hdr[4..8].copy_from_slice(&nanos.to_ne_bytes());
        hdr[8..12].copy_from_slice(&incl_len.to_ne_bytes());
        hdr[12..16].copy_from_slice(&orig_len.to_ne_bytes());
        self.emit(&hdr)?;
        self.emit_segments(incl_len, segments)
    }

    /// The pcapng Section Header Block, with `shb_userappl` = "ipxmit".
    fn write_section_header(&mut self) -> io::Result<()> {
        let mut body = Vec::with_capacity(32);
        body.extend_from_slice(&SHB_BYTE_ORDER_MAGIC.to_ne_bytes());
        body.extend_from_slice(&1u16.to_ne_bytes()); // major_version
        body.extend_from_slice(&0u16.to_ne_bytes()); // minor_version
        body.extend_from_slice(&(-1i64).to_ne_bytes()); // section_length: unknown
        push_option(&mut body, OPT_SHB_USERAPPL, b"ipxmit")?;
        push_option(&mut body, OPT_END, &[])?;
        let block = frame_block(SHB_TYPE, &body)?;
        self.emit(&block)
    }

    /// One Enhanced Packet Block: 28-byte header, the captured bytes, padding to
    /// 32 bits, the options of `ann` and the repeated block total length — all
    /// without allocating.
    fn write_enhanced_packet(
        &mut self,
        if_id: u32,
        ts_nanos: u64,
        (incl_len, orig_len): (u32, u32),
        segments: &[&[u8]],
        ann: Annotation<'_>,
    ) -> io::Result<()> {
        let pad = pad4(incl_len as usize);
        let mut opts = [0u8; MAX_COMMENT + 24];
        let opts_len = epb_options(&mut opts, ann);
        let total_len = EPB_OVERHEAD
            .checked_add(incl_len)
            .and_then(|len| len.checked_add((pad + opts_len) as u32))
            .ok_or_else(|| invalid("frame too long for an Enhanced Packet Block".to_string()))?;
        let mut hdr = [0u8; 28];
        hdr[0..4].copy_from_slice(&EPB_TYPE.to_ne_bytes());
        hdr[4..8].copy_from_slice(&total_len.to_ne_bytes());
        hdr[8..12].copy_from_slice(&if_id.to_ne_bytes());
        hdr[12..16].copy_from_slice(&((ts_nanos >> 32) as u32).to_ne_bytes());
        hdr[16..20].copy_from_slice(&(ts_nanos as u32).to_ne_bytes());
        hdr[20..24].copy_from_slice(&incl_len.to_ne_bytes());
        hdr[24..28].copy_from_slice(&orig_len.to_ne_bytes());
        self.emit(&hdr)?;
        self.emit_segments(incl_len, segments)?;
        self.emit(&[0u8; 3][..pad])?;
        self.emit(&opts[..opts_len])?;
        self.emit(&total_len.to_ne_bytes())
    }
}

/// Writes the options of `ann` into `out` (`opt_comment`, `epb_flags`, then
/// `opt_endofopt`; nothing at all for an empty annotation) and returns
/// their length, a multiple of 4. A comment longer than [`MAX_COMMENT`] is
/// cut at a character boundary.
fn epb_options(out: &mut [u8; MAX_COMMENT + 24], ann: Annotation<'_>) -> usize {
    let mut c = ann.comment;
    if c.len() > MAX_COMMENT {
        let mut end = MAX_COMMENT;
        while !c.is_char_boundary(end) {
            end -= 1;
        }
        c = &c[..end];
    }
    let mut n = 0;
    if !c.is_empty() {
        n = put_option(out, n, OPT_COMMENT, c.as_bytes());
    }
    if let Some(f) = ann.flags {
        n = put_option(out, n, OPT_EPB_FLAGS, &f.to_ne_bytes());
    }
    if n != 0 {
        n = put_option(out, n, OPT_END, &[]);
    }
    n
}

/// Writes one option (code, length, value, zero padding to 32 bits) at
/// `at` in `out`; returns where the next goes.
fn put_option(out: &mut [u8], at: usize, code: u16, value: &[u8]) -> usize {
    let end = at + 4 + value.len();
    out[at..at + 2].copy_from_slice(&code.to_ne_bytes());
    out[at + 2..at + 4].copy_from_slice(&(value.len() as u16).to_ne_bytes());
    out[at + 4..end].copy_from_slice(value);
    let padded = end + pad4(value.len());
    out[end..padded].fill(0);
    padded
}

/// Opens (creates or truncates) `path` and starts a capture on it, buffered, with
/// [`DEFAULT_SNAPLEN`]: pcapng for a `.pcapng` name, classic pcap otherwise (see
/// [`CaptureFormat::from_path`]).
pub fn create(
    path: &Path,
    link: LinkType,
    if_name: &str,
) -> io::Result<CaptureWriter<BufWriter<File>>> {
    let file = BufWriter::new(File::create(path)?);
    CaptureWriter::new(
        file,
        CaptureFormat::from_path(path),
        link,
        DEFAULT_SNAPLEN,
        if_name,
    )
}

/// The snap length in force for a requested one (0 = default).
fn effective_snaplen(snaplen: u32) -> u32 {
    if snaplen == 0 {
        DEFAULT_SNAPLEN
    } else {
        snaplen
    }
}

/// Padding that brings `len` to a multiple of 4.
fn pad4(len: usize) -> usize {
    (4 - len % 4) % 4
}

/// An `InvalidInput` I/O error.
fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Appends one pcapng option (code, length, value, padding to 32 bits).
fn push_option(body: &mut Vec<u8>, code: u16, value: &[u8]) -> io::Result<()> {
    let len = u16::try_from(value.len())
        .map_err(|_| invalid(format!("pcapng option {code} of {} bytes", value.len())))?;
    body.extend_from_slice(&code.to_ne_bytes());
    body.extend_from_slice(&len.to_ne_bytes());
    body.extend_from_slice(value);
    body.resize(body.len() + pad4(value.len()), 0);
    Ok(())
}

/// Wraps a block body (a multiple of 4 bytes) in its type and both total lengths.
fn frame_block(block_type: u32, body: &[u8]) -> io::Result<Vec<u8>> {
    let total =
        u32::try_from(body.len() + 12).map_err(|_| invalid("pcapng block too long".to_string()))?;
    let mut block = Vec::with_capacity(total as usize);
    block.extend_from_slice(&block_type.to_ne_bytes());
    block.extend_from_slice(&total.to_ne_bytes());
    block.extend_from_slice(body);
    block.extend_from_slice(&total.to_ne_bytes());
    Ok(block)
}

/// A pcapng Interface Description Block with `if_name` and `if_tsresol` = 9.
fn interface_description_block(name: &str, link: LinkType, snaplen: u32) -> io::Result<Vec<u8>> {
    let mut body = Vec::with_capacity(24 + name.len());
    // LINKTYPE_ values are 16-bit here; ours are 1 and 101.
    body.extend_from_slice(&(link.number() as u16).to_ne_bytes());
    body.extend_from_slice(&0u16.to_ne_bytes()); // reserved
    body.extend_from_slice(&snaplen.to_ne_bytes());
    if !name.is_empty() {
        push_option(&mut body, OPT_IF_NAME, name.as_bytes())?;
    }
    push_option(&mut body, OPT_IF_TSRESOL, &[TSRESOL_NANOS])?;
    push_option(&mut body, OPT_END, &[])?;
    frame_block(IDB_TYPE, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ne32(v: u32) -> [u8; 4] {
        v.to_ne_bytes()
    }

    #[test]
    fn pcap_header_and_record_bytes() {
        let mut w =
            CaptureWriter::new(Vec::new(), CaptureFormat::Pcap, LinkType::Raw, 4, "x").unwrap();
        w.write_frame(3 * NANOS_PER_SEC + 7, &[b"ab", b"cde"])
            .unwrap();
        let out = w.into_inner();
        let mut want = Vec::new();
        want.extend_from_slice(&ne32(0xa1b2_3c4d));
        want.extend_from_slice(&2u16.to_ne_bytes());
        want.extend_from_slice(&4u16.to_ne_bytes());
        want.extend_from_slice(&[0; 8]);
        want.extend_from_slice(&ne32(4));
        want.extend_from_slice(&ne32(101));
        for v in [3, 7, 4, 5] {
            want.extend_from_slice(&ne32(v));
        }
        want.extend_from_slice(b"abcd");
        assert_eq!(out, want);
    }

    #[test]
    fn enhanced_packet_block_bytes() {
        let mut w =
            CaptureWriter::new(Vec::new(), CaptureFormat::PcapNg, LinkType::Ethernet, 0, "")
                .unwrap();
        let start = w.bytes_written() as usize;
        let ts = (5u64 << 32) | 9;
        w.write_frame(ts, &[b"a", b"", b"bcde"]).unwrap();
        let out = w.into_inner();
        let mut want = Vec::new();
        for v in [6, 40, 0, 5, 9, 5, 5] {
            want.extend_from_slice(&ne32(v));
        }
        want.extend_from_slice(b"abcde\0\0\0");
        want.extend_from_slice(&ne32(40));
        assert_eq!(&out[start..], &want[..]);
    }

    #[test]
    fn format_names() {
        assert_eq!(
            "pcapng".parse::<CaptureFormat>().unwrap(),
            CaptureFormat::PcapNg
        );
        assert_eq!(
            "PCAP".parse::<CaptureFormat>().unwrap(),
            CaptureFormat::Pcap
        );
        assert!("cap".parse::<CaptureFormat>().is_err());
        assert_eq!(
            CaptureFormat::from_path(Path::new("a.pcapng")),
            CaptureFormat::PcapNg
        );
        assert_eq!(
            CaptureFormat::from_path(Path::new("a.pcap")),
            CaptureFormat::Pcap
        );
        assert_eq!(
            CaptureFormat::from_path(Path::new("a")),
            CaptureFormat::Pcap
        );
    }
}
