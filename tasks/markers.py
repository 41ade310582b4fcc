"""Style markers for non-parallel data: the "delete" step of delete-and-generate (Li et al. 2018).

A style marker of style v is a word n-gram u (n = 1..4, whitespace tokens, case as in the data) whose
smoothed salience

    s(u, v) = (count(u, D_v) + λ) / (sum over other styles w of count(u, D_w) + λ)

is strictly greater than a threshold γ, where count(u, D) is the number of occurrences of u in corpus
D (raw counts, as in the paper). Defaults: λ = 1 and γ = 15 (Li et al. use γ = 15 for Yelp), so with
λ = 1 an n-gram never seen in the other style needs 15 or more occurrences in its own. Markers are
learned from the training pool only; dev/test sentences are only passed to `delete_markers`.

Training on non-parallel data then teaches "content + style → sentence" with the sentence's own style
(reconstruction); at test time the content of a source is paired with the opposite style.
"""
from __future__ import annotations

from collections import Counter
from functools import lru_cache
from typing import Hashable, Iterable, Mapping, Sequence

DEFAULT_MAX_N = 4
DEFAULT_SMOOTHING = 1.0  # λ
DEFAULT_THRESHOLD = 15.0  # γ

Ngram = tuple[str, ...]


def count_ngrams(sentences: Iterable[str], max_n: int = DEFAULT_MAX_N) -> Counter:
    """Occurrences of every word n-gram with 1 <= n <= max_n."""
    counts: Counter = Counter()
    for sentence in sentences:
        tokens = sentence.split()
        for n in range(1, max_n + 1):
            counts.update(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))
    return counts


def extract_markers(corpora: Mapping[Hashable, Sequence[str]], *, max_n: int = DEFAULT_MAX_N,
                    smoothing: float = DEFAULT_SMOOTHING,
                    threshold: float = DEFAULT_THRESHOLD) -> dict[Hashable, frozenset[Ngram]]:
    """Markers of each style: {style: n-grams with salience s(u, style) > threshold}."""
    if smoothing <= 0:
        raise ValueError("smoothing must be positive (it keeps the ratio finite)")
    counts = {style: count_ngrams(sents, max_n) for style, sents in corpora.items()}
    total: Counter = Counter()
    for c in counts.values():
        total.update(c)
    # s > γ needs count_v + λ > γλ at least, so rarer n-grams are skipped without computing the ratio.
    floor = threshold * smoothing - smoothing
    markers = {}
    for style, own in counts.items():
        markers[style] = frozenset(
            u for u, c in own.items()
            if c > floor and (c + smoothing) / (total[u] - c + smoothing) > threshold
        )
    return markers


def delete_markers(sentence: str, markers: Iterable[Ngram | str]) -> str:
    """The content of `sentence`: every marker occurrence removed, longest markers first.

    Markers are n-gram tuples (or space-separated strings). A marker only matches tokens that are
    still present, so a shorter marker never re-deletes inside a longer one's span.
    """
    marker_set, lengths = _prepare(markers if isinstance(markers, frozenset) else frozenset(markers))
    tokens = sentence.split()
    keep = [True] * len(tokens)
    for n in lengths:
        i = 0
        while i + n <= len(tokens):
            if all(keep[i:i + n]) and tuple(tokens[i:i + n]) in marker_set:
                keep[i:i + n] = [False] * n
                i += n
            else:
                i += 1
    return " ".join(t for t, k in zip(tokens, keep) if k)


@lru_cache(maxsize=8)
def _prepare(markers: frozenset) -> tuple[frozenset[Ngram], list[int]]:
    """Normalised marker set and its n-gram lengths, longest first; cached because the same set is
    applied to every sentence of a corpus."""
    marker_set = frozenset(tuple(m.split()) if isinstance(m, str) else tuple(m) for m in markers)
    return marker_set, sorted({len(m) for m in marker_set if m}, reverse=True)
