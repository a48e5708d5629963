#!/usr/bin/env bash
# Sets up .venv (Python >= 3.12, the package, pytest and the PyTorch reference stack) and runs the whole test suite.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$(bash "$root/scripts/setup_env.sh" test)"
cd "$root"
exec "$venv/bin/python" -m pytest "$@"
