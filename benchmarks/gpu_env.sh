# Sourced (not run) by benchmarks/gpu_check.sh and benchmarks/reproduce_gpu.sh, from the repository
# root, with OUT set: the packages a bare GPU image lacks, installed from the carried kit's wheels
# and imported (the check, in the same run); a stage runner that writes each stage's output into
# $OUT as it comes and appends its exit status and seconds to $OUT/stages.tsv.
#
# The GPU image: Python 3.12, torch, torchaudio, numpy, scikit-learn, tqdm, matplotlib, safetensors,
# transformers, pytest; no soundfile, cffi, pycparser, faiss-cpu, espeakng-loader; no git, no
# network. benchmarks/prepare_gpu_kit.sh makes the kit here; the device call carries it.
KIT=${KIT:-benchmarks/out/gpu-kit}
PY=${PY:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$OUT"

# The kit's wheels into /tmp/gpu-kit-site when the image lacks them, then the imports checked.
kit_install() {
    if ! "$PY" -c "import soundfile, faiss, espeakng_loader" 2>/dev/null; then
        if ! ls "$KIT"/wheels/*.whl >/dev/null 2>&1; then
            echo "no wheels in $KIT/wheels: run 'bash benchmarks/prepare_gpu_kit.sh' where the package index is" \
                 "reachable, and carry $KIT"
            return 1
        fi
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/gpu-kit-site \
            "$KIT"/wheels/*.whl || return 1
        export PYTHONPATH=$PYTHONPATH:/tmp/gpu-kit-site
    fi
    "$PY" -c "
import faiss, soundfile, espeakng_loader, torch
print('soundfile', soundfile.__version__, '(libsndfile', soundfile.__libsndfile_version__ + '), faiss', faiss.__version__,
      '| espeak-ng library', espeakng_loader.get_library_path())
print('python', __import__('sys').version.split()[0], '| torch', torch.__version__, '|',
      torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')"
}

STARTED=$(date +%s.%N)

seconds_since() {  # seconds since the date +%s.%N value $1
    awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'
}

# seconds_left: of the DEADLINE (seconds after sourcing); 100000 when there is none.
seconds_left() {
    awk -v d="${DEADLINE:-100000}" -v s="$(seconds_since "$STARTED")" 'BEGIN { printf "%d", d - s }'
}

# run_stage NAME LIMIT COMMAND...: COMMAND's output (stdout and stderr) streamed into $OUT/NAME.txt
# and this log, its exit status returned; stopped (TERM, then KILL 10 s later) after LIMIT x
# STAGE_SCALE (default 1) seconds or at the DEADLINE; skipped when less than 10 s of it is left.
# Waited for in the background, so a TERM to the script is handled at once (its trap runs;
# `stop_stage` ends the stage).
run_stage() {
    local name=$1 limit=$(( $2 * ${STAGE_SCALE:-1} )) left
    shift 2
    left=$(seconds_left)
    if [ "$left" -lt 10 ]; then
        printf '%s\tskipped (deadline)\t0\n' "$name" >> "$OUT/stages.tsv"
        echo "== $name: skipped, $left s of the deadline left"
        return 0
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "== $name (at most $limit s, $(seconds_since "$STARTED") s in)"
    local begin status
    begin=$(date +%s.%N)
    timeout --kill-after=10 "$limit" "$@" > >(tee "$OUT/$name.txt") 2>&1 &
    STAGE=$!
    wait "$STAGE"
    status=$?
    STAGE=
    local note=""
    [ "$status" = 124 ] && note=" (stopped at $limit s)"
    printf '%s\t%s%s\t%s\n' "$name" "$status" "$note" "$(seconds_since "$begin")" >> "$OUT/stages.tsv"
    return "$status"
}

stop_stage() {  # the stage in flight, if any (its `timeout` passes the TERM on)
    [ -n "${STAGE:-}" ] && kill "$STAGE" 2>/dev/null
    return 0
}
