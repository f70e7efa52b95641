#!/usr/bin/env bash
# Instructions per datagram of ipxmit's in-memory path, counted by callgrind.
#
# For each case, `ipxmit bench --callgrind-case CASE --count N` runs under
# `valgrind --tool=callgrind` twice, with N and N/2 datagrams (after the same
# warm-up); (Ir(N) - Ir(N/2)) / (N - N/2) is the instruction count of one
# datagram with start-up, set-up and warm-up cancelled. Instruction counts do
# not depend on machine noise, so a regression shows up as a changed number.
#
# Usage: scripts/callgrind.sh [CASE...]     (default: 18B 1472B 8000B 65000B 8x1000B-more)
# CASE is any case of `ipxmit bench --cases`: also gso-64k/1472, 1472B-swcsum,
# 65000B-swcsum, 18B-tbf, 1472B-tbf (a root `tbf rate 1tbit ...`), 18B-htb,
# 1472B-htb (a root htb with one 1tbit class), and
# 18B-pfifo, 1472B-pfifo (a root `pfifo limit 1000` on the
# device), 18B-hook (an accept-all LOCAL_OUT hook) and 18B-rules (ten policy
# rules, five numbered tables), configured as the sink table's side B
# configures them. Unknown names fail before valgrind runs.
# Environment:
#   N=20480        datagrams of the long run (the short run sends N/2; with
#                  API=batch both must be multiples of 64)
#   DEV=mem        mem (in-memory wire, drained after every datagram) or null
#   API=batch      batch (send_batch of 64 datagrams, as the bench's side B)
#                  or sendto (one send_to per datagram)
#   ANNOTATE=1     also print the top functions (self cost) of each long run
#   KEEP=DIR       keep the callgrind.out files in DIR
#   IPXMIT=PATH    use this ipxmit binary instead of building one
# Where `perf stat -e instructions` works (not in most VMs) it is run too.
set -euo pipefail

cd "$(dirname "$0")/.."
N=${N:-20480}
DEV=${DEV:-mem}
API=${API:-batch}
CASES=("$@")
[ ${#CASES[@]} -eq 0 ] && CASES=(18B 1472B 8000B 65000B 8x1000B-more)
HALF=$((N / 2))
if [ "$N" -lt 2 ]; then echo "N must be at least 2" >&2; exit 2; fi
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 2; }

if [ -z "${IPXMIT:-}" ]; then
    cargo build --release -q -p ipxmit-cli
    IPXMIT=target/release/ipxmit
fi
# Fail on an unknown case name now, not after a valgrind run.
for c in "${CASES[@]}"; do
    "$IPXMIT" bench --callgrind-case "$c" --count 0 --callgrind-dev "$DEV" --callgrind-api "$API" >/dev/null
done
OUT=${KEEP:-$(mktemp -d)}
mkdir -p "$OUT"
[ -z "${KEEP:-}" ] && trap 'rm -rf "$OUT"' EXIT

# Total instructions (Ir) of one run of CASE with COUNT datagrams.
instructions() {
    local case=$1 count=$2 file
    file="$OUT/callgrind.out.${case//\//_}.$count"
    valgrind --tool=callgrind --callgrind-out-file="$file" \
        "$IPXMIT" bench --callgrind-case "$case" --count "$count" --callgrind-dev "$DEV" --callgrind-api "$API" \
        >/dev/null 2>"$file.log" || { cat "$file.log" >&2; return 1; }
    awk '/^(summary|totals):/ { print $2; exit }' "$file"
}

perf_ok=no
if command -v perf >/dev/null && perf stat -x, -e instructions true 2>&1 | grep -qv 'not supported'; then
    perf_ok=yes
fi

echo "ipxmit instructions per datagram ($DEV path, $API API, callgrind, N=$N vs N/2=$HALF), $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
printf '%-16s %16s %16s %14s\n' case "Ir(N)" "Ir(N/2)" "Ir/datagram"
for c in "${CASES[@]}"; do
    full=$(instructions "$c" "$N")
    half=$(instructions "$c" "$HALF")
    per=$(( (full - half) / (N - HALF) ))
    printf '%-16s %16s %16s %14s\n' "$c" "$full" "$half" "$per"
    if [ "${ANNOTATE:-0}" = 1 ] && command -v callgrind_annotate >/dev/null; then
        # (head closes the pipe early: not a failure under pipefail)
        { callgrind_annotate --inclusive=no "$OUT/callgrind.out.${c//\//_}.$N" 2>/dev/null \
            | sed -n '/^Ir/,$p' | head -25; } || true
    fi
done

if [ "$perf_ok" = yes ]; then
    echo
    echo "perf stat (instructions, user+kernel):"
    for c in "${CASES[@]}"; do
        a=$(perf stat -x, -e instructions "$IPXMIT" bench --callgrind-case "$c" --count "$N" --callgrind-dev "$DEV" --callgrind-api "$API" 2>&1 >/dev/null | awk -F, '/instructions/ {print $1}')
        b=$(perf stat -x, -e instructions "$IPXMIT" bench --callgrind-case "$c" --count "$HALF" --callgrind-dev "$DEV" --callgrind-api "$API" 2>&1 >/dev/null | awk -F, '/instructions/ {print $1}')
        printf '%-16s %14s per datagram\n' "$c" $(( (a - b) / (N - HALF) ))
    done
else
    echo "(perf stat -e instructions is not supported on this machine: callgrind only)"
fi
