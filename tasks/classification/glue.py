"""GLUE tasks (cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte) as one spec-driven `GlueTask`.

Where the data comes from (first that applies):
1. `data_dir`, the GLUE root in the official download layout (the output of GLUE's
   `download_glue_data.py`): `<dir>/<TASK>/train.tsv` and `dev.tsv`, with folders CoLA, SST-2, MRPC,
   QQP, STS-B, MNLI, QNLI, RTE. MNLI's dev set is `dev_matched.tsv` + `dev_mismatched.tsv`. For
   convenience a data folder that holds `glue/<TASK>/` (like ../shared/data) is accepted too.
   MNLI, QQP and QNLI may instead come as labelled samples of the official files in LM-BFF's
   k-shot layout (../shared/data/glue-sampled; see "Sampled GLUE" below).
2. the environment variable SALORA_GLUE_DIR (same layout);
3. the Hugging Face hub, `datasets.load_dataset("nyu-mll/glue", <config>)`; offline this fails with
   a SaloraError that points at --data-dir.

Every split becomes a list of examples `{"text_a": str, "text_b": str | None, "label": int | float}`.
Label ids follow the hub's ClassLabel order (so local and hub data train the same head):
RTE/QNLI entailment=0, not_entailment=1; MNLI entailment=0, neutral=1, contradiction=2; the 0/1 tasks
keep their ids; STS-B is a float score in [0, 5] (regression, one output). MNLI "dev" holds both
matched and mismatched examples, tagged `"subset": "m"` / `"mm"` for accuracy_m / accuracy_mm.

Sampled GLUE (MNLI, QQP, QNLI). The full official train files (and MNLI/QQP dev) are too large for
the offline data; `glue-sampled/<TASK>/` holds LM-BFF's samples of them (Gao et al. 2021,
`generate_k_shot_data.py --k 512`): folders `512-<seed>/` whose train and dev files are both drawn
from the official TRAIN file, and `test*.tsv`, 1,000 rows drawn from the official DEV file. Each split
is read from the official folder when its files are there, else from the sampled folder:
- train: every row of every `<k>-<seed>/` train and dev file, kept once per id (MNLI/QNLI `index`,
  QQP `id`; the seeds overlap a little), seeds in numeric order: MNLI 15,130, QQP 10,117, QNLI 9,833
  distinct rows of GLUE train;
- dev: MNLI `test_matched.tsv` + `test_mismatched.tsv`, QQP `test.tsv` (1,000-row samples of GLUE dev);
  QNLI's official `dev.tsv` is in glue/QNLI, so QNLI is scored on the whole official dev set.
The sampled folder is looked for at <root>/<TASK>, <root>/glue-sampled/<TASK> and, because a data
root keeps `glue/` and `glue-sampled/` side by side, <root>/../glue-sampled/<TASK>. `data_sources`
(after `load_splits`) says, per split, which files a run read; the runner records it in metrics.json
so every report can mark a sampled task.

File quirks handled:
- every TSV is read with csv quoting disabled (QNLI sentences start with stray `"`, which a quoting
  reader would treat as an opening quote and merge lines); one record per physical line. Except
  QQP: Quora's release quotes a field that contains `"` and doubles the quotes inside it;
- files are decoded as utf-8-sig: MRPC starts with a UTF-8 BOM that would corrupt its first column
  name (`Quality`);
- CoLA train/dev have no header: fields are (source, label, original_mark, sentence);
- columns are looked up by header name (MRPC `#1 String`, QQP `question1`/`is_duplicate`, MNLI
  `sentence1`/`gold_label`, STS-B `score`, ...), so extra columns do not matter;
- blank lines are skipped. Anything else malformed (missing file or column, wrong field count,
  empty sentence, unknown label, bad score, non-UTF-8 bytes, empty split) is a one-line SaloraError
  naming file, line and value: nothing is skipped silently. (The official SST-2, MRPC, QNLI and RTE
  files were checked and have no such rows.)
"""
from __future__ import annotations

import csv
import os
import random
import re
from collections import Counter
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Sequence

