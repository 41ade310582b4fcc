"""What the Yelp content step (marker deletion, tasks.style.markers) leaves of the evaluated sentences.

No model is run: markers are learned from the task's training pool exactly as `style/yelp` does
(`YelpStyleTask.build_markers`), and applied to the 1,000 test sources and the 4,000 dev sentences.
Each variant starts from the task's defaults; `paper` switches every refinement off (Li et al. 2018:
raw-count ratio > 15, smoothing 1, longest n-gram first), i.e. the procedure before issue 11.

Reported per variant and split:
  nothing removed   share of sentences whose content is the whole sentence (the LM then only copies)
  all removed       share whose content is empty
  words removed     distribution (0, 1, 2, ... words) and mean
  neutral kept      share of style-neutral tokens kept (unigram salience <= 2 towards both styles,
                    a fixed pool-based yardstick, the same for every variant)
  residual style    accuracy of a unigram+bigram naive Bayes classifier, trained on the pool, that
                    guesses the source style from the content (50 = no style left, the source: ~90)
test only, against the human rewrite (used for scoring here, never for learning markers):
  changed deleted   share of source words absent from the rewrite (what the human changed) deleted
  shared kept       share of source words present in the rewrite kept in the content
                    (words: tokens with a letter or digit; punctuation is left out of both)
  ref in content    share of the rewrite's tokens found in the content (clipped counts; for the
                    source itself it is the upper bound printed in brackets)

    python benchmarks/style_content_step.py [--data-dir ../shared/data/yelp] [--examples 20]
        [--variant NAME:key=value,key=value ...] [--json out.json]

e.g. --variant "no-fallback:marker_fallback=null" --variant "γ=15:marker_threshold=15". Values are YAML.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
from collections import Counter
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.style.markers import content_mask, count_ngrams  # noqa: E402
from tasks.style.style import YelpStyleTask  # noqa: E402
from tasks.style.style_data import find_yelp_dir, read_yelp_labelled, read_yelp_pool, read_yelp_test  # noqa: E402
from tasks.style.style_metrics import yelp_normalize  # noqa: E402

PAPER = {"marker_threshold": 15.0, "marker_smoothing": 1.0, "marker_max_n": 4, "marker_normalize": False,
         "marker_min_count": 1, "marker_negation": None, "marker_trim": None, "marker_fallback": None,
         "marker_clitics": False, "marker_select": "longest"}
NEUTRAL = 2.0  # yardstick: a token is style-neutral if its unigram salience is <= 2 towards both styles


def parse_variant(text: str) -> tuple[str, dict]:
    name, _, rest = text.partition(":")
    options = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        options[key.strip()] = yaml.safe_load(value)
    return name, options


class Yardstick:
    """Pool statistics shared by all variants: unigram salience and a naive Bayes style guesser."""

    def __init__(self, pool: list[tuple[str, int]]):
        self.counts = {s: count_ngrams([x for x, y in pool if y == s], 2) for s in (0, 1)}
        self.sizes = {s: sum(c for u, c in self.counts[s].items() if len(u) == 1) for s in (0, 1)}
        self.bigram_sizes = {s: sum(c for u, c in self.counts[s].items() if len(u) == 2) for s in (0, 1)}
        self.vocab = len({u for s in (0, 1) for u in self.counts[s]})
        self.prior = {s: math.log(sum(y == s for _, y in pool) / len(pool)) for s in (0, 1)}

    def neutral(self, token: str) -> bool:
        u = (token,)
        a = (self.counts[0][u] + 1) / self.sizes[0]
        b = (self.counts[1][u] + 1) / self.sizes[1]
        return max(a / b, b / a) <= NEUTRAL

    def guess(self, tokens: list[str]) -> float:
        """Predicted style (0/1), or 0.5 when the content gives no evidence (empty)."""
        if not tokens:
            return 0.5
        grams = [(t,) for t in tokens] + [tuple(tokens[i:i + 2]) for i in range(len(tokens) - 1)]
        score = {}
        for s in (0, 1):
            score[s] = self.prior[s]
            for u in grams:
                size = self.sizes[s] if len(u) == 1 else self.bigram_sizes[s]
                score[s] += math.log((self.counts[s][u] + 1) / (size + self.vocab))
        return 1.0 if score[1] > score[0] else 0.0


def analyse(items: list[dict], masks: list[list[bool]], stick: Yardstick, with_refs: bool) -> dict:
    removed = [m.count(False) for m in masks]
    hist = Counter(removed)
    neutral_total = neutral_kept = 0
    residual = 0.0
    changed = changed_deleted = shared = shared_kept = 0
    ref_total = ref_found = ref_found_source = 0
    for item, keep in zip(items, masks):
        tokens = item["tokens"]
        content = [t for t, k in zip(tokens, keep) if k]
        for t, k in zip(tokens, keep):
            if stick.neutral(t):
                neutral_total += 1
                neutral_kept += k
        guess = stick.guess(content)
        residual += 1 - abs(guess - item["style"])
        if with_refs:
            ref = item["ref"]
            ref_set = set(ref)
            for t, k in zip(tokens, keep):
                if not any(ch.isalnum() for ch in t):
                    continue  # punctuation: humans drop a final "." too often for it to tell anything
                if t in ref_set:
                    shared += 1
                    shared_kept += k
                else:
                    changed += 1
                    changed_deleted += not k
            ref_counts = Counter(ref)
            ref_total += len(ref)
            ref_found += sum((Counter(content) & ref_counts).values())
            ref_found_source += sum((Counter(tokens) & ref_counts).values())
    n = len(items)
    out = {
        "sentences": n,
        "nothing_removed": hist.get(0, 0),
        "nothing_removed_pct": 100 * hist.get(0, 0) / n,
        "all_removed_pct": 100 * sum(r == len(i["tokens"]) for r, i in zip(removed, items)) / n,
        "words_removed_hist": {str(k): hist[k] for k in sorted(hist)},
        "words_removed_mean": sum(removed) / n,
        "neutral_kept_pct": 100 * neutral_kept / max(neutral_total, 1),
        "residual_style_acc": 100 * residual / n,
    }
    if with_refs:
        out.update({
            "changed_deleted_pct": 100 * changed_deleted / max(changed, 1),
            "shared_kept_pct": 100 * shared_kept / max(shared, 1),
            "ref_in_content_pct": 100 * ref_found / max(ref_total, 1),
            "ref_in_source_pct": 100 * ref_found_source / max(ref_total, 1),
        })
    return out


def histogram_line(hist: dict) -> str:
    counts = {int(k): v for k, v in hist.items()}
    top = max(counts)
    cells = [f"{k}:{counts.get(k, 0)}" for k in range(min(top, 7) + 1)]
    if top > 7:
        cells.append(f"8+:{sum(v for k, v in counts.items() if k >= 8)}")
    return " ".join(cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default_dir = Path(os.environ.get("SALORA_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--data-dir", default=str(default_dir))
    parser.add_argument("--variant", action="append", default=[],
                        help="NAME:key=value,... task options on top of the task defaults")
    parser.add_argument("--examples", type=int, default=20, help="test examples to print (seeded sample)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write all numbers (and the examples) to this file")
    args = parser.parse_args()

    folder = find_yelp_dir(args.data_dir)
    variants = [("paper", dict(PAPER)), ("default", {})] + [parse_variant(v) for v in args.variant]
    task = YelpStyleTask()
    pool = read_yelp_pool(folder, task.train_pool)
    stick = Yardstick(pool)
    test = [{"tokens": ex["source"].split(), "style": ex["source_style"],
             "ref": yelp_normalize(ex["references"][0]).split()} for ex in read_yelp_test(folder)]
    dev = [{"tokens": s.split(), "style": y} for s, y in read_yelp_labelled(folder, "sentiment.dev")]

    results, contents = {}, {}
    for name, options in variants:
        task = YelpStyleTask(**options)
        markers = task.build_markers(pool)
        splits = {}
        for split, items in (("test", test), ("dev", dev)):
            masks = [content_mask(i["tokens"], markers[i["style"]]) for i in items]
            splits[split] = analyse(items, masks, stick, with_refs=split == "test")
            if split == "test":
                contents[name] = [" ".join(t for t, k in zip(i["tokens"], m) if k) for i, m in zip(test, masks)]
        results[name] = {"options": {k: getattr(task, k) for k in PAPER},
                         "markers": {s: len(markers[s]) for s in (0, 1)}, **splits}

    for name, res in results.items():
        opts = ", ".join(f"{k.removeprefix('marker_')}={v}" for k, v in res["options"].items())
        print(f"\n== {name}: {opts}; markers neg {res['markers'][0]}, pos {res['markers'][1]}")
        for split in ("test", "dev"):
            r = res[split]
            line = (f"  {split:4} nothing removed {r['nothing_removed']}/{r['sentences']} "
                    f"({r['nothing_removed_pct']:.1f}%), all removed {r['all_removed_pct']:.1f}%, "
                    f"words removed mean {r['words_removed_mean']:.2f} [{histogram_line(r['words_removed_hist'])}]\n"
                    f"       neutral kept {r['neutral_kept_pct']:.1f}%, residual style {r['residual_style_acc']:.1f}%")
            if split == "test":
                line += (f", changed deleted {r['changed_deleted_pct']:.1f}%, shared kept {r['shared_kept_pct']:.1f}%, "
                         f"ref in content {r['ref_in_content_pct']:.1f}% ({r['ref_in_source_pct']:.1f}%)")
            print(line)
    residual_source = 100 * sum(1 - abs(stick.guess(i["tokens"]) - i["style"]) for i in test) / len(test)
    print(f"\n(residual style of the full test sources: {residual_source:.1f}%)")

    picks = sorted(random.Random(args.seed).sample(range(len(test)), min(args.examples, len(test))))
    examples = []
    print(f"\n== {len(picks)} test examples (seed {args.seed})")
    width = max(len(n) for n in contents)
    for i in picks:
        ex = {"index": i, "source_style": test[i]["style"], "source": " ".join(test[i]["tokens"]),
              "reference": " ".join(test[i]["ref"]), **{n: c[i] for n, c in contents.items()}}
        examples.append(ex)
        print(f"[{i}] {'neg' if ex['source_style'] == 0 else 'pos'} {'source':>{width}}: {ex['source']}")
        for n in contents:
            print(f"        {n:>{width}}: {ex[n] if ex[n] else '∅'}")
        print(f"        {'reference':>{width}}: {ex['reference']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "examples": examples}, indent=1))


if __name__ == "__main__":
    main()
