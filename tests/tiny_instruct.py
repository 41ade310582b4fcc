"""A word-level tokenizer and a tiny random Llama for the instruction-tuning tests (offline, fast).

The vocabulary holds every word of the Alpaca template and of the fixture file, so nothing maps to
<unk>; the tokenizer adds BOS in front of a text, as Llama's does.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tasks.instruct.alpaca_template import alpaca_prompt

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "instruct" / "tiny.json"


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run far faster on one thread on a shared CPU (thread sync dominates); a test
    module that imports this fixture gets it for every test."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def vocabulary() -> list[str]:
    from tokenizers import pre_tokenizers

    texts = [alpaca_prompt("x", "y"), alpaca_prompt("x"), FIXTURE.read_text()]
    split = pre_tokenizers.Whitespace()
    words = sorted({w for t in texts for w, _ in split.pre_tokenize_str(t)})
    return ["<pad>", "<s>", "</s>", "<unk>"] + words


def make_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocabulary())}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>")


def make_model(seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(vocabulary()), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      bos_token_id=1, eos_token_id=2, pad_token_id=0)
    return LlamaForCausalLM(cfg).eval()


def save_tiny_llama(folder: Path) -> Path:
    make_model().save_pretrained(folder)
    make_tokenizer().save_pretrained(folder)
    return folder
