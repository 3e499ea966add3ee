#!/usr/bin/env bash
# The real tools the tests run — Debian's Prometheus 2.42, Alertmanager 0.25 (with promtool
# and amtool), libfuse3, dbus-daemon with its libraries (the bus under the systemd
# stand-in) and etcd 3.4 (the fleet semaphore's store) — unpacked into the project's own
# .stack/ directory.
#
# Nothing is installed on the host: `apt-get download` + `dpkg-deb -x` run no maintainer
# script, write no policy-rc.d and enable no service (the packages' units would listen on
# every interface at the next boot). Only apt's package lists may be refreshed, when the
# host has none. Idempotent: exits at once when .stack/ is complete.
set -euo pipefail
stack=${MEDIC_STACK:-.stack}
root="$stack/root"
packages=(prometheus prometheus-alertmanager libfuse3-3 dbus-daemon libdbus-1-3 libexpat1 etcd-server)
stamp="$stack/.fetched-$(printf '%s-' "${packages[@]}")"
[ -f "$stamp" ] && exit 0

if ! command -v apt-get >/dev/null || ! command -v dpkg-deb >/dev/null; then
  echo "fetch-stack: needs apt-get and dpkg-deb (Debian); or put prometheus, promtool," \
       "prometheus-alertmanager and amtool under $root/usr/bin yourself" >&2
  exit 1
fi
debs=$(mktemp -d)
trap 'rm -rf "$debs"' EXIT
log="$debs/apt.log"
download() { (cd "$debs" && apt-get download -q "${packages[@]}") >>"$log" 2>&1; }
echo "fetch-stack: unpacking ${packages[*]} into $root" >&2
if ! download; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -q >>"$log" 2>&1 || true
  fi
  download || { tail -n 20 "$log" >&2; echo "fetch-stack: apt-get download failed" >&2; exit 1; }
fi
rm -rf "$root"
mkdir -p "$root"
for deb in "$debs"/*.deb; do
  dpkg-deb -x "$deb" "$root"
done
touch "$stamp"
