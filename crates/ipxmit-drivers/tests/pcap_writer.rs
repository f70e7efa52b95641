//! The capture writer against independent readers: the `pcap-file` crate as the
//! oracle for every field, and tcpdump (or tshark) when one is installed.

use std::borrow::Cow;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use etherparse::PacketBuilder;
use ipxmit_drivers::pcap::{create, CaptureFormat, CaptureWriter, LinkType, DEFAULT_SNAPLEN};
use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::{DataLink, Endianness, TsResolution};

/// One frame to write: send time and the segments whose concatenation it is.
struct Frame {
    ts: u64,
    segments: Vec<Vec<u8>>,
}

impl Frame {
    fn new(ts: u64, segments: Vec<Vec<u8>>) -> Self {
        Frame { ts, segments }
    }

    fn segs(&self) -> Vec<&[u8]> {
        self.segments.iter().map(Vec::as_slice).collect()
    }

    fn whole(&self) -> Vec<u8> {
        self.segments.concat()
    }

    fn orig_len(&self) -> u32 {
        self.segments.iter().map(Vec::len).sum::<usize>() as u32
    }

    /// What a reader must find stored: the first `snaplen` bytes.
    fn captured(&self, snaplen: u32) -> Vec<u8> {
        let mut data = self.whole();
        data.truncate(snaplen as usize);
        data
    }
}

const NATIVE: Endianness = if cfg!(target_endian = "little") {
    Endianness::Little
} else {
    Endianness::Big
};

const T0: u64 = 1_700_000_000_123_456_789;

/// An Ethernet/IPv4/UDP frame with `payload_len` payload bytes.
fn eth_udp(payload_len: usize) -> Vec<u8> {
    let payload: Vec<u8> = (0..payload_len).map(|i| i as u8).collect();
    let builder = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .udp(1234, 5678);
    let mut out = Vec::with_capacity(builder.size(payload_len));
    builder.write(&mut out, &payload).unwrap();
    out
}

/// A bare IPv4/UDP packet (what a TUN device carries).
fn raw_udp(payload_len: usize) -> Vec<u8> {
    let payload: Vec<u8> = (0..payload_len).map(|i| (i * 7) as u8).collect();
    let builder = PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64).udp(1234, 5678);
    let mut out = Vec::with_capacity(builder.size(payload_len));
    builder.write(&mut out, &payload).unwrap();
    out
}

/// Splits `frame` at the given offsets into segments (a linear part plus frags).
fn split(frame: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut segments = Vec::new();
    let mut start = 0;
    for &cut in cuts.iter().chain(std::iter::once(&frame.len())) {
        segments.push(frame[start..cut].to_vec());
        start = cut;
    }
    segments
}

/// The frame set: single and multi-segment, empty segments, over-snaplen, zero
/// length, and odd lengths that need pcapng padding. `long` is a frame length
/// above the snap length in use.
fn frames(make: fn(usize) -> Vec<u8>, long: usize) -> Vec<Frame> {
    let small = make(18);
    let sg = make(1001);
    let big = make(1400);
    let mut over = make(1400);
    over.resize(long, 0xab);
    vec![
        Frame::new(T0, vec![small.clone()]),
        Frame::new(T0 + 1, split(&sg, &[14, 34, 42, 43, 500])),
        Frame::new(
            T0 + 999_999_999,
            vec![big[..20].to_vec(), Vec::new(), big[20..].to_vec()],
        ),
        Frame::new(T0 + 2_000_000_000, split(&over, &[100, long / 2, long - 3])),
        Frame::new(T0 + 3_000_000_001, vec![]),
        Frame::new(T0 + 4_000_000_002, vec![Vec::new(), Vec::new()]),
        Frame::new(T0 + 5_000_000_003, vec![small[..1].to_vec()]),
        Frame::new(T0 + 6_000_000_004, vec![small[..2].to_vec()]),
        Frame::new(T0 + 7_000_000_005, split(&small[..3], &[1])),
        Frame::new(T0 + 8_000_000_006, split(&small[..5], &[2, 4])),
        Frame::new(0, vec![small.clone()]),
    ]
}

fn write_all(w: &mut CaptureWriter<impl Write>, frames: &[Frame]) {
    for f in frames {
        w.write_frame(f.ts, &f.segs()).unwrap();
    }
}

