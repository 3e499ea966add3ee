#!/usr/bin/env bash
# A real model server for the end-to-end tests, in the project's own .stack/: NVIDIA's
# Triton Inference Server as PyTriton ships it (nvidia-pytriton 0.7.0 carries the real
# tritonserver binary and runs CPU-only models), and supervisord to run it under.
#
# PyTriton needs a Python with a shared libpython (Debian's python3.11 has one) and
# numpy < 2, so it gets a venv of its own. Nothing is installed on the host. Idempotent.
set -euo pipefail
stack=${MEDIC_STACK:-.stack}
venv="$stack/pytriton"
stamp="$venv/.installed-pytriton-0.7.0-supervisor-4.3.0"
[ -f "$stamp" ] && exit 0
python=""
for candidate in /usr/bin/python3.11 /usr/bin/python3; do
  if [ -x "$candidate" ] && "$candidate" -c 'import sysconfig,sys; sys.exit(0 if sysconfig.get_config_var("Py_ENABLE_SHARED") else 1)' 2>/dev/null; then
    python=$candidate
    break
  fi
done
if [ -z "$python" ]; then
  echo "fetch-model-server: no Python with a shared libpython (Debian's python3.11); the" \
       "real-model-server tests will be skipped" >&2
  exit 0
fi
echo "fetch-model-server: installing nvidia-pytriton and supervisor into $venv" >&2
rm -rf "$venv"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { "$python" -m venv "$venv" \
       && "$venv/bin/python" -m pip install --disable-pip-version-check -q \
            nvidia-pytriton==0.7.0 supervisor==4.3.0; } >"$log" 2>&1; then
  tail -n 20 "$log" >&2
  echo "fetch-model-server: failed; the real-model-server tests will be skipped" >&2
  rm -rf "$venv"
  exit 0
fi
touch "$stamp"
