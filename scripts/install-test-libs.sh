#!/usr/bin/env bash
# Debian's libfuse3 for the hung-mount test (tests/checks/test_hung_mount.py): the library
# only, no setuid helper, no service. Without root or apt the test skips with the reason.
set -euo pipefail
if ldconfig -p 2>/dev/null | grep -q 'libfuse3\.so\.3\b'; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install-test-libs: libfuse3 is missing (Debian: libfuse3-3); the hung-mount test" \
       "will be skipped" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
echo "install-test-libs: installing libfuse3-3" >&2
if ! apt-get install -y -q --no-install-recommends libfuse3-3 >/tmp/medic-apt-libs.log 2>&1; then
  apt-get update -q >>/tmp/medic-apt-libs.log 2>&1
  apt-get install -y -q --no-install-recommends libfuse3-3 >>/tmp/medic-apt-libs.log 2>&1 \
    || { tail -n 20 /tmp/medic-apt-libs.log >&2; echo "install-test-libs: the hung-mount test will be skipped" >&2; }
fi