/// Checks a classic pcap image against the frames with `pcap-file`.
fn check_pcap(bytes: &[u8], link: DataLink, snaplen: u32, frames: &[Frame]) {
    let mut reader = PcapReader::new(bytes).expect("pcap header");
    let hdr = reader.header();
    assert_eq!((hdr.version_major, hdr.version_minor), (2, 4));
    assert_eq!(hdr.ts_resolution, TsResolution::NanoSecond);
    assert_eq!(hdr.endianness, NATIVE);
    assert_eq!(hdr.snaplen, snaplen);
    assert_eq!(hdr.datalink, link);
    let magic = u32::from_ne_bytes(bytes[0..4].try_into().unwrap());
    assert_eq!(magic, 0xa1b2_3c4d, "nanosecond magic in native order");
    for (i, f) in frames.iter().enumerate() {
        // pcap-file 2.0.0's validated `next_packet` refuses orig_len > snaplen, which
        // libpcap accepts (and writes for every cut frame); read the raw record and
        // validate through `PcapPacket` only where pcap-file's rule allows.
        let raw = reader
            .next_raw_packet()
            .expect("record present")
            .expect("record parses");
        let secs = u64::from(raw.ts_sec);
        assert_eq!(
            secs * 1_000_000_000 + u64::from(raw.ts_frac),
            f.ts,
            "frame {i} timestamp"
        );
        assert_eq!(
            raw.incl_len as usize,
            f.captured(snaplen).len(),
            "frame {i} incl_len"
        );
        assert_eq!(raw.orig_len, f.orig_len(), "frame {i} orig_len");
        assert_eq!(
            raw.data.as_ref(),
            &f.captured(snaplen)[..],
            "frame {i} data"
        );
        if f.orig_len() <= snaplen {
            let pkt = raw
                .try_into_pcap_packet(TsResolution::NanoSecond, snaplen)
                .unwrap();
            assert_eq!(
                pkt.timestamp,
                Duration::from_nanos(f.ts),
                "frame {i} timestamp"
            );
        }
    }
    assert!(reader.next_packet().is_none(), "no extra records");
}

/// Interface facts pcapng readers must find.
struct Iface<'a> {
    name: &'a str,
    link: DataLink,
    snaplen: u32,
}

/// Checks a pcapng image: SHB, IDBs (name, tsresol), and one EPB per frame.
fn check_pcapng(bytes: &[u8], ifaces: &[Iface], frames: &[(u32, &Frame)]) {
    let mut reader = PcapNgReader::new(bytes).expect("section header");
    assert_eq!(reader.section().endianness, NATIVE);
    assert_eq!(
        (
            reader.section().major_version,
            reader.section().minor_version
        ),
        (1, 0)
    );
    let mut seen = Vec::new();
    while let Some(block) = reader.next_block() {
        match block.expect("block parses") {
            Block::EnhancedPacket(epb) => seen.push(epb.into_owned()),
            Block::InterfaceDescription(_) => {}
            other => panic!("unexpected block {other:?}"),
        }
    }
    let idbs = reader.interfaces();
    assert_eq!(idbs.len(), ifaces.len());
    for (idb, want) in idbs.iter().zip(ifaces) {
        assert_eq!(idb.linktype, want.link);
        assert_eq!(idb.snaplen, want.snaplen);
        let name = Cow::Borrowed(want.name);
        assert!(
            idb.options
                .contains(&InterfaceDescriptionOption::IfName(name)),
            "{idb:?}"
        );
        assert!(
            idb.options
                .contains(&InterfaceDescriptionOption::IfTsResol(9)),
            "{idb:?}"
        );
    }
    assert_eq!(seen.len(), frames.len());
    for (i, (epb, (if_id, f))) in seen.iter().zip(frames).enumerate() {
        let snaplen = ifaces[*if_id as usize].snaplen;
        assert_eq!(epb.interface_id, *if_id, "frame {i} interface");
        assert_eq!(
            epb.timestamp,
            Duration::from_nanos(f.ts),
            "frame {i} timestamp"
        );
        assert_eq!(epb.original_len, f.orig_len(), "frame {i} original_len");
        assert_eq!(
            epb.data.as_ref(),
            &f.captured(snaplen)[..],
            "frame {i} data"
        );
        assert!(epb.options.is_empty());
    }
}

