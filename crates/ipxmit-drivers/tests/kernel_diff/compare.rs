//! Frame-by-frame comparison with a readable diff.
//!
//! Every header field is compared exactly except the IP ID and the header
//! checksum (which covers the ID): each side's header checksum must verify,
//! and the ID is compared by its rules — the fragments of one datagram share
//! one ID, a datagram's ID is zero on one side exactly when it is zero on the
//! other, and where the scenario says IDs are sequential (connected sockets,
//! GSO segments) consecutive datagrams differ by one on both sides. The UDP
//! checksum does not cover the IP ID and is compared exactly, as are options
//! and payload bytes. A timestamp option's time values are compared only for
//! being present and within a minute of each other (the clocks are read at
//! different moments).

use std::fmt::Write;

use super::scenario::{Kind, Outcome, Scenario};

struct Ip<'a> {
    f: &'a [u8],
}

impl<'a> Ip<'a> {
    fn ip(&self) -> &'a [u8] {
        &self.f[14..]
    }
    fn hlen(&self) -> usize {
        ((self.ip()[0] & 0xf) as usize) * 4
    }
    fn u16(&self, at: usize) -> u16 {
        u16::from_be_bytes([self.ip()[at], self.ip()[at + 1]])
    }
    fn id(&self) -> u16 {
        self.u16(4)
    }
    fn off(&self) -> usize {
        ((self.u16(6) & 0x1fff) as usize) * 8
    }
    fn mf(&self) -> bool {
        self.u16(6) & 0x2000 != 0
    }
    fn csum_ok(&self) -> bool {
        let h = &self.ip()[..self.hlen().min(self.ip().len())];
        internet_checksum::checksum(h) == [0, 0]
    }
    fn opts(&self) -> &'a [u8] {
        &self.ip()[20..self.hlen().min(self.ip().len())]
    }
    fn payload(&self) -> &'a [u8] {
        &self.ip()[self.hlen().min(self.ip().len())..]
    }
}

fn well_formed(f: &[u8]) -> bool {
    f.len() >= 34
        && f[14] >> 4 == 4
        && ((f[14] & 0xf) as usize) * 4 + 14 <= f.len()
        && f[14] & 0xf >= 5
}

/// Offsets (within the options area) of timestamp values a timestamp option
/// carries, given the option bytes of the kernel's frame.
fn ts_value_slots(opts: &[u8]) -> Vec<usize> {
    let mut v = Vec::new();
    let mut i = 0;
    while i < opts.len() {
        match opts[i] {
            0 => break,
            1 => {
                i += 1;
                continue;
            }
            _ => {}
        }
        if i + 1 >= opts.len() {
            break;
        }
        let l = opts[i + 1] as usize;
        if l < 2 || i + l > opts.len() {
            break;
        }
        if opts[i] == 68 && l >= 4 {
            let ptr = opts[i + 2] as usize;
            let flags = opts[i + 3] & 0xf;
            let slot = if flags == 0 { 4 } else { 8 };
            let mut p = 5;
            while p + slot - 1 < ptr.min(l + 1) {
                let at = i + p - 1 + if flags == 0 { 0 } else { 4 };
                v.push(at);
                p += slot;
            }
        }
        i += l;
    }
    v
}

fn ms_close(a: &[u8], b: &[u8]) -> bool {
    let x = u32::from_be_bytes([a[0], a[1], a[2], a[3]]) as i64;
    let y = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as i64;
    let d = (x - y).abs();
    d <= 60_000 || d >= 86_400_000 - 60_000
}

fn field(out: &mut Vec<String>, name: &str, kv: String, xv: String) {
    if kv != xv {
        out.push(format!("{name}: kernel={kv} ipxmit={xv}"));
    }
}

