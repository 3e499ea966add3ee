#!/usr/bin/env bash
# What `make test` must leave as it found it: the host's service policy, the services enabled
# to start at boot, and the checkout's git status.
#   scripts/host-state.sh            print the state
#   scripts/host-state.sh FILE       compare with a state printed before; exit 1 on a change
# Installed packages are listed, not compared: the bootstrap may add python3-venv (no
# service) on a Debian that lacks it, and says so.
set -euo pipefail
state() {
  if [ -e /usr/sbin/policy-rc.d ]; then
    echo "policy-rc.d $(sha256sum </usr/sbin/policy-rc.d | cut -d' ' -f1)"
  else
    echo "policy-rc.d absent"
  fi
  # Enabled systemd units are the symlinks in *.wants/ and *.requires/; SysV services the
  # S links in rc?.d. Both are what decides what starts at the next boot.
  for dir in /etc/systemd/system /lib/systemd/system /usr/lib/systemd/system; do
    [ -d "$dir" ] && find "$dir" -mindepth 2 -maxdepth 2 -path '*.wants/*' -o -mindepth 2 \
      -maxdepth 2 -path '*.requires/*' 2>/dev/null | sed 's/^/enabled /'
  done
  ls /etc/rc?.d/S* 2>/dev/null | sed 's/^/sysv /' || true
  ls /etc/init.d 2>/dev/null | sed 's/^/init.d /' || true
  if git rev-parse --git-dir >/dev/null 2>&1; then
    git status --porcelain --untracked-files=all | sed 's/^/git /'
  fi
}
if [ $# -eq 0 ]; then
  state | sort
  exit 0
fi
if ! diff -u "$1" <(state | sort) >&2; then
  echo "host-state: make test changed the host's services or the checkout (diff above)" >&2
  exit 1
fi
echo "host-state: services, policy-rc.d and git status are as they were" >&2