#[test]
fn pcap_to_vec_round_trips_through_pcap_file() {
    let frames = frames(eth_udp, 1600);
    let mut w = CaptureWriter::new(
        Vec::new(),
        CaptureFormat::Pcap,
        LinkType::Ethernet,
        1500,
        "eth0",
    )
    .unwrap();
    write_all(&mut w, &frames);
    w.flush().unwrap();
    let stats = w.stats();
    assert_eq!(w.frames_written(), frames.len() as u64);
    let bytes = w.into_inner();
    assert_eq!(stats.bytes, bytes.len() as u64);
    let stored: u64 = frames.iter().map(|f| f.captured(1500).len() as u64).sum();
    assert_eq!(stats.bytes, 24 + 16 * frames.len() as u64 + stored);
    let total: u64 = frames.iter().map(|f| u64::from(f.orig_len())).sum();
    assert_eq!(stats.frame_bytes, total);
    check_pcap(&bytes, DataLink::ETHERNET, 1500, &frames);
}

#[test]
fn pcap_raw_link_type() {
    let frames = frames(raw_udp, 70_000);
    let mut w =
        CaptureWriter::new(Vec::new(), CaptureFormat::Pcap, LinkType::Raw, 0, "tun0").unwrap();
    assert_eq!(w.snaplen(0), Some(DEFAULT_SNAPLEN));
    write_all(&mut w, &frames);
    let bytes = w.into_inner();
    assert_eq!(u32::from_ne_bytes(bytes[20..24].try_into().unwrap()), 101);
    check_pcap(&bytes, DataLink::RAW, DEFAULT_SNAPLEN, &frames);
}

#[test]
fn pcapng_to_vec_round_trips_through_pcap_file() {
    let frames = frames(eth_udp, 1600);
    let mut w = CaptureWriter::new(
        Vec::new(),
        CaptureFormat::PcapNg,
        LinkType::Ethernet,
        1500,
        "eth0",
    )
    .unwrap();
    write_all(&mut w, &frames);
    let stats = w.stats();
    let bytes = w.into_inner();
    assert_eq!(stats.bytes, bytes.len() as u64);
    assert_eq!(stats.frames, frames.len() as u64);
    assert_eq!(bytes.len() % 4, 0, "every block is 32-bit aligned");
    let ifaces = [Iface {
        name: "eth0",
        link: DataLink::ETHERNET,
        snaplen: 1500,
    }];
    let on0: Vec<(u32, &Frame)> = frames.iter().map(|f| (0, f)).collect();
    check_pcapng(&bytes, &ifaces, &on0);
}

#[test]
fn pcapng_several_interfaces_and_link_types() {
    let eth = frames(eth_udp, 1600);
    let raw = frames(raw_udp, 700);
    let mut w = CaptureWriter::new(
        Vec::new(),
        CaptureFormat::PcapNg,
        LinkType::Ethernet,
        1500,
        "eth0",
    )
    .unwrap();
    assert_eq!(w.add_interface("tun0", LinkType::Raw, 576).unwrap(), 1);
    assert_eq!(
        w.add_interface("veth-long-name-0", LinkType::Ethernet, 0)
            .unwrap(),
        2
    );
    assert_eq!(w.interface_count(), 3);
    assert_eq!(w.link_type(1), Some(LinkType::Raw));
    let mut order = Vec::new();
    for (e, r) in eth.iter().zip(&raw) {
        w.write_frame_on(1, r.ts, &r.segs()).unwrap();
        w.write_frame(e.ts, &e.segs()).unwrap();
        w.write_frame_on(2, e.ts + 1, &e.segs()).unwrap();
        order.extend([(1, r), (0, e)]);
    }
    let shifted: Vec<Frame> = eth
        .iter()
        .map(|e| Frame::new(e.ts + 1, e.segments.clone()))
        .collect();
    let mut expect = Vec::new();
    for (i, pair) in order.chunks(2).enumerate() {
        expect.extend_from_slice(pair);
        expect.push((2, &shifted[i]));
    }
    let bytes = w.into_inner();
    let ifaces = [
        Iface {
            name: "eth0",
            link: DataLink::ETHERNET,
            snaplen: 1500,
        },
        Iface {
            name: "tun0",
            link: DataLink::RAW,
            snaplen: 576,
        },
        Iface {
            name: "veth-long-name-0",
            link: DataLink::ETHERNET,
            snaplen: DEFAULT_SNAPLEN,
        },
    ];
    check_pcapng(&bytes, &ifaces, &expect);
}

