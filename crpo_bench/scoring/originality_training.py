"""Train the originality scorer from human-rated answers (MuCE schema) and describe it in a card.

Three methods: `ridge` (v2: one ridge head on embedding features), `memory` (v3: the same
head for unseen items, plus a memory of the rated answers and a head that also reads each
answer's nearest rated neighbours of the same item) and `transfer` (v5: v3's memory head for
rated items; for the others, heads on signals that carry across items and task types, their
ridge strengths chosen by leave-one-task-type-out cross-validation; v4 was the same without the
rarity features' z-scores within the corpus). A ridge strength left
unset is chosen by cross-validation on the training answers (never on validation data).

Every v4 and v5 card carries three cross-validations of the scorer on the training data, per task
type, beside the simple signals (length, semantic distance, diversity): a random split of the
answers (5 folds), whole items held out (one at a time) and whole task types held out.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

import numpy as np
from scipy import stats

from .. import muce, text
from ..metrics import rarity
from ..metrics.originality import OriginalityModel, answer_features, features, transfer_features
from ..metrics.rated_memory import DIMENSIONS, FEATURES, RatedMemory, item_key
from .scorer import Scorer

METHODS = ("transfer", "memory", "ridge")
SCHEMES = ("random", "items", "types")  # answers in 5 folds; one item held out at a time; one task type
RIDGE_GRID = (1.0, 10.0, 100.0, 1000.0)
FOLDS = 5


def featurize(rows: list[dict], scorer: Scorer, task_names: list[str]) -> np.ndarray:
    vectors, items = embed(rows, scorer)
    return row_features(rows, vectors, items, task_names)


def embed(rows: list[dict], scorer: Scorer) -> tuple[np.ndarray, np.ndarray]:
    batch = scorer.config.text_batch_size
    return (scorer.embed([str(r["Response"]) for r in rows], "embedding answers", batch),
            scorer.embed(items_of(rows), "embedding items", batch))


def row_features(rows, answer_vectors, item_vectors, task_names) -> np.ndarray:
    return features(answer_vectors, item_vectors, tasks_of(rows), task_names, word_counts(rows))


def tasks_of(rows: list[dict]) -> list[str]:
    return [muce.task_slug(str(r["TasksNamesFull"])) for r in rows]


def items_of(rows: list[dict]) -> list[str]:
    return [str(r["Prompt"]) for r in rows]


def word_counts(rows: list[dict]) -> np.ndarray:
    return np.array([len(text.word_sequence(str(r["Response"]))) for r in rows])


def cross_validated_ridge(X: np.ndarray, y: np.ndarray, grid=RIDGE_GRID, folds: int = FOLDS) -> tuple[float, dict]:
    """The ridge strength of `grid` with the best mean Spearman over `folds` folds of the
    answers (a fixed permutation: the same data gives the same choice)."""
    parts = np.array_split(np.random.default_rng(0).permutation(len(y)), folds)
    found = {}
    for ridge in grid:
        rhos = []
        for k, held in enumerate(parts):
            fit = np.concatenate([p for j, p in enumerate(parts) if j != k])
            model = OriginalityModel.fit(X[fit], y[fit], [], ridge)
            rhos.append(stats.spearmanr(model.predict(X[held]), y[held]).statistic)
        found[ridge] = round(float(np.mean(rhos)), 4)
    return max(grid, key=lambda r: found[r]), found


def train(train_rows: list[dict], val_rows: list[dict] | None, scorer: Scorer, ridge: float | None = None,
          data_name: str = "", method: str = "transfer") -> OriginalityModel:
    """Fit on the training answers that have words; the card records data, size, the ridge
    strengths chosen and validation agreement."""
    if method not in METHODS:
        raise ValueError(f"originality method {method!r}: choose one of {METHODS}")
    start = time.perf_counter()
    train_rows = [r for r in train_rows if text.degenerate_kind(str(r["Response"])) not in text.WORDLESS]
    tasks = tasks_of(train_rows)
    task_names = sorted(set(tasks))
    y = np.array([r["facsco_grm_scaled"] for r in train_rows])
    answers, items = embed(train_rows, scorer)
    X = row_features(train_rows, answers, items, task_names)
    if method == "transfer":
        return _train_transfer(train_rows, val_rows, scorer, ridge, data_name, answers, items, X, y, start)
    chosen, cv = (ridge, None) if ridge is not None else cross_validated_ridge(X, y)
    model = OriginalityModel.fit(X, y, task_names, chosen)
    model.card = {
        "name": "originality", "method": "ridge regression on frozen sentence embeddings "
        "[answer, answer*item, task one-hot, log(1+words), 1-cos(answer, item)]",
        "embedder": scorer.embedder.name, "ridge": chosen, "training_data": data_name,
        "training_answers": len(train_rows), "tasks": task_names, "score_scale": "10-50 (MuCE)",
    }
    if cv:
        model.card["ridge_cv_spearman"] = cv
    if method == "memory":
        add_memory(model, train_rows, answers, X, y, ridge)
        model.card["method"] = ("v3: for items with rated answers in its memory, ridge regression on the v2 features "
                                f"plus the ratings of the nearest rated answers to the same item {list(FEATURES)}; "
                                "v2's ridge head for other items")
    model.card["training_seconds"] = round(time.perf_counter() - start, 1)
    if val_rows:
        model.card["validation"] = agreement(model, val_rows, scorer)
    return model


def add_memory(model: OriginalityModel, rows: list[dict], answers: np.ndarray, X: np.ndarray, y: np.ndarray,
               ridge: float | None) -> None:
    """v3's memory of the rated answers and its head (on the v2 features X plus the memory's)."""
    tasks = tasks_of(rows)
    memory, position = RatedMemory.build(answers, y, tasks, items_of(rows))
    # each training answer against the others of its item (leave one out), as a new answer meets them all
    M, known = memory.features(answers, tasks, items_of(rows), exclude=position)
    XM = np.hstack([X, M])[known]
    chosen_m, cv_m = (ridge, None) if ridge is not None else cross_validated_ridge(XM, y[known])
    model.memory, model.with_memory = memory, OriginalityModel.fit(XM, y[known], model.task_names, chosen_m)
    model.card["memory"] = {"answers": len(y), "items": len(memory.keys), "dimensions": DIMENSIONS,
                            "ridge": chosen_m, **({"ridge_cv_spearman": cv_m} if cv_m else {})}


@dataclass
class TransferData:
    """What the transfer heads and their cross-validations read, one row per rated answer."""
    base: np.ndarray  # answer_features
    peers: np.ndarray  # transfer_features (rows where `valid`)
    valid: np.ndarray  # the answer's item has >= rarity.MIN_PEERS other answers
    y: np.ndarray
    tasks: np.ndarray
    items: np.ndarray  # item keys (task and item)
    signals: dict  # simple signals: length, semantic_distance, diversity (None where undefined)

    @classmethod
    def build(cls, rows: list[dict], answers: np.ndarray, item_vectors: np.ndarray, y: np.ndarray) -> TransferData:
        tasks = tasks_of(rows)
        keys = [item_key(t, i) for t, i in zip(tasks, items_of(rows))]
        words = word_counts(rows)
        # the corpus of an answer: the answers to its item, as `validate` and the per-prompt tasks group them;
        # one pass serves both the peers head (corpora of at least MIN_PEERS others) and diversity (any corpus)
        all_peers, _ = rarity.peer_features(answers, keys, min_peers=1)
        sizes = Counter(keys)
        valid = np.array([sizes[k] - 1 >= rarity.MIN_PEERS for k in keys])
        peers = np.where(valid[:, None], all_peers, 0.0)
        relative = rarity.within_corpus_z(peers, keys, valid)
        signals = {"length": words.astype(float), "semantic_distance": 1.0 - (answers * item_vectors).sum(axis=1),
                   "diversity": all_peers[:, rarity.FEATURES.index("diversity")]}
        return cls(answer_features(answers, item_vectors, words),
                   transfer_features(answers, item_vectors, words, peers, relative), valid,
                   np.asarray(y, dtype=float), np.array(tasks), np.array(keys), signals)

    def fit(self, rows: np.ndarray, ridges: tuple[float, float]) -> tuple[OriginalityModel, OriginalityModel | None]:
        """(base head, peers head) fitted on the answers `rows` (a boolean mask)."""
        base = OriginalityModel.fit(self.base[rows], self.y[rows], [], ridges[0])
        with_peers = rows & self.valid
        peers = OriginalityModel.fit(self.peers[with_peers], self.y[with_peers], [], ridges[1]) \
            if with_peers.sum() > self.peers.shape[1] else None
        return base, peers

    def predict(self, heads, rows: np.ndarray, with_peers: bool = True) -> np.ndarray:
        base, peers = heads
        out = base.predict(self.base[rows])
        use = self.valid[rows] if peers is not None and with_peers else np.zeros(rows.sum(), dtype=bool)
        if use.any():
            out[use] = peers.predict(self.peers[rows][use])
        return out

    def folds(self, scheme: str) -> list[np.ndarray]:
        """Held-out masks: 5 folds of the answers (a fixed permutation), each item, or each task type."""
        if scheme == "random":
            fold = np.random.default_rng(0).permutation(len(self.y)) % FOLDS
            return [fold == k for k in range(FOLDS)]
        groups = self.items if scheme == "items" else self.tasks
        return [groups == g for g in sorted(set(groups))]

    def out_of_fold(self, scheme: str, ridges: tuple[float, float], with_peers: bool = True) -> np.ndarray:
        pred = np.full(len(self.y), np.nan)
        for held in self.folds(scheme):
            if (~held).sum() >= 2:  # ridge fits any number of answers; a fold needs some to learn from
                pred[held] = self.predict(self.fit(~held, ridges), held, with_peers)
        return pred

    def per_task(self, values: np.ndarray) -> dict[str, float]:
        """Spearman with the ratings within each task type (all its answers pooled)."""
        out = {}
        for task in sorted(set(self.tasks)):
            keep = (self.tasks == task) & np.isfinite(values)
            if keep.sum() > 2:
                out[task] = round(float(stats.spearmanr(values[keep], self.y[keep]).statistic), 4)
        return out


def choose_ridges(data: TransferData, grid=RIDGE_GRID) -> tuple[tuple[float, float], dict]:
    """Each head's ridge strength by the mean Spearman of leave-one-task-type-out predictions
    (leave-one-item-out where the data has a single task type): the base head's on its own
    predictions (what answers without enough peers get), then the peers head's with that base."""
    scheme = "types" if len(set(data.tasks)) > 1 else "items"

    def transfer(ridges, with_peers):
        return round(float(np.mean(list(data.per_task(data.out_of_fold(scheme, ridges, with_peers)).values()))), 4)

    found_base = {ridge: transfer((ridge, ridge), with_peers=False) for ridge in grid}
    base = max(grid, key=lambda r: (found_base[r], -r))
    found = {ridge: transfer((base, ridge), with_peers=True) for ridge in grid}
    peers = max(grid, key=lambda r: (found[r], -r))
    return (base, peers), {"scheme": scheme, "mean_spearman": found, "base_mean_spearman": found_base}


