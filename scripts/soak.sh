#!/usr/bin/env bash
# Soak: `ipxmit send` under overload for a long time, its resident memory
# sampled every second, then three verdicts:
#
#   * RSS flat after warm-up: after WARMUP seconds no sample is more than
#     5% above the median of those samples, and the median of their last
#     third is within 5% of their first third's (no leak, no creeping
#     queue). Samples below the median are reported, not failed: glibc
#     gives freed arenas back now and then (dips of ~20% were seen).
#   * no hang: the run ends within DURATION + 60 s (its own --linger
#     included), else it is killed and the soak fails;
#   * conservation exact: the run's JSON outcome has no unaccounted
#     packet, and packets = sent + dropped + queued at exit.
#
# Overload: a tiny root qdisc ("pfifo limit 8"), 64-datagram batches from
# two threads over four sockets, a size mix that fragments (18, 1472, 8000
# bytes): most packets are dropped (QDISC_DROP, and the fragments after a
# dropped one), which is the point.
#
# Usage: scripts/soak.sh [mem|tap]...        (default: mem)
#   mem  the in-memory wire with the verifying peer (no privileges)
#   tap  a TAP device into a kernel receiver, all inside a network
#        namespace this script makes and removes (needs root and iproute2;
#        SKIPPED otherwise). The kernel at 10.0.0.2 answers ARP and a UDP
#        socket there drains port 9000.
# Environment:
#   DURATION=600   seconds of sending (the issue's soak is 10 minutes)
#   WARMUP=60      seconds ignored before the flatness check (at most
#                  DURATION/2)
#   OUT=soak-out   where the CSV (t_s,rss_kib), JSON, stderr and SVG plot go
#   IPXMIT=PATH    the ipxmit binary (default: build the release one)
# Exit status: 0 when every mode passed, 1 when one failed, 2 on bad usage.
# Not part of CI (it takes DURATION per mode); see README.md.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-600}
WARMUP=${WARMUP:-60}
OUT=${OUT:-soak-out}
MODES=("$@")
[ ${#MODES[@]} -eq 0 ] && MODES=(mem)
[ "$WARMUP" -gt $((DURATION / 2)) ] && WARMUP=$((DURATION / 2))
if [ -z "${IPXMIT:-}" ]; then
    cargo build --release -q -p ipxmit-cli
    IPXMIT=${CARGO_TARGET_DIR:-target}/release/ipxmit
fi
IPXMIT=$(realpath "$IPXMIT")
mkdir -p "$OUT"
OVERLOAD=(-t "$DURATION" -l 18,1472,8000 --batch 64 --threads 2 --sockets 4
    --qdisc "pfifo limit 8" --linger 5s --json)

# Samples VmRSS of $1 every second into $2 until it exits.
sample_rss() {
    local pid=$1 csv=$2 t=0 rss
    echo "t_s,rss_kib" >"$csv"
    while kill -0 "$pid" 2>/dev/null; do
        rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
        [ -n "$rss" ] && echo "$t,$rss" >>"$csv"
        sleep 1
        t=$((t + 1))
    done
}

# The ipxmit process under $1 (a `timeout` or `ip netns exec` wrapper).
child_of() {
    local p=$1 c
    for _ in $(seq 50); do
        c=$(pgrep -P "$p" -n || true)
        [ -z "$c" ] && return 0
        if [ "$(cat "/proc/$c/comm" 2>/dev/null)" = "$(basename "$IPXMIT" | cut -c1-15)" ]; then
            echo "$c"
            return 0
        fi
        p=$c
    done
}

# Draws $1 (CSV) as an SVG line plot into $2, with the +-5% band.
plot_svg() {
    awk -F, -v title="$3" -v warm="$WARMUP" '
    NR > 1 { t[n] = $1; r[n] = $2 / 1024; n++; if ($2 / 1024 > max) max = $2 / 1024 }
    END {
        if (n == 0) exit;
        W = 800; H = 400; L = 70; B = 40; T = 30; R = 20;
        tmax = t[n - 1] > 0 ? t[n - 1] : 1; ymax = max * 1.2;
        printf "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\">\n", W, H;
        printf "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n";
        printf "<text x=\"%d\" y=\"20\" font-family=\"sans-serif\" font-size=\"14\">%s</text>\n", L, title;
        printf "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", L, H - B, W - R, H - B;
        printf "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", L, T, L, H - B;
        for (i = 0; i <= 4; i++) {
            y = H - B - i * (H - B - T) / 4;
            printf "<text x=\"5\" y=\"%d\" font-family=\"sans-serif\" font-size=\"11\">%.1f MiB</text>\n", y + 4, ymax * i / 4;
            x = L + i * (W - L - R) / 4;
            printf "<text x=\"%d\" y=\"%d\" font-family=\"sans-serif\" font-size=\"11\">%d s</text>\n", x - 10, H - B + 16, tmax * i / 4;
        }
        wx = L + warm / tmax * (W - L - R);
        printf "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"gray\" stroke-dasharray=\"4\"/>\n", wx, T, wx, H - B;
        printf "<polyline fill=\"none\" stroke=\"steelblue\" stroke-width=\"1.5\" points=\"";
        for (i = 0; i < n; i++)
            printf "%.1f,%.1f ", L + t[i] / tmax * (W - L - R), H - B - r[i] / ymax * (H - B - T);
        printf "\"/>\n</svg>\n";
    }' "$1" >"$2"
}

# Checks the CSV $1 for flatness after warm-up; prints the figures.
check_flat() {
    python3 - "$1" "$WARMUP" <<'EOF'
import csv, sys
rows = csv.DictReader(open(sys.argv[1]))
v = sorted(int(r["rss_kib"]) for r in rows if int(r["t_s"]) >= int(sys.argv[2]))
if len(v) < 3:
    print("rss: too few samples after warm-up")
    sys.exit(1)
med, lo, hi = v[(len(v) - 1) // 2], v[0], v[-1]
# Samples in time order, for the drift between the first and last thirds.
t = [int(r["rss_kib"]) for r in csv.DictReader(open(sys.argv[1])) if int(r["t_s"]) >= int(sys.argv[2])]
third = max(1, len(t) // 3)
first, last = sorted(t[:third])[(third - 1) // 2], sorted(t[-third:])[(third - 1) // 2]
drift = (last - first) * 100 / first
ok = hi <= med * 1.05 and abs(drift) <= 5
print(f"rss after {sys.argv[2]} s warm-up: {len(v)} samples, median {med} KiB,"
      f" max {hi} ({(hi - med) * 100 / med:+.1f}%), min {lo} ({(lo - med) * 100 / med:+.1f}%,"
      f" the allocator giving memory back), drift first->last third {drift:+.1f}%:"
      f" {'flat' if ok else 'NOT FLAT'} (max and drift within 5%)")
sys.exit(0 if ok else 1)
EOF
}

# Checks the run's JSON outcome $1 for exact conservation.
check_conservation() {
    python3 - "$1" <<'EOF'
import json, sys
o = json.load(open(sys.argv[1]))["outcome"]
q = o["queued_at_exit"]["neighbour"] + o["queued_at_exit"]["qdisc"]
ok = o["unaccounted"] == 0 and o["packets"] == o["sent"] + o["dropped"] + q
print(f"conservation: {o['packets']} IP packets = {o['sent']} sent + {o['dropped']} dropped"
      f" {o['drop_reasons']} + {q} queued; unaccounted {o['unaccounted']}:"
      f" {'exact' if ok else 'BROKEN'}")
sys.exit(0 if ok else 1)
EOF
}

# Runs one mode: $1 is mem or tap; the command follows.
soak() {
    local mode=$1 pid ipx rc=0 verdict=0
    shift
    local csv=$OUT/$mode-rss.csv json=$OUT/$mode.json
    echo "soak $mode: ${DURATION} s: ${OVERLOAD[*]}"
    timeout -k 5 $((DURATION + 60)) "$@" >"$json" 2>"$OUT/$mode.stderr" &
    pid=$!
    sleep 0.5
    ipx=$(child_of "$pid")
    [ -n "$ipx" ] || { echo "soak $mode: ipxmit did not start" >&2; return 1; }
    sample_rss "$ipx" "$csv"
    wait "$pid" || rc=$?
    # ipxmit send exits 1 when it dropped packets, as overload makes it.
    if [ "$rc" -ge 124 ]; then
        echo "soak $mode: HANG (killed after $((DURATION + 60)) s, status $rc)"
        verdict=1
    else
        echo "soak $mode: ended by itself (status $rc)"
    fi
    plot_svg "$csv" "$OUT/$mode-rss.svg" "ipxmit send soak ($mode): RSS (MiB) over time (s)"
    check_flat "$csv" || verdict=1
    check_conservation "$json" || verdict=1
    echo "soak $mode: plot $OUT/$mode-rss.svg: $([ $verdict = 0 ] && echo PASS || echo FAIL)"
    return $verdict
}

# The TAP mode's namespace: a tap at 10.0.0.2 (the kernel) and a UDP
# drain on port 9000; ipxmit runs inside it as 10.0.0.1.
tap_mode() {
    if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null; then
        echo "SKIPPED (needs root and iproute2): soak tap" >&2
        return 0
    fi
    local ns=ipxmit-soak-$$ tap=ipxsoak0 drain rc=0
    ip netns add "$ns"
    trap 'kill $drain 2>/dev/null; ip netns del '"$ns"' 2>/dev/null' RETURN
    ip -n "$ns" link set lo up
    ip -n "$ns" tuntap add mode tap name "$tap"
    ip -n "$ns" addr add 10.0.0.2/24 dev "$tap"
    ip -n "$ns" link set "$tap" up
    ip netns exec "$ns" python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
s.bind(("10.0.0.2", 9000))
while True:
    s.recv(65535)' &
    drain=$!
    soak tap ip netns exec "$ns" "$IPXMIT" send --dev "tap:$tap" "${OVERLOAD[@]}" || rc=1
    return $rc
}

status=0
for m in "${MODES[@]}"; do
    case $m in
        mem) soak mem "$IPXMIT" send "${OVERLOAD[@]}" || status=1 ;;
        tap) tap_mode || status=1 ;;
        *) echo "unknown mode $m (mem, tap)" >&2; exit 2 ;;
    esac
done
exit $status