#[test]
fn pcapng_keeps_64_bit_timestamps() {
    // Past 2106: more seconds than classic pcap's 32 bits hold.
    let ts = (1u64 << 33) * 1_000_000_000 + 123_456_789;
    let mut w =
        CaptureWriter::new(Vec::new(), CaptureFormat::PcapNg, LinkType::Raw, 0, "tun0").unwrap();
    w.write_frame(ts, &[&[0x45]]).unwrap();
    w.write_frame(u64::MAX, &[]).unwrap();
    let bytes = w.into_inner();
    let frames = [
        Frame::new(ts, vec![vec![0x45]]),
        Frame::new(u64::MAX, vec![]),
    ];
    let ifaces = [Iface {
        name: "tun0",
        link: DataLink::RAW,
        snaplen: DEFAULT_SNAPLEN,
    }];
    check_pcapng(&bytes, &ifaces, &[(0, &frames[0]), (0, &frames[1])]);
}

#[test]
fn errors_are_io_errors() {
    let mut pcap =
        CaptureWriter::new(Vec::new(), CaptureFormat::Pcap, LinkType::Raw, 0, "tun0").unwrap();
    let err = pcap.add_interface("x", LinkType::Raw, 0).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::Unsupported);
    let err = pcap.write_frame_on(1, T0, &[b"x"]).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    // Classic pcap seconds are 32-bit.
    let err = pcap
        .write_frame((1u64 << 32) * 1_000_000_000, &[b"x"])
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert_eq!(pcap.frames_written(), 0);
    assert_eq!(pcap.bytes_written(), 24, "a refused frame writes nothing");

    let mut ng =
        CaptureWriter::new(Vec::new(), CaptureFormat::PcapNg, LinkType::Raw, 0, "tun0").unwrap();
    let err = ng.write_frame_on(7, T0, &[b"x"]).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    let err = "pcapx".parse::<CaptureFormat>().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}

#[test]
fn format_from_name_and_path() {
    assert_eq!(
        "pcap".parse::<CaptureFormat>().unwrap(),
        CaptureFormat::Pcap
    );
    assert_eq!(
        "pcapng".parse::<CaptureFormat>().unwrap(),
        CaptureFormat::PcapNg
    );
    assert_eq!(
        CaptureFormat::from_path(Path::new("/tmp/x.pcapng")),
        CaptureFormat::PcapNg
    );
    assert_eq!(
        CaptureFormat::from_path(Path::new("/tmp/x.PCAPNG")),
        CaptureFormat::PcapNg
    );
    assert_eq!(
        CaptureFormat::from_path(Path::new("/tmp/x.pcap")),
        CaptureFormat::Pcap
    );
    assert_eq!(
        CaptureFormat::from_path(Path::new("/tmp/x.cap")),
        CaptureFormat::Pcap
    );
    assert_eq!(
        CaptureFormat::from_path(Path::new("/tmp/pcapng")),
        CaptureFormat::Pcap
    );
    assert_eq!(LinkType::Ethernet.number(), 1);
    assert_eq!(LinkType::Raw.number(), 101);
}

/// A file in the temp directory, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(tag: &str, ext: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("ipxmit-pcap-{}-{tag}-{n}.{ext}", std::process::id());
        TempFile(std::env::temp_dir().join(name))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Prints past the test harness's capture, so a skip is never silent.
fn say(msg: &str) {
    let _ = writeln!(io::stderr(), "{msg}");
}

