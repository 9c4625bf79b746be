#!/usr/bin/env bash
# The GPU checks in one command (nothing is downloaded): MASN/AVST parity on CUDA vs CPU, bf16/fp16
# training steps, --resume after a kill, both input pipelines (--input loader / reader) in an AVST
# training epoch and in scripts/bench_input.py (it prints which one to make the default),
# extraction end-to-end vs model-only. JSON + Markdown go to $OUT (default out/gpu_check). The logic
# lives in scripts/gpu_check.py.
#
#   bash scripts/gpu_check.sh             # on a CUDA machine
#   bash scripts/gpu_check.sh --dry-run   # every part on the CPU at tiny sizes, in seconds
#
# Optional packages a bare GPU machine may lack: tensorboardX and tqdm are replaced by stubs for the
# check; the extraction part needs ffmpeg-python and an ffmpeg binary (imageio-ffmpeg). To bring them,
# download the wheels here once into the git-ignored folder .gpu_wheels/, e.g.
#   pip download --no-deps -d .gpu_wheels ffmpeg-python future imageio-ffmpeg
# and carry that folder; this script installs them into .gpu_wheels/site (no index, no network).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
if compgen -G ".gpu_wheels/*.whl" > /dev/null; then
    "$PYTHON" -m pip install --quiet --no-index --no-deps --target .gpu_wheels/site .gpu_wheels/*.whl
    export PYTHONPATH=".gpu_wheels/site${PYTHONPATH:+:$PYTHONPATH}"
    export PATH="$PWD/.gpu_wheels/site/bin:$PATH"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" scripts/gpu_check.py --out "${OUT:-out/gpu_check}" "$@"
