"""Scores of a set of rewrites, overall and per direction (source style → target style).

Per block: "n"; "bleu" against the human references and "self_bleu" against the sources
(tasks.style.style_metrics.corpus_bleu with the task's normalisation: Yelp lower-cases and tokenises clitics
and punctuation on every side, GYAFC lower-cases, both with sacrebleu's 13a tokeniser); with a style
classifier "accuracy" (share of rewrites it assigns to the target style) and "g_score" = √(accuracy ×
BLEU); with a fluency LM "perplexity" of the rewrites, "perplexity_sources", "perplexity_references"
(every reference of every source) and "perplexity_ratio" = rewrites / references; and the shares of
tasks.instruct.output_checks ("share_empty", "share_echo", "share_refusal", "share_comment", "share_loop",
"share_off_task", "share_rewrite").

Fluency compares like with like: rewrites, sources and references all pass through `plain_text` first
(lower-cased, then clitics and punctuation attached the way running text writes them: "did n't" →
"didn't", "great !" → "great!"), since the Yelp sentences are tokenised and lower-cased while the
references and an LM's rewrites are not. Empty rewrites add no tokens to the perplexity (their share is
reported beside it).
"""
from __future__ import annotations

import math
import re
from typing import Any, Callable, Sequence

from tasks.instruct.output_checks import outcome_shares
from tasks.style.style_metrics import (Normalizer, corpus_bleu, g_score, pooled_perplexity, self_bleu, style_accuracy,
                                 text_nlls, yelp_normalize)

_ATTACH_CLITIC = re.compile(r" (n't|'s|'re|'m|'ve|'ll|'d)\b")
_ATTACH_PUNCT = re.compile(r" ([.,!?;:)])")


def plain_text(text: str) -> str:
    """Lower-cased running text with clitics and punctuation attached (the fluency normalisation)."""
    text = yelp_normalize(text)
    text = _ATTACH_CLITIC.sub(r"\1", text)
    return _ATTACH_PUNCT.sub(r"\1", text).replace("( ", "(")


def direction_name(source_style: str, target_style: str) -> str:
    return f"{source_style}_to_{target_style}"


def score_transfer(records: Sequence[dict[str, Any]], *, normalize: Normalizer | None, lowercase: bool,
                   classify: Callable[[list[str]], list[int]] | None, style_names: Sequence[str],
                   fluency_lm: tuple[Any, Any] | None, batch_size: int = 32) -> tuple[dict[str, float], dict[str, dict]]:
    """(overall metrics, {"<source>_to_<target>": metrics}) of `records` (each: source, source_style,
    target_style, references, generation). The classifier and the LM see every text once; the blocks
    pool what they need."""
    outputs = [r["generation"] for r in records]
    predicted = list(classify(outputs)) if classify is not None else None
    nlls = None
    if fluency_lm is not None:
        lm, tokenizer = fluency_lm
        refs = [ref for r in records for ref in r["references"]]
        texts = outputs + [r["source"] for r in records] + refs
        flat = _remembered_nlls(lm, tokenizer, [plain_text(t) for t in texts], batch_size)
        n = len(records)
        ref_rows = [i for i, r in enumerate(records) for _ in r["references"]]
        nlls = {"perplexity": flat[:n], "perplexity_sources": flat[n:2 * n],
                "perplexity_references": list(zip(ref_rows, flat[2 * n:]))}
    context = dict(normalize=normalize, lowercase=lowercase, predicted=predicted, style_names=style_names, nlls=nlls)
    overall = _block(records, list(range(len(records))), **context)
    directions: dict[str, dict] = {}
    for key in sorted({(r["source_style"], r["target_style"]) for r in records}):
        rows = [i for i, r in enumerate(records) if (r["source_style"], r["target_style"]) == key]
        directions[direction_name(*key)] = _block(records, rows, **context)
    return overall, directions


# (fluency LM's name or path, text) -> (summed NLL, tokens). Every transfer of one task scores the same
# sources and references under the same base LM: in one process (`make reproduce` scores six
# transfers) they are scored once, and only each model's rewrites are new.
_NLL_MEMORY: dict[tuple[str, str], tuple[float, int]] = {}


def _remembered_nlls(lm, tokenizer, texts: list[str], batch_size: int) -> list[tuple[float, int]]:
    name = getattr(getattr(lm, "config", None), "_name_or_path", "") or f"id-{id(lm)}"
    new = sorted({t for t in texts if (name, t) not in _NLL_MEMORY}, key=len)  # similar lengths batch together
    for text, value in zip(new, text_nlls(lm, tokenizer, new, batch_size=batch_size)):
        _NLL_MEMORY[(name, text)] = value
    return [_NLL_MEMORY[(name, t)] for t in texts]


def _block(records: Sequence[dict[str, Any]], rows: list[int], *, normalize: Normalizer | None, lowercase: bool,
           predicted: list[int] | None, style_names: Sequence[str], nlls: dict | None) -> dict[str, float]:
    chosen = [records[i] for i in rows]
    outputs = [r["generation"] for r in chosen]
    sources = [r["source"] for r in chosen]
    bleu_kw = {"lowercase": lowercase, "normalize": normalize}
    metrics: dict[str, float] = {"n": float(len(chosen)),
                                 "bleu": corpus_bleu(outputs, [r["references"] for r in chosen], **bleu_kw),
                                 "self_bleu": self_bleu(outputs, sources, **bleu_kw)}
    if predicted is not None:
        metrics["accuracy"] = style_accuracy([predicted[i] for i in rows],
                                             [style_names.index(r["target_style"]) for r in chosen])
        metrics["g_score"] = g_score(metrics["accuracy"], metrics["bleu"])
    if nlls is not None:
        wanted = set(rows)
        metrics["perplexity"] = pooled_perplexity([nlls["perplexity"][i] for i in rows])
        metrics["perplexity_sources"] = pooled_perplexity([nlls["perplexity_sources"][i] for i in rows])
        metrics["perplexity_references"] = pooled_perplexity([v for i, v in nlls["perplexity_references"] if i in wanted])
        ratio = metrics["perplexity"] / metrics["perplexity_references"]
        metrics["perplexity_ratio"] = ratio if math.isfinite(ratio) else float("nan")
    metrics.update(outcome_shares(outputs, sources))
    return metrics
