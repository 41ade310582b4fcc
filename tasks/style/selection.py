"""Checkpoint selection for Yelp transfer: a dev score that does not reward copying.

Dev sentences have no human rewrites, so the old dev score (BLEU of reconstructing a sentence in its
own style) was highest for a model that copies. Selection now transfers dev sentences to the opposite
style and scores

    selection_score = sqrt(selection_accuracy × self_bleu)

where selection_accuracy is the share of outputs that a word-count classifier (multinomial naive Bayes
on word unigrams and bigrams of the training pool, uniform class prior) assigns to the target style,
and self_bleu (against the source) rewards keeping the content. Copying scores low on the first,
ignoring the source low on the second.

This classifier is deliberately separate from the evaluation classifier (tasks/style/style_classifier.py,
salora_cli/transfer/style_scoring.py: MiniLM-L6 behind the reported "accuracy"), which is never used for
training, checkpoint selection or decoding: selecting on the reported metric would overfit it.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence


class WordCountStyleClassifier:
    """texts -> predicted style indices, from (sentence, style) pairs of the training pool."""

    def __init__(self, pool: Sequence[tuple[str, int]], normalize: Callable[[str], str] | None = None) -> None:
        """`normalize` is applied to every text first (Yelp: its tokenisation, so an output written
        "great!" counts the same words as the pool's "great !")."""
        from sklearn.feature_extraction.text import CountVectorizer
        from sklearn.naive_bayes import MultinomialNB

        self.vectorizer = CountVectorizer(token_pattern=r"\S+", ngram_range=(1, 2), lowercase=True,
                                          preprocessor=normalize)
        counts = self.vectorizer.fit_transform([s for s, _ in pool])
        # A uniform prior: the offline pool is 40 % negative, and the prior must not decide short outputs.
        self.model = MultinomialNB(fit_prior=False).fit(counts, [y for _, y in pool])

    def __call__(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        return [int(y) for y in self.model.predict(self.vectorizer.transform(list(texts)))]


def selection_score(accuracy: float, self_bleu: float) -> float:
    """Geometric mean of two percentages (0 when either is 0)."""
    return math.sqrt(max(accuracy, 0.0) * max(self_bleu, 0.0))
