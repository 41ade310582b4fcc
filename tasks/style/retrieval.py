"""The "retrieve" step of delete-and-retrieve (Li et al. 2018) for Yelp.

To rewrite a source into style v, the prompt lists style-v words to put into the content's slots: the
deleted markers of the training-pool sentence of style v whose content is most similar to the
source's content. Similarity is the cosine of TF-IDF vectors over content words (stop words and
punctuation left out), fitted on the training pool's contents only: dev and test sentences are
queries, never candidates, and the human references are never read.

Candidates are pool sentences whose markers (not only the fallback) removed something. A candidate
with as many deleted word groups as the source has slots is preferred (three or more count as one
size), so the prompt looks like the training prompts, where the words are the sentence's own and fill
its slots exactly; when no candidate shares a content word, the style's most frequent word group is
used.
"""
from __future__ import annotations

from collections import Counter
from typing import Sequence

import numpy as np

MAX_GROUPS = 3  # candidates with 3 or more word groups form one size class
TOKEN_PATTERN = r"(?u)\b[^\W\d_][\w']*"  # words with a letter first: no punctuation, numbers, _num_
CHUNK = 512  # queries per sparse product (bounds its memory)


class MarkerRetriever:
    """Target-style words for a content, from (content, style, deleted word groups) of the pool."""

    def __init__(self, pool: Sequence[tuple[str, int, Sequence[str]]]) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.entries = [(content, style, list(groups)) for content, style, groups in pool if groups]
        self.fallback = {style: _most_common(g for _, s, gs in self.entries if s == style for g in gs)
                         for style in {s for _, s, _ in self.entries}}
        self.vectorizer = TfidfVectorizer(token_pattern=TOKEN_PATTERN, stop_words="english", dtype=np.float32)
        try:
            self.matrix = self.vectorizer.fit_transform([c for c, _, _ in self.entries])
        except ValueError:  # no content word in the whole pool (tiny pools): the fallback only
            self.matrix = None
        self.groups: dict[tuple[int, int | None], np.ndarray] = {}
        for i, (_, style, groups) in enumerate(self.entries):
            self.groups.setdefault((style, _size(len(groups))), []).append(i)
            self.groups.setdefault((style, None), []).append(i)
        self.groups = {k: np.asarray(v) for k, v in self.groups.items()}

    def retrieve(self, queries: Sequence[tuple[str, int, int]]) -> list[list[str]]:
        """For each (content, target style, number of slots): the word groups to put in."""
        out: list[list[str]] = [list(self.fallback.get(style, [])) for _, style, _ in queries]
        if self.matrix is None:
            return out
        by_group: dict[tuple[int, int | None], list[int]] = {}
        for q, (_, style, slots) in enumerate(queries):
            key = (style, _size(slots))
            by_group.setdefault(key if key in self.groups else (style, None), []).append(q)
        for key, members in by_group.items():
            if key not in self.groups:
                continue  # no candidate of that style at all: the fallback stays
            for start in range(0, len(members), CHUNK):
                chunk = members[start:start + CHUNK]
                for q, best in zip(chunk, self._nearest([queries[q][0] for q in chunk], self.groups[key])):
                    if best is not None:
                        out[q] = list(self.entries[best][2])
        return out

    def _nearest(self, contents: list[str], candidates: np.ndarray) -> list[int | None]:
        """Index (into entries) of each content's most similar candidate; None without a shared word.
        Ties go to the earliest candidate in pool order, so retrieval is deterministic."""
        sims = (self.vectorizer.transform(contents) @ self.matrix[candidates].T).tocsr()
        nearest: list[int | None] = []
        for row in range(sims.shape[0]):
            lo, hi = sims.indptr[row], sims.indptr[row + 1]
            values, columns = sims.data[lo:hi], sims.indices[lo:hi]
            hit = values > 0
            if not hit.any():
                nearest.append(None)
                continue
            top = values[hit].max()
            nearest.append(int(candidates[columns[hit & (values == top)].min()]))
        return nearest


def _size(groups: int) -> int:
    return min(groups, MAX_GROUPS)


def _most_common(groups) -> list[str]:
    counts = Counter(groups)
    return [min(counts, key=lambda g: (-counts[g], g))] if counts else []
