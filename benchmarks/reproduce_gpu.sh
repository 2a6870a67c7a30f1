#!/usr/bin/env bash
# The paper's claim on one GPU, in one device call: `hubert run reproduce-gpu`, timed, with its
# report, stage times and training logs copied to $OUT.
#
# The GPU machine has torch, torchaudio, numpy, scikit-learn, tqdm, matplotlib and tensorboard;
# bring the rest as wheels into the git-ignored benchmarks/out/wheels (soundfile, cffi, pycparser,
# faiss-cpu, espeakng-loader; ~31 MB):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
#     --platform manylinux2014_x86_64 -d benchmarks/out/wheels soundfile cffi pycparser faiss-cpu espeakng-loader
# then run it with benchmarks/out/wheels carried:
#   bash benchmarks/reproduce_gpu.sh                       # the shipped config, as is
#   bash benchmarks/reproduce_gpu.sh corpus.hours=0.05 ... # extra key=value overrides (a CPU check)
set -o pipefail
OUT=${OUT:-benchmarks/out/reproduce-gpu}
WORK=${WORK:-/tmp/reproduce-gpu}
mkdir -p "$OUT"
if ! python3 -c "import soundfile, faiss, espeakng_loader" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
        benchmarks/out/wheels/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
python3 -c "import torch; print('torch', torch.__version__, '|', torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')" | tee "$OUT/device.txt"
start=$(date +%s.%N)
python3 -m pipelines.cli run reproduce-gpu "work_dir=$WORK" "$@" 2>&1 | tee "$OUT/run.log" | tr '\r' '\n' | grep -v -E '[0-9]+%\|' 
status=$?
wall=$(python3 -c "import time; print(f'{time.time() - $start:.0f}')")
echo "hubert run reproduce-gpu: exit $status, wall ${wall} s" | tee -a "$OUT/device.txt"
python3 -m pipelines.cli status "$WORK" | tee "$OUT/stages.txt"
cp -r "$WORK/quality" "$OUT/" 2>/dev/null
for n in 1 2; do
    cp "$WORK/it$n-train/train_log.jsonl" "$OUT/it$n-train_log.jsonl" 2>/dev/null
    cp "$WORK/it$n-scan/scan.json" "$OUT/it$n-scan.json" 2>/dev/null
done
head -12 "$OUT/quality/report.md" 2>/dev/null
exit $status
