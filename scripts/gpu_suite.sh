#!/usr/bin/env bash
# The whole GPU check in one command: versions, test weights, precision check, benchmark cases, a profile of one
# renderer batch and one GFPGAN batch, the reference hook, then one summary table (printed last).
#
# Usage: bash scripts/gpu_suite.sh [--dry-run] [--extra] [--reference DIR] [--landmarks FILE]
#                                  [--checkpoints DIR] [--python PATH] [--budget SECONDS]
#
#   --dry-run          on the CPU with tiny networks and the smallest real settings: tests this script
#   --extra            two more benchmark cases: convs on upsampled maps on CUDA, GFPGAN in NCHW
#   --reference DIR    an OpenTalker/SadTalker checkout (or env SADTALKER_REFERENCE): its generator and the
#                      GFPGAN network call it makes are timed too (python -m bench.gpu reference, with DIR on
#                      PYTHONPATH for that step only: the checkout's code is its top-level package src)
#   --landmarks FILE   face landmarks for bench/benchmark.py --landmarks (or env SADTALKER_LANDMARKS);
#                      default .cache/gpu_suite/landmarks.npz when it exists, else dlib
#   --checkpoints DIR  test weights, generated there when missing (default .cache/test_checkpoints)
#   --python PATH      interpreter (default .venv/bin/python when present, else python3 on PATH)
#   --budget SECONDS   wall-time budget: steps get at most what is left, later steps are skipped when it is
#                      spent (default 450 s; 300 s with --dry-run)
#
# Results: one JSON file per step under $OUT (default .cache/gpu_suite/<timestamp>): versions.json,
# weights.json, precision.json, bench_<case>.json, profile.json, reference.json, steps.json (status of every
# step), summary.json; each step's output in logs/<step>.log. A step whose Python module is missing is reported
# as skipped with the module's name; the exit status is 1 when a step failed, else 0.
set -u -o pipefail

DRY_RUN=0
EXTRA=0
REFERENCE=${SADTALKER_REFERENCE:-}
LANDMARKS=${SADTALKER_LANDMARKS:-}
CHECKPOINTS=
PY=
BUDGET=
OUT=${OUT:-}
SCRIPT=$0

usage() { sed -n '2,/^[^#]/s/^# \{0,1\}//p' "$SCRIPT"; }  # the comment block above

while (($#)); do
    case $1 in
        --dry-run) DRY_RUN=1 ;;
        --extra) EXTRA=1 ;;
        --reference) REFERENCE=${2:?--reference needs a value}; shift ;;
        --landmarks) LANDMARKS=${2:?--landmarks needs a value}; shift ;;
        --checkpoints) CHECKPOINTS=${2:?--checkpoints needs a value}; shift ;;
        --python) PY=${2:?--python needs a value}; shift ;;
        --budget) BUDGET=${2:?--budget needs a value}; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "gpu_suite: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

