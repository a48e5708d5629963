#!/usr/bin/env bash
# Builds .whl/: wheels of the packages cxrjax needs that the lent accelerator machine's image lacks, for the `device`
# tool's `carry` (see benchmarks/gpu.sh).
# Why: that image (Python 3.12 with jax 0.11.2, flax, optax, orbax-checkpoint, chex, torch, timm, scikit-learn,
# matplotlib) has no grain, array-record, tensorflow-datasets or ml-collections, nor some of their own needs, and
# nothing can be fetched there. The versions are this checkout's .venv's: the combination the test suite passes with.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$(bash "$root/scripts/setup_env.sh" test)"
missing=(grain array-record portpicker tensorflow-datasets tensorflow-metadata googleapis-common-protos dm-tree
         immutabledict promise simple-parsing docstring-parser termcolor toml ml-collections tensorboardX pydicom
         importlib-resources)
pins="$("$venv/bin/python" - "${missing[@]}" <<'PY'
import importlib.metadata
import sys

print(" ".join(f"{name}=={importlib.metadata.version(name)}" for name in sys.argv[1:]))
PY
)"
rm -rf "$root/.whl"
# `pip wheel` takes the published wheel where there is one (all are for CPython 3.12 on x86_64 Linux, as there) and
# builds the pure-Python ones published as source only (promise).
"$venv/bin/python" -m pip wheel -q --no-deps -w "$root/.whl" $pins 2>&1 | { grep -v 'is ignored: it is neither' || true; } >&2
du -sh "$root/.whl" >&2
