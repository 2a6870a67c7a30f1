#!/usr/bin/env bash
# The paper's claim on one GPU, in one device call of at most 8 minutes: `hubert run reproduce-gpu`,
# timed. Written into $OUT as it comes: the run's output (run.txt, with each stage's "done in" line)
# as it is printed; every 15 s the finished stages' records (stages/), the training logs, the
# layer scans and the quality report; on exit or TERM the stage table (stages.txt) and the wall time
# (device.txt). A KILL still leaves what was written.
#
# Here, once (the same kit as benchmarks/gpu_check.sh; the wheels a bare GPU image lacks):
#   bash benchmarks/prepare_gpu_kit.sh
# With a device, in the call after gpu_check.sh:
#   run(command="bash benchmarks/reproduce_gpu.sh", carry=["benchmarks/out/gpu-kit"], timeout_s=560)
#   bash benchmarks/reproduce_gpu.sh iteration1.train.max_updates=3000 ...   # key=value overrides
# On a CPU, shrunk as pipelines/configs/reproduce-gpu.toml's header says:
#   PY=.venv/bin/python bash benchmarks/reproduce_gpu.sh corpus.hours=0.05 valid_percent=0.2 ...
set -o pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/out/reproduce-gpu}
WORK=${WORK:-/tmp/reproduce-gpu}
DEADLINE=${DEADLINE:-510}
. benchmarks/gpu_env.sh

collect() {  # what the run has finished so far, into $OUT
    mkdir -p "$OUT/stages"
    for done in "$WORK"/*/DONE.json; do
        [ -e "$done" ] && cp "$done" "$OUT/stages/$(basename "$(dirname "$done")").json"
    done
    for n in 1 2; do
        cp "$WORK/it$n-train/train_log.jsonl" "$OUT/it$n-train_log.jsonl" 2>/dev/null
        cp "$WORK/it$n-scan/scan.json" "$OUT/it$n-scan.json" 2>/dev/null
    done
    [ -d "$WORK/quality" ] && cp -r "$WORK/quality" "$OUT/"
    return 0
}

finish() {
    stop_stage
    [ -n "${COPIER:-}" ] && kill "$COPIER" 2>/dev/null
    collect
    "$PY" -m pipelines.cli status "$WORK" > "$OUT/stages.txt" 2>&1
    echo "hubert run reproduce-gpu: ${RUN_STATUS:-not run}, wall $(seconds_since "$STARTED") s" | tee -a "$OUT/device.txt"
    cat "$OUT/stages.txt"
    head -12 "$OUT/quality/report.md" 2>/dev/null
}
trap finish EXIT
trap 'RUN_STATUS="stopped by a TERM"; exit 143' TERM INT

kit_install > >(tee "$OUT/device.txt") 2>&1 || exit 1
(while sleep 15; do collect; done) &
COPIER=$!
run_stage run "$DEADLINE" "$PY" -m pipelines.cli run reproduce-gpu "work_dir=$WORK" "$@"
status=$?
RUN_STATUS="exit $status$([ "$status" = 124 ] && echo " (stopped at the $DEADLINE s deadline)")"
exit "$status"
