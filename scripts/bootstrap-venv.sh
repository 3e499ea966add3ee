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
pip() { "$venv/bin/python" -m pip install --disable-pip-version-check "$@"; }

# torch for the embedded-mode tests: always the CPU build, never PyPI's Linux wheel (which
# bundles CUDA: gigabytes). `+cpu` is a local version only local wheel stores and PyTorch's
# CPU index carry, so the pin cannot resolve to the CUDA build. Tried first from pip's own
# configured sources (these machines keep the wheel on disk), then from PyTorch's CPU index
# (about 190 MB, announced). MEDIC_TORCH=skip installs no torch: the torch tests then skip
# and say why.
install_torch() {
  local want="torch==2.13.0+cpu"
  if "$venv/bin/python" -c 'import importlib.metadata as m; assert m.version("torch") == "2.13.0+cpu"' 2>/dev/null; then
    return 0
  fi
  if pip "$want" numpy; then
    return 0
  fi
  echo "bootstrap: $want is not in pip's configured sources; fetching it from" \
       "https://download.pytorch.org/whl/cpu (~190 MB; MEDIC_TORCH=skip to go without)" >&3
  pip "$want" numpy --extra-index-url https://download.pytorch.org/whl/cpu
}

case ",$extras," in
  *,torch,*)
    if [ "${MEDIC_TORCH:-cpu}" = skip ]; then
      echo "bootstrap: MEDIC_TORCH=skip: no torch; the torch tests will be skipped" >&2
      extras=$(echo ",$extras," | sed 's/,torch,/,/; s/^,//; s/,$//')
      target="."
      [ -n "$extras" ] && target=".[$extras]"
      with_torch=no
    else
      with_torch=yes
    fi ;;
  *) with_torch=no ;;
esac
exec 3>&2  # pip's output goes to the log; what the user must see goes to fd 3
if ! { pip --upgrade pip \
       && { [ "$with_torch" = no ] || install_torch; } \
       && pip -e "$target"; } >"$log" 2>&1; then
  tail -n 40 "$log" >&2
  echo "bootstrap: pip failed; full log in $log" >&2
  exit 1
fi
touch "$stamp"
