#!/usr/bin/env bash
# Runs bench/wakeup: 1-byte round trips against the C echo and the three Node ways of waiting,
# ROUNDS rounds in turn (default 3), COUNT round trips each (default 20000), on 127.0.0.1:PORT.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -e dist/kernel/fdio.js ] || npm run build >/dev/null
ROUNDS=${ROUNDS:-3} COUNT=${COUNT:-20000} PORT=${PORT:-19100}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
gcc -O2 -o "$tmp/pingpong" bench/wakeup/pingpong.c
gcc -O2 -o "$tmp/echo" bench/wakeup/echo.c
for round in $(seq "$ROUNDS"); do
  for mode in c net poll block; do
    if [ "$mode" = c ]; then "$tmp/echo" "$PORT" & else node bench/wakeup/echo.mjs "$mode" "$PORT" >/dev/null & fi
    pid=$!
    for _ in $(seq 50); do "$tmp/pingpong" "$PORT" 1 >/dev/null 2>&1 && break; sleep 0.1; done
    "$tmp/pingpong" "$PORT" 2000 >/dev/null
    echo "round $round  $mode  $("$tmp/pingpong" "$PORT" "$COUNT")"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
  done
done
