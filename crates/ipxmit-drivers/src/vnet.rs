//! The `virtio_net_hdr` in front of a frame, shared by the drivers that hand
//! the kernel offload work: [`tap`](crate::tap) (`IFF_VNET_HDR`) and
//! [`packet`](crate::packet) (`PACKET_VNET_HDR`).
//!
//! Stands for `include/uapi/linux/virtio_net.h` and the sending half of
//! `include/linux/virtio_net.h`: a `CHECKSUM_PARTIAL` buffer becomes
//! `VIRTIO_NET_HDR_F_NEEDS_CSUM` with `csum_start`/`csum_offset` relative to
//! the frame start, a UDP GSO buffer becomes `VIRTIO_NET_HDR_GSO_UDP_L4` with
//! `gso_size` and `hdr_len`, a UFO datagram (one UDP datagram over the MTU)
//! becomes `VIRTIO_NET_HDR_GSO_UDP` with the fragments' data size as
//! `gso_size` (the UDP header counted in the first's, as `virtio_net_hdr_to_skb`
//! reads it for UFO). The kernel reads it back with
//! `virtio_net_hdr_to_skb` (`tun_get_user`, `packet_snd`, `tpacket_snd`) and
//! completes the checksum or segments the super-packet itself.

use ipxmit::buf::{CsumState, GsoType};
use ipxmit::PacketBuf;

/// `sizeof(struct virtio_net_hdr)`.
pub const VNET_HDR_LEN: usize = 10;
/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`.
pub const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_NONE`.
pub const VIRTIO_NET_HDR_GSO_NONE: u8 = 0;
/// `VIRTIO_NET_HDR_GSO_UDP`: UFO, one UDP datagram to be cut into IP
/// fragments of `gso_size` data bytes.
pub const VIRTIO_NET_HDR_GSO_UDP: u8 = 3;
/// `VIRTIO_NET_HDR_GSO_UDP_L4`.
pub const VIRTIO_NET_HDR_GSO_UDP_L4: u8 = 5;
const UDP_HLEN: usize = 8;

/// Kernel: `virtio_net_hdr_from_skb()`, include/linux/virtio_net.h. The header
/// telling the kernel what is left to do for `pkt`: complete a partial checksum
/// (`csum_start` is relative to the frame start), segment a UDP GSO packet,
/// fragment a UFO datagram (whose checksum is complete or left partial).
/// `hdr_len` (the kernel's hint of how much to put in the linear part) is
/// the headers' length for a GSO packet and 0 otherwise.
pub fn vnet_header(pkt: &PacketBuf) -> [u8; VNET_HDR_LEN] {
    let (mut flags, mut gso_type) = (0u8, VIRTIO_NET_HDR_GSO_NONE);
    let (mut hdr_len, mut gso_size, mut csum_start, mut csum_offset) = (0u16, 0u16, 0u16, 0u16);
    let frame = pkt.data_offset();
    if let CsumState::Partial { start, offset } = pkt.meta.ip_summed {
        flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
        csum_start = (start as usize).saturating_sub(frame) as u16;
        csum_offset = offset;
    }
    let vgso = match pkt.meta.gso_type {
        GsoType::UdpL4 => VIRTIO_NET_HDR_GSO_UDP_L4,
        GsoType::Udp => VIRTIO_NET_HDR_GSO_UDP,
        GsoType::None => VIRTIO_NET_HDR_GSO_NONE,
    };
    if vgso != VIRTIO_NET_HDR_GSO_NONE && pkt.meta.gso_size > 0 {
        gso_type = vgso;
        gso_size = pkt.meta.gso_size;
        let th = (pkt.meta.transport_header as usize).saturating_sub(frame);
        hdr_len = (th + UDP_HLEN) as u16;
    }
    let mut h = [0u8; VNET_HDR_LEN];
    h[0] = flags;
    h[1] = gso_type;
    // Legacy virtio: native endianness (the kernel's default without
    // TUNSETVNETLE; `vio_le()` for packet sockets is the host's order too).
    h[2..4].copy_from_slice(&hdr_len.to_ne_bytes());
    h[4..6].copy_from_slice(&gso_size.to_ne_bytes());
    h[6..8].copy_from_slice(&csum_start.to_ne_bytes());
    h[8..10].copy_from_slice(&csum_offset.to_ne_bytes());
    h
}
