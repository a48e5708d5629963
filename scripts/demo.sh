#!/usr/bin/env bash
# Sets up .venv (Python >= 3.12, the package) and runs the demo: synthetic release → shards → training → test AUCs.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$(bash "$root/scripts/setup_env.sh" base)"
exec "$venv/bin/cxrjax" demo "$@"
