#!/usr/bin/env bash
# The prepared GPU check for a lent GPU machine: one command there, sized to end within 7 minutes
# (measurements that would start after --budget-s 300 are skipped and named in the JSON file).
#
# The machine gets a copy of this working tree and has its own python3 with PyTorch, h5py, numpy,
# pandas, matplotlib, scikit-learn and PyYAML, but not jsonschema, and nothing can be fetched there.
# So, in two steps:
#
#   here, once:   bash tests/perf/gpu_check_on_device.sh --fetch-wheels
#                 (jsonschema and its dependencies as Python 3.12 wheels into .whl/, which git ignores)
#   there:        bash tests/perf/gpu_check_on_device.sh
#                 (carry .whl; writes $OUT/gpu_check.json, $OUT/gpu_check.log and $OUT/projection.txt)
#
# It runs `lffood gpu-check` without the rehearsal, which needs Snakemake and about 1,500 jobs; CI runs
# the rehearsal on the CPU. The check measures every objective's training step, extraction and ODIN
# at the paper's sizes, the DDP launcher, CSD's full-size k-NN search (target 30 s), one training job
# against two and four on the GPU, and prints the projected wall time per stage, which
# `lffood project --gpu-check gpu_check.json` prints again here.
set -euo pipefail
cd "$(dirname "$0")/../.."

# the versions of constraints.txt
WHEELS=(jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1)

if [ "${1:-}" = "--fetch-wheels" ]; then
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "${WHEELS[@]}"
  ls .whl
  exit 0
fi

out="${OUT:-.}"
if ! python3 -c "import jsonschema" 2>/dev/null; then
  ls .whl/*.whl >/dev/null 2>&1 || { echo "no .whl/: run 'bash $0 --fetch-wheels' here and carry .whl"; exit 1; }
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/src:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())"
# measurements stop starting after --budget-s; the k-NN search and the jobs-per-GPU run come after them
timeout 420 python3 -m lffood gpu-check --no-rehearsal --budget-s 300 --out "$out/gpu_check.json" "${@}" \
  2>&1 | tee "$out/gpu_check.log"
python3 -m lffood project --gpu-check "$out/gpu_check.json" | tee "$out/projection.txt"
