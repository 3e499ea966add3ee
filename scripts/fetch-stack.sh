#!/usr/bin/env bash
# The real tools the tests run — Debian's Prometheus 2.42, Alertmanager 0.25 (with promtool
# and amtool), libfuse3, dbus-daemon with its libraries (the bus under the systemd
# stand-in) and etcd 3.4 (the fleet semaphore's store) — unpacked into the project's own
# .stack/root directory by unpack-debs.sh: nothing is installed on the host (the packages'
# units would listen on every interface at the next boot). Idempotent.
set -euo pipefail
exec "$(dirname "$0")/unpack-debs.sh" fetch-stack "${MEDIC_STACK:-.stack}/root" \
  prometheus prometheus-alertmanager libfuse3-3 dbus-daemon libdbus-1-3 libexpat1 etcd-server
