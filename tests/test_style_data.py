"""Style-transfer data: Yelp/GYAFC readers, the training-pool guard, style markers, task splits."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from salora_cli.core.errors import SaloraError
from tasks.style.markers import delete, delete_markers, extract_markers
from tasks.prompts import SLOT
from tasks.style.style import GyafcStyleTask, YelpStyleTask
from tasks.style.style_data import find_yelp_dir, read_yelp_pool, read_yelp_test

FIXTURES = Path(__file__).resolve().parent / "fixtures"
YELP_TINY = FIXTURES / "yelp_tiny"
GYAFC = FIXTURES / "gyafc"


# ------------------------------------------------------------------------------------------ markers

def test_markers_known_answer():
    corpora = {0: ["the food was bad", "bad service", "the bad room"],
               1: ["the food was good", "good service", "the good room"]}
    # λ = 1: "bad" is 3 vs 0 → (3+1)/(0+1) = 4; every other style-specific n-gram occurs once → 2;
    # shared n-grams ("the", "the food", "service") → at most 1.
    markers = extract_markers(corpora, smoothing=1.0, threshold=2.0)
    assert markers == {0: {("bad",)}, 1: {("good",)}}
    markers = extract_markers(corpora, smoothing=1.0, threshold=1.5)
    assert markers[0] == {("bad",), ("was", "bad"), ("food", "was", "bad"), ("the", "food", "was", "bad"),
                          ("bad", "service"), ("the", "bad"), ("bad", "room"), ("the", "bad", "room")}
    # max_n bounds the n-gram order.
    assert all(len(m) <= 2 for m in extract_markers(corpora, threshold=1.5, max_n=2)[0])


def test_markers_default_threshold_is_strict():
    # Defaults λ = 1, γ = 15: 14 vs 0 gives (14+1)/1 = 15, not above 15; 15 vs 0 gives 16.
    corpora = {0: ["meh"] * 14 + ["yuck"] * 15, 1: ["fine"] * 5}
    assert extract_markers(corpora)[0] == {("yuck",)}
    # Smoothing weighs in: 30 vs 1 gives 31/2 = 15.5 > 15, 28 vs 1 gives 14.5.
    corpora = {0: ["wow"] * 30 + ["ok"] * 28, 1: ["wow", "ok"]}
    assert extract_markers(corpora)[0] == {("wow",)}


def test_delete_markers_longest_first():
    markers = {("not", "good"), ("good",), ("great",)}
    assert delete_markers("the food was not good but the view was great", markers) == \
        "the food was but the view was"
    # Same length: left to right; a match never reuses a deleted token.
    assert delete_markers("very good food", {("very", "good"), ("good", "food")}) == "food"
    # Space-separated strings work too; a 3-gram wins over its unigram inside it.
    assert delete_markers("i will never come back", ["never come back", "never"]) == "i will"
    assert delete_markers("great", {("great",)}) == ""
    assert delete_markers("nothing to delete here", set()) == "nothing to delete here"


# --------------------------------------------------------------------------------------------- Yelp

def test_real_yelp_test_set(shared_data):
    folder = find_yelp_dir(shared_data)  # the parent folder is accepted too
    assert folder == shared_data / "yelp"
    test = read_yelp_test(folder)
    assert len(test) == 1000
    assert sum(ex["source_style"] == 0 for ex in test) == 500
    lines = {s: (folder / f"sentiment.test.{s}").read_text().splitlines() for s in (0, 1)}
    for i, ex in enumerate(test):
        style = ex["source_style"]
        assert ex["target_style"] == 1 - style
        assert ex["source"] == lines[style][i % 500].strip()
        assert len(ex["references"]) == 1 and ex["references"][0] == ex["target"]
    assert test[0]["references"] == ["Ever since joes has changed hands it's gotten better and better."]
    assert test[500]["source"] == "it 's small yet they make you feel right at home ."


def test_real_yelp_splits(shared_data):
    task = YelpStyleTask()
    splits = task.load_splits(str(shared_data / "yelp"), max_train_samples=200, seed=1)
    assert len(splits["train"]) == 200 and len(splits["dev"]) == 4000 and len(splits["test"]) == 1000
    evaluated = {ex["source"] for ex in splits["dev"] + splits["test"]}
    assert not evaluated & {ex["source"] for ex in splits["train"]}
    # Typical sentiment words are markers; the content of a test source loses them.
    assert ("delicious",) in task.markers[1] and ("rude",) in task.markers[0]
    shorter = [ex for ex in splits["test"] if len(_words(ex["content"])) < len(ex["source"].split())]
    assert len(shorter) > 500
    assert all(set(_words(ex["content"])) <= set(ex["source"].split()) for ex in splits["test"])
    assert all(SLOT in ex["content"].split() for ex in splits["test"])  # where the words went


def _words(content: str) -> list[str]:
    return [t for t in content.split() if t != SLOT]


def test_yelp_pool_decontaminated():
    pool = read_yelp_pool(YELP_TINY, "shen2017-test")
    assert len(pool) == 18  # 20 minus the two sentences that are also Yelp test sentences
    assert ("the staff was terrible .", 0) not in pool


def test_shen2017_dev_pool_refused():
    with pytest.raises(SaloraError, match="shen2017-dev.*drawn from shen2017/sentiment.dev"):
        YelpStyleTask(train_pool="shen2017-dev").load_splits(str(YELP_TINY))


def test_yelp_pool_errors(tmp_path):
    with pytest.raises(SaloraError, match="unknown Yelp train_pool 'train'"):
        YelpStyleTask(train_pool="train").load_splits(str(YELP_TINY))
    with pytest.raises(SaloraError, match="'official' needs sentiment.train"):
        YelpStyleTask(train_pool="official").load_splits(str(YELP_TINY))
    with pytest.raises(SaloraError, match="Yelp data not found under"):
        YelpStyleTask().load_splits(str(tmp_path))
    with pytest.raises(SaloraError, match="has no option 'pool'"):
        YelpStyleTask(pool="official")


def test_yelp_official_pool(tmp_path):
    folder = tmp_path / "yelp"
    shutil.copytree(YELP_TINY, folder)
    (folder / "sentiment.train.0").write_text("bad bad food .\n")
    (folder / "sentiment.train.1").write_text("good good food .\n")
    # λ = 1: two occurrences against none clear γ = 2 (the default λ = 3 is meant for real corpora).
    splits = YelpStyleTask(train_pool="official", marker_threshold=2, marker_smoothing=1).load_splits(str(folder))
    train = sorted(splits["train"], key=lambda ex: ex["source"])
    assert [ex["source"] for ex in train] == ["bad bad food .", "good good food ."]
    assert [ex["content"] for ex in train] == ["___ food .", "___ food ."]  # one slot per deleted run
    assert [ex["words"] for ex in train] == [["bad bad"], ["good good"]]  # its own deleted words


def test_yelp_misaligned_references(tmp_path):
    folder = tmp_path / "yelp"
    shutil.copytree(YELP_TINY, folder)
    (folder / "reference.1").write_text("the coffee is great .\tThe coffee is bad.\n")
    with pytest.raises(SaloraError, match="reference.1 has 1 lines but sentiment.test.1 has 2"):
        read_yelp_test(folder)
    (folder / "reference.1").write_text("the tea is great .\tx\nthe cake was delicious .\ty\n")
    with pytest.raises(SaloraError, match="line 1: source column differs"):
        read_yelp_test(folder)


def test_yelp_task_splits_tiny():
    task = YelpStyleTask(marker_threshold=2, marker_smoothing=1)
    splits = task.load_splits(str(YELP_TINY), max_train_samples=None)
    pool = read_yelp_pool(YELP_TINY, "shen2017-test")
    # Training: the pool's sentences whose markers removed a word (not only the fallback), 5 of each style.
    assert {ex["source"] for ex in splits["train"]} == {s for s, y in pool if delete(s, task.markers[y]).by_markers}
    assert [ex["source_style"] for ex in splits["train"]].count(0) == 5 and len(splits["train"]) == 10
    assert {("terrible",), ("awful",)} <= task.markers[0] and {("great",), ("delicious",)} <= task.markers[1]
    assert ("the",) not in task.markers[0] | task.markers[1]
    for ex in splits["train"]:  # reconstruction: own style, the sentence itself
        assert ex["target_style"] == ex["source_style"] and ex["target"] == ex["source"]
        assert ex["references"] == [ex["source"]]
        assert ex["content"] == delete(ex["source"], task.markers[ex["source_style"]]).content(SLOT)
    for ex in splits["dev"]:  # transfer into the other style, scored without references
        assert ex["target_style"] == 1 - ex["source_style"] and ex["target"] is None and ex["references"] == []
    food = next(ex for ex in splits["train"] if ex["source"] == "the food was terrible .")
    assert food["content"] == "the food was ___ ."  # only "terrible"; "was" is style-neutral (trimmed)
    fries = next(ex for ex in splits["test"] if ex["source"] == "the fries were awful and cold .")
    assert fries["target_style"] == 1 and "awful" not in fries["content"] and "fries" in fries["content"]
    assert fries["references"] == ["The fries were delicious and hot."]
    # Seeded sampling: same seed, same sample.
    a = task.load_splits(str(YELP_TINY), max_train_samples=5, seed=3)["train"]
    b = task.load_splits(str(YELP_TINY), max_train_samples=5, seed=3)["train"]
    assert a == b and len(a) == 4  # 5 // 2 of each style


# -------------------------------------------------------------------------------------------- GYAFC

@pytest.mark.parametrize("sub", ["", "GYAFC_Corpus", "GYAFC_Corpus/Family_Relationships"])
def test_gyafc_layout_both_directions(sub):
    splits = GyafcStyleTask().load_splits(str(GYAFC / sub) if sub else str(GYAFC))
    train, dev, test = splits["train"], splits["dev"], splits["test"]
    assert len(train) == 12 and len(dev) == 3 + 2 and len(test) == 4 + 3
    inf2for = [ex for ex in train if ex["target_style"] == 1]
    assert inf2for[0] == {"source": "u should just talk 2 her about it", "content": "u should just talk 2 her about it",
                          "source_style": 0, "target_style": 1, "target": "You should simply talk to her about it.",
                          "references": []}
    for2inf = [ex for ex in train if ex["target_style"] == 0]
    assert for2inf[0]["source"] == "You should simply talk to her about it."
    assert for2inf[0]["target"] == "u should just talk 2 her about it"
    # informal→formal test sources are test/informal, references formal.ref0..3 (line-aligned).
    first = test[0]
    assert first["source"] == "i luv my family sooo much" and first["target_style"] == 1
    assert first["references"] == ["I love my family very much.", "I love my family so much.",
                                   "I really love my family.", "I love my family dearly."]
    last = test[-1]
    assert last["source"] == "It is never too late to apologize." and last["target_style"] == 0
    assert last["references"][3] == "u can always apologize, its never too late"
    assert all(len(ex["references"]) == 4 for ex in dev + test)


def test_gyafc_single_directions_and_options():
    i2f = GyafcStyleTask(direction="informal-to-formal").load_splits(str(GYAFC))
    assert all(ex["source_style"] == 0 and ex["target_style"] == 1 for split in i2f.values() for ex in split)
    assert [len(i2f[s]) for s in ("train", "dev", "test")] == [6, 3, 4]
    f2i = GyafcStyleTask(direction="formal-to-informal", domain="fr").load_splits(str(GYAFC))
    assert all(ex["target_style"] == 0 for split in f2i.values() for ex in split)
    assert [len(f2i[s]) for s in ("train", "dev", "test")] == [6, 2, 3]
    sample = GyafcStyleTask().load_splits(str(GYAFC), max_train_samples=4, seed=0)["train"]
    assert len(sample) == 4
    with pytest.raises(SaloraError, match="unknown GYAFC direction 'up'"):
        GyafcStyleTask(direction="up").load_splits(str(GYAFC))
    with pytest.raises(SaloraError, match="unknown GYAFC domain 'sports'"):
        GyafcStyleTask(domain="sports").load_splits(str(GYAFC))


@pytest.mark.parametrize("where", [None, "missing"])
def test_missing_gyafc_explains_licence(where, tmp_path):
    data_dir = None if where is None else str(tmp_path / where)
    with pytest.raises(SaloraError) as err:
        GyafcStyleTask().load_splits(data_dir)
    msg = str(err.value)
    assert "\n" not in msg
    for part in ("licensed", "cannot be downloaded", "L6", "Rao & Tetreault 2018", "--data-dir"):
        assert part in msg


def test_gyafc_misaligned_references(tmp_path):
    shutil.copytree(GYAFC, tmp_path / "g")
    ref = tmp_path / "g/GYAFC_Corpus/Family_Relationships/test/formal.ref2"
    ref.write_text("only one line\n")
    with pytest.raises(SaloraError, match="formal.ref2 has 1 lines but .*informal has 4"):
        GyafcStyleTask().load_splits(str(tmp_path / "g"))
    train = tmp_path / "g/GYAFC_Corpus/Family_Relationships/train/formal"
    train.write_text("One line.\n")
    with pytest.raises(SaloraError, match="must be line-aligned"):
        GyafcStyleTask().load_splits(str(tmp_path / "g"))


def test_gyafc_tune_without_references_is_parallel(tmp_path):
    shutil.copytree(GYAFC, tmp_path / "g")
    tune = tmp_path / "g/GYAFC_Corpus/Family_Relationships/tune"
    for ref in tune.glob("*.ref*"):
        ref.unlink()
    (tune / "informal").write_text("ask ur sister 4 help\nidk\n")
    (tune / "formal").write_text("Ask your sister for help.\nI do not know.\n")
    dev = GyafcStyleTask(direction="informal-to-formal").load_splits(str(tmp_path / "g"))["dev"]
    assert [(ex["source"], ex["references"]) for ex in dev] == [
        ("ask ur sister 4 help", ["Ask your sister for help."]), ("idk", ["I do not know."])]


def test_registered_and_protocol():
    from tasks import base

    for name, cls in (("style/yelp", YelpStyleTask), ("style/gyafc", GyafcStyleTask)):
        task = base._REGISTRY[name]()
        assert isinstance(task, cls) and isinstance(task, base.Task)
        assert task.name == name and task.eval_split == "dev"
        assert task.final_eval_split == "test"
    assert GyafcStyleTask().main_metric == "bleu"
    assert YelpStyleTask().main_metric == "selection_score"  # dev transfer, not reconstruction BLEU
    assert YelpStyleTask(dev_selection="reconstruction").main_metric == "bleu"
    assert YelpStyleTask().settings() == {"max_new_tokens": 48, "num_beams": 1, "train_pool": "shen2017-test",
                                          "content_slots": True, "retrieve_markers": True,
                                          "block_source_markers": True, "train_balance": True,
                                          "train_drop_fallback": True, "dev_selection": "transfer",
                                          "marker_threshold": 4.0, "marker_smoothing": 3.0, "marker_max_n": 4,
                                          "marker_normalize": True, "marker_min_count": 1, "marker_negation": 1,
                                          "marker_trim": 3.0, "marker_fallback": 1.0, "marker_clitics": True,
                                          "marker_select": "salience"}
    assert GyafcStyleTask().configure(domain="em", num_beams=4).settings() == {
        "max_new_tokens": 64, "num_beams": 4, "domain": "em", "direction": "both"}