fn on_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// Has tcpdump (or else tshark) read `file`: exit 0, one line per frame, and with
/// tcpdump each line opening with the frame's nanosecond timestamp.
fn check_with_dissector(file: &Path, frames: &[Frame], first_line_has: &str) {
    let (tool, out) = if let Some(tcpdump) = on_path("tcpdump") {
        let out = Command::new(tcpdump)
            .args([
                "-r",
                file.to_str().unwrap(),
                "-nn",
                "-tt",
                "--time-stamp-precision=nano",
            ])
            .output()
            .unwrap();
        ("tcpdump", out)
    } else if let Some(tshark) = on_path("tshark") {
        let out = Command::new(tshark)
            .args(["-r", file.to_str().unwrap(), "-n"])
            .output()
            .unwrap();
        ("tshark", out)
    } else {
        say(&format!(
            "SKIPPED: tcpdump/tshark not installed (not checking {})",
            file.display()
        ));
        return;
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{tool} failed: {}\n{stdout}\n{stderr}",
        out.status
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        frames.len(),
        "{tool} output:\n{stdout}\n{stderr}"
    );
    if tool == "tcpdump" {
        for (line, f) in lines.iter().zip(frames) {
            let ts = format!("{}.{:09} ", f.ts / 1_000_000_000, f.ts % 1_000_000_000);
            if line.starts_with(&ts) {
                continue;
            }
            // tcpdump (print.c) reads but will not dissect a frame of length 0 or
            // longer than its MAXIMUM_SNAPLEN: one "[Invalid header: ...]" line.
            let odd = f.orig_len() == 0 || f.orig_len() > DEFAULT_SNAPLEN;
            assert!(
                odd && line.starts_with("[Invalid header"),
                "want {ts:?}: {line:?}"
            );
        }
        assert!(lines[0].contains(first_line_has), "{:?}", lines[0]);
    }
    say(&format!(
        "{tool} read {} frames from {}",
        lines.len(),
        file.display()
    ));
}

fn file_round_trip(ext: &str, link: LinkType, make: fn(usize) -> Vec<u8>) {
    let tmp = TempFile::new(&format!("{link:?}"), ext);
    // Longer than DEFAULT_SNAPLEN, cut in the middle of a segment.
    let frames = frames(make, DEFAULT_SNAPLEN as usize + 40_000);
    let mut w = create(&tmp.0, link, "ipx0").unwrap();
    write_all(&mut w, &frames);
    w.flush().unwrap();
    let written = w.bytes_written();
    drop(w);
    let bytes = std::fs::read(&tmp.0).unwrap();
    assert_eq!(bytes.len() as u64, written);
    let datalink = match link {
        LinkType::Ethernet => DataLink::ETHERNET,
        LinkType::Raw => DataLink::RAW,
    };
    if ext == "pcapng" {
        let ifaces = [Iface {
            name: "ipx0",
            link: datalink,
            snaplen: DEFAULT_SNAPLEN,
        }];
        let on0: Vec<(u32, &Frame)> = frames.iter().map(|f| (0, f)).collect();
        check_pcapng(&bytes, &ifaces, &on0);
    } else {
        check_pcap(&bytes, datalink, DEFAULT_SNAPLEN, &frames);
    }
    check_with_dissector(&tmp.0, &frames, "10.0.0.1.1234 > 10.0.0.2.5678: UDP");
}

#[test]
fn pcap_file_ethernet_read_by_pcap_file_and_tcpdump() {
    file_round_trip("pcap", LinkType::Ethernet, eth_udp);
}

#[test]
fn pcap_file_raw_read_by_pcap_file_and_tcpdump() {
    file_round_trip("pcap", LinkType::Raw, raw_udp);
}

#[test]
fn pcapng_file_ethernet_read_by_pcap_file_and_tcpdump() {
    file_round_trip("pcapng", LinkType::Ethernet, eth_udp);
}

#[test]
fn pcapng_file_raw_read_by_pcap_file_and_tcpdump() {
    file_round_trip("pcapng", LinkType::Raw, raw_udp);
}

