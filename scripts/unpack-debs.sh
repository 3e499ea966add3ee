#!/usr/bin/env bash
# unpack-debs.sh NAME ROOT PACKAGE... — Debian packages unpacked into ROOT, not installed:
# `apt-get download` + `dpkg-deb -x` run no maintainer script, write no policy-rc.d and
# enable no service. Only apt's package lists may be refreshed, when the host has none.
# Idempotent: exits at once when ROOT holds these packages already. (fetch-stack.sh and
# fetch-bench-stack.sh name what goes where.)
set -euo pipefail
name=$1 root=$2
shift 2
packages=("$@")
stamp="$root/.fetched-$(printf '%s-' "${packages[@]}")"
[ -f "$stamp" ] && exit 0

if ! command -v apt-get >/dev/null || ! command -v dpkg-deb >/dev/null; then
  echo "$name: needs apt-get and dpkg-deb (Debian); or unpack ${packages[*]} into $root" \
       "yourself" >&2
  exit 1
fi
debs=$(mktemp -d)
trap 'rm -rf "$debs"' EXIT
log="$debs/apt.log"
download() { (cd "$debs" && apt-get download -q "${packages[@]}") >>"$log" 2>&1; }
echo "$name: unpacking ${packages[*]} into $root" >&2
if ! download; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -q >>"$log" 2>&1 || true
  fi
  download || { tail -n 20 "$log" >&2; echo "$name: apt-get download failed" >&2; exit 1; }
fi
rm -rf "$root"
mkdir -p "$root"
for deb in "$debs"/*.deb; do
  dpkg-deb -x "$deb" "$root"
done
touch "$stamp"
