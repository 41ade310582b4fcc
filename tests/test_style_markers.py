"""The Yelp content step (tasks.style.markers): normalised salience, salience-first matching, edge trimming,
negation, clitic stems, the fallback, the task options behind them, and the analysis script."""
from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from salora_cli.core.errors import SaloraError
from tasks.style.markers import CONTENT_DEFAULTS, MarkerSet, delete_markers, extract_markers
from tasks.style.style import YelpStyleTask
from tasks.style.style_data import find_yelp_dir, read_yelp_pool

ROOT = Path(__file__).resolve().parents[1]
YELP_TINY = ROOT / "tests" / "fixtures" / "yelp_tiny"
PAPER = {"marker_threshold": 15.0, "marker_smoothing": 1.0, "marker_max_n": 4, "marker_normalize": False,
         "marker_min_count": 1, "marker_negation": None, "marker_trim": None, "marker_fallback": None,
         "marker_clitics": False, "marker_select": "longest"}


# ---------------------------------------------------------------------------------- marker scoring

def test_normalized_salience_on_an_unbalanced_pool():
    # 20 negative tokens vs 200 positive ones. "meh" is 5 of 20 negative tokens but 10 of 200 positive:
    # raw counts (5+1)/(10+1) hide it, relative frequencies (5+1)/(10·20/200+1) = 3 do not.
    corpora = {0: ["meh ."] * 5 + ["ok ."] * 5, 1: ["meh ."] * 10 + ["fine ."] * 90}
    raw = extract_markers(corpora, threshold=2.0)
    normalized = extract_markers(corpora, threshold=2.0, normalize=True)
    assert ("meh",) not in raw[0] and ("meh",) in normalized[0]
    assert ("fine",) in normalized[1] and (".",) not in normalized[0] | normalized[1]
    assert normalized[0].salience[("meh",)] == pytest.approx(3.0)


def test_min_count():
    corpora = {0: ["yuck"] * 3 + ["ugh"] * 6, 1: ["fine"] * 9}
    assert extract_markers(corpora, threshold=2.0)[0] == {("yuck",), ("ugh",)}
    assert extract_markers(corpora, threshold=2.0, min_count=5)[0] == {("ugh",)}


def test_defaults_of_extract_markers_are_the_papers():
    # The library's defaults stay Li et al.'s procedure; the task's defaults are CONTENT_DEFAULTS.
    markers = extract_markers({0: ["do n't go"] * 20, 1: ["do go"] * 20})
    assert not markers[0].refined and markers[0] == {("n't",), ("do", "n't"), ("n't", "go"), ("do", "n't", "go")}
    assert delete_markers("i do n't believe it", markers[0]) == "i believe it"
    assert delete_markers("i ca n't stand it", markers[0]) == "i ca stand it"  # no clitic fix, no fallback
    assert delete_markers("i like it", markers[0]) == "i like it"


# ------------------------------------------------------------------------------------ content step

def test_fallback_removes_the_most_salient_token_when_nothing_passes():
    corpora = {0: ["the soup was cold", "the soup was cold", "cold fries"],
               1: ["the soup was hot", "hot fries", "the tea was hot"]}
    # γ = 10 is out of reach (at most 3 occurrences): no marker at all.
    plain = extract_markers(corpora, threshold=10.0)
    assert plain[0] == frozenset() and delete_markers("the soup was cold", plain[0]) == "the soup was cold"
    fallback = extract_markers(corpora, threshold=10.0, fallback=1.0)
    # own salience: cold (3+1)/(0+1) = 4 > soup (2+1)/(1+1) = 1.5 > the, was = 1
    assert delete_markers("the soup was cold", fallback[0]) == "the soup was"
    assert delete_markers("the soup was hot", fallback[1]) == "the soup was"
    # Only a token leaning to the sentence's own style is taken: "tea" leans positive.
    assert delete_markers("the tea", fallback[0]) == "the tea"
    # The fallback is a floor too: nothing above 5.
    assert delete_markers("the soup was cold", extract_markers(corpora, threshold=10.0, fallback=5.0)[0]) == \
        "the soup was cold"
    # It only fires when the markers removed nothing.
    markers = MarkerSet({("hot",)}, own_salience={"hot": 4.0, "soup": 1.5}, fallback=1.0)
    assert delete_markers("the soup was hot", markers) == "the soup was"


