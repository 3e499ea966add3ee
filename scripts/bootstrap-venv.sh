#!/usr/bin/env bash
# Create .venv and install medic into it with the given extras ("" or "test").
# Idempotent: reinstalls only when pyproject.toml changed since the last install.
set -euo pipefail
venv=${VENV:-.venv}
extras=${1:-}
python=${PYTHON:-python3}
stamp="$venv/.installed${extras:+-$extras}"

if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ]; then
  exit 0
fi

if [ ! -x "$venv/bin/python" ]; then
  if ! "$python" -m venv "$venv" 2>/dev/null; then
    # Debian splits venv/ensurepip into python3-venv; install it when we are allowed to.
    rm -rf "$venv"
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "bootstrap: installing python3-venv" >&2
      apt-get install -y --no-install-recommends python3-venv >/dev/null \
        || { apt-get update -qq && apt-get install -y --no-install-recommends python3-venv >/dev/null; }
      "$python" -m venv "$venv"
    else
      echo "bootstrap: '$python -m venv' failed; install python3-venv (Debian) and retry" >&2
      exit 1
    fi
  fi
fi

log="$venv/install.log"
target="."
[ -n "$extras" ] && target=".[$extras]"
echo "bootstrap: installing medic${extras:+[$extras]} into $venv" >&2
pin=()
case ",$extras," in
  # The CPU build of torch 2.13.0 lies on these machines' disk; any other version (which
  # the plain range would pick) downloads gigabytes. Install it first; the range accepts it.
  *,torch,*) pin=(torch==2.13.0 numpy) ;;
esac
if ! { "$venv/bin/python" -m pip install --disable-pip-version-check --upgrade pip \
       && { [ ${#pin[@]} -eq 0 ] \
            || "$venv/bin/python" -m pip install --disable-pip-version-check "${pin[@]}"; } \
       && "$venv/bin/python" -m pip install --disable-pip-version-check -e "$target"; } >"$log" 2>&1; then
  tail -n 40 "$log" >&2
  echo "bootstrap: pip failed; full log in $log" >&2
  exit 1
fi
touch "$stamp"