# Paths given by the caller are relative to the caller's folder; the defaults to the repository's.
absolute() { if [[ -z $1 || $1 == /* ]]; then echo "$1"; else echo "$PWD/$1"; fi; }
REFERENCE=$(absolute "$REFERENCE") LANDMARKS=$(absolute "$LANDMARKS") CHECKPOINTS=$(absolute "$CHECKPOINTS")
OUT=$(absolute "$OUT")
[[ $PY == */* ]] && PY=$(absolute "$PY")
cd "$(dirname "$SCRIPT")/.." || exit 2

CHECKPOINTS=${CHECKPOINTS:-.cache/test_checkpoints}
RECORDED_LANDMARKS=.cache/gpu_suite/landmarks.npz
if ((DRY_RUN)); then BUDGET=${BUDGET:-300}; else BUDGET=${BUDGET:-450}; fi
OUT=${OUT:-.cache/gpu_suite/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT/logs"
THREADS=$(nproc 2>/dev/null || echo 2)
STEPS=()
FAILED=0

# ---- interpreter -----------------------------------------------------------------------------------------

if [[ -n $PY ]]; then
    INTERPRETER="given with --python"
elif [[ -x .venv/bin/python ]]; then
    PY=.venv/bin/python INTERPRETER="the repository's .venv"
else
    PY=$(command -v python3 || echo python3) INTERPRETER="python3 on PATH (no .venv here), the machine's own packages"
fi
echo "gpu_suite: interpreter $PY ($INTERPRETER); results in $OUT; budget ${BUDGET} s"

HELPER=(-m bench.gpu)  # versions, has, weights, profile, reference, summary (bench/gpu/)

# has WHAT: versions.json says WHAT (torch, cuda, dlib, facexlib, gfpgan) is available
has() { "$PY" "${HELPER[@]}" has "$OUT/versions.json" "$1" 2>/dev/null; }

# ---- step bookkeeping ------------------------------------------------------------------------------------

json_str() {
    local s=${1//\\/\\\\}
    s=${s//\"/\\\"}
    printf '"%s"' "$(printf '%s' "$s" | tr -d '\000-\037')"
}

# record STEP STATUS DETAIL SECONDS: one entry of steps.json (rewritten each time, so a killed suite keeps it)
record() {
    STEPS+=("{\"step\": $(json_str "$1"), \"status\": $(json_str "$2"), \"detail\": $(json_str "$3"), \"seconds\": $4}")
    [[ $2 == failed ]] && FAILED=1
    local IFS=,
    printf '[%s]\n' "${STEPS[*]}" >"$OUT/steps.json"
    [[ $2 == ok ]] || echo "gpu_suite: $1: $2: $3"
}

# why_failed LOG RC: "skipped<TAB>missing module X" when Python lacked a module, else "failed<TAB>..."
why_failed() {
    local module
    module=$(grep -oE "No module named '[^']+'" "$1" | tail -n 1 | cut -d"'" -f2)
    if [[ -n $module ]]; then
        printf 'skipped\tmissing module %s' "$module"
    elif (($2 == 124 || $2 == 137)); then
        printf 'failed\ttimed out (exit %s), see logs/%s' "$2" "$(basename "$1")"
    else
        local last
        last=$(grep -v '^\s*$' "$1" | tail -n 1 | cut -c1-160)
        printf 'failed\texit %s, see logs/%s: %s' "$2" "$(basename "$1")" "$last"
    fi
}

# run_step NAME LIMIT_S COMMAND...: runs within min(LIMIT_S, budget left); output to the console and the log
run_step() {
    local name=$1 limit=$2
    shift 2
    local left=$((BUDGET - SECONDS))
    if ((left < 15)); then
        record "$name" skipped "time budget of ${BUDGET} s spent" 0
        return 1
    fi
    ((limit > left)) && limit=$left
    local log="$OUT/logs/$name.log" start=$SECONDS rc
    echo "== $name (at most ${limit} s): $*"
    timeout --kill-after=15 "$limit" "$@" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    if ((rc == 0)); then
        record "$name" ok "" $((SECONDS - start))
        return 0
    fi
    local status detail
    IFS=$'\t' read -r status detail < <(why_failed "$log" "$rc")
    record "$name" "$status" "$detail" $((SECONDS - start))
    return 1
}

skip_step() { record "$1" skipped "$2" 0; }

# ---- settings of the two modes ---------------------------------------------------------------------------

if ((DRY_RUN)); then
    DEVICE=cpu
    PRECISION_ARGS=(--device cpu --precisions fp32 --windows 1 --no-warmup)
    BENCH_ARGS=(--device cpu --small --seconds 0.2 --sizes 256 --preprocess crop --no-warmup --threads "$THREADS")
    CASES=("fp32_b2|--enhancers none gfpgan --render-dtype fp32 --batch-size 2")
    PROFILE_ARGS=(--device cpu --small --render-dtype fp32 --enhancer-dtype fp32 --batch-size 2 --enhancer-batch 2
        --iters 1 --warmup 0 --threads "$THREADS")
    REFERENCE_ARGS=(--device cpu --batch-size 1 --iters 1 --warmup 0)
else
    DEVICE=cuda
    PRECISION_ARGS=(--device cuda)
    BENCH_ARGS=(--device cuda --seconds 10 --preprocess crop --enhancer-dtype fp16)
    CASES=(
        "fp16_b32|--sizes 256 --enhancers none gfpgan --render-dtype fp16 --batch-size 32"
        "512_fp16_b16|--sizes 512 --enhancers gfpgan --render-dtype fp16 --batch-size 16 --no-flops"
        "fp32_b32|--sizes 256 --enhancers none gfpgan --render-dtype fp32 --batch-size 32"
        "bf16_b32|--sizes 256 --enhancers none gfpgan --render-dtype bf16 --batch-size 32"
        "fp16_b16|--sizes 256 --enhancers none --render-dtype fp16 --batch-size 16"
        "fp16_b64|--sizes 256 --enhancers none --render-dtype fp16 --batch-size 64"
    )
    if ((EXTRA)); then
        CASES+=(
            "upsampled_b32|--sizes 256 --enhancers none --render-dtype fp16 --batch-size 32 --upsampled-convs-on-cuda"
            "nchw_b32|--sizes 256 --enhancers gfpgan --render-dtype fp16 --batch-size 32 --enhancer-nchw --no-flops"
        )
    fi
    PROFILE_ARGS=(--device cuda --render-dtype fp16 --enhancer-dtype fp16 --batch-size 32 --enhancer-batch 8)
    REFERENCE_ARGS=(--device cuda)
fi

# ---- the benchmark's face finder -------------------------------------------------------------------------
# FACE_ARGS for bench/benchmark.py, or FACE_SKIP: why it cannot find faces. Recorded landmarks are replayed
# (the start-up RetinaFace needs facexlib), else dlib finds the faces.
# The dry run records the landmarks dlib finds, for a machine without dlib.
face_args() {
    FACE_ARGS=()
    FACE_SKIP=
    if [[ -n $LANDMARKS ]]; then
        FACE_ARGS=(--landmarks "$LANDMARKS")
        [[ -f $LANDMARKS ]] || FACE_SKIP="landmarks file $LANDMARKS not found"
    elif ((!DRY_RUN)) && [[ -f $RECORDED_LANDMARKS ]] && { has facexlib || ! has dlib; }; then
        FACE_ARGS=(--landmarks "$RECORDED_LANDMARKS")
    elif has dlib; then
        if ((DRY_RUN)); then
            mkdir -p "$(dirname "$RECORDED_LANDMARKS")"
            FACE_ARGS=(--record-landmarks "$RECORDED_LANDMARKS")
        fi
    else
        FACE_SKIP="no face finder: dlib is not installed and there is no $RECORDED_LANDMARKS (the dry run on a \
machine with dlib writes it; carry it, or pass --landmarks FILE)"
    fi
}

# ---- the steps -------------------------------------------------------------------------------------------

run_step versions 60 "$PY" "${HELPER[@]}" versions --interpreter "$INTERPRETER" --json "$OUT/versions.json"
if ! has torch; then
    record torch failed "torch is not importable by $PY" 0
    for step in weights precision profile benchmark reference; do skip_step "$step" "no torch"; done
elif ((!DRY_RUN)) && ! has cuda; then
    record cuda failed "no CUDA device visible to torch (--dry-run runs on the CPU)" 0
    for step in weights precision profile benchmark reference; do skip_step "$step" "no CUDA device"; done
else
    face_args
    if ! run_step weights 300 "$PY" "${HELPER[@]}" weights --checkpoints "$CHECKPOINTS" --jobs "$THREADS" \
        --json "$OUT/weights.json"; then
        for step in precision profile benchmark reference; do skip_step "$step" "no test weights"; done
    else
        ENHANCER_FLAG=()  # GFPGAN's precisions too, on the GPU, when the gfpgan package is there
        if ((!DRY_RUN)) && has gfpgan; then ENHANCER_FLAG=(--enhancer); fi
        run_step precision 150 "$PY" -m bench.precision_check "${PRECISION_ARGS[@]}" "${ENHANCER_FLAG[@]}" \
            --checkpoints "$CHECKPOINTS" --json "$OUT/precision.json"
        run_step profile 150 "$PY" "${HELPER[@]}" profile "${PROFILE_ARGS[@]}" --checkpoints "$CHECKPOINTS" \
            --json "$OUT/profile.json"
        for case in "${CASES[@]}"; do
            name=${case%%|*}
            read -ra case_args <<<"${case#*|}"
            if [[ -n $FACE_SKIP ]]; then
                skip_step "bench_$name" "$FACE_SKIP"
                continue
            fi
            run_step "bench_$name" 150 "$PY" -m bench.benchmark "${BENCH_ARGS[@]}" "${case_args[@]}" \
                "${FACE_ARGS[@]}" --checkpoints "$CHECKPOINTS" --json "$OUT/bench_$name.json"
        done
        REFERENCE_PATH=()  # the checkout's src package importable by this step alone
        [[ -n $REFERENCE ]] && REFERENCE_PATH=(env "PYTHONPATH=$REFERENCE${PYTHONPATH:+:$PYTHONPATH}")
        run_step reference 120 "${REFERENCE_PATH[@]}" "$PY" "${HELPER[@]}" reference --reference "$REFERENCE" \
            "${REFERENCE_ARGS[@]}" --checkpoints "$CHECKPOINTS" --json "$OUT/reference.json"
    fi
fi

echo "gpu_suite: ${#STEPS[@]} steps in ${SECONDS} s on $DEVICE; results in $OUT"
"$PY" "${HELPER[@]}" summary "$OUT" || FAILED=1
exit "$FAILED"