from salora.errors import SaloraError
from tasks.models import hub_endpoint, hub_unavailable
from tasks import metrics as M
from tasks.base import Example, register, single_class
from tasks.classification.sequence_classification import SequenceClassificationTask
from tasks.utf8 import first_non_utf8_line

HUB_DATASET = "nyu-mll/glue"
SPLITS = ("train", "dev")


@dataclass(frozen=True)
class GlueSpec:
    """Everything that differs between GLUE tasks: layout, columns, labels, metrics."""

    key: str                                   # registry suffix and metrics key, e.g. "sst2"
    folder: str                                # official folder name, e.g. "SST-2"
    text_a: str | int                          # header column name (or field index if no header)
    text_b: str | int | None
    label: str | int
    label_names: tuple[str, ...] | None        # label strings in the files, in id order; None = regression
    hub_text_a: str
    hub_text_b: str | None
    dev_files: tuple[tuple[str, str | None], ...] = (("dev.tsv", None),)   # (file, MNLI subset tag)
    hub_dev_splits: tuple[tuple[str, str | None], ...] = (("validation", None),)
    headerless_fields: int | None = None       # CoLA: no header, this many fields per row
    score_range: tuple[float, float] = (0.0, 5.0)
    quoting: int = csv.QUOTE_NONE              # QQP: csv.QUOTE_MINIMAL (see the module docstring)
    # Sampled layout (glue-sampled): the id column rows are deduplicated by, and the dev files
    # (samples of the official dev set) with their MNLI subset tags. Empty: no sampled layout.
    sampled_id: str | None = None
    sampled_dev_files: tuple[tuple[str, str | None], ...] = ()

    @property
    def hub_config(self) -> str:
        return self.key

    @property
    def is_regression(self) -> bool:
        return self.label_names is None


_BINARY = ("0", "1")
_NLI2 = ("entailment", "not_entailment")

GLUE_SPECS: dict[str, GlueSpec] = {s.key: s for s in (
    GlueSpec("cola", "CoLA", text_a=3, text_b=None, label=1, label_names=_BINARY,
             hub_text_a="sentence", hub_text_b=None, headerless_fields=4),
    GlueSpec("sst2", "SST-2", "sentence", None, "label", _BINARY, "sentence", None),
    GlueSpec("mrpc", "MRPC", "#1 String", "#2 String", "Quality", _BINARY, "sentence1", "sentence2"),
    GlueSpec("qqp", "QQP", "question1", "question2", "is_duplicate", _BINARY, "question1", "question2",
             quoting=csv.QUOTE_MINIMAL, sampled_id="id", sampled_dev_files=(("test.tsv", None),)),
    GlueSpec("stsb", "STS-B", "sentence1", "sentence2", "score", None, "sentence1", "sentence2"),
    GlueSpec("mnli", "MNLI", "sentence1", "sentence2", "gold_label",
             ("entailment", "neutral", "contradiction"), "premise", "hypothesis",
             dev_files=(("dev_matched.tsv", "m"), ("dev_mismatched.tsv", "mm")),
             hub_dev_splits=(("validation_matched", "m"), ("validation_mismatched", "mm")),
             sampled_id="index", sampled_dev_files=(("test_matched.tsv", "m"), ("test_mismatched.tsv", "mm"))),
    GlueSpec("qnli", "QNLI", "question", "sentence", "label", _NLI2, "question", "sentence",
             sampled_id="index", sampled_dev_files=(("test.tsv", None),)),
    GlueSpec("rte", "RTE", "sentence1", "sentence2", "label", _NLI2, "sentence1", "sentence2"),
)}


