#!/usr/bin/env bash
# The scrape benchmark drives load with wrk (C, so the client does not eat the server's core).
set -euo pipefail
command -v wrk >/dev/null && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get install -y --no-install-recommends wrk >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y --no-install-recommends wrk >/dev/null; }
else
  echo "bench: wrk is missing; install it (Debian: apt-get install wrk)" >&2
  exit 1
fi
