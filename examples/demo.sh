#!/usr/bin/env bash
# The main job, offline, on the embedded data (examples/muce_mini.jsonl):
#   rated answers -> CrPO pairs and scores -> a few LoRA CrPO steps of SmolLM2 ->
#   benchmark the checkpoint, the untouched SmolLM2 and SmolLM2 served as an "API baseline"
#   -> leaderboard -> regression check against leaderboard/baseline.json.
# About 5-10 minutes on 2 CPU cores. Outputs go to $DEMO_DIR (default demo/); rerunning
# resumes (finished models x tasks are skipped). Exit status: that of `crpo-bench check`.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
WORK=${DEMO_DIR:-demo}
DATA=examples/muce_mini.jsonl
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # more threads spin-wait on small CPU models
mkdir -p "$WORK"
start=$(date +%s)
step() { echo; echo "== [$(( $(date +%s) - start )) s] $*"; }

step "1/6 preference pairs from the embedded human-rated answers"
"$BIN/crpo-train" pairs --data "$DATA" --out "$WORK/pairs"

step "2/6 creativity scores of the chosen answers (novelty, diversity, surprise, originality)"
"$BIN/crpo-train" score "$WORK/pairs" --out "$WORK/scored"

step "3/6 CrPO: a few LoRA steps of SmolLM2 (training/recipes/demo_cpu.yaml)"
if [ ! -f "$WORK/crpo-smollm2/adapter_config.json" ]; then
  "$BIN/crpo-train" demo_cpu --dataset_path "$WORK/scored" --output_dir "$WORK/crpo-smollm2"
else
  echo "already trained: $WORK/crpo-smollm2"
fi

step "4/6 SmolLM2 behind a local OpenAI-compatible endpoint, the stand-in API baseline"
"$BIN/crpo-bench" serve smollm2 --port 0 --seed 1234 > "$WORK/serve.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 120); do grep -q "serving" "$WORK/serve.log" && break; sleep 1; done
url=$(sed -n 's/.* at \(http[^ ]*\)/\1/p' "$WORK/serve.log")
[ -n "$url" ] || { echo "the local endpoint did not start:"; cat "$WORK/serve.log"; exit 2; }
echo "API baseline at $url"

step "5/6 benchmark: CrPO checkpoint, untouched SmolLM2, API baseline on muce_aut"
"$BIN/crpo-bench" run --model "crpo-smollm2=$WORK/crpo-smollm2" smollm2 "smollm2-api=api:smollm2@$url" \
  --tasks muce_aut --limit 3 --gen-kwargs '{"max_gen_toks": 64}' \
  --metadata "{\"muce_data\": \"$DATA\"}" --out "$WORK/results"

step "6/6 leaderboard and regression check"
"$BIN/crpo-bench" leaderboard --results "$WORK/results" --out "$WORK"
"$BIN/crpo-bench" check --two-sided --baseline leaderboard/baseline.json --results "$WORK/results"
step "done"
