"""Style-transfer metrics: BLEU with human references, self-BLEU, style accuracy, fluency, G-score.

All scores are on a 0-100 scale except perplexity.

BLEU is `sacrebleu.corpus_bleu` with its defaults: 4-gram BLEU, corpus-level n-gram statistics with
clipped counts (clipped by the maximum count over an example's references), brevity penalty against
the reference length closest to each hypothesis, 'exp' smoothing (it only matters when some n-gram
order has zero matches), the '13a' tokenizer (the mteval-v13a rules: punctuation split off, except
apostrophes and periods/commas inside numbers). Case-sensitive unless `lowercase=True`. An optional
`normalize` function is applied to hypotheses and references first; `yelp_normalize` brings Yelp's
untokenised human rewrites to the tokenised, lower-cased form of the Yelp sentences (and outputs).
"""
from __future__ import annotations

import math
import re
from typing import Any, Callable, Sequence

import sacrebleu
import torch

Normalizer = Callable[[str], str]

_CLITIC = re.compile(r"(?i)(n't|'s|'re|'m|'ve|'ll|'d)\b")
_PUNCT = re.compile(r"([.,!?;:()\"])")


def yelp_normalize(text: str) -> str:
    """Lower-case and split clitics ("didn't" → "did n't", "it's" → "it 's") and punctuation, as
    the Yelp release's sentences are tokenised. Idempotent, so already-tokenised text is unchanged
    except that runs of punctuation ("...", "6:30") are split into single characters."""
    text = _CLITIC.sub(r" \1", text.lower())
    return " ".join(_PUNCT.sub(r" \1 ", text).split())


def _prep(texts: Sequence[str], normalize: Normalizer | None) -> list[str]:
    return [normalize(t) if normalize else t for t in texts]


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[Sequence[str]], *, lowercase: bool = False,
                normalize: Normalizer | None = None) -> float:
    """Corpus BLEU (0-100) of hypotheses, each with its own list of one or more references.

    `references[i]` lists the references of hypothesis i; lists may differ in length (sacrebleu's
    missing-reference entries, None, fill the shorter ones).
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference lists")
    if not hypotheses:
        return 0.0
    if any(len(refs) == 0 for refs in references):
        raise ValueError("every hypothesis needs at least one reference")
    width = max(len(refs) for refs in references)
    streams = [[_prep([refs[k]], normalize)[0] if k < len(refs) else None for refs in references]
               for k in range(width)]
    result = sacrebleu.corpus_bleu(_prep(hypotheses, normalize), streams, lowercase=lowercase,
                                   force=True)
    return float(result.score)


def self_bleu(hypotheses: Sequence[str], sources: Sequence[str], *, lowercase: bool = False,
              normalize: Normalizer | None = None) -> float:
    """Corpus BLEU (0-100) of the outputs against their own inputs as the single reference: content
    preservation without human references (100 = copies the input)."""
    return corpus_bleu(hypotheses, [[s] for s in sources], lowercase=lowercase, normalize=normalize)


def style_accuracy(predicted: Sequence[Any], target_styles: Sequence[Any]) -> float:
    """Percentage (0-100) of outputs a style classifier assigns to the intended target style."""
    if len(predicted) != len(target_styles):
        raise ValueError(f"{len(predicted)} predictions but {len(target_styles)} target styles")
    if not predicted:
        return 0.0
    return 100.0 * sum(int(p == t) for p, t in zip(predicted, target_styles)) / len(predicted)


def g_score(accuracy: float, bleu: float) -> float:
    """Geometric mean sqrt(accuracy × BLEU), both on 0-100, so G is on 0-100 too."""
    return math.sqrt(max(accuracy, 0.0) * max(bleu, 0.0))


@torch.no_grad()
def perplexity(model: torch.nn.Module, tokenizer: Any, texts: Sequence[str], *, batch_size: int = 16,
               device: torch.device | str | None = None) -> float:
    """Corpus perplexity exp(total NLL / total predicted tokens) of `texts` under a causal LM.

    Each text is scored as [BOS] + tokens(text) (BOS = the tokenizer's BOS, else its EOS, as GPT-2
    uses), predicting every text token from its prefix; no EOS is appended. The mean is weighted by
    tokens, so long texts count more than short ones. Empty texts contribute nothing; NaN if no text
    has a token. Batches are right-padded and the padding is masked out of the sum.
    """
    return pooled_perplexity(text_nlls(model, tokenizer, texts, batch_size=batch_size, device=device))


def pooled_perplexity(nlls: Sequence[tuple[float, int]]) -> float:
    """exp(Σ NLL / Σ tokens) of (summed NLL, token count) pairs from `text_nlls`; NaN without tokens."""
    total_tokens = sum(n for _, n in nlls)
    if total_tokens == 0:
        return float("nan")
    return math.exp(sum(nll for nll, _ in nlls) / total_tokens)


@torch.no_grad()
def text_nlls(model: torch.nn.Module, tokenizer: Any, texts: Sequence[str], *, batch_size: int = 16,
              device: torch.device | str | None = None) -> list[tuple[float, int]]:
    """Per text, (summed NLL of its tokens, number of tokens predicted), scored as in `perplexity`;
    (0.0, 0) for a text without tokens. Pooling a subset gives that subset's corpus perplexity."""
    if device is None:
        device = next(model.parameters()).device
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else start
    seqs = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    seqs = [([start] + s if start is not None else s) if s else [] for s in seqs]
    scored = [i for i, s in enumerate(seqs) if len(s) > 1]
    out = [(0.0, 0)] * len(seqs)
    for i in range(0, len(scored), batch_size):
        rows = scored[i:i + batch_size]
        chunk = [seqs[r] for r in rows]
        width = max(len(s) for s in chunk)
        ids = torch.tensor([s + [pad_id] * (width - len(s)) for s in chunk], device=device)
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in chunk], device=device)
        logits = model(input_ids=ids, attention_mask=mask).logits.float()
        nll = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.size(-1)), ids[:, 1:].reshape(-1), reduction="none"
        ).view(len(chunk), -1)
        weights = mask[:, 1:].float()
        sums = (nll * weights).sum(dim=1).tolist()
        counts = weights.sum(dim=1).tolist()
        for r, total, count in zip(rows, sums, counts):
            out[r] = (float(total), int(count))
    return out