#[test]
fn pcapng_file_two_interfaces_read_by_tcpdump() {
    // libpcap wants one link type per pcapng file, so both are Ethernet here.
    let tmp = TempFile::new("two", "pcapng");
    let frames = frames(eth_udp, 1600);
    let mut w = create(&tmp.0, LinkType::Ethernet, "eth0").unwrap();
    assert_eq!(w.format(), CaptureFormat::PcapNg);
    let id = w
        .add_interface("eth1", LinkType::Ethernet, DEFAULT_SNAPLEN)
        .unwrap();
    for (i, f) in frames.iter().enumerate() {
        w.write_frame_on(i as u32 % 2 * id, f.ts, &f.segs())
            .unwrap();
    }
    w.into_inner()
        .into_inner()
        .map_err(|e| e.into_error())
        .unwrap();
    let bytes = std::fs::read(&tmp.0).unwrap();
    let ifaces = [
        Iface {
            name: "eth0",
            link: DataLink::ETHERNET,
            snaplen: DEFAULT_SNAPLEN,
        },
        Iface {
            name: "eth1",
            link: DataLink::ETHERNET,
            snaplen: DEFAULT_SNAPLEN,
        },
    ];
    let on: Vec<(u32, &Frame)> = frames
        .iter()
        .enumerate()
        .map(|(i, f)| (i as u32 % 2, f))
        .collect();
    check_pcapng(&bytes, &ifaces, &on);
    check_with_dissector(&tmp.0, &frames, "UDP");
}

/// The comment and flags options of each Enhanced Packet Block of a pcapng
/// file, read back with `pcap-file`, in order.
fn epb_annotations(bytes: &[u8]) -> Vec<(Option<String>, Option<u32>)> {
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption;
    let mut reader = PcapNgReader::new(bytes).expect("section header");
    let mut out = Vec::new();
    while let Some(block) = reader.next_block() {
        if let Block::EnhancedPacket(epb) = block.expect("a well-formed block") {
            let (mut comment, mut flags) = (None, None);
            for o in &epb.options {
                match o {
                    EnhancedPacketOption::Comment(c) => comment = Some(c.to_string()),
                    EnhancedPacketOption::Flags(f) => flags = Some(*f),
                    _ => {}
                }
            }
            out.push((comment, flags));
        }
    }
    out
}

#[test]
fn pcapng_comments_and_flags_read_back() {
    use ipxmit_drivers::pcap::{Annotation, EPB_OUTBOUND, MAX_COMMENT};
    let mut w =
        CaptureWriter::new(Vec::new(), CaptureFormat::PcapNg, LinkType::Raw, 0, "tun0").unwrap();
    let f = raw_udp(13);
    let long = "é".repeat(MAX_COMMENT);
    for (comment, flags) in [
        ("sock 3", Some(EPB_OUTBOUND)),
        ("", None),
        (&long[..], None),
    ] {
        let ann = Annotation { comment, flags };
        w.write_annotated(0, T0, &[&f], ann).unwrap();
    }
    let bytes = w.into_inner();
    let got = epb_annotations(&bytes);
    assert_eq!(got[0], (Some("sock 3".into()), Some(2)));
    assert_eq!(got[1], (None, None));
    let cut = got[2].0.as_ref().unwrap();
    assert_eq!(cut.len(), MAX_COMMENT, "cut at a character boundary");
    // Classic pcap ignores the annotation: the record is the frame alone.
    let mut p = CaptureWriter::new(Vec::new(), CaptureFormat::Pcap, LinkType::Raw, 0, "").unwrap();
    let ann = Annotation {
        comment: "x",
        flags: Some(EPB_OUTBOUND),
    };
    p.write_annotated(0, T0, &[&f], ann).unwrap();
    assert_eq!(p.into_inner().len(), 24 + 16 + f.len());
}