def transfer_validation(data: TransferData, ridges: tuple[float, float]) -> dict:
    """The three cross-validations of the scorer, and the simple signals, per task type."""
    schemes = [s for s in SCHEMES if s != "types" or len(set(data.tasks)) > 1]
    scorer = {s: data.per_task(data.out_of_fold(s, ridges)) for s in schemes}
    # the base head alone: what answers get whose corpus is too small for rarity (a model's few samples)
    alone = {s: data.per_task(data.out_of_fold(s, ridges, with_peers=False)) for s in schemes}
    signals = {name: data.per_task(np.asarray(v, dtype=float)) for name, v in data.signals.items()}
    return {"spearman_by_task": {"scorer": scorer, "scorer_without_peers": alone, "signals": signals},
            "schemes": {"random": f"{FOLDS} folds of the answers", "items": "each item held out in turn",
                        "types": "each task type held out in turn"},
            "peer_answers": {"min_peers": rarity.MIN_PEERS, "answers_with_peers": int(data.valid.sum()),
                             "answers": len(data.y)}}


def transfer_report(rows: list[dict], scorer: Scorer) -> dict:
    """The three cross-validations of a v5 scorer fitted on `rows` (ridges chosen as training
    chooses them), for `crpo-bench validate --transfer`."""
    rows = [r for r in rows if text.degenerate_kind(str(r["Response"])) not in text.WORDLESS]
    answers, items = embed(rows, scorer)
    data = TransferData.build(rows, answers, items, np.array([r["facsco_grm_scaled"] for r in rows]))
    ridges, _ = choose_ridges(data)
    return transfer_validation(data, ridges)


