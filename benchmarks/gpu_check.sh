#!/usr/bin/env bash
# First contact with a GPU, in one device call of at most 4 minutes: every CUDA path run once, with
# its figures written into $OUT as each stage ends (each stage's output streams into $OUT/STAGE.txt,
# its status and seconds into $OUT/stages.tsv; a trap writes $OUT/summary.txt on exit or TERM, and a
# KILL still leaves what was written). Stages, in order, each capped and all under DEADLINE seconds:
#   env          the kit's wheels installed and imported; device, torch
#   tests        the tests that need CUDA (skipped without it) and those whose branch CUDA picks
#   resume       a 40-update bf16 BASE run SIGTERMed at update 21 and resumed, against uninterrupted
#   kernels      fast vs reference kernels under bf16, forward and gradients (CNN, positional conv, encoder)
#   it1-train    `hubert run demo` (small model, 0.1 h, bf16) to it1-train: a checkpoint the pipeline trained
#   labels       that checkpoint's units from bf16 GPU features against fp32 CPU features
#   bench-train  benchmarks/bench_train.py --mode gpu, old and new path, timed after a warm-up window,
#                the profiler after the timed window
#   bench-labels benchmarks/bench_layer_labels.py: iteration-2 labelling, batched bf16 vs per-utterance
# The pipeline's data stages and the benchmarks' corpora are made in the background from the start.
#
# Here (the CPU side), once: make the kit, the one folder the device call carries:
#   bash benchmarks/prepare_gpu_kit.sh
# With a device (the run tool; then benchmarks/reproduce_gpu.sh in a second call):
#   run(command="bash benchmarks/gpu_check.sh", carry=["benchmarks/out/gpu-kit"], timeout_s=300)
# The dry run on a CPU (tiny sizes, device cpu, every stage exercised; OUT defaults to benchmarks/out/gpu-check):
#   GPU_CHECK_CPU=1 PY=.venv/bin/python bash benchmarks/gpu_check.sh
set -o pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/out/gpu-check}
WORK=${WORK:-/tmp/gpu-check}
. benchmarks/gpu_env.sh
if [ "${GPU_CHECK_CPU:-0}" = 1 ]; then
    export CUDA_VISIBLE_DEVICES="" STAGE_SCALE=4
    DEADLINE=${DEADLINE:-900}
    RESUME=(--preset tiny --updates 8 --stop-at 4 --hours 0.02 --max-tokens 64000)
    KERNELS=(--preset tiny --batch 2 --seconds 2)
    PIPELINE=(corpus.hours=0.02 iteration1.train.max_updates=10 iteration1.train.save_every=10
              iteration1.train.valid_every=10 iteration1.train.num_workers=0)
    LABELS=(--seconds 20)
    TRAIN_HOURS=0.02 LABEL_SECONDS=30
    BENCH_TRAIN=(--mode cpu --presets tiny --variants "old;new" --updates 4 --profile --budget 120)
    BENCH_LABELS=(--seconds "$LABEL_SECONDS" --cpu-seconds 10 --devices cpu --kmeans-frames 0)
else
    DEADLINE=${DEADLINE:-230}
    RESUME=(--preset base --updates 40 --stop-at 20 --hours 0.2)
    KERNELS=(--preset base --batch 4 --seconds 8)
    PIPELINE=(corpus.hours=0.1 iteration1.model=small iteration1.train.max_updates=200
              iteration1.train.warmup_updates=20 iteration1.train.save_every=200 iteration1.train.valid_every=200
              iteration1.train.precision=bf16 iteration1.train.num_workers=4)
    LABELS=(--seconds 120)
    TRAIN_HOURS=0.5 LABEL_SECONDS=3600
    BENCH_TRAIN=(--mode gpu --variants "old;new" --budget 50)
    BENCH_LABELS=(--seconds "$LABEL_SECONDS" --cpu-seconds 20 --old-seconds 120 --kmeans-frames 0)
fi
PIPELINE=(demo "work_dir=$WORK/pipeline" "${PIPELINE[@]}")

summary() {
    stop_stage
    [ -n "${PREPARING:-}" ] && pkill -TERM -P "$PREPARING" 2>/dev/null
    {
        echo "gpu_check.sh: $(seconds_since "$STARTED") s, deadline $DEADLINE s"
        cat "$OUT/stages.tsv" 2>/dev/null
        grep -h '^{"check"' "$OUT"/*.txt 2>/dev/null
    } > "$OUT/summary.txt"
    echo "== summary"
    cat "$OUT/summary.txt"
}
trap summary EXIT
trap 'exit 143' TERM INT

wait_for_background() {  # the background preparation, while more than 60 s of the deadline is left
    while kill -0 "$PREPARING" 2>/dev/null && [ "$(seconds_left)" -gt 60 ]; do
        sleep 1
    done
    kill -0 "$PREPARING" 2>/dev/null && echo "background preparation still running: stopped" && pkill -TERM -P "$PREPARING"
    wait "$PREPARING"
    PREPARING=
    tail -3 "$OUT/background.txt"
}

kit_install > >(tee "$OUT/env.txt") 2>&1 || exit 1
printf 'env\t0\t%s\n' "$(seconds_since "$STARTED")" >> "$OUT/stages.tsv"
(
    timeout "$((DEADLINE / 2))" "$PY" -m pipelines.cli run "${PIPELINE[@]}" --until it1-labels
    timeout "$((DEADLINE / 4))" "$PY" benchmarks/gpu_check.py corpora --train-hours "$TRAIN_HOURS" \
        --label-seconds "$LABEL_SECONDS"
) > "$OUT/background.txt" 2>&1 &
PREPARING=$!
run_stage tests 60 "$PY" -m pytest -q -p no:cacheprovider -rs tests/test_layer_features.py tests/test_kmeans.py \
    -k "gpu or auto or bf16"
run_stage resume 90 "$PY" benchmarks/gpu_check.py resume "${RESUME[@]}" --work "$WORK"
run_stage kernels 30 "$PY" benchmarks/gpu_check.py kernels "${KERNELS[@]}"
wait_for_background
run_stage it1-train 60 "$PY" -m pipelines.cli run "${PIPELINE[@]}" --until it1-train
cp "$WORK/pipeline/it1-train/train_log.jsonl" "$OUT/it1-train_log.jsonl" 2>/dev/null
run_stage labels 30 "$PY" benchmarks/gpu_check.py labels "$WORK/pipeline" "${LABELS[@]}"
run_stage bench-train 100 "$PY" benchmarks/bench_train.py "${BENCH_TRAIN[@]}" --hours "$TRAIN_HOURS"
run_stage bench-labels 60 "$PY" benchmarks/bench_layer_labels.py "${BENCH_LABELS[@]}"