/// A host on the manual clock, its wire taking one frame, `pfifo limit 1`
/// with handle 1:, a pcapng tap on eth0: four datagrams — the first leaves
/// (bypass), the second is refused by the full wire and requeued (the taps
/// saw it before the driver refused it, as `dev_queue_xmit_nit` shows the
/// kernel's taps a frame the driver then refuses), the third is dropped by
/// the qdisc (captured at the drop point), then 5 ms later the wire is
/// drained and the requeued one leaves having waited 5 ms.
fn annotated_capture<W: Write + Send + 'static>(
    w: CaptureWriter<W>,
) -> std::sync::Arc<ipxmit_drivers::capture::PcapTap<W>> {
    use ipxmit::neigh::NudState;
    use ipxmit::wire::EthernetAddress;
    use ipxmit::{DevConfig, ManualClock, MsgFlags, Stack, UdpSocket};
    use std::net::{Ipv4Addr, SocketAddrV4};
    use std::sync::Arc;
    let clock = Arc::new(ManualClock::new());
    let stack = Stack::with_clock(clock.clone());
    let wire = ipxmit_drivers::mem::MemWire::new(1);
    let cfg = DevConfig::ethernet("eth0", EthernetAddress([2, 0, 0, 0, 0, 1]));
    stack.add_device(cfg, wire.drivers(1)).unwrap();
    stack
        .add_addr("eth0", "10.0.0.1/24".parse().unwrap())
        .unwrap();
    let peer = Ipv4Addr::new(10, 0, 0, 2);
    let mac = EthernetAddress([2, 0, 0, 0, 0, 2]);
    stack
        .add_neigh("eth0", peer, mac, NudState::Permanent)
        .unwrap();
    let spec = "pfifo limit 1".parse().unwrap();
    let op = ipxmit::sched::api::QdiscOp::Replace;
    stack
        .qdisc_modify("eth0", op, Some(0x1_0000), &spec)
        .unwrap();
    let tap = ipxmit_drivers::capture::PcapTap::new(w, stack.now());
    stack.device("eth0").unwrap().add_tap(tap.clone());
    let mut s = UdpSocket::new(&stack);
    for _ in 0..3 {
        s.send_to(b"hello", SocketAddrV4::new(peer, 9), MsgFlags::NONE)
            .unwrap();
    }
    clock.advance(Duration::from_millis(5));
    wire.pop();
    stack.poll();
    tap
}

#[test]
fn a_pcapng_tap_comments_socket_queue_time_qdisc_and_drops() {
    let w = CaptureWriter::new(
        Vec::new(),
        CaptureFormat::PcapNg,
        LinkType::Ethernet,
        0,
        "eth0",
    )
    .unwrap();
    let tap = annotated_capture(w);
    let bytes = tap.with_writer(|w| w.get_ref().clone());
    let got = epb_annotations(&bytes);
    let comments: Vec<&str> = got.iter().map(|(c, _)| c.as_deref().unwrap()).collect();
    let sock = comments[0].split(' ').nth(1).unwrap();
    assert_ne!(sock, "0", "a socket's frame names its socket");
    assert_eq!(
        comments,
        [
            format!("sock {sock} queue 0 ns qdisc bypass"),
            format!("sock {sock} queue 0 ns qdisc bypass"),
            format!(
                "sock {sock} queue 0 ns qdisc 1: drop QDISC_DROP at qdisc_drop() \
                 (ipxmit sched::Qdisc::enqueue)"
            ),
            format!("sock {sock} queue 5000000 ns qdisc 1:"),
        ]
    );
    assert!(got.iter().all(|(_, f)| *f == Some(EPB_OUTBOUND_BITS)));
}

const EPB_OUTBOUND_BITS: u32 = 0b10;

#[test]
fn a_pcap_tap_keeps_classic_files_as_they_were() {
    let w = CaptureWriter::new(
        Vec::new(),
        CaptureFormat::Pcap,
        LinkType::Ethernet,
        0,
        "eth0",
    )
    .unwrap();
    let tap = annotated_capture(w);
    let bytes = tap.with_writer(|w| w.get_ref().clone());
    let mut r = PcapReader::new(&bytes[..]).unwrap();
    let mut n = 0;
    while let Some(p) = r.next_packet() {
        p.unwrap();
        n += 1;
    }
    assert_eq!(n, 3, "what the driver was given, not the dropped frame");
}

#[test]
fn tshark_shows_the_frame_comments() {
    let Some(tshark) = on_path("tshark") else {
        say("SKIPPED (tshark not installed): tshark_shows_the_frame_comments");
        return;
    };
    let file = TempFile::new("annotated", "pcapng");
    let w = create(&file.0, LinkType::Ethernet, "eth0").unwrap();
    let tap = annotated_capture(w);
    tap.flush().unwrap();
    let out = Command::new(tshark)
        .args(["-r"])
        .arg(&file.0)
        .args(["-T", "fields", "-e", "frame.comment", "-e", "frame.p2p_dir"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].ends_with("queue 0 ns qdisc bypass\t0"), "{text}");
    assert!(
        lines[2].contains("drop QDISC_DROP at qdisc_drop()"),
        "{text}"
    );
    assert!(lines[3].contains("queue 5000000 ns qdisc 1:"), "{text}");
}
