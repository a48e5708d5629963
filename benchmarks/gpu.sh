#!/usr/bin/env bash
# Issue 7's GPU measurements as one command for a lent accelerator machine (see BENCHMARKS.md, "GPU: run this").
#   here:  bash scripts/device_wheels.sh      # .whl/: what the machine's image lacks (grain, tfds, ...)
#   there: the device tool's run, command "bash benchmarks/gpu.sh", carry [".whl"], timeout_s 590
# Everything lands in $OUT, which the tool brings back: one bench JSON and log per model, each in its own time box,
# so a model that overruns costs only its own figures. Settings: CXRJAX_GPU_MODELS (default: the issue's three;
# empty: none), CXRJAX_GPU_BOX_S (seconds per model, default 180), CXRJAX_GPU_EXTRAS=0 (skip the input pipeline and
# the remat memory), CXRJAX_GPU_REMAT (arguments of remat_memory.py); extra arguments go to every `cxrjax bench`.
# Tried on a CPU (tiny model, jax 0.11.2, the carried wheels) as BENCHMARKS.md shows.
set -uo pipefail
out="${OUT:-/tmp/cxrjax_gpu}"
mkdir -p "$out"
site=/tmp/cxrjax_site
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl \
  || { echo "installing the carried wheels failed (run scripts/device_wheels.sh here and carry .whl)"; exit 1; }
export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
python3 - <<'PY' 2>&1 | tee "$out/machine.txt"
import flax, jax, optax, orbax.checkpoint, torch
print(f"jax {jax.__version__} {jax.devices()}; flax {flax.__version__}; optax {optax.__version__}; "
      f"torch {torch.__version__}, cuda {torch.cuda.is_available()}")
PY
nvidia-smi > "$out/nvidia-smi.txt" 2>&1
for model in ${CXRJAX_GPU_MODELS-resnet50 densenet121 swin_base}; do
  timeout "${CXRJAX_GPU_BOX_S:-180}" python3 -m cxrjax.cli bench --models "$model" --skip input,prepare \
    --output "$out/$model.json" "$@" > "$out/$model.log" 2>&1
  echo "$model: exit $?"
done
if [ "${CXRJAX_GPU_EXTRAS:-1}" != 0 ]; then
  timeout 90 python3 -m cxrjax.cli bench --skip train,eval --input-threads 1 --output "$out/input_and_prepare.json" \
    "$@" > "$out/input_and_prepare.log" 2>&1
  echo "input and prepare: exit $?"
  # shellcheck disable=SC2086  # the remat arguments are words on purpose
  timeout 240 python3 benchmarks/remat_memory.py ${CXRJAX_GPU_REMAT:-} > "$out/remat.json" 2> "$out/remat.log"
  echo "remat: exit $?"
fi
tail -n 30 "$out"/*.log | grep -v '^$' | tail -n 60
