"""Prompt masking, collation, deterministic batched generation and an end-to-end tiny training run.

Everything runs on a tiny random Llama (2 layers, hidden 32) with a word-level tokenizer built from
the fixture vocabulary, so it is offline and fast.
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from salora_cli.core.errors import SaloraError
from tasks.generation import clean_generation, generate_texts
from tasks.prompts import IGNORE_INDEX, build_prompt, build_training_features, collate_features, prompt_ids
from tasks.style.style import GyafcStyleTask, prepare_tokenizer

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _vocabulary() -> list[str]:
    from tokenizers import pre_tokenizers

    texts = [build_prompt("x ___", "informal", ["a", "b"]), "formal positive negative"]
    for folder in (FIXTURES / "gyafc", FIXTURES / "yelp_tiny"):
        texts += [p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()]
    split = pre_tokenizers.Whitespace()
    words = sorted({w for t in texts for w, _ in split.pre_tokenize_str(t)})
    return ["<pad>", "<s>", "</s>", "<unk>"] + words


VOCAB = _vocabulary()


def make_tokenizer(*, adds_bos: bool = True, pad: bool = True):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(VOCAB)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    if adds_bos:  # like Llama: BOS in front of every encoded text
        core.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>" if pad else None)


def make_model(seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(VOCAB), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      bos_token_id=1, eos_token_id=2, pad_token_id=0)
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models are far faster on one thread: with two, thread sync dominates, and on a shared
    2-core machine a busy neighbour makes it 50x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tok():
    return make_tokenizer()


# ------------------------------------------------------------------------------------------ prompts

def test_prompt_format():
    assert build_prompt("the food was .", "positive") == "Input: the food was .\nStyle: positive\nOutput:"


def test_training_features_mask_prompt(tok):
    prompt = build_prompt("u should just talk 2 her about it", "formal")
    feats = build_training_features(tok, prompt, "You should simply talk to her about it.", max_length=64)
    p = prompt_ids(tok, prompt)
    assert p[0] == tok.bos_token_id and p == tok(prompt)["input_ids"]  # same ids generation uses
    n = len(p)
    assert feats["input_ids"][:n] == p
    assert feats["labels"][:n] == [IGNORE_INDEX] * n
    rewrite = feats["labels"][n:]
    assert IGNORE_INDEX not in rewrite and rewrite == feats["input_ids"][n:]
    assert rewrite[-1] == tok.eos_token_id
    assert tok.decode(rewrite[:-1]) == "You should simply talk to her about it ."
    assert feats["attention_mask"] == [1] * len(feats["input_ids"])


def test_prompt_ids_without_bos():
    plain = make_tokenizer(adds_bos=False)
    assert prompt_ids(plain, "Input: hi") == plain("Input: hi", add_special_tokens=False)["input_ids"]
    assert plain.bos_token_id not in prompt_ids(plain, "Input: hi")


def test_truncation_keeps_instruction_and_some_loss(tok):
    prompt = build_prompt(" ".join(["the food was terrible ."] * 10), "positive")
    feats = build_training_features(tok, prompt, "the food was great .", max_length=16)
    assert len(feats["input_ids"]) == 16
    kept = [i for i in feats["labels"] if i != IGNORE_INDEX]
    assert kept == tok("the food was great .", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    # The prompt lost its start, not its end (the style line).
    prompt_part = feats["input_ids"][:16 - len(kept)]
    assert tok.decode(prompt_part).endswith("Style : positive Output :")


def test_collate_pads_right_and_loss_only_on_rewrite(tok):
    task = GyafcStyleTask()
    examples = task.load_splits(str(FIXTURES / "gyafc"))["train"][:3]
    batch = task.collate(tok, examples, max_length=64)
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    assert ids.shape == mask.shape == labels.shape and ids.dtype == torch.long
    for row, ex in enumerate(examples):
        feats = build_training_features(tok, task.prompt(ex), ex["target"], 64)
        n, m = len(feats["input_ids"]), len(prompt_ids(tok, task.prompt(ex)))
        assert mask[row].tolist() == [1] * n + [0] * (ids.shape[1] - n)  # right padding
        assert (ids[row, n:] == tok.pad_token_id).all()
        # -100 exactly on prompt and padding positions.
        assert [i for i, v in enumerate(labels[row].tolist()) if v == IGNORE_INDEX] == \
            list(range(m)) + list(range(n, ids.shape[1]))
    model = make_model()
    with torch.no_grad():
        loss = model(**batch).loss
        logits = model(input_ids=ids, attention_mask=mask).logits
    shifted = labels[:, 1:]
    keep = shifted != IGNORE_INDEX
    logp = torch.log_softmax(logits[:, :-1], dim=-1)
    manual = -logp.gather(-1, shifted.clamp(min=0).unsqueeze(-1)).squeeze(-1)[keep].mean()
    assert loss.item() == pytest.approx(manual.item(), rel=1e-5)
    with pytest.raises(SaloraError, match="without a target"):
        task.collate(tok, [dict(examples[0], target=None)], max_length=64)
    with pytest.raises(ValueError):
        collate_features([], tok.pad_token_id)


def test_prepare_tokenizer_pads_with_eos():
    tok = prepare_tokenizer(make_tokenizer(pad=False))
    assert tok.pad_token_id == tok.eos_token_id and tok.padding_side == "left"


# --------------------------------------------------------------------------------------- generation

PROMPTS = [
    build_prompt("i luv my family sooo much", "formal"),
    build_prompt("the food .", "positive"),
    build_prompt("u r never 2 old to find love and dont let them push u around", "formal"),
    build_prompt("He is such a jerk", "formal"),
    build_prompt("the", "negative"),
]


def _naive_greedy(model, tok, prompt: str, max_new_tokens: int) -> str:
    """Greedy decoding by full forward passes: no cache, no padding, no batching."""
    ids = prompt_ids(tok, prompt)
    new = []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            nxt = int(model(torch.tensor([ids + new])).logits[0, -1].argmax())
            if nxt == tok.eos_token_id:
                break
            new.append(nxt)
    return clean_generation(tok.decode(new, skip_special_tokens=True))


def test_generation_deterministic_and_batch_invariant(tok):
    model = make_model(seed=1)
    kw = {"max_new_tokens": 6}
    batched = generate_texts(model, tok, PROMPTS, batch_size=4, **kw)
    assert batched == generate_texts(model, tok, PROMPTS, batch_size=4, **kw)
    singles = [generate_texts(model, tok, [p], batch_size=1, **kw)[0] for p in PROMPTS]
    assert batched == singles  # left padding + length sorting change nothing, order is kept
    assert batched == [_naive_greedy(model, tok, p, 6) for p in PROMPTS]  # the KV cache is exact
    assert all(batched)
    beams = generate_texts(model, tok, PROMPTS, batch_size=5, num_beams=3, **kw)
    assert beams == [generate_texts(model, tok, [p], batch_size=1, num_beams=3, **kw)[0] for p in PROMPTS]


def test_clean_generation():
    assert clean_generation("  the food was great .\nInput: more") == "the food was great ."
    assert clean_generation("\n") == ""


# ------------------------------------------------------------------------------------ end to end

def test_train_then_evaluate_end_to_end(tok):
    """A few steps on four GYAFC pairs: the model must learn exactly the prompt→rewrite mapping that
    generation then uses (BLEU 100 on the training pairs), and its fluency score must improve."""
    task = GyafcStyleTask(direction="informal-to-formal", max_new_tokens=16)
    examples = task.load_splits(str(FIXTURES / "gyafc"))["train"][:4]
    model = make_model(seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-2)
    batch = task.collate(tok, examples, max_length=64)
    model.train()
    for _ in range(60):
        loss = model(**batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    assert loss.item() < 0.05

    scored = [dict(ex, references=[ex["target"]]) for ex in examples]
    task.style_classifier = lambda texts: [1 if t[:1].isupper() else 0 for t in texts]
    task.fluency_lm = (model, tok)
    metrics = task.evaluate(model, tok, scored, batch_size=3, max_length=64, device=torch.device("cpu"))
    assert metrics["bleu"] == pytest.approx(100.0)
    assert metrics["accuracy"] == pytest.approx(100.0) and metrics["g_score"] == pytest.approx(100.0)
    assert 0 < metrics["self_bleu"] < 50
    assert [o["generation"] for o in task.last_outputs] == [tok.decode(tok(ex["target"], add_special_tokens=False)
                                                            ["input_ids"]) for ex in examples]
    out = task.last_outputs[0]
    assert out["source"] == examples[0]["source"] and out["target_style"] == "formal"
    assert out["source_style"] == "informal" and out["references"] == [examples[0]["target"]]
    # Text the model was trained to produce is more fluent to it than the same words shuffled.
    trained = metrics["perplexity"]
    shuffled = [" ".join(reversed(o["generation"].split())) for o in task.last_outputs]
    assert math.isfinite(trained) and trained < perplexity_of(model, tok, shuffled)


def perplexity_of(model, tok, texts):
    from tasks.style.style_metrics import perplexity

    return perplexity(model, tok, texts, batch_size=4)


def test_evaluate_without_references_and_per_direction(tok):
    model = make_model(seed=2)
    task = GyafcStyleTask(max_new_tokens=4)
    test = task.load_splits(str(FIXTURES / "gyafc"))["test"]
    metrics = task.evaluate(model, tok, test, batch_size=4, max_length=64, device=torch.device("cpu"))
    assert set(metrics) == {"bleu", "self_bleu", "bleu_informal_to_formal", "bleu_formal_to_informal"}
    assert len(task.last_outputs) == len(test) and len(task.last_outputs[0]["references"]) == 4
    no_refs = [dict(ex, references=[]) for ex in test[:2]]
    assert math.isnan(task.evaluate(model, tok, no_refs, batch_size=2, max_length=64,
                                    device=torch.device("cpu"))["bleu"])
