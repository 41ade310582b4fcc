"""Metrics as small pure functions, every one returned as a percentage (x100) Python float except the
RMSEs (in the labels' units). GLUE uses the first five; own data (tasks/classification/own_data.py) adds
macro-F1, RMSE and the constant-answer baselines.

Which metric is reported per task follows the LoRA (Hu et al. 2021) / AdaLoRA (Zhang et al. 2023)
GLUE tables; the *main* metric (first) picks the best checkpoint and enters the GLUE average:

    task   main metric          also reported
    cola   matthews_corrcoef    accuracy
    sst2   accuracy             -
    mrpc   accuracy             f1
    qqp    accuracy             f1
    stsb   pearson              spearman
    mnli   accuracy_m           accuracy_mm   (matched / mismatched dev sets)
    qnli   accuracy             -
    rte    accuracy             -

The GLUE average is the plain mean of the eight main metrics and is only defined when all eight
tasks have a score (a partial mean would not be comparable with published numbers).

Everything is computed locally with scikit-learn / scipy: `evaluate.load(...)` fetches metric
scripts from the hub, which is unreachable offline.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import stats
from sklearn import metrics as skm

GLUE_MAIN_METRIC: dict[str, str] = {
    "cola": "matthews_corrcoef",
    "sst2": "accuracy",
    "mrpc": "accuracy",
    "qqp": "accuracy",
    "stsb": "pearson",
    "mnli": "accuracy_m",
    "qnli": "accuracy",
    "rte": "accuracy",
}

# Extra metrics reported next to the main one (same order as the papers' tables).
GLUE_EXTRA_METRICS: dict[str, tuple[str, ...]] = {
    "cola": ("accuracy",),
    "sst2": (),
    "mrpc": ("f1",),
    "qqp": ("f1",),
    "stsb": ("spearman",),
    "mnli": ("accuracy_mm",),
    "qnli": (),
    "rte": (),
}


def _check(labels: Sequence, preds: Sequence) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_pred = np.asarray(labels), np.asarray(preds)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"labels and predictions must be 1-D of equal length "
                         f"(got {y_true.shape} and {y_pred.shape})")
    if y_true.size == 0:
        raise ValueError("cannot compute a metric on zero examples")
    return y_true, y_pred


def accuracy(labels: Sequence[int], preds: Sequence[int]) -> float:
    y_true, y_pred = _check(labels, preds)
    return float(100.0 * np.mean(y_true == y_pred))


def f1(labels: Sequence[int], preds: Sequence[int]) -> float:
    """Binary F1 of the positive class 1 (MRPC "equivalent", QQP "duplicate"); 0 when undefined."""
    y_true, y_pred = _check(labels, preds)
    return float(100.0 * skm.f1_score(y_true, y_pred, pos_label=1, average="binary", zero_division=0))


def macro_f1(labels: Sequence[int], preds: Sequence[int]) -> float:
    """Unweighted mean of the per-class F1 over the classes in the labels or the predictions (a rare
    class counts as much as a common one); 0 for a class never predicted."""
    y_true, y_pred = _check(labels, preds)
    return float(100.0 * skm.f1_score(y_true, y_pred, average="macro", zero_division=0))


def matthews_corrcoef(labels: Sequence[int], preds: Sequence[int]) -> float:
    """MCC (CoLA); scikit-learn returns 0 when a row or column of the confusion matrix is empty."""
    y_true, y_pred = _check(labels, preds)
    return float(100.0 * skm.matthews_corrcoef(y_true, y_pred))


def _correlation(fn, labels: Sequence[float], preds: Sequence[float]) -> float:
    y_true, y_pred = _check(labels, preds)
    y_true, y_pred = y_true.astype(float), y_pred.astype(float)
    # A constant input makes the correlation undefined (scipy gives NaN + a warning); 0 keeps
    # best-checkpoint selection and averages well defined, like sklearn's MCC convention.
    if y_true.size < 2 or np.ptp(y_true) == 0 or np.ptp(y_pred) == 0:
        return 0.0
    value = float(fn(y_true, y_pred)[0])
    return 0.0 if math.isnan(value) else 100.0 * value


def pearson(labels: Sequence[float], preds: Sequence[float]) -> float:
    return _correlation(stats.pearsonr, labels, preds)


def spearman(labels: Sequence[float], preds: Sequence[float]) -> float:
    return _correlation(stats.spearmanr, labels, preds)


def rmse(labels: Sequence[float], preds: Sequence[float]) -> float:
    """Root mean squared error, in the labels' own units (not a percentage)."""
    y_true, y_pred = _check(labels, preds)
    return float(np.sqrt(skm.mean_squared_error(y_true.astype(float), y_pred.astype(float))))


# Baselines: the best any constant answer can do on the evaluated examples themselves, so a number
# beside them says whether the model learned anything from the texts.
def majority_accuracy(labels: Sequence[int]) -> float:
    """Accuracy of always answering the most frequent class of `labels`."""
    y_true, _ = _check(labels, labels)
    return float(100.0 * np.unique(y_true, return_counts=True)[1].max() / y_true.size)


def mean_rmse(labels: Sequence[float]) -> float:
    """RMSE of always answering the mean of `labels` (their standard deviation)."""
    y_true, _ = _check(labels, labels)
    return float(np.std(y_true.astype(float)))


def glue_average(per_task_main: dict[str, float]) -> float | None:
    """Mean of the eight main metrics, or None unless every GLUE task has a (non-NaN) score.

    Keys may be bare ("sst2") or registry names ("glue/sst2"); other keys are ignored.
    """
    scores: dict[str, float] = {}
    for key, value in per_task_main.items():
        name = key.removeprefix("glue/")
        if name in GLUE_MAIN_METRIC and value is not None and not math.isnan(float(value)):
            scores[name] = float(value)
    if set(scores) != set(GLUE_MAIN_METRIC):
        return None
    return sum(scores.values()) / len(scores)