def test_trim_keeps_style_neutral_words_at_the_edges():
    corpora = {0: ["the staff was rude"] * 6, 1: ["the staff was friendly"] * 6}
    # Every n-gram ending in "friendly" scores (6+1)/(0+1) = 7: the paper's longest-first deletion takes
    # the whole sentence.
    paper = extract_markers(corpora, threshold=3.0)
    assert delete_markers("the staff was friendly", paper[1]) == ""
    trimmed = extract_markers(corpora, threshold=3.0, trim=2.0)
    assert delete_markers("the staff was friendly", trimmed[1]) == "the staff was"
    assert delete_markers("the staff was rude !", trimmed[0]) == "the staff was !"


def test_trim_never_drops_the_most_salient_token_of_a_span():
    # "too expensive for" is a marker although each of its words is under the trim bound alone; the
    # old rule trimmed "too" and "expensive" and deleted "for". The anchor ("expensive") stays deleted.
    markers = MarkerSet({("too", "expensive", "for")}, trim=3.0,
                        max_salience={"too": 1.11, "expensive": 2.72, "for": 1.06})
    assert delete_markers("it 's too expensive for what you get .", markers) == "it 's too for what you get ."
    # Negators are never trimmed.
    markers = MarkerSet({("not", "good")}, trim=3.0, max_salience={"not": 2.0, "good": 5.8})
    assert delete_markers("the food was not good", markers) == "the food was"


def test_salience_first_matching():
    markers = {("very", "good"): 3.0, ("good", "food"): 9.0}
    # Longest first, left to right (the paper): "very good" wins by position.
    assert delete_markers("very good food", set(markers)) == "food"
    by_salience = MarkerSet(markers, salience=markers, select="salience")
    assert delete_markers("very good food", by_salience) == "very"
    # Ties: the longer span, then the one further left.
    tied = {("good",): 5.0, ("good", "food"): 5.0, ("very", "good"): 5.0}
    assert delete_markers("very good food", MarkerSet(tied, salience=tied, select="salience")) == "food"


def test_negation_takes_the_negated_marker_of_the_other_style():
    # Positive review: "disappointed" is a negative marker and "n't" no positive one, so without the
    # rule the content keeps the whole positive phrase.
    positive = MarkerSet({("great",)}, other={("disappointed",)}, negation=1, clitics=True)
    assert delete_markers("you wo n't be disappointed .", positive) == "you ."
    assert delete_markers("never disappointed , always great .", positive) == ", always ."
    # The window bounds the words between negator and marker.
    assert delete_markers("you wo n't be disappointed .", MarkerSet(positive, other=positive.other, negation=0)) == \
        "you wo n't be disappointed ."
    # A negator that is a marker of the sentence's own style is deleted alone: what it negated then
    # reads as the other style, which is what the rewrite needs.
    negative = MarkerSet({("not",)}, other={("friendly",)}, negation=1)
    assert delete_markers("the staff was not friendly .", negative) == "the staff was friendly ."


def test_clitic_stems_go_with_their_nt():
    markers = MarkerSet({("n't",)}, clitics=True)
    assert delete_markers("i ca n't believe it", markers) == "i believe it"
    assert delete_markers("we wo n't return", markers) == "we return"
    assert delete_markers("i did n't like it", markers) == "i did like it"  # "did" is a word alone
    assert delete_markers("i ca n't believe it", MarkerSet({("n't",)})) == "i ca believe it"


def test_marker_set_is_a_frozenset_and_pickles():
    markers = extract_markers({0: ["bad food"] * 4, 1: ["good food"] * 4}, threshold=2.0, normalize=True,
                              trim=2.0, fallback=1.0, negation=1, clitics=True, select="salience")[0]
    assert isinstance(markers, frozenset) and markers == {("bad",), ("bad", "food")} and ("bad",) in markers
    assert markers.other == {("good",), ("good", "food")} and markers.refined
    again = pickle.loads(pickle.dumps(markers))
    assert again == markers and again.__dict__ == markers.__dict__ and again.other == markers.other
    assert delete_markers("bad food", again) == delete_markers("bad food", markers) == "food"


def test_invalid_options():
    with pytest.raises(ValueError, match="select must be one of"):
        MarkerSet(set(), select="shortest")
    with pytest.raises(ValueError, match="negation must be None or a window"):
        MarkerSet(set(), negation=True)
    with pytest.raises(ValueError, match="max_n"):
        extract_markers({0: ["a"], 1: ["b"]}, max_n=0)


# ------------------------------------------------------------------------------------- task options

