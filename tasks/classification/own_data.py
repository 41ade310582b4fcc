"""Your own data: classification or regression on CSV / TSV / JSON / JSON Lines files ("classify/file",
`salora train classify`).

The files are named in task_options (OwnDataOptions): a training file, a validation file (evaluated during
training; it picks the best checkpoint) and, optionally, a test file (scored once at the end with the best
checkpoint). What the task decides from the training file (the text columns, whether it is classification
or regression, the classes in id order) is settled before a run starts and recorded in its config.yaml
(`settle_options`), so `salora eval`, `salora predict` and `--resume` rebuild the same head without the
training file and a changed file cannot silently remap the classes.

Text columns: given, else the first GLUE-like names a file has (sentence1+sentence2, question+sentence,
question+passage, sentence, text), else its first two text columns (one if it has one), as the
transformers text-classification example does. Labels: tasks/classification/own_labels.py. Metrics: accuracy, macro-F1
(and Matthews correlation for two classes) beside the majority-class baseline; for regression Pearson,
Spearman and RMSE beside the RMSE of always answering the mean.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from salora.errors import SaloraError
from tasks import metrics as M
from tasks.base import Example, register, single_class, subset
from tasks.classification.own_labels import (CLASS_KINDS, KIND_NAMES, REGRESSION_KINDS, LabelColumn, label_name,
                              ordered_classes, parse_cell, read_labels, value_kind)
from tasks.classification.sequence_classification import SequenceClassificationTask
from tasks.tables import Table, check_format, read_table

# Checked in this order: a pair first, so a QNLI-like file (question, sentence) is not read as one sentence.
GLUE_LIKE_COLUMNS = (("sentence1", "sentence2"), ("question", "sentence"), ("question", "passage"),
                     ("sentence",), ("text",))
SPLIT_FILES = {"train": "train_file", "dev": "validation_file", "test": "test_file"}
PROBLEMS = ("classification", "regression")
# the columns `salora predict` adds to the input's own
PREDICTED_LABEL, PREDICTED_SCORE, PROBABILITY = "predicted_label", "predicted_score", "prob_{}"


@dataclass
class OwnDataOptions:
    # Each field's help is its metadata["help"]; set as task_options.<name> (or the `train classify` flags).
    train_file: str | None = field(default=None, metadata={"help": (
        "Training examples: .csv, .tsv, .json (a list of records) or .jsonl")})
    validation_file: str | None = field(default=None, metadata={"help": (
        "Examples evaluated during training; the best checkpoint is chosen on them")})
    test_file: str | None = field(default=None, metadata={"help": (
        "Held-out examples scored once at the end, with the best checkpoint (optional)")})
    text_columns: list[str] | None = field(default=None, metadata={"help": (
        "One column, or two read as a pair; not given: the first GLUE-like names present, else the first "
        "one or two text columns")})
    label_column: str = field(default="label", metadata={"help": "The label column"})
    problem: str | None = field(default=None, metadata={"help": (
        "classification | regression; not given: regression for decimal-number labels, else classification")})
    labels: list[Any] | None = field(default=None, metadata={"help": (
        "The classes in id order; not given: the training file's, sorted (false before true)")})

    @classmethod
    def build(cls, options: dict[str, Any]) -> "OwnDataOptions":
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(options) - set(names))
        if unknown:
            raise SaloraError(f"task classify/file has no option '{unknown[0]}' (options: {', '.join(names)})")
        out = cls(**options)
        out.validate()
        return out

    def validate(self) -> None:
        for name in ("train_file", "validation_file", "test_file", "label_column", "problem"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise SaloraError(f"task_options.{name} must be a non-empty string, got {value!r}")
        if isinstance(self.text_columns, str):  # the flag's form: "a,b"
            self.text_columns = [c.strip() for c in self.text_columns.split(",") if c.strip()]
        if self.text_columns is not None and (not isinstance(self.text_columns, list) or
                                              not 1 <= len(self.text_columns) <= 2 or
                                              not all(isinstance(c, str) for c in self.text_columns)):
            raise SaloraError(f"text columns: give one or two column names (A or A,B), got {self.text_columns!r}")
        if self.problem is not None and self.problem not in PROBLEMS:
            raise SaloraError(f"task_options.problem must be classification or regression, got {self.problem!r}")
        if self.labels is not None and (not isinstance(self.labels, list) or len(set(self.labels)) < 2
                                        or len({value_kind(v) for v in self.labels}) != 1
                                        or value_kind(self.labels[0]) not in CLASS_KINDS + ("number",)):
            raise SaloraError(f"task_options.labels must list two or more distinct labels of one type, "
                              f"got {self.labels!r}")


@dataclass(frozen=True)
class Layout:
    """What the task reads and predicts, settled from the options and (where they leave it open) the
    training file."""

    text_columns: tuple[str, ...]
    label_column: str
    problem: str  # classification | regression
    labels: tuple[Any, ...] | None  # classification: the classes in id order
    how: str = "given"  # how the text columns were chosen, for the console


class OwnDataTask(SequenceClassificationTask):
    name = "classify/file"
    eval_split = "dev"

    def __init__(self) -> None:
        self.options = OwnDataOptions()
        self.data_dir: str | None = None
        self._layout: Layout | None = None
        self.counts: dict[str, dict[str, Any]] = {}  # per split: rows and label counts (data_summary)

    def configure(self, **options: Any) -> "OwnDataTask":
        self.options = OwnDataOptions.build(options)
        self._layout = None
        self.final_eval_split = "test" if self.options.test_file else None
        return self

    # ------------------------------------------------------------------ what the run reads
    def path(self, split: str) -> Path:
        """The file of a split; with a data_dir (`salora eval --data-dir`: where the files are now), its name
        looked up there."""
        given = getattr(self.options, SPLIT_FILES[split])
        if given is None:
            flag = "--" + SPLIT_FILES[split].replace("_", "-")
            if split == "test":
                raise SaloraError(f"{self.name}: this run has no test file ({flag} FILE when training)")
            raise SaloraError(f"{self.name}: give the {SPLIT_FILES[split].replace('_', ' ')} with {flag} FILE")
        path = Path(given).expanduser()
        return Path(self.data_dir) / path.name if self.data_dir else path

    def layout(self) -> Layout:
        """The settled layout: from the options alone when a run recorded it (eval, predict, export need
        no training file), else decided from the training file."""
        if self._layout is None:
            o = self.options
            recorded = o.text_columns and (o.problem == "regression" or o.labels is not None)
            if recorded:
                labels = None if o.problem == "regression" else tuple(o.labels)
                self._layout = Layout(tuple(o.text_columns), o.label_column, o.problem or "classification", labels)
            else:
                self._layout = self._settle(read_table(self.path("train")))
        return self._layout

    def _settle(self, train: Table) -> Layout:
        """Decide (or, for options given, check) the layout against the whole training file."""
        o = self.options
        text, how = self._text_columns(train)
        _require(train, o.label_column, "label", "choose with --label-column")
        if o.label_column in text:
            raise SaloraError(f"{train.path}: column '{o.label_column}' cannot be both a text and the label column")
        labels = read_labels(train, o.label_column)
        problem = o.problem or ("regression" if labels.kind == "number" else "classification")
        if problem == "regression":
            if labels.kind not in REGRESSION_KINDS:
                raise SaloraError(f"{train.path}: column '{o.label_column}' holds {labels.kind} labels "
                                  f"({labels.values[0]!r}), not numbers for a regression target")
            if len(set(labels.values)) < 2:
                raise SaloraError(f"{train.path}: column '{o.label_column}' holds one value only "
                                  f"({labels.values[0]!r}): nothing to learn")
            return Layout(text, o.label_column, problem, None, how)
        classes = o.labels if o.labels is not None else ordered_classes(labels.values)
        if len(classes) < 2:
            raise SaloraError(f"{train.path}: column '{o.label_column}' holds one class only "
                              f"({label_name(classes[0])!r}): a classifier needs two or more")
        return Layout(text, o.label_column, problem, tuple(classes), how)

    def _text_columns(self, table: Table) -> tuple[tuple[str, ...], str]:
        given = self.options.text_columns
        if given:
            for column in given:
                _require(table, column, "text", "choose with --text-columns")
            return tuple(given), "given"
        for names in GLUE_LIKE_COLUMNS:
            if all(n in table.columns for n in names):
                return names, "GLUE-like names"
        texts = [c for c in table.columns if c != self.options.label_column and _is_text_column(table, c)]
        if not texts:
            raise SaloraError(f"{table.path}: no text column found (columns: {', '.join(table.columns)}); "
                              "name one or two with --text-columns")
        return tuple(texts[:2]), f"the first {'two text columns' if len(texts) > 1 else 'text column'}"

    # properties the loop and the head read: settled from the training file when the run did not record them
    @property
    def is_regression(self) -> bool:
        return self.layout().problem == "regression"

    @property
    def num_labels(self) -> int:
        return 1 if self.is_regression else len(self.layout().labels)

    @property
    def main_metric(self) -> str:
        return "pearson" if self.is_regression else "accuracy"

    def head_labels(self) -> list[str] | None:
        labels = self.layout().labels
        return None if labels is None else [label_name(v) for v in labels]

    def settle_options(self, data_dir: str | None) -> tuple[dict[str, Any], str | None]:
        self.data_dir = data_dir
        for split in ("train", "dev") + (("test",) if self.options.test_file else ()):
            check_format(self.path(split))  # every file's type, before the training file is read
        layout = self._layout = self._settle(read_table(self.path("train")))
        files = {key: os.path.abspath(os.path.expanduser(value)) for key in SPLIT_FILES.values()
                 if (value := getattr(self.options, key)) is not None}
        added = {**files, "text_columns": list(layout.text_columns), "label_column": layout.label_column,
                 "problem": layout.problem, "labels": None if layout.labels is None else list(layout.labels)}
        columns = " + ".join(f"'{c}'" for c in layout.text_columns)
        if layout.labels is None:
            target = "a regression target (pearson, spearman, rmse)"
        else:
            target = (f"{len(layout.labels)} classes, in id order: {', '.join(self.head_labels())}"
                      f"{'' if self.options.labels else ' (sorted)'}")
        return added, (f"data: text {columns} ({layout.how}; choose with --text-columns) · label "
                       f"'{layout.label_column}': {target}")

    # ------------------------------------------------------------------ data
    def load_splits(self, data_dir: str | None = None, *, max_train_samples: int | None = None, seed: int = 0,
                    splits: tuple[str, ...] | None = None) -> dict[str, list[Example]]:
        self.data_dir = data_dir
        splits = splits or tuple(s for s in SPLIT_FILES if s != "test" or self.options.test_file)
        tables = {split: read_table(self.path(split)) for split in splits}
        if "train" in tables:  # decided on the whole file (a --max-train-samples subset may miss a class)
            self._layout = self._settle(tables["train"])
        out = {split: self._examples(table, split) for split, table in tables.items()}
        if "train" in out:
            out["train"] = subset(out["train"], max_train_samples, seed)
        return out

    def _examples(self, table: Table, split: str) -> list[Example]:
        layout = self.layout()
        for column in layout.text_columns:
            _require(table, column, "text", "the run reads it")
        _require(table, layout.label_column, "label", "the run reads it")
        ids = self._label_ids(table, read_labels(table, layout.label_column), split)
        examples = [{**self._texts(table, i), "label": ids[i]} for i in range(len(table.rows))]
        self.counts[split] = {"file": str(table.path), "rows": len(examples)}
        if layout.labels is not None:
            counts = Counter(ids)
            self.counts[split]["label_counts"] = {label_name(v): counts[i] for i, v in enumerate(layout.labels)}
        return examples

    def _label_ids(self, table: Table, labels: LabelColumn, split: str) -> list[int | float]:
        layout = self.layout()
        if layout.labels is None:
            if labels.kind not in REGRESSION_KINDS:
                raise SaloraError(f"{table.where(0)}: label {labels.values[0]!r} is {KIND_NAMES[labels.kind]}, but "
                                  "this run is a regression on numbers")
            return [float(v) for v in labels.values]
        expected = value_kind(layout.labels[0])
        if labels.kind != expected:
            raise SaloraError(f"{table.where(0)}: label {labels.values[0]!r} is {KIND_NAMES[labels.kind]}, but the "
                              f"training labels are {KIND_NAMES[expected]} (mixed label types)")
        index = {v: i for i, v in enumerate(layout.labels)}
        for i, value in enumerate(labels.values):
            if value not in index:
                known = ", ".join(self.head_labels())
                raise SaloraError(f"{table.where(i)}: label {label_name(value)!r} " + (
                    f"is not one of the labels given ({known})" if split == "train" else
                    f"never occurs in the training file (its labels: {known})"))
        return [index[v] for v in labels.values]

    def _texts(self, table: Table, i: int) -> dict[str, str | None]:
        texts = []
        for column in self.layout().text_columns:
            value = table.rows[i].get(column)
            if value is not None and not isinstance(value, str):
                raise SaloraError(f"{table.where(i)}: column '{column}' holds {value!r}, not text")
            if value is None or not value.strip():
                raise SaloraError(f"{table.where(i)}: empty text in column '{column}'")
            texts.append(value)
        return {"text_a": texts[0], "text_b": texts[1] if len(texts) > 1 else None}

    def data_summary(self) -> dict[str, Any]:
        layout = self.layout()
        return {"text_columns": list(layout.text_columns), "label_column": layout.label_column,
                "problem": layout.problem, "labels": self.head_labels(), "splits": self.counts}

    # ------------------------------------------------------------------ metrics
    def score(self, examples: list[Example], preds: list, **_: Any) -> dict[str, float]:
        labels = [ex["label"] for ex in examples]
        if self.is_regression:
            return {"pearson": M.pearson(labels, preds), "spearman": M.spearman(labels, preds),
                    "rmse": M.rmse(labels, preds), "baseline_rmse": M.mean_rmse(labels)}
        only = single_class(preds)
        self.last_single_class = None if only is None else self.head_labels()[int(only)]
        out = {"accuracy": M.accuracy(labels, preds), "macro_f1": M.macro_f1(labels, preds)}
        if self.num_labels == 2:
            out["matthews_corrcoef"] = M.matthews_corrcoef(labels, preds)
        return {**out, "baseline_accuracy": M.majority_accuracy(labels)}

    def baseline_note(self, metrics: dict[str, float]) -> str:
        if "baseline_accuracy" in metrics:
            return f"majority class {metrics['baseline_accuracy']:.2f}"
        if "baseline_rmse" in metrics:
            return f"rmse {metrics['rmse']:.3f}, always the mean {metrics['baseline_rmse']:.3f}"
        return ""

    # ------------------------------------------------------------------ predictions for new rows
    def prediction_input(self, path: str | Path) -> tuple[Table, list[Example]]:
        """A file of new rows (a label column may be there or not) and its examples, every text checked."""
        table = read_table(path)
        layout = self.layout()
        for column in layout.text_columns:
            _require(table, column, "text", "the run reads it")
        added = self.prediction_columns()
        clash = next((c for c in table.columns if c in added), None)
        if clash:
            raise SaloraError(f"{table.path}: already has a column '{clash}', which predict adds; rename it")
        placeholder = 0.0 if self.is_regression else 0  # collate wants a label; predictions ignore it
        return table, [{**self._texts(table, i), "label": placeholder} for i in range(len(table.rows))]

    def prediction_columns(self) -> list[str]:
        if self.is_regression:
            return [PREDICTED_SCORE]
        return [PREDICTED_LABEL] + [PROBABILITY.format(n) for n in self.head_labels()]

    def prediction_rows(self, table: Table, logits: torch.Tensor) -> list[dict[str, Any]]:
        """Each input row with its prediction: the class and every class's probability, or the score."""
        rows = []
        if self.is_regression:
            for row, score in zip(table.rows, logits[:, 0].tolist()):
                rows.append({**row, PREDICTED_SCORE: round(score, 6)})
            return rows
        names = self.head_labels()
        for row, probs in zip(table.rows, torch.softmax(logits, dim=-1).tolist()):
            best = max(range(len(probs)), key=probs.__getitem__)
            rows.append({**row, PREDICTED_LABEL: names[best],
                         **{PROBABILITY.format(n): round(p, 6) for n, p in zip(names, probs)}})
        return rows


def _require(table: Table, column: str, what: str, fix: str) -> None:
    if column not in table.columns:
        raise SaloraError(f"{table.path}: no {what} column '{column}' (columns: {', '.join(table.columns)}); {fix}")


def _is_text_column(table: Table, column: str) -> bool:
    """Whether a column holds text: some value that is a string and does not spell a number or a boolean
    (the label rules, tasks/classification/own_labels.py)."""
    return any(isinstance(parse_cell(row.get(column), table.typed), str) for row in table.rows)


register("classify/file", OwnDataTask)
