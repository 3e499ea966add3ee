#!/usr/bin/env bash
# The benchmarks' anchors — Debian's node_exporter and nginx, measured beside medic in the
# same run — unpacked into .stack/bench/ (not installed: `apt-get download` + `dpkg-deb -x`
# run no maintainer script and enable no service). Idempotent.
set -euo pipefail
root="${MEDIC_STACK:-.stack}/bench"
packages=(prometheus-node-exporter nginx)
stamp="$root/.fetched-$(printf '%s-' "${packages[@]}")"
[ -f "$stamp" ] && exit 0
debs=$(mktemp -d)
trap 'rm -rf "$debs"' EXIT
log="$debs/apt.log"
download() { (cd "$debs" && apt-get download -q "${packages[@]}") >>"$log" 2>&1; }
echo "fetch-bench-stack: unpacking ${packages[*]} into $root" >&2
if ! download; then
  [ "$(id -u)" = 0 ] && { apt-get update -q >>"$log" 2>&1 || true; }
  download || { tail -n 20 "$log" >&2; echo "fetch-bench-stack: apt-get download failed" >&2; exit 1; }
fi
rm -rf "$root"
mkdir -p "$root"
for deb in "$debs"/*.deb; do
  dpkg-deb -x "$deb" "$root"
done
touch "$stamp"