/// The differences between one kernel frame and one ipxmit frame.
fn frame_diff(k: &[u8], x: &[u8], out: &mut Vec<String>) {
    if !well_formed(k) || !well_formed(x) {
        if k != x {
            out.push(format!("raw frame: kernel={k:02x?} ipxmit={x:02x?}"));
        }
        return;
    }
    let (a, b) = (Ip { f: k }, Ip { f: x });
    field(
        out,
        "frame length",
        k.len().to_string(),
        x.len().to_string(),
    );
    field(
        out,
        "eth dst",
        format!("{:02x?}", &k[0..6]),
        format!("{:02x?}", &x[0..6]),
    );
    field(
        out,
        "eth src",
        format!("{:02x?}", &k[6..12]),
        format!("{:02x?}", &x[6..12]),
    );
    field(
        out,
        "ethertype",
        format!("{:02x?}", &k[12..14]),
        format!("{:02x?}", &x[12..14]),
    );
    field(out, "ihl", a.hlen().to_string(), b.hlen().to_string());
    field(
        out,
        "tos",
        format!("{:#04x}", a.ip()[1]),
        format!("{:#04x}", b.ip()[1]),
    );
    field(out, "tot_len", a.u16(2).to_string(), b.u16(2).to_string());
    field(
        out,
        "DF",
        (a.u16(6) & 0x4000 != 0).to_string(),
        (b.u16(6) & 0x4000 != 0).to_string(),
    );
    field(
        out,
        "reserved flag",
        (a.u16(6) & 0x8000 != 0).to_string(),
        (b.u16(6) & 0x8000 != 0).to_string(),
    );
    field(out, "MF", a.mf().to_string(), b.mf().to_string());
    field(out, "frag offset", a.off().to_string(), b.off().to_string());
    field(out, "ttl", a.ip()[8].to_string(), b.ip()[8].to_string());
    field(
        out,
        "protocol",
        a.ip()[9].to_string(),
        b.ip()[9].to_string(),
    );
    field(
        out,
        "src",
        format!("{:?}", &a.ip()[12..16]),
        format!("{:?}", &b.ip()[12..16]),
    );
    field(
        out,
        "dst",
        format!("{:?}", &a.ip()[16..20]),
        format!("{:?}", &b.ip()[16..20]),
    );
    if !a.csum_ok() {
        out.push("kernel IP header checksum does not verify".into());
    }
    if !b.csum_ok() {
        out.push("ipxmit IP header checksum does not verify".into());
    }
    let (ko, xo) = (a.opts(), b.opts());
    let mut xo_masked = xo.to_vec();
    if ko.len() == xo.len() {
        for at in ts_value_slots(ko) {
            if at + 4 <= ko.len() {
                if ms_close(&ko[at..at + 4], &xo[at..at + 4]) {
                    xo_masked[at..at + 4].copy_from_slice(&ko[at..at + 4]);
                } else {
                    out.push(format!(
                        "timestamp at option byte {at}: kernel={:02x?} ipxmit={:02x?}",
                        &ko[at..at + 4],
                        &xo[at..at + 4]
                    ));
                    xo_masked[at..at + 4].copy_from_slice(&ko[at..at + 4]);
                }
            }
        }
    }
    field(
        out,
        "options",
        format!("{ko:02x?}"),
        format!("{xo_masked:02x?}"),
    );
    let (kp, xp) = (a.payload(), b.payload());
    let udp_first =
        a.ip()[9] == 17 && a.off() == 0 && b.off() == 0 && kp.len() >= 8 && xp.len() >= 8;
    let (kd, xd) = if udp_first {
        let u = |p: &[u8], i: usize| u16::from_be_bytes([p[i], p[i + 1]]);
        field(out, "udp sport", u(kp, 0).to_string(), u(xp, 0).to_string());
        field(out, "udp dport", u(kp, 2).to_string(), u(xp, 2).to_string());
        field(
            out,
            "udp length",
            u(kp, 4).to_string(),
            u(xp, 4).to_string(),
        );
        field(
            out,
            "udp checksum",
            format!("{:#06x}", u(kp, 6)),
            format!("{:#06x}", u(xp, 6)),
        );
        (&kp[8..], &xp[8..])
    } else {
        (kp, xp)
    };
    if kd != xd {
        let at = kd
            .iter()
            .zip(xd)
            .position(|(p, q)| p != q)
            .unwrap_or(kd.len().min(xd.len()));
        out.push(format!(
            "payload: lengths kernel={} ipxmit={}, first difference at byte {at}",
            kd.len(),
            xd.len()
        ));
    }
}

/// Frames grouped into datagrams (first fragment opens one), with the ID.
fn datagrams(frames: &[Vec<u8>]) -> Vec<(usize, Vec<u16>)> {
    let mut v: Vec<(usize, Vec<u16>)> = Vec::new();
    let mut open = false;
    for (i, f) in frames.iter().enumerate() {
        if !well_formed(f) {
            continue;
        }
        let ip = Ip { f };
        if ip.off() == 0 || !open {
            v.push((i, vec![ip.id()]));
        } else if let Some(last) = v.last_mut() {
            last.1.push(ip.id());
        }
        open = ip.mf();
    }
    v
}

