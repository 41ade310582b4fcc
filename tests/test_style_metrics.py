"""Style-transfer metrics against hand-computed values."""
from __future__ import annotations

import math

import pytest
import torch

from tasks.style.style_metrics import (corpus_bleu, g_score, perplexity, self_bleu, style_accuracy,
                                 yelp_normalize)

# Hand computation for hypothesis "the cat sat on the mat" vs reference "the cat sat on a mat":
# clipped n-gram precisions 5/6 ("the" counted once), 3/5, 2/4, 1/3; equal lengths so BP = 1.
HYP = "the cat sat on the mat"
BLEU_HAND = 100 * (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25  # 53.73


def test_bleu_identical_is_100():
    assert corpus_bleu(["a nice quiet place ."], [["a nice quiet place ."]]) == pytest.approx(100.0)
    assert self_bleu(["one two three four", "five six seven eight"],
                     ["one two three four", "five six seven eight"]) == pytest.approx(100.0)


def test_bleu_hand_computed():
    assert corpus_bleu([HYP], [["the cat sat on a mat"]]) == pytest.approx(BLEU_HAND, abs=1e-6)
    # Brevity penalty: all precisions 1, hypothesis 4 tokens vs reference 6 → exp(1 - 6/4).
    assert corpus_bleu(["the cat sat on"], [["the cat sat on the mat"]]) == \
        pytest.approx(100 * math.exp(-0.5), abs=1e-6)
    # Corpus level: n-gram counts are summed over sentences before the precisions are taken
    # (10/11, 7/9, 5/7, 3/5), not an average of sentence scores.
    corpus = corpus_bleu([HYP, "a b c d e"], [["the cat sat on a mat"], ["a b c d e"]])
    assert corpus == pytest.approx(100 * (10 / 11 * 7 / 9 * 5 / 7 * 3 / 5) ** 0.25, abs=1e-6)
    # self-BLEU is the same computation with the source as the only reference.
    assert self_bleu([HYP], ["the cat sat on a mat"]) == pytest.approx(BLEU_HAND, abs=1e-6)


def test_bleu_multi_reference():
    refs = ["the cat sat on a mat", "there is a cat on the mat"]
    # Clipped counts take the max over references: 5/6, 5/5 ("on the", "the mat" from ref 2),
    # 3/4 ("on the mat"), 1/3; the closest reference length is 6 → BP = 1.
    expected = 100 * (5 / 6 * 5 / 5 * 3 / 4 * 1 / 3) ** 0.25
    assert corpus_bleu([HYP], [refs]) == pytest.approx(expected, abs=1e-6)
    # The brevity penalty uses the reference length closest to the hypothesis (5, not 6).
    short = corpus_bleu(["the cat sat on"], [["the cat sat on the mat", "the cat sat on it"]])
    assert short == pytest.approx(100 * math.exp(1 - 5 / 4), abs=1e-6)
    # Four-reference streams (GYAFC) and lists of different lengths per example.
    four = corpus_bleu([HYP, "a b c d e"], [refs + ["x", "y"], ["a b c d e"]])
    assert four == pytest.approx(100 * (10 / 11 * 9 / 9 * 6 / 7 * 3 / 5) ** 0.25, abs=1e-6)
    with pytest.raises(ValueError):
        corpus_bleu([HYP], [[]])
    with pytest.raises(ValueError):
        corpus_bleu([HYP], [])


def test_bleu_case_and_yelp_normalisation():
    assert corpus_bleu(["The Cat sat on a mat"], [["the cat sat on a mat"]]) < 100
    assert corpus_bleu(["The Cat sat on a mat"], [["the cat sat on a mat"]], lowercase=True) == pytest.approx(100)
    assert yelp_normalize("Ever since joes has changed hands it's gotten better, I can't complain!") == \
        "ever since joes has changed hands it 's gotten better , i ca n't complain !"
    tokenised = "i did n't like it 's taste ."
    assert yelp_normalize(tokenised) == tokenised  # already in the release's form
    # A tokenised Yelp output matches its untokenised human reference once both are normalised.
    assert corpus_bleu(["we did n't love it ."], [["We didn't love it."]], normalize=yelp_normalize) == \
        pytest.approx(100)


def test_accuracy_and_g_score():
    assert style_accuracy([1, 0, 1, 1], [1, 1, 1, 0]) == pytest.approx(50.0)
    assert style_accuracy([], []) == 0.0
    assert g_score(81.0, 36.0) == pytest.approx(54.0)
    assert g_score(0.0, 50.0) == 0.0
    with pytest.raises(ValueError):
        style_accuracy([1], [1, 0])


def _tiny_lm():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = ["<pad>", "<s>", "</s>", "<unk>"] + "the food was very good bad and service slow fast".split()
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>",
                                  pad_token="<pad>", unk_token="<unk>")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(words), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      bos_token_id=1, eos_token_id=2, pad_token_id=0)
    return LlamaForCausalLM(cfg).eval(), tok


def test_perplexity_matches_hand_computation():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model is faster single-threaded (restored below)
    try:
        _check_perplexity()
    finally:
        torch.set_num_threads(before)


def _check_perplexity():
    model, tok = _tiny_lm()
    texts = ["the food was very good", "slow service", "", "bad"]
    total_nll, total = 0.0, 0
    with torch.no_grad():
        for text in texts:
            ids = tok(text, add_special_tokens=False)["input_ids"]
            if not ids:
                continue  # empty texts have no tokens to predict
            seq = torch.tensor([[tok.bos_token_id] + ids])
            logp = torch.log_softmax(model(seq).logits[0, :-1], dim=-1)
            total_nll -= float(logp[torch.arange(len(ids)), seq[0, 1:]].sum())
            total += len(ids)
    expected = math.exp(total_nll / total)  # token-weighted: 5 + 2 + 1 tokens
    assert total == 8
    for batch_size in (1, 3, 8):  # right padding must not change the result
        assert perplexity(model, tok, texts, batch_size=batch_size) == pytest.approx(expected, rel=1e-5)
    assert math.isnan(perplexity(model, tok, ["", ""]))
