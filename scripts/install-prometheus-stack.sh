#!/usr/bin/env bash
# Install Debian's Prometheus and Alertmanager for the end-to-end tests, when missing.
# The packages' init scripts would start both daemons on every interface; a policy-rc.d
# that exits 101 stops that (the machines have one; we create it if not).
set -euo pipefail
have() { command -v "$1" >/dev/null 2>&1; }
if have prometheus && have promtool && have prometheus-alertmanager && have amtool \
   && [ -f /usr/share/prometheus/alertmanager/default.tmpl ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! have apt-get; then
  echo "install-prometheus-stack: need root and apt-get to install prometheus and" \
       "prometheus-alertmanager (Debian); install them and re-run" >&2
  exit 1
fi
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
fi
export DEBIAN_FRONTEND=noninteractive
packages=(prometheus prometheus-alertmanager)
echo "install-prometheus-stack: installing ${packages[*]}" >&2
if ! apt-get install -y -q --no-install-recommends "${packages[@]}" >/tmp/medic-apt.log 2>&1; then
  apt-get update -q >>/tmp/medic-apt.log 2>&1
  apt-get install -y -q --no-install-recommends "${packages[@]}" >>/tmp/medic-apt.log 2>&1 \
    || { tail -n 30 /tmp/medic-apt.log >&2; exit 1; }
fi