fn id_rules(s: &Scenario, k: &[Vec<u8>], x: &[Vec<u8>], out: &mut Vec<String>) {
    let (dk, dx) = (datagrams(k), datagrams(x));
    for (side, d) in [("kernel", &dk), ("ipxmit", &dx)] {
        for (first, ids) in d.iter() {
            if ids.iter().any(|&i| i != ids[0]) {
                out.push(format!("{side}: fragments of the datagram at frame {first} do not share an ID: {ids:?}"));
            }
        }
    }
    if dk.len() != dx.len() {
        return;
    }
    let rule = zero_id_rule(s);
    for ((fk, ik), (_, ix)) in dk.iter().zip(&dx) {
        // The kernel zeroes the ID of DF datagrams it may not fragment (and GSO
        // numbers segments on from there); other IDs come from counters and
        // are 0 once in 65536 by chance, so only the rule's cases compare.
        let df = k[*fk].get(20).is_some_and(|b| b & 0x40 != 0);
        if df && rule && (ik[0] == 0) != (ix[0] == 0) {
            out.push(format!(
                "IP ID of the datagram at frame {fk}: kernel={} ipxmit={} (zero on one side only)",
                ik[0], ix[0]
            ));
        }
    }
    if s.seq_ids {
        for w in 1..dk.len() {
            let sk = dk[w].1[0] == dk[w - 1].1[0].wrapping_add(1);
            let sx = dx[w].1[0] == dx[w - 1].1[0].wrapping_add(1);
            if sk != sx {
                out.push(format!(
                    "IP ID sequence at frame {}: kernel {}→{} ipxmit {}→{}",
                    dk[w].0,
                    dk[w - 1].1[0],
                    dk[w].1[0],
                    dx[w - 1].1[0],
                    dx[w].1[0]
                ));
            }
        }
    }
}

/// True when a DF datagram of the scenario gets its ID by rule rather than
/// from a counter (`ip_select_ident_segs`): a socket without a peer whose
/// PMTU mode does not ignore DF (`ip_sk_ignore_df`: DONT, WANT and OMIT do;
/// WANT is the default) gets 0; an `IP_HDRINCL` header keeps the user's ID
/// or gets 0 for DF.
fn zero_id_rule(s: &Scenario) -> bool {
    if matches!(s.kind, Kind::Hdrincl(_)) {
        return true;
    }
    let ignore_df = matches!(s.opts.pmtu.unwrap_or(1), 0 | 1 | 5);
    !ignore_df && !s.opts.connect
}

/// Everything that differs between the kernel's and ipxmit's outcome.
pub fn diff(s: &Scenario, k: &Outcome, x: &Outcome) -> Vec<String> {
    let mut out = Vec::new();
    if k.setup != x.setup {
        out.push(format!(
            "setsockopt results: kernel={:?} ipxmit={:?}",
            k.setup, x.setup
        ));
    }
    if k.returns != x.returns {
        out.push(format!(
            "return values: kernel={:?} ipxmit={:?}",
            k.returns, x.returns
        ));
    }
    if k.errq != x.errq {
        out.push(format!(
            "error queue: kernel={:?} ipxmit={:?}",
            k.errq, x.errq
        ));
    }
    if k.frames.len() != x.frames.len() {
        out.push(format!(
            "frame count: kernel={} ipxmit={} (kernel lengths {:?}, ipxmit lengths {:?})",
            k.frames.len(),
            x.frames.len(),
            summary(&k.frames),
            summary(&x.frames)
        ));
    }
    for (i, (kf, xf)) in k.frames.iter().zip(&x.frames).enumerate() {
        let mut d = Vec::new();
        frame_diff(kf, xf, &mut d);
        for line in d.into_iter().take(8) {
            out.push(format!("frame {i}: {line}"));
        }
        if out.len() > 40 {
            out.push("...".into());
            return out;
        }
    }
    id_rules(s, &k.frames, &x.frames, &mut out);
    out
}

fn summary(frames: &[Vec<u8>]) -> String {
    let mut s = String::new();
    for (i, f) in frames.iter().enumerate() {
        if i == 12 {
            let _ = write!(s, " ... ({} more)", frames.len() - 12);
            break;
        }
        if well_formed(f) {
            let ip = Ip { f };
            let _ = write!(
                s,
                "{}@{}{} ",
                f.len(),
                ip.off(),
                if ip.mf() { "+" } else { "" }
            );
        } else {
            let _ = write!(s, "{}? ", f.len());
        }
    }
    s
}
