#!/usr/bin/env bash
# Screenshot a report page with headless Chromium, to check by eye how it renders.
#
#   scripts/screenshot_report.sh REPORT_HTML OUT_PNG [WIDTHxHEIGHT]
#
# e.g. after `descentlab compare ... --out /tmp/sw`:
#   scripts/screenshot_report.sh /tmp/sw/report.html /tmp/sw/report.png
#
# Not part of CI: it needs Chromium (Debian/Ubuntu: `apt-get install -y chromium`).
# The page is self-contained, and Chromium runs with networking features off and a
# throw-away profile, so the screenshot shows exactly what the file holds.  Only the
# top WIDTHxHEIGHT pixels (default 1200x2400) are captured.
set -euo pipefail

if [[ $# -lt 2 || $# -gt 3 ]]; then
    echo "usage: $0 REPORT_HTML OUT_PNG [WIDTHxHEIGHT]" >&2
    exit 2
fi
report=$1
out=$2
size=${3:-1200x2400}
if [[ ! -f "$report" ]]; then
    echo "error: no such file: $report (give the report.html of a sweep)" >&2
    exit 2
fi
if [[ ! "$size" =~ ^[0-9]+x[0-9]+$ ]]; then
    echo "error: size must look like 1200x2400, got $size" >&2
    exit 2
fi
browser=""
for name in chromium chromium-browser google-chrome; do
    if command -v "$name" >/dev/null 2>&1; then
        browser=$name
        break
    fi
done
if [[ -z "$browser" ]]; then
    echo "error: Chromium not found (install it: apt-get install -y chromium)" >&2
    exit 2
fi

url="file://$(realpath "$report")"
out_abs="$(realpath -m "$out")"
mkdir -p "$(dirname "$out_abs")"
profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT

timeout 120 "$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --hide-scrollbars --user-data-dir="$profile" --screenshot="$out_abs" \
    --window-size="${size/x/,}" "$url" >/dev/null 2>&1 || true

if [[ ! -s "$out_abs" ]]; then
    echo "error: $browser wrote no screenshot to $out_abs" >&2
    exit 1
fi
echo "wrote $out_abs"
