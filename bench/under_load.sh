#!/usr/bin/env bash
# Run some tests N times in a row while busy loops keep every core occupied, and count the passes: the check that
# a test does not depend on how busy the machine is (docs/testing.md).
#   bash bench/under_load.sh 20 tests/e2e/test_streaming.py::test_the_api_answers_while_a_job_renders tests/e2e/test_cancel.py
set -u
cd "$(dirname "$0")/.."
RUNS=${1:?usage: under_load.sh RUNS TEST...}
shift
PY=${PY:-.venv/bin/python}
LOADERS=()
for _ in $(seq "$(nproc)"); do
    "$PY" -c 'while True: pass' &
    LOADERS+=($!)
done
trap 'kill "${LOADERS[@]}" 2>/dev/null' EXIT
echo "under_load: $(nproc) busy loops (pids ${LOADERS[*]}); $RUNS runs of: $*"
passed=0
for run in $(seq "$RUNS"); do
    start=$SECONDS
    if "$PY" -m pytest -q -p no:cacheprovider "$@" >"/tmp/under_load_$run.log" 2>&1; then
        passed=$((passed + 1)); status=passed
    else
        status="FAILED (log: /tmp/under_load_$run.log)"
    fi
    echo "run $run: $status in $((SECONDS - start)) s; load $(cut -d' ' -f1 /proc/loadavg)"
done
echo "under_load: $passed/$RUNS passed"
[[ $passed -eq $RUNS ]]
