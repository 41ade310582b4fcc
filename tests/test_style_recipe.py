"""Yelp's transfer recipe (issue 11): slots in the content, delete-and-retrieve words, the balanced
training slice without fallback-only deletions, dev selection by a word-count classifier, and
decoding that cannot put the source's style words back. Tiny fixture and tiny random Llama only."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from salora_cli.core.errors import SaloraError
from tasks import get
from tasks.generation import RowBanProcessor, first_token_in_text, generate_texts
from tasks.style.markers import MarkerSet, delete
from tasks.prompts import IGNORE_INDEX, SLOT, build_prompt, build_training_features, prompt_ids
from tasks.style.retrieval import MarkerRetriever
from tasks.style.selection import WordCountStyleClassifier, selection_score
from tasks.style.style import YelpStyleTask
from tasks.style.style_data import read_yelp_labelled, read_yelp_pool
from tasks.style.style_metrics import yelp_normalize
from test_style_generation import make_model, one_thread, tok  # noqa: F401 (fixtures)

YELP_TINY = Path(__file__).resolve().parent / "fixtures" / "yelp_tiny"
TINY = {"marker_threshold": 2, "marker_smoothing": 1}  # markers exist on an 18-sentence pool




def _splits(**options):
    return YelpStyleTask(**TINY, **options).load_splits(str(YELP_TINY))


# ------------------------------------------------------------------------------------ slots

def test_deletion_marks_slots_and_knows_the_fallback():
    markers = MarkerSet({("friendly", "and", "helpful"), ("great",)}, own_salience={"staff": 3.0}, fallback=1.0)
    d = delete("the staff was friendly and helpful , great place", markers)
    assert d.content() == "the staff was , place"
    assert d.content(SLOT) == "the staff was ___ , ___ place"  # one slot per run of deleted words
    assert d.spans() == ["friendly and helpful", "great"] and d.by_markers
    fallback = delete("the staff was there", markers)  # no marker: the fallback takes "staff"
    assert fallback.content(SLOT) == "the ___ was there" and not fallback.by_markers
    untouched = delete("nothing here", MarkerSet(set()))
    assert untouched.content(SLOT) == "nothing here" and untouched.spans() == [] and not untouched.by_markers


def test_prompt_with_slots_and_words_masks_all_but_the_rewrite(tok):
    prompt = build_prompt("the food was ___ .", "positive", ["great", "highly recommend"])
    assert prompt == "Input: the food was ___ .\nWords: great; highly recommend\nStyle: positive\nOutput:"
    assert build_prompt("the food was ___ .", "positive", []) == \
        "Input: the food was ___ .\nWords:\nStyle: positive\nOutput:"
    feats = build_training_features(tok, prompt, "the food was great .", max_length=64)
    n = len(prompt_ids(tok, prompt))
    assert feats["labels"][:n] == [IGNORE_INDEX] * n
    assert tok.decode(feats["labels"][n:-1]) == "the food was great ."


def test_yelp_content_has_slots_and_the_option_turns_them_off():
    with_slots = _splits()
    plain = _splits(content_slots=False)
    food = next(ex for ex in with_slots["train"] if ex["source"] == "the food was terrible .")
    assert food["content"] == "the food was ___ ." and food["words"] == ["terrible"]
    fries = next(ex for ex in with_slots["test"] if ex["source"] == "the fries were awful and cold .")
    assert fries["content"] == "the fries were ___ and cold ."
    assert all(SLOT not in ex["content"] for split in plain.values() for ex in split)
    prompt = YelpStyleTask(**TINY).prompt(fries)
    assert prompt.startswith("Input: the fries were ___ and cold .\nWords: ")
    assert prompt.endswith("Style: positive\nOutput:")


# ------------------------------------------------------------------------------------ retrieval

def test_retriever_prefers_similar_content_and_same_number_of_slots():
    pool = [("the pizza was", 1, ["delicious"]),
            ("the pizza was and", 1, ["great", "cheap"]),
            ("the service was", 1, ["fast"]),
            ("the pizza was", 0, ["awful"]),
            ("nothing", 1, [])]  # nothing deleted: never a candidate
    r = MarkerRetriever(pool)
    assert r.retrieve([("our pizza was", 1, 1)]) == [["delicious"]]
    assert r.retrieve([("our pizza was", 1, 2)]) == [["great", "cheap"]]  # as many groups as slots
    assert r.retrieve([("our pizza was", 0, 1)]) == [["awful"]]  # only the target style
    assert r.retrieve([("the service", 1, 5)]) == [["fast"]]  # no candidate of that size: any size
    # No content word in common: the style's most frequent word group.
    assert r.retrieve([("hello", 1, 1)]) == [["cheap"]]
    assert MarkerRetriever([("the", 1, ["good"])]).retrieve([("the", 1, 1)]) == [["good"]]  # stop words only


def test_retrieved_words_come_from_the_pool_only(tmp_path):
    """Dev sentences and human rewrites never feed retrieval: changing them changes no test words."""
    before = _splits()
    words = [ex["words"] for ex in before["test"]]
    pool_groups = {g for ex in before["train"] for g in ex["words"]}
    assert all(set(w) <= pool_groups for w in words) and all(words)
    folder = tmp_path / "yelp"
    shutil.copytree(YELP_TINY, folder)
    for style in (0, 1):  # a dev sentence sharing every content word with the test sources
        (folder / f"sentiment.dev.{style}").write_text("the staff fries coffee cake were superb .\n")
    (folder / "reference.0").write_text("the staff was terrible .\tThe staff was superb.\n"
                                        "the fries were awful and cold .\tThe fries were superb and hot.\n")
    after = YelpStyleTask(**TINY).load_splits(str(folder))
    assert [ex["words"] for ex in after["test"]] == words


def test_retrieval_off_leaves_the_words_line_out():
    splits = _splits(retrieve_markers=False)
    assert all(ex["words"] is None for split in splits.values() for ex in split)
    assert "Words:" not in YelpStyleTask(**TINY).prompt(splits["test"][0])


# ------------------------------------------------------------------------------------ training slice

def test_training_slice_is_balanced_without_fallback_only_sentences():
    task = YelpStyleTask(**TINY)
    train = task.load_splits(str(YELP_TINY), max_train_samples=6, seed=1)["train"]
    assert [ex["source_style"] for ex in train].count(0) == 3 and len(train) == 6
    assert all(delete(ex["source"], task.markers[ex["source_style"]]).by_markers for ex in train)
    assert train == task.load_splits(str(YELP_TINY), max_train_samples=6, seed=1)["train"]  # seeded
    assert train != task.load_splits(str(YELP_TINY), max_train_samples=6, seed=2)["train"]
    # The old slice: any pool sentence, fallback-only ones ("the soup was hot") included.
    everything = _splits(train_balance=False, train_drop_fallback=False)["train"]
    assert len(everything) == len(read_yelp_pool(YELP_TINY, "shen2017-test")) == 18
    assert "the soup was hot ." in {ex["source"] for ex in everything}
    assert "the soup was hot ." not in {ex["source"] for ex in _splits()["train"]}


def test_training_slice_errors():
    with pytest.raises(SaloraError, match="no training sentence left.*train_drop_fallback=false"):
        YelpStyleTask().load_splits(str(YELP_TINY))  # real-data thresholds: no marker on 18 sentences
    with pytest.raises(SaloraError, match="at least 2 with train_balance"):
        YelpStyleTask(**TINY).load_splits(str(YELP_TINY), max_train_samples=1)
    with pytest.raises(SaloraError, match="unknown dev_selection 'bleu'"):
        YelpStyleTask(**TINY, dev_selection="bleu").load_splits(str(YELP_TINY))


def test_evaluation_classifier_data_ignore_the_recipe():
    """The evaluation classifier learns from the whole pool and dev set as read, as before the recipe."""
    splits = get("stylecls/yelp").configure(train_pool="shen2017-test").load_splits(str(YELP_TINY))
    assert [ex["text_a"] for ex in splits["train"]] == [s for s, _ in read_yelp_pool(YELP_TINY, "shen2017-test")]
    assert [(ex["text_a"], ex["label"]) for ex in splits["dev"]] == read_yelp_labelled(YELP_TINY, "sentiment.dev")


# ------------------------------------------------------------------------------------ dev selection

def test_word_count_classifier_and_score():
    pool = [("bad food", 0), ("awful place", 0), ("good food", 1), ("great place", 1)]
    clf = WordCountStyleClassifier(pool, normalize=yelp_normalize)
    assert clf(["the food was bad", "a great spot", "Good!"]) == [0, 1, 1]  # "Good!" read as "good !"
    assert clf([]) == []
    assert selection_score(81.0, 49.0) == pytest.approx(63.0) and selection_score(0.0, 90.0) == 0.0


def test_dev_is_transfer_and_copying_does_not_win():
    task = YelpStyleTask(**TINY)
    dev = task.load_splits(str(YELP_TINY))["dev"]
    assert task.main_metric == "selection_score" and task.selection_classifier is not None
    assert all(ex["target_style"] == 1 - ex["source_style"] and not ex["references"] for ex in dev)
    copied = task.score(dev, [ex["source"] for ex in dev])
    swap = {"awful": "delicious", "dirty": "clean", "terrible": "great",
            "delicious": "awful", "clean": "dirty", "great": "terrible"}
    transferred = task.score(dev, [" ".join(swap.get(t, t) for t in ex["source"].split()) for ex in dev])
    assert copied["self_bleu"] == pytest.approx(100.0) and copied["selection_accuracy"] == 0.0
    assert transferred["selection_accuracy"] == 100.0
    assert transferred["selection_score"] > copied["selection_score"]
    assert "bleu" not in copied and "accuracy" not in copied  # no references; no evaluation classifier
    # The old proxy is one option away: rebuild in the own style, BLEU against the sentence.
    old = YelpStyleTask(**TINY, dev_selection="reconstruction")
    dev_old = old.load_splits(str(YELP_TINY))["dev"]
    assert old.main_metric == "bleu" and old.selection_classifier is None
    assert old.score(dev_old, [ex["source"] for ex in dev_old])["bleu"] == pytest.approx(100.0)


# ------------------------------------------------------------------------------------ blocking

def test_blocked_words_are_the_source_markers_and_the_slot():
    test = _splits()["test"]
    staff = next(ex for ex in test if ex["source"] == "the staff was terrible .")
    assert staff["blocked"] == ["terrible", SLOT]
    unblocked = next(ex for ex in _splits(block_source_markers=False)["test"] if ex["source"] == staff["source"])
    assert unblocked["blocked"] == [SLOT]


def test_row_ban_processor_is_per_row_and_per_beam():
    scores = torch.zeros(4, 5)
    RowBanProcessor([[1], [2, 3]], num_beams=2)(torch.zeros(4, 1, dtype=torch.long), scores)
    banned = (scores == -float("inf")).nonzero().tolist()
    assert banned == [[0, 1], [1, 1], [2, 2], [2, 3], [3, 2], [3, 3]]


def test_generation_never_emits_a_banned_token(tok):
    model = make_model(seed=1)
    prompts = [build_prompt("the food was ___ .", "positive", ["great"]),
               build_prompt("the staff was ___ .", "negative", ["terrible"])]
    free = generate_texts(model, tok, prompts, max_new_tokens=6)
    first = first_token_in_text(tok, free[0].split()[0])
    assert first is not None
    banned = generate_texts(model, tok, prompts, max_new_tokens=6, banned_ids=[[first], []])
    assert tok.convert_ids_to_tokens(first) not in banned[0].split() and banned[0] != free[0]
    assert banned[1] == free[1]  # the other row is untouched
    alone = generate_texts(model, tok, prompts[:1], max_new_tokens=6, banned_ids=[[first]])
    assert alone[0] == banned[0]  # batching changes nothing
    beams = generate_texts(model, tok, prompts, max_new_tokens=6, num_beams=3, banned_ids=[[first], []])
    assert tok.convert_ids_to_tokens(first) not in beams[0].split()
    with pytest.raises(ValueError, match="one list of ids per prompt"):
        generate_texts(model, tok, prompts, banned_ids=[[first]])


def test_yelp_predict_bans_each_sources_words(tok):
    """Through the task: a source's deleted style words are banned for its row only."""
    task = YelpStyleTask(**TINY, max_new_tokens=6)
    test = task.load_splits(str(YELP_TINY))["test"]
    model = make_model(seed=1)
    kw = dict(batch_size=4, max_length=64, device=torch.device("cpu"))
    free = YelpStyleTask(**TINY, max_new_tokens=6).predict(model, tok, [dict(ex, blocked=[]) for ex in test], **kw)
    # Ban, for each source, the first word the unconstrained model wrote.
    forced = [dict(ex, blocked=[out.split()[0]]) for ex, out in zip(test, free)]
    outputs = task.predict(model, tok, forced, **kw)
    for ex, out in zip(forced, outputs):
        assert ex["blocked"][0] not in out.split()
