//! A blocking send sleeps instead of spinning (issue 19 item 2): it waits
//! for a release of its send buffer, honours `SO_SNDTIMEO` (`EAGAIN`, as the
//! kernel) and `MSG_DONTWAIT`, and when nothing can ever free the buffer —
//! a wire nobody drains, no timer ahead — it fails with an error that says
//! so, after about a second, instead of hanging (it used to spin for ever
//! on `stack.poll(); yield_now()`).

mod common;

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use common::{eth0, mem_host, PEER};
use ipxmit::error::Errno;
use ipxmit::{MsgFlags, SendError, UdpSocket};

/// CPU time this process has used (user + system).
fn cpu_time() -> Duration {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// Fills the send buffer of `s` through a one-frame wire nobody drains;
/// returns the error of the send that could not go.
fn fill(s: &mut UdpSocket) -> SendError {
    let to = SocketAddrV4::new(PEER, 9);
    for _ in 0..100_000 {
        if let Err(e) = s.send_to(&[0; 1472], to, MsgFlags::NONE) {
            return e;
        }
    }
    panic!("100,000 sends into a wire nobody drains all succeeded");
}

#[test]
fn a_send_nothing_can_unblock_fails_after_a_second_without_spinning() {
    let (stack, _wire) = mem_host(eth0(), 1, 1);
    let mut s = UdpSocket::new(&stack);
    let (t0, c0) = (Instant::now(), cpu_time());
    let e = fill(&mut s);
    let (wall, cpu) = (t0.elapsed(), cpu_time() - c0);
    assert_eq!(e, SendError::Stalled, "{e}");
    assert_eq!(e.errno(), Errno::EAGAIN);
    assert!(wall >= Duration::from_millis(900), "gave up after {wall:?}");
    assert!(wall < Duration::from_secs(10), "waited {wall:?}");
    // Asleep, not spinning: well under the wall time on the CPU.
    assert!(cpu < wall / 2, "cpu {cpu:?} of {wall:?}");
    let dontwait = s.send_to(&[0; 1472], SocketAddrV4::new(PEER, 9), MsgFlags::DONTWAIT);
    assert_eq!(dontwait.map_err(|e| e.errno()), Err(Errno::EAGAIN));
}

#[test]
fn so_sndtimeo_ends_the_wait_with_eagain() {
    let (stack, _wire) = mem_host(eth0(), 1, 1);
    let mut s = UdpSocket::new(&stack);
    s.set_sndtimeo(Some(Duration::from_millis(100)));
    let t0 = Instant::now();
    let e = fill(&mut s);
    let wall = t0.elapsed();
    assert_eq!(e, SendError::Again, "{e}");
    assert!(wall >= Duration::from_millis(100), "{wall:?}");
    assert!(
        wall < Duration::from_millis(900),
        "{wall:?}: the timeout, not the stall"
    );
}

#[test]
fn a_release_from_another_thread_wakes_the_sender() {
    let (stack, wire) = mem_host(eth0(), 1, 1);
    let mut s = UdpSocket::new(&stack);
    assert_eq!(fill_with_timeout(&mut s), SendError::Again);
    // Another thread drains the wire 200 ms from now: the blocked send
    // wakes and goes (no SO_SNDTIMEO: it would wait for ever).
    s.set_sndtimeo(None);
    let w = wire.clone();
    let st = stack.clone();
    let drainer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        for _ in 0..200 {
            w.drain(|_| {});
            st.poll();
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    let t0 = Instant::now();
    let r = s.send_to(&[0; 1472], SocketAddrV4::new(PEER, 9), MsgFlags::NONE);
    assert_eq!(r, Ok(1472));
    assert!(
        t0.elapsed() >= Duration::from_millis(150),
        "{:?}",
        t0.elapsed()
    );
    drainer.join().unwrap();
}

/// Like [`fill`], with a short `SO_SNDTIMEO` so the filling ends quickly.
fn fill_with_timeout(s: &mut UdpSocket) -> SendError {
    s.set_sndtimeo(Some(Duration::from_millis(20)));
    fill(s)
}
