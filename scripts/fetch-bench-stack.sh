#!/usr/bin/env bash
# The benchmarks' anchors — Debian's node_exporter and nginx, measured beside medic in the
# same run — unpacked into .stack/bench by unpack-debs.sh (not installed). Idempotent.
set -euo pipefail
exec "$(dirname "$0")/unpack-debs.sh" fetch-bench-stack "${MEDIC_STACK:-.stack}/bench" \
  prometheus-node-exporter nginx