def transfer_rows(validation: dict) -> tuple[list[str], list[list[str]]]:
    """(header, rows): one row per scorer and scheme (signals: no fitting), one column per task type."""
    figures = validation["spearman_by_task"]
    tasks = sorted({t for per in figures["signals"].values() for t in per})
    names = {"random": "random split (5 folds of answers)", "items": "held-out item (one at a time)",
             "types": "held-out task type (one at a time)"}
    rows = []
    for scorer, label in (("scorer", "originality v5"), ("scorer_without_peers", "v5 without rarity (few answers)")):
        for scheme, per in figures[scorer].items():
            rows.append([label, names[scheme], *(f"{per[t]:+.3f}" if t in per else "-" for t in tasks),
                         f"{np.mean([per[t] for t in tasks if t in per]):+.3f}"])
    for signal, per in figures["signals"].items():
        rows.append([signal, "(no fitting)", *(f"{per[t]:+.3f}" if t in per else "-" for t in tasks),
                     f"{np.mean([per[t] for t in tasks if t in per]):+.3f}"])
    return ["scorer", "cross-validation", *tasks, "mean"], rows


def _train_transfer(rows, val_rows, scorer, ridge, data_name, answers, item_vectors, X, y, start) -> OriginalityModel:
    data = TransferData.build(rows, answers, item_vectors, y)
    ridges, cv = ((ridge, ridge), None) if ridge is not None else choose_ridges(data)
    base, peers = data.fit(np.ones(len(y), dtype=bool), ridges)
    task_names = sorted(set(data.tasks))
    model = OriginalityModel(task_names, base.mean, base.scale, base.weights, base.intercept,
                             base_features="answer", with_peers=peers, relative_peers=peers is not None)
    model.card = {
        "name": "originality",
        "method": "v5: for items with rated answers in its memory, v3's memory head; for other items, ridge "
                  "regression on [log(1+words), 1-cos(answer, item), rarity among the corpus's answers "
                  f"{list(rarity.FEATURES)}, the same as z-scores within the corpus] where the corpus has at "
                  f"least {rarity.MIN_PEERS} other answers, "
                  "else on [log(1+words), 1-cos(answer, item), answer embedding]; no task one-hot",
        "embedder": scorer.embedder.name, "ridge": ridges[0], "training_data": data_name,
        "training_answers": len(rows), "tasks": task_names, "score_scale": "10-50 (MuCE)",
        # no peers head where no item has MIN_PEERS other answers: every answer gets the base head
        "peers": {"ridge": ridges[1], "features": list(rarity.FEATURES), "relative": True,
                  "min_peers": rarity.MIN_PEERS}
        if peers is not None else None,
        "validated": {"task_types": task_names, "items": sorted(set(data.items))},
    }
    if cv:
        model.card["ridge_transfer_cv"] = cv
    model.card["transfer"] = transfer_validation(data, ridges)
    add_memory(model, rows, answers, X, y, ridge)
    model.card["training_seconds"] = round(time.perf_counter() - start, 1)
    if val_rows:
        model.card["validation"] = agreement(model, val_rows, scorer)
    return model


def agreement(model: OriginalityModel, rows: list[dict], scorer: Scorer) -> dict:
    """Spearman and Pearson with human scores over the answers that have words (card figures)."""
    rows = [r for r in rows if text.degenerate_kind(str(r["Response"])) not in text.WORDLESS]
    answers, items = embed(rows, scorer)
    tasks = tasks_of(rows)
    corpora = [item_key(t, i) for t, i in zip(tasks, items_of(rows))]
    predicted = model.score(answers, items, tasks, items_of(rows), word_counts(rows), corpus_ids=corpora)
    human = np.array([r["facsco_grm_scaled"] for r in rows])
    return {"answers": len(rows), "spearman": round(float(stats.spearmanr(predicted, human).statistic), 4),
            "pearson": round(float(stats.pearsonr(predicted, human).statistic), 4)}
