#!/usr/bin/env bash
# The published rows of the committed leaderboard: NoveltyBench runs as published (shared data
# beside the checkout), imported with reported and measured figures, then the leaderboard.
set -euo pipefail
cd "$(dirname "$0")/.."
D=${NOVELTYBENCH_DATA:-../shared/data/noveltybench}
BIN=.venv/bin
"$BIN/crpo-bench" import "$D/published/2025-03-27_gemini-1.5-pro/nb-curated" --model gemini-1.5-pro --baseline
"$BIN/crpo-bench" import "$D/published/2025-11-21_CrPO-llama-3.1-8b-instruct-cre/nb-curated" --model crpo-llama-3.1-8b-cre
"$BIN/crpo-bench" import "$D/equivalence/humans.jsonl" --model humans --baseline
"$BIN/crpo-bench" leaderboard --results leaderboard/results --out leaderboard
