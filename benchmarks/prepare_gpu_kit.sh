#!/usr/bin/env bash
# Makes benchmarks/out/gpu-kit (git-ignored), the one folder a GPU machine with no git and no network
# is carried for benchmarks/gpu_check.sh and benchmarks/reproduce_gpu.sh:
#   wheels/       soundfile, cffi, pycparser, faiss-cpu, espeakng-loader for its Python 3.12 (manylinux
#                 x86_64), checked here by installing them for 3.12 into a scratch folder
#   old-da37152/  the old trainer's pretrain/ and clustering/ (bench_train.py's "old path"), from git
# Run here, from the repository root, where the package index and the git history are:
#   bash benchmarks/prepare_gpu_kit.sh                 # PY=path/to/python to choose the interpreter
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
KIT=benchmarks/out/gpu-kit
PLATFORMS=(--python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
           --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
"$PY" -m pip download -q --no-deps --only-binary=:all: "${PLATFORMS[@]}" -d "$KIT/wheels" \
    soundfile cffi pycparser faiss-cpu espeakng-loader
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
"$PY" -m pip install -q --no-index --no-deps --only-binary=:all: "${PLATFORMS[@]}" --target "$scratch" \
    "$KIT"/wheels/*.whl
"$PY" benchmarks/bench_train.py --prepare-old
size=$(du -sm "$KIT" | cut -f1)
ls -1 "$KIT" "$KIT/wheels"
echo "$KIT: $size MiB (a device call carries at most 64 MiB)"
[ "$size" -lt 64 ]
