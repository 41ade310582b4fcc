"""`salora transfer`'s settings: a typed dataclass with help beside each field, the recorded defaults.

The defaults are the zero-shot setting of the style-transfer benchmark that lists SaLoRA (its
`evaluate_tst.py`): the Alpaca template, one fixed instruction per target style, lower-cased inputs and
references, temperature 0.1 / top-p 0.75 / top-k 40, 4 beams, at most 128 new tokens.

Decoding: that script hands the sampling values to a GenerationConfig without `do_sample`, and
transformers then runs deterministic beam search: temperature, top-p and top-k change nothing. We
record `do_sample: false` explicitly and keep the three values beside it (inert unless do_sample is
set), so the rewrites are what their script produces and are reproducible run to run.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from salora_cli.core.errors import SaloraError

TASKS = ("yelp", "gyafc")
SPLITS = ("test", "dev")
GYAFC_DIRECTIONS = ("both", "informal-to-formal", "formal-to-informal")  # as tasks.style.style_data (not imported:
# it pulls in torch, and `salora transfer --help` must start fast)
# The instruction per target style, worded as the benchmark's zero-shot script words them.
INSTRUCTIONS = {
    "positive": "Please change the sentiment of the following sentence to be more positive.",
    "negative": "Please change the sentiment of the following sentence to be more negative.",
    "formal": "Please rewrite the following sentence to be more formal.",
    "informal": "Please rewrite the following sentence to be more informal.",
}


@dataclass
class TransferConfig:
    task: str = field(default="yelp", metadata={"help": "Style task: yelp (sentiment) or gyafc (formality)"})
    data_dir: str | None = field(default=None, metadata={"help": (
        "Yelp release folder (default: $SALORA_DATA/yelp), or the folder holding GYAFC_Corpus")})
    split: str = field(default="test", metadata={"help": (
        "test (scored against the human references); dev has references only for GYAFC (tune)")})
    max_samples: int | None = field(default=None, metadata={"help": (
        "Only this many sources, at evenly spaced positions of the split (both directions); all if not given")})
    domain: str = field(default="Family_Relationships", metadata={"help": "GYAFC domain"})
    direction: str = field(default="both", metadata={"help": (
        "GYAFC: both | informal-to-formal | formal-to-informal (Yelp: always both)")})
    checkpoint: str = field(default="best", metadata={"help": "For a run folder: best or final weights"})
    instruction_to_positive: str = field(default=INSTRUCTIONS["positive"], metadata={
        "help": "Instruction for negative Yelp sources"})
    instruction_to_negative: str = field(default=INSTRUCTIONS["negative"], metadata={
        "help": "Instruction for positive Yelp sources"})
    instruction_to_formal: str = field(default=INSTRUCTIONS["formal"], metadata={
        "help": "Instruction for informal GYAFC sources"})
    instruction_to_informal: str = field(default=INSTRUCTIONS["informal"], metadata={
        "help": "Instruction for formal GYAFC sources"})
    lowercase: bool = field(default=True, metadata={"help": "Lower-case the sources (prompt) and the references"})
    do_sample: bool = field(default=False, metadata={"help": (
        "Sample instead of beam search (the recorded setting is false: deterministic beam search)")})
    temperature: float = field(default=0.1, metadata={"help": "Sampling temperature (only with --do-sample)"})
    top_p: float = field(default=0.75, metadata={"help": "Nucleus mass (only with --do-sample)"})
    top_k: int = field(default=40, metadata={"help": "Top-k cut (only with --do-sample)"})
    num_beams: int = field(default=4, metadata={"help": "Beams (1 = greedy)"})
    max_new_tokens: int = field(default=128, metadata={"help": "Most tokens generated per rewrite"})
    stop_at_answer_end: bool = field(default=True, metadata={"help": (
        "End a rewrite (a beam) once the answer cut cannot change any more: '###', a line of content and a "
        "newline, or a sentence more than the cut keeps (tasks.instruct.zero_shot); off: only EOS or max_new_tokens")})
    batch_size: int = field(default=16, metadata={"help": "Prompts generated together (left-padded)"})
    seed: int = field(default=0, metadata={"help": "Seed (matters only with --do-sample)"})
    style_scoring: bool = field(default=True, metadata={"help": (
        "Style accuracy and G with the runner's own classifier (trained once per data and cached)")})
    fluency: bool = field(default=True, metadata={"help": (
        "Perplexity of rewrites, sources and references under the base LM (no adapter)")})
    score_batch_size: int = field(default=32, metadata={"help": "Batch size of the classifier and the fluency LM"})

    def validate(self) -> "TransferConfig":
        if self.task not in TASKS:
            raise SaloraError(f"unknown transfer task '{self.task}' (choose from: {', '.join(TASKS)})")
        if self.split not in SPLITS:
            raise SaloraError(f"unknown split '{self.split}' (choose from: {', '.join(SPLITS)})")
        if self.task == "yelp" and self.split != "test":
            raise SaloraError("Yelp has human rewrites for the test split only: use --split test")
        if self.direction not in GYAFC_DIRECTIONS:
            raise SaloraError(f"unknown direction '{self.direction}' (choose from: {', '.join(GYAFC_DIRECTIONS)})")
        if self.checkpoint not in ("best", "final"):
            raise SaloraError(f"checkpoint must be best or final, got '{self.checkpoint}'")
        for name in ("num_beams", "max_new_tokens", "batch_size", "score_batch_size", "top_k"):
            if getattr(self, name) < 1:
                raise SaloraError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_samples is not None and self.max_samples < 1:
            raise SaloraError(f"max_samples must be >= 1 when given, got {self.max_samples}")
        if not 0 < self.top_p <= 1 or self.temperature <= 0:
            raise SaloraError("top_p must be in (0, 1] and temperature positive")
        return self

    def instruction(self, target_style: str) -> str:
        return getattr(self, f"instruction_to_{target_style}")

    def generation_options(self) -> dict[str, Any]:
        """GenerationConfig fields; the sampling values only when sampling (else transformers warns
        that they are unused, which is exactly what they would be)."""
        options: dict[str, Any] = {"num_beams": self.num_beams, "do_sample": self.do_sample}
        if self.do_sample:
            options.update(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k)
        return options

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TransferConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SaloraError(f"unknown transfer setting '{unknown[0]}'")
        return cls(**data).validate()
