"""What a reader would see in a rewrite: empty, an echo of the source, or off-task text.

Each check looks at one (cut) rewrite and its source; `check_output` gives every verdict at once, and
`outcome` the single label a table counts (the first that applies, in this order):
- "empty": nothing left after the answer cut (tasks.instruct.zero_shot.cut_answer).
- "echo": the source unchanged: the same words after `words` (lower-cased, clitics and punctuation split
  as in the Yelp release, punctuation tokens dropped), so "The food was great" echoes "the food was great ."
- "refusal": a phrase from REFUSAL_PHRASES ("i'm sorry", "as an ai", "i cannot", ...).
- "comment": a phrase from COMMENT_PHRASES, words about the sentence or the task instead of a rewrite
  of it ("this sentence", "here is", "rewritten", "the sentiment", ...), or a reply to the user
  ("i'm glad to hear", "you're looking for", "let me know", ...).
- "label": a style label instead of a sentence: every word is one of LABEL_WORDS and one of them names
  a style ("positive", "Negative.", "more formal", "sentiment: positive"). An instruction-tuned model
  that saw sentiment classification in Alpaca answers "change the sentiment ..." this way (seen from
  SmolLM2-135M tuned on 320 records: up to 30 % of its Yelp outputs). The classifier scores "positive"
  as positive, so without this check such an answer would count as a transfer.
- "loop": a repetition loop: a word repeated LOOP_RUN times in a row, or, in a rewrite of at least
  LOOP_MIN_WORDS words, a share of repeated word LOOP_N-grams (n-grams seen earlier in the same rewrite)
  of at least LOOP_SHARE.
- "rewrite": none of the above (says nothing about whether the style changed: that is the classifier's).
A phrase counts only when the source does not contain it too (a review may say "here is the best taco"):
phrases are matched on whole words of the `words` form.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from tasks.style.style_metrics import yelp_normalize

REFUSAL_PHRASES = (
    "i'm sorry", "i am sorry", "i apologize", "as an ai", "language model", "i cannot", "i can't",
    "i can not", "i'm unable", "i am unable", "i'm not able", "i am not able", "i won't be able",
    "not appropriate", "please provide",
)
COMMENT_PHRASES = (
    "the sentence", "this sentence", "the original", "original sentence", "the input", "this input",
    "the text", "this text", "here is", "here's", "rewritten", "rephrased", "revised", "the sentiment",
    "the tone", "more positive", "more negative", "more formal", "more informal", "the instruction",
    "this review", "the review", "the following",
    # replies to the user instead of a rewrite (seen from SmolLM2-135M-Instruct on Yelp)
    "you're looking for", "i'm glad to hear", "glad to hear that", "i'd be happy to", "happy to help",
    "let me know", "your response", "i would love to hear", "your thoughts",
)
LOOP_RUN = 4  # the same word this many times in a row
LOOP_N = 3  # n-gram size for the repeated share
LOOP_SHARE = 0.3  # share of n-grams that repeat an earlier one
LOOP_MIN_WORDS = 8  # shorter rewrites are judged by LOOP_RUN only

STYLE_NAMES = frozenset({"positive", "negative", "neutral", "formal", "informal"})
LABEL_WORDS = STYLE_NAMES | {"more", "less", "very", "mixed", "sentiment", "tone", "style", "label", "answer",
                             "it", "is", "the"}
CHECKS_VERSION = 2  # 2: the "label" outcome; transfers labelled by an older version are rescored (reproduce)

OUTCOMES = ("empty", "echo", "refusal", "comment", "label", "loop", "rewrite")
_PUNCT_TOKEN = re.compile(r"^[^\w]+$")


def words(text: str) -> list[str]:
    """Lower-cased word tokens in the Yelp release's tokenisation, punctuation tokens dropped."""
    return [t for t in yelp_normalize(text).split() if not _PUNCT_TOKEN.match(t)]


def _has_phrase(text_words: list[str], phrase: str) -> bool:
    needle = words(phrase)
    n = len(needle)
    return any(text_words[i:i + n] == needle for i in range(len(text_words) - n + 1))


def _found(phrases: tuple[str, ...], output: list[str], source: list[str]) -> str | None:
    return next((p for p in phrases if _has_phrase(output, p) and not _has_phrase(source, p)), None)


def repeated_share(tokens: list[str], n: int = LOOP_N) -> float:
    """Share of the word n-grams that already occurred earlier in the same token list (0 if none)."""
    grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
    if not grams:
        return 0.0
    seen: set[tuple[str, ...]] = set()
    repeats = 0
    for gram in grams:
        repeats += gram in seen
        seen.add(gram)
    return repeats / len(grams)


def longest_run(tokens: list[str]) -> int:
    """Length of the longest run of one word repeated back to back."""
    best = run = 0
    for i, token in enumerate(tokens):
        run = run + 1 if i and token == tokens[i - 1] else 1
        best = max(best, run)
    return best


def is_loop(tokens: list[str]) -> bool:
    if longest_run(tokens) >= LOOP_RUN:
        return True
    return len(tokens) >= LOOP_MIN_WORDS and repeated_share(tokens) >= LOOP_SHARE


@dataclass(frozen=True)
class OutputCheck:
    """Every verdict on one rewrite (several can hold at once), and the phrase that matched."""

    empty: bool
    echo: bool
    refusal: str | None  # the matched phrase
    comment: str | None
    label: bool
    loop: bool

    @property
    def outcome(self) -> str:
        """The one label a table counts: the first that applies in OUTCOMES' order."""
        for name in OUTCOMES[:-1]:
            if getattr(self, name):
                return name
        return "rewrite"


def check_output(output: str, source: str) -> OutputCheck:
    out, src = words(output), words(source)
    return OutputCheck(empty=not output.strip(), echo=bool(out) and out == src,
                       refusal=_found(REFUSAL_PHRASES, out, src), comment=_found(COMMENT_PHRASES, out, src),
                       label=is_label(out), loop=is_loop(out))


def is_label(tokens: list[str]) -> bool:
    return bool(tokens) and set(tokens) <= LABEL_WORDS and bool(set(tokens) & STYLE_NAMES)


def outcome_shares(outputs: list[str], sources: list[str]) -> dict[str, float]:
    """Percentages (0-100) of rewrites per outcome label, plus "off_task" = refusal + comment + label + loop."""
    if len(outputs) != len(sources):
        raise ValueError(f"{len(outputs)} outputs but {len(sources)} sources")
    labels = [check_output(o, s).outcome for o, s in zip(outputs, sources)]
    total = max(len(labels), 1)
    shares = {f"share_{name}": 100.0 * labels.count(name) / total for name in OUTCOMES}
    shares["share_off_task"] = sum(shares[f"share_{name}"] for name in ("refusal", "comment", "label", "loop"))
    return shares