class GlueTask(SequenceClassificationTask):
    """One GLUE task, driven by its `GlueSpec`."""

    def __init__(self, spec: GlueSpec):
        self.spec = spec
        self.name = f"glue/{spec.key}"
        self.main_metric = M.GLUE_MAIN_METRIC[spec.key]
        self.is_regression = spec.is_regression
        self.num_labels = 1 if spec.is_regression else len(spec.label_names)
        # task_options {samples: false}: the official files or the hub only, never glue-sampled/ (the
        # paper's profiles: a run that read LM-BFF's 15k MNLI rows would not be the paper's MNLI)
        self.samples = True

    def configure(self, **options: Any) -> "GlueTask":
        """task_options: `samples` (bool, default true), whether a split may come from the sampled
        folder where the official file is missing."""
        unknown = sorted(set(options) - {"samples"})
        if unknown:
            raise SaloraError(f"task {self.name} has no option {', '.join(map(repr, unknown))} (options: samples)")
        if "samples" in options:
            if not isinstance(options["samples"], bool):
                raise SaloraError(f"task {self.name}: samples must be true or false, got {options['samples']!r}")
            self.samples = options["samples"]
        return self

    def __repr__(self) -> str:
        return f"GlueTask({self.name!r})"

    # ------------------------------------------------------------------ data
    def load_splits(self, data_dir: str | os.PathLike | None = None, *,
                    max_train_samples: int | None = None, seed: int = 0,
                    splits: Sequence[str] = SPLITS) -> dict[str, list[Example]]:
        """Read the requested splits ("train", "dev"); see the module docstring for sources."""
        splits = tuple(splits)
        bad = [s for s in splits if s not in SPLITS]
        if not splits or bad:
            raise SaloraError(f"{self.name}: unknown split(s) {bad or '(none given)'}; choose from train, dev")
        if max_train_samples is not None and (isinstance(max_train_samples, bool)
                                              or not isinstance(max_train_samples, int)
                                              or max_train_samples < 1):
            raise SaloraError(f"max_train_samples must be a positive integer, got {max_train_samples!r}")

        if data_dir is None:
            data_dir = os.environ.get("SALORA_GLUE_DIR") or None
        if data_dir is None:
            out = self._load_hub(splits)
            self.data_sources = {split: f"hub {HUB_DATASET}/{self.spec.hub_config}" for split in splits}
        else:
            root = Path(data_dir).expanduser()
            out, self.data_sources = {}, {}
            for split in splits:
                out[split], self.data_sources[split] = self._read_split(root, split)

        if max_train_samples is not None and "train" in out:
            out["train"] = _seeded_subset(out["train"], max_train_samples, seed)
        return out

    def majority_baseline(self, examples: list[Example]) -> dict[str, float]:
        """The metrics of one constant prediction on `examples`: the most frequent label (ties to the
        smaller id), or for STS-B the mean score (no correlation: 0). What "learned" is judged
        against in the reports (majority + 5 points)."""
        labels = [ex["label"] for ex in examples]
        counts = Counter(labels)
        majority = (sum(labels) / len(labels) if self.is_regression
                    else max(sorted(counts), key=lambda label: counts[label]))
        return self.compute_metrics(labels, [majority] * len(labels), [ex.get("subset") for ex in examples])

    def data_summary(self) -> dict[str, Any]:
        """metrics.json's "data": where each split came from, and which splits are samples of
        the official files ("sampled": [] for the official files, ["train", "dev"] for MNLI here)."""
        sources = getattr(self, "data_sources", None)
        if not sources:
            return {}
        return {"sources": dict(sources),
                "sampled": [split for split, where in sources.items() if where.startswith("sampled")]}

    def _task_folder(self, root: Path) -> Path | None:
        """The official folder <root>/<TASK> (or <root>/glue/<TASK>), if there is one."""
        if not root.is_dir():
            raise SaloraError(f"GLUE data folder {root} does not exist")
        for folder in (root / self.spec.folder, root / "glue" / self.spec.folder):
            if folder.is_dir():
                return folder
        return None

    def _sampled_folder(self, root: Path) -> Path | None:
        """The task's glue-sampled folder (module docstring), if the task has that layout and it exists."""
        if not self.spec.sampled_id:
            return None
        for folder in (root / self.spec.folder, root / "glue-sampled" / self.spec.folder,
                       root.parent / "glue-sampled" / self.spec.folder):
            if folder.is_dir() and _sample_folders(folder):
                return folder
        return None

    def _read_split(self, root: Path, split: str) -> tuple[list[Example], str]:
        """One split's examples and a line saying where they came from."""
        official = self._task_folder(root)
        files = (("train.tsv", None),) if split == "train" else self.spec.dev_files
        if official is not None and all((official / f).is_file() for f, _ in files):
            return self._read_files(official, files), f"official: {_names(official, files)}"
        sampled = self._sampled_folder(root)
        if sampled is not None and not self.samples:
            raise SaloraError(f"{self.name}: only samples of the official {split} set are at {sampled}, and this run "
                              f"asks for the official files (task_options samples: false): point --data-dir or "
                              f"SALORA_DATA at a GLUE root with {self.spec.folder}/, or leave both unset for the hub")
        if sampled is None and official is not None:  # names the first missing (or malformed) file
            return self._read_files(official, files), f"official: {_names(official, files)}"
        if sampled is None:
            raise SaloraError(f"{self.name}: folder {root / self.spec.folder} not found (expected the official "
                              f"GLUE layout <data-dir>/{self.spec.folder}/train.tsv, dev.tsv"
                              + (", or its glue-sampled folder)" if self.spec.sampled_id else ")"))
        if split == "dev":
            files = self.spec.sampled_dev_files
            return (self._read_files(sampled, files),
                    f"sampled: {_names(sampled, files)} (rows drawn from the official dev set)")
        examples = self._read_union(_sample_folders(sampled))
        return examples, (f"sampled: {len(examples)} distinct rows of {sampled}/{{{','.join(p.name for p in _sample_folders(sampled))}}}"
                          f"/{{train,dev}} (rows drawn from the official train set)")

    def _read_files(self, folder: Path, files: tuple[tuple[str, str | None], ...]) -> list[Example]:
        examples: list[Example] = []
        for filename, subset in files:
            examples.extend(self._read_tsv(folder / filename, subset))
        return examples

    def _read_union(self, seed_folders: list[Path]) -> list[Example]:
        """Every train/dev row of the sample folders, once per id, in folder then file order."""
        seen: set[str] = set()
        out: list[Example] = []
        for folder in seed_folders:
            files = [p for p in folder.glob("*.tsv") if p.name.startswith(("train", "dev"))]
            for path in sorted(files, key=lambda p: (not p.name.startswith("train"), p.name)):
                for ex, row_id in zip(*self._read_tsv(path, None, with_ids=True)):
                    if row_id not in seen:
                        seen.add(row_id)
                        out.append(ex)
        return out

    def _read_tsv(self, path: Path, subset: str | None, with_ids: bool = False):
        """The file's examples; with `with_ids`, also each row's sampled_id value (a second list)."""
        spec = self.spec
        if not path.is_file():
            raise SaloraError(f"{self.name}: missing file {path}")
        examples: list[Example] = []
        ids: list[str] = []
        try:
            # utf-8-sig strips MRPC's BOM; QUOTE_NONE keeps QNLI's stray quotes as plain text.
            with open(path, encoding="utf-8-sig", newline="") as fh:
                reader = csv.reader(fh, delimiter="\t", quoting=spec.quoting)
                if spec.headerless_fields is not None:
                    n_fields = spec.headerless_fields
                    ia, ib, il = spec.text_a, spec.text_b, spec.label
                else:
                    header = next(reader, None)
                    if header is None:
                        raise SaloraError(f"{path} is empty (expected a header line and examples)")
                    header = [h.strip() for h in header]
                    n_fields = len(header)
                    ia, ib, il = (self._column(header, c, path) for c in (spec.text_a, spec.text_b, spec.label))
                    iid = self._column(header, spec.sampled_id, path) if with_ids else None
                for fields in reader:
                    if not fields:
                        continue  # blank line (e.g. a doubled newline at the end)
                    line = reader.line_num
                    if len(fields) != n_fields:
                        raise SaloraError(f"{path}, line {line}: expected {n_fields} tab-separated "
                                          f"fields, found {len(fields)}")
                    self._check_text(fields, ia, ib, f"{path}, line {line}")
                    ex: Example = {"text_a": fields[ia],
                                   "text_b": None if ib is None else fields[ib],
                                   "label": self._parse_label(fields[il], f"{path}, line {line}")}
                    if subset is not None:
                        ex["subset"] = subset
                    examples.append(ex)
                    if with_ids:
                        ids.append(fields[iid])
        except UnicodeDecodeError as exc:
            raise SaloraError(f"{path}, line {first_non_utf8_line(path)}: not UTF-8 text ({exc.reason})") from exc
        except csv.Error as exc:
            raise SaloraError(f"{path}: unreadable TSV ({exc})") from exc
        if not examples:
            raise SaloraError(f"{path}: no examples (empty split)")
        return (examples, ids) if with_ids else examples

    def _check_text(self, fields: list[str], ia: int, ib: int | None, where: str) -> None:
        # An empty sentence trains on nothing but the label; the official files have none.
        for i, name in ((ia, "sentence"), (ib, "second sentence")):
            if i is not None and not fields[i].strip():
                raise SaloraError(f"{where}: empty {name} ({self.name})")

    @staticmethod
    def _column(header: list[str], col: str | int | None, path: Path) -> int | None:
        if col is None:
            return None
        if col not in header:
            raise SaloraError(f"{path}: required column '{col}' missing (header: {', '.join(header)})")
        return header.index(col)

    def _parse_label(self, raw: Any, where: str) -> int | float:
        """Map a file/hub label to the task's id (or float score); `where` names file and line."""
        spec = self.spec
        if spec.is_regression:
            try:
                score = float(str(raw).strip())
            except ValueError:
                raise SaloraError(f"{where}: score {str(raw)!r} is not a number ({self.name})") from None
            lo, hi = spec.score_range
            if not lo <= score <= hi:  # also rejects nan
                raise SaloraError(f"{where}: score {str(raw)!r} outside {lo:g}-{hi:g} ({self.name})")
            return score
        value = str(raw).strip()
        if value not in spec.label_names:
            raise SaloraError(f"{where}: label {value!r} is not one of "
                              f"{', '.join(spec.label_names)} ({self.name})")
        return spec.label_names.index(value)

    def _load_hub(self, splits: tuple[str, ...]) -> dict[str, list[Example]]:
        """Real hub path for users with internet; the hub's ClassLabel ids equal ours."""
        import datasets

        cfg = self.spec.hub_config
        if hub_unavailable():  # fail now, not after a minute of retries
            raise SaloraError(
                f"{self.name}: the Hugging Face hub ({hub_endpoint()}) is unreachable, so {HUB_DATASET} "
                f"cannot be downloaded: pass a local GLUE folder with --data-dir (or set SALORA_GLUE_DIR; "
                f"HF_HUB_OFFLINE=1 uses a copy already in the datasets cache)")
        try:
            dsd = datasets.load_dataset(HUB_DATASET, cfg)
        except Exception as exc:  # network, auth, cache: all mean "no hub data here"
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise SaloraError(
                f"could not load {self.name} from the Hugging Face hub ({HUB_DATASET}, {cfg}): "
                f"{first} -- hub unreachable? give a local GLUE folder with --data-dir "
                f"(or set SALORA_GLUE_DIR)") from exc
        out: dict[str, list[Example]] = {}
        for split in splits:
            hub_splits = (("train", None),) if split == "train" else self.spec.hub_dev_splits
            examples: list[Example] = []
            for hub_split, subset in hub_splits:
                examples.extend(self._hub_examples(dsd, hub_split, subset))
            out[split] = examples
        return out

    def _hub_examples(self, dsd: Any, hub_split: str, subset: str | None) -> list[Example]:
        spec = self.spec
        where = f"hub {HUB_DATASET}/{spec.hub_config} split {hub_split}"
        if hub_split not in dsd:
            raise SaloraError(f"{where}: split missing (has: {', '.join(dsd)})")
        ds = dsd[hub_split]
        cols = [c for c in (spec.hub_text_a, spec.hub_text_b, "label") if c is not None]
        for col in cols:
            if col not in ds.column_names:
                raise SaloraError(f"{where}: required column '{col}' missing")
        text_a = list(ds[spec.hub_text_a])
        text_b = list(ds[spec.hub_text_b]) if spec.hub_text_b else [None] * len(text_a)
        raw_labels = list(ds["label"])
        if not text_a:
            raise SaloraError(f"{where}: no examples (empty split)")
        examples = []
        for i, (a, b, y) in enumerate(zip(text_a, text_b, raw_labels)):
            if spec.is_regression:
                label = self._parse_label(y, f"{where}, row {i}")
            else:  # ClassLabel ints; -1 would be a hidden test label
                if not isinstance(y, int) or not 0 <= y < self.num_labels:
                    raise SaloraError(f"{where}, row {i}: label {y!r} is not in 0..{self.num_labels - 1}")
                label = y
            ex: Example = {"text_a": a, "text_b": b, "label": label}
            if subset is not None:
                ex["subset"] = subset
            examples.append(ex)
        return examples

    def score(self, examples: list[Example], preds: list[float | int]) -> dict[str, float]:
        labels = [ex["label"] for ex in examples]
        only = None if self.is_regression else single_class(preds)
        # read by the training loop and `salora eval` (tasks.base.degenerate_flag)
        self.last_single_class = None if only is None else self.spec.label_names[int(only)]
        return self.compute_metrics(labels, preds, [ex.get("subset") for ex in examples])

    def compute_metrics(self, labels: Sequence, preds: Sequence,
                        subsets: Sequence[str | None] | None = None) -> dict[str, float]:
        """Flat metric dict for this task (see tasks.metrics for the choice per task)."""
        key = self.spec.key
        if key == "mnli":
            # Untagged examples count as matched, so the main metric always exists.
            tags = ["mm" if s == "mm" else "m" for s in (subsets or [None] * len(labels))]
            out = {}
            for tag in ("m", "mm"):
                idx = [i for i, t in enumerate(tags) if t == tag]
                if idx:
                    out[f"accuracy_{tag}"] = M.accuracy([labels[i] for i in idx], [preds[i] for i in idx])
            return out
        fns = {"accuracy": M.accuracy, "f1": M.f1, "matthews_corrcoef": M.matthews_corrcoef,
               "pearson": M.pearson, "spearman": M.spearman}
        names = (M.GLUE_MAIN_METRIC[key],) + M.GLUE_EXTRA_METRICS[key]
        return {name: fns[name](labels, preds) for name in names}


