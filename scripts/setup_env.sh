#!/usr/bin/env bash
# Builds (or reuses) the project's Python 3.12 virtual environment in .venv.
# Why a script: the machine's default python3 is 3.11, for which pip silently picks an old jax;
# this picks 3.12 explicitly (pyenv if present) and reinstalls only when pyproject.toml, setup.py or constraints.txt
# change.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
extras="${1:-test}"  # "test" (pytest + the PyTorch reference stack) or "base" (the package alone)

find_python() {
  if command -v pyenv >/dev/null 2>&1; then
    # Prefer 3.12 (what the accelerator image runs), then any newer 3.x.
    for v in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.12\.'; pyenv versions --bare 2>/dev/null | grep -E '^3\.1[3-9]\.'); do
      PYENV_VERSION="$v" pyenv which python 2>/dev/null && return 0
    done
  fi
  for exe in python3.12 python3.13 python3; do
    if command -v "$exe" >/dev/null 2>&1 && "$exe" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
      command -v "$exe"; return 0
    fi
  done
  echo "error: Python >= 3.12 not found (install it, e.g. with pyenv)" >&2
  return 1
}

# constraints.txt pins every package to the versions the tests and README's figures were measured with; setup.py
# says which folders are packages (the editable install's import mapping).
hash="$(cat "$root/pyproject.toml" "$root/setup.py" "$root/constraints.txt" | sha256sum | cut -c1-16)"
stamp="$venv/.installed-$extras-$hash"
if [ ! -f "$stamp" ]; then
  if [ ! -x "$venv/bin/python" ]; then
    python="$(find_python)"
    echo "creating $venv with $python" >&2
    "$python" -m venv "$venv"
  fi
  "$venv/bin/python" -m pip install -q --upgrade pip >&2
  # grep drops pip's notes about unused local mirror folders; pipefail keeps pip's exit status.
  target="$root"; [ "$extras" = base ] || target="$root[$extras]"
  "$venv/bin/python" -m pip install -q -c "$root/constraints.txt" -e "$target" 2>&1 |
    { grep -v 'is ignored: it is neither' || true; } >&2
  find "$venv" -maxdepth 1 -name '.installed-*' ! -name "*-$hash" -delete  # stamps of an older pyproject.toml
  touch "$stamp"
fi
echo "$venv"