def test_task_options_reach_the_markers():
    task = YelpStyleTask(marker_threshold=2, marker_smoothing=1, marker_trim=None, marker_fallback=2.5,
                         marker_negation=0, marker_clitics=False, marker_select="longest")
    assert task.settings()["marker_fallback"] == 2.5
    task.load_splits(str(YELP_TINY))
    m = task.markers[0]
    assert (m.trim, m.fallback, m.negation, m.clitics, m.select) == (None, 2.5, 0, False, "longest")
    assert set(CONTENT_DEFAULTS) == {k.removeprefix("marker_") for k in PAPER}


def test_paper_options_reproduce_the_plain_procedure():
    task = YelpStyleTask(**dict(PAPER, marker_threshold=2), content_slots=False)
    splits = task.load_splits(str(YELP_TINY))
    for ex in splits["train"] + splits["dev"] + splits["test"]:
        plain = frozenset(task.markers[ex["source_style"]])
        assert ex["content"] == delete_markers(ex["source"], plain)


def test_default_content_step_removes_something_from_every_tiny_sentence():
    # Old defaults (γ = 15 on a 18-sentence pool): no markers at all, every content is the source.
    # (Plain content, no slots; training sentences whose deletion came from the fallback kept.)
    plain = {"content_slots": False, "train_drop_fallback": False}
    old = YelpStyleTask(**PAPER, **plain).load_splits(str(YELP_TINY))
    assert all(ex["content"] == ex["source"] for ex in old["test"] + old["dev"])
    new = YelpStyleTask(**plain).load_splits(str(YELP_TINY))
    for ex in new["test"] + new["dev"] + new["train"]:
        assert len(ex["content"].split()) < len(ex["source"].split()), ex["source"]


def test_invalid_task_option_is_a_user_error():
    with pytest.raises(SaloraError, match="invalid marker option: negation must be None or a window"):
        YelpStyleTask(marker_negation=True).load_splits(str(YELP_TINY))
    with pytest.raises(SaloraError, match="invalid marker option: select must be one of"):
        YelpStyleTask(marker_select="random").load_splits(str(YELP_TINY))


# ------------------------------------------------------------------------------------------ real data

def test_real_yelp_content_step(shared_data):
    """Issue 11: with the paper's procedure 247 of the 1,000 test sources lost no word."""
    task = YelpStyleTask(content_slots=False)
    splits = task.load_splits(str(shared_data / "yelp"), max_train_samples=10)
    test, dev = splits["test"], splits["dev"]
    untouched = [ex for ex in test if ex["content"] == ex["source"]]
    assert len(untouched) <= 10, [ex["source"] for ex in untouched[:5]]
    # dev: only a few junk one-word lines ("Negative", "Neutral") keep everything
    assert sum(ex["content"] == ex["source"] for ex in dev) <= 40
    assert all(ex["content"] for ex in test)
    assert all(set(ex["content"].split()) <= set(ex["source"].split()) for ex in test)
    removed = sum(len(ex["source"].split()) - len(ex["content"].split()) for ex in test) / len(test)
    assert 1.5 < removed < 3.0  # a couple of words, not the sentence
    issue = next(ex for ex in test if ex["source"] == "i ca n't believe how inconsiderate this pharmacy is .")
    assert not {"ca", "n't", "inconsiderate"} & set(issue["content"].split())
    assert "pharmacy" in issue["content"]
    # Sentiment words of either style are markers; frequent topic words are not.
    assert {("not",), ("n't",), ("rude",)} <= task.markers[0] and {("good",), ("delicious",)} <= task.markers[1]
    assert not {("food",), ("pizza",), ("the",)} & (task.markers[0] | task.markers[1])
    # Markers (and the salience behind trimming and the fallback) are a function of the pool alone.
    again = task.build_markers(read_yelp_pool(find_yelp_dir(shared_data / "yelp"), task.train_pool))
    assert again == task.markers and again[0].own_salience == task.markers[0].own_salience


# ------------------------------------------------------------------------------------ analysis script

def test_analysis_script_on_the_tiny_fixture(tmp_path):
    out = tmp_path / "content.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "style_content_step.py"), "--data-dir",
                           str(YELP_TINY), "--examples", "2", "--variant", "no-fallback:marker_fallback=null",
                           "--json", str(out)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "nothing removed" in proc.stdout and "[" in proc.stdout
    data = json.loads(out.read_text())
    assert set(data["results"]) == {"paper", "default", "no-fallback"}
    assert data["results"]["paper"]["test"]["nothing_removed"] == 4  # no marker reaches γ = 15 here
    assert data["results"]["default"]["test"]["nothing_removed"] == 0
    assert data["results"]["no-fallback"]["options"]["marker_fallback"] is None
    assert len(data["examples"]) == 2 and {"paper", "default", "source", "reference"} <= set(data["examples"][0])