def _sample_folders(folder: Path) -> list[Path]:
    """LM-BFF's `<k>-<seed>/` folders, by k then seed as numbers (13, 21, 42, 87, 100)."""
    found = [p for p in folder.iterdir() if p.is_dir() and re.fullmatch(r"\d+-\d+", p.name)]
    return sorted(found, key=lambda p: tuple(int(x) for x in p.name.split("-")))


def _names(folder: Path, files: tuple[tuple[str, str | None], ...]) -> str:
    return ", ".join(str(folder / f) for f, _ in files)


def _seeded_subset(examples: list[Example], k: int, seed: int) -> list[Example]:
    """Reproducible random subset of size k (same seed -> same subset), kept in file order."""
    if k >= len(examples):
        return examples
    idx = sorted(random.Random(seed).sample(range(len(examples)), k))
    return [examples[i] for i in idx]


def get_glue_task(key: str) -> GlueTask:
    """GlueTask for a bare GLUE name ("sst2") or a registry name ("glue/sst2")."""
    key = key.removeprefix("glue/")
    if key not in GLUE_SPECS:
        raise SaloraError(f"unknown GLUE task '{key}' (known: {', '.join(GLUE_SPECS)})")
    return GlueTask(GLUE_SPECS[key])


for _key, _spec in GLUE_SPECS.items():
    register(f"glue/{_key}", partial(GlueTask, _spec))
