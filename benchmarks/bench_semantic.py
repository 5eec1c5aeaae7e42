"""Novelty and diversity on 1,000 generated texts of 60-150 words: time, memory, ratios.

    OMP_NUM_THREADS=1 python benchmarks/bench_semantic.py [--texts 1000] [--repeats 3] [--naive-budget 120]

Three measurements, each in a fresh subprocess so peak memory is its own:
- floor:  embedding the unique words and the unique texts, nothing else
          (the least any exact implementation must spend);
- scorer: crpo_bench's Scorer computing novelty and diversity, from the raw texts,
          with a fresh embedding cache (so it embeds everything, and writes the cache);
- naive:  the paper-style implementation of the same formulas, kept here only:
          one embedding call per word of each text and per text, and Python loops over
          all word pairs and all text pairs. It is stopped after --naive-budget seconds;
          the measured per-call and per-pair costs are extrapolated to the full run, and
          the DSI of the texts it finished is checked against the scorer's.
Floor and scorer alternate --repeats times; medians are reported.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED_TRAIN = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ocsai1" / "alltests_train.jsonl"
WORD = re.compile(r"[a-z]+")


def vocabulary() -> list[str]:
    """Real English words from the human-written answers of the shared data when present,
    else pronounceable pseudo-words; most frequent first."""
    if SHARED_TRAIN.exists():
        counts: dict[str, int] = {}
        with SHARED_TRAIN.open() as lines:
            for line in lines:
                response = json.loads(line)["prompt"].split("\nResponse:", 1)[1].rsplit("\nScore:", 1)[0]
                for w in WORD.findall(response.lower()):
                    counts[w] = counts.get(w, 0) + 1
        return sorted(counts, key=lambda w: -counts[w])
    rng = random.Random(1)
    syllables = [c + v for c in "bcdfghklmnprstvwz" for v in "aeiou"]
    return sorted({"".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))) for _ in range(20000)})


def generate_texts(n: int, seed: int = 0) -> list[str]:
    """n texts of 60-150 words drawn Zipf-like from the vocabulary, with punctuation."""
    vocab = vocabulary()
    weights = [1 / (rank + 10) for rank in range(len(vocab))]
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        words = rng.choices(vocab, weights=weights, k=rng.randint(60, 150))
        sentences, i = [], 0
        while i < len(words):
            k = rng.randint(6, 18)
            sentences.append(" ".join(words[i : i + k]).capitalize() + rng.choice(".!?"))
            i += k
        texts.append(" ".join(sentences))
    return texts


# --- phases (each runs in its own process) ----------------------------------------------


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def phase_floor(texts: list[str]) -> dict:
    from crpo_bench import ScoringConfig
    from crpo_bench.models import load_embedder
    from crpo_bench.text import unique_words

    embedder = load_embedder()
    vocab = sorted({w for t in texts for w in unique_words(t)})
    distinct = sorted(set(texts))
    config = ScoringConfig()  # the scorer's batch sizes, so both embed alike
    t0 = time.perf_counter()
    embedder.encode(vocab, batch_size=config.word_batch_size)
    t1 = time.perf_counter()
    embedder.encode(distinct, batch_size=config.text_batch_size)
    t2 = time.perf_counter()
    return {"novelty": t1 - t0, "diversity": t2 - t1, "unique_words": len(vocab), "unique_texts": len(distinct),
            "peak_rss_mb": peak_rss_mb()}


def phase_scorer(texts: list[str]) -> dict:
    """Novelty (with DSI) and diversity as two calls, each with a fresh embedding cache."""
    from crpo_bench import Scorer, ScoringConfig
    from crpo_bench.models import load_embedder

    embedder = load_embedder()
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, metrics in (("novelty", ["dsi", "novelty"]), ("diversity", ["diversity"])):
            scorer = Scorer(ScoringConfig(cache_path=Path(tmp) / f"{name}.sqlite"), embedder=embedder)
            start = time.perf_counter()
            result = scorer.score(texts, metrics=metrics)
            out[name] = time.perf_counter() - start
            if name == "novelty":
                out["dsi"] = [r["dsi"] for r in result.rows]
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def phase_naive(texts: list[str], budget: float) -> dict:
    """The reference style: embed word by word, loop over pairs; stop at the budget."""
    import numpy as np

    from crpo_bench.models import load_embedder
    from crpo_bench.text import unique_words

    model = load_embedder().model

    def embed_one(s):
        return model.encode([s], show_progress_bar=False)[0]

    def cosine_distance(a, b):
        return 1.0 - float(np.dot(a, b)) / (float(np.linalg.norm(a)) * float(np.linalg.norm(b)))

    def dsi(vectors, clock):
        n = len(vectors)
        if n < 2:
            return 0.0
        total = 0.0
        for i in range(n):
            for j in range(n):
                if i != j:
                    total += cosine_distance(vectors[i], vectors[j])
                    clock["pairs"] += 1
        return total / (n * (n - 1))

    clock = {"pairs": 0, "calls": 0, "embed_s": 0.0, "pair_s": 0.0}
    finished_dsi = []
    deadline = time.perf_counter() + budget
    for text in texts:
        if time.perf_counter() > deadline:
            break
        t0 = time.perf_counter()
        vectors = [embed_one(w) for w in unique_words(text)]
        t1 = time.perf_counter()
        finished_dsi.append(dsi(vectors, clock))
        clock["calls"] += len(vectors)
        clock["embed_s"] += t1 - t0
        clock["pair_s"] += time.perf_counter() - t1
    # whole texts, one call each, for diversity's per-call cost
    sample = texts[:20]
    t0 = time.perf_counter()
    for text in sample:
        embed_one(text)
    return {"finished_texts": len(finished_dsi), "dsi": finished_dsi, "peak_rss_mb": peak_rss_mb(),
            "seconds_per_word_call": clock["embed_s"] / clock["calls"],
            "seconds_per_text_call": (time.perf_counter() - t0) / len(sample),
            "seconds_per_pair": clock["pair_s"] / clock["pairs"]}


def naive_seconds(texts: list[str], naive: dict) -> dict:
    """Extrapolated full naive run: embed calls and ordered pairs it makes, times their measured cost."""
    from crpo_bench.text import unique_words

    per_text = [len(unique_words(t)) for t in texts]
    union = len({w for t in texts for w in unique_words(t)})
    n = len(texts)
    word_calls = sum(per_text) + union  # every text's words, then the joined corpus's words
    word_pairs = sum(k * (k - 1) for k in per_text) + union * (union - 1)
    return {
        "novelty": word_calls * naive["seconds_per_word_call"] + word_pairs * naive["seconds_per_pair"],
        "diversity": n * naive["seconds_per_text_call"] + n * (n - 1) * naive["seconds_per_pair"],
        "counts": f"{word_calls} word calls, {word_pairs} word pairs, {n} text calls, {n * (n - 1)} text pairs",
    }


# --- orchestration ---------------------------------------------------------------------


def run_phase(name: str, texts_file: Path, budget: float) -> dict:
    cmd = [sys.executable, __file__, "--phase", name, "--texts-file", str(texts_file), "--naive-budget", str(budget)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"phase {name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--naive-budget", type=float, default=120.0, help="seconds before the naive run is stopped")
    parser.add_argument("--phase", choices=["floor", "scorer", "naive"], help=argparse.SUPPRESS)
    parser.add_argument("--texts-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.phase:
        texts = json.loads(args.texts_file.read_text())
        phases = {"floor": phase_floor, "scorer": phase_scorer, "naive": lambda t: phase_naive(t, args.naive_budget)}
        print(json.dumps(phases[args.phase](texts)))
        return

    from tabulate import tabulate

    texts = generate_texts(args.texts)
    lengths = [len(t.split()) for t in texts]
    with tempfile.TemporaryDirectory() as tmp:
        texts_file = Path(tmp) / "texts.json"
        texts_file.write_text(json.dumps(texts))
        floors, scorers = [], []
        for k in range(args.repeats):
            print(f"run {k + 1}/{args.repeats}: floor, scorer ...", file=sys.stderr, flush=True)
            floors.append(run_phase("floor", texts_file, args.naive_budget))
            scorers.append(run_phase("scorer", texts_file, args.naive_budget))
        print(f"naive, stopped after {args.naive_budget:.0f} s ...", file=sys.stderr, flush=True)
        naive = run_phase("naive", texts_file, args.naive_budget)

    naive_s = naive_seconds(texts, naive)
    done = naive["finished_texts"]
    max_dsi_diff = max(abs(a - b) for a, b in zip(naive["dsi"], scorers[0]["dsi"][:done])) if done else math.nan
    f0 = floors[0]
    print(f"\n{len(texts)} texts, {min(lengths)}-{max(lengths)} words, {f0['unique_words']} unique words, "
          f"{f0['unique_texts']} unique texts; OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}; "
          f"medians of {args.repeats} runs")

    rows = []
    for part in ("novelty", "diversity", "both"):
        def seconds(run):
            return run["novelty"] + run["diversity"] if part == "both" else run[part]
        floor_s = statistics.median(seconds(f) for f in floors)
        scorer_s = statistics.median(seconds(s) for s in scorers)
        ratio = statistics.median(seconds(s) / seconds(f) for s, f in zip(scorers, floors))
        naive_part = naive_s["novelty"] + naive_s["diversity"] if part == "both" else naive_s[part]
        rows.append([part, f"{floor_s:.1f}", f"{scorer_s:.1f}", f"{naive_part:.1f}", f"{ratio:.3f}",
                     f"{naive_part / scorer_s:.0f}"])
    print(tabulate(rows, disable_numparse=True, headers=[
        "metric", "floor s", "scorer s", "naive s (extrapolated)", "scorer/floor (<= 1.15)", "naive/scorer (>= 50)"]))
    print(f"peak RSS: scorer {max(s['peak_rss_mb'] for s in scorers):.0f} MB (target < 1024), "
          f"floor {max(f['peak_rss_mb'] for f in floors):.0f} MB, naive {naive['peak_rss_mb']:.0f} MB "
          "(whole process: Python, torch and MiniLM included)")
    print(f"naive: stopped after {args.naive_budget:.0f} s at {done} texts; "
          f"{naive['seconds_per_word_call'] * 1e3:.2f} ms per word call, "
          f"{naive['seconds_per_text_call'] * 1e3:.1f} ms per text call, "
          f"{naive['seconds_per_pair'] * 1e6:.2f} us per pair; full run: {naive_s['counts']}")
    print(f"naive DSI of its {done} finished texts vs scorer: max abs difference {max_dsi_diff:.2e}")


if __name__ == "__main__":
    main()
