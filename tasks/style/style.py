"""Text style transfer with causal LMs: "style/yelp" (sentiment) and "style/gyafc" (formality).

Both tasks fine-tune a decoder-only LM on prompt → rewrite (tasks.prompts) and evaluate by generating
rewrites (tasks.generation) and scoring them (tasks.style.style_metrics).

- Yelp is non-parallel: training uses delete-and-retrieve (Li et al. 2018; tasks.style.markers, tasks.style.retrieval).
  Each training sentence x of style s becomes prompt(content(x) with slots, own deleted words, s) → x.
  Test: prompt(content(x) with slots, words retrieved for 1 - s, 1 - s), decoded without the source's
  deleted style words, scored with BLEU against the one human rewrite. Dev (sentiment.dev.*, no human
  rewrites) is transferred the same way and scored for checkpoint selection only (tasks.style.selection:
  "selection_score" = sqrt(word-count classifier accuracy × self-BLEU), so copying does not win).
  `dev_selection: reconstruction` restores the old proxy (rebuild x in its own style, BLEU against x).
- GYAFC is parallel: prompt(x, target style) → its rewrite; tune (dev) and test are scored against the
  four human references per source.

Settings are attributes with defaults (set them, or pass them to `configure`, before `load_splits`):
Yelp `train_pool`, the recipe's YELP_DEFAULTS (`content_slots`, `retrieve_markers`,
`block_source_markers`, `train_balance`, `train_drop_fallback`, `dev_selection`) and the content step's
`marker_*` options (tasks.style.markers.CONTENT_DEFAULTS: `marker_threshold`, `marker_smoothing`,
`marker_max_n`, `marker_normalize`, `marker_min_count`, `marker_negation`, `marker_trim`,
`marker_fallback`, `marker_clitics`, `marker_select`); GYAFC `domain`, `direction`; both
`max_new_tokens`, `num_beams`, `style_classifier`, `fluency_lm`.

`eval_split` is "dev" (evaluated during training); the final evaluation uses `final_eval_split`
("test"). `main_metric` picks the best checkpoint: GYAFC "bleu" (against the tune references); Yelp
"selection_score" (or "bleu" of reconstruction). The evaluation classifier ("accuracy", "g_score";
tasks.style.style_classifier) is attached only for the final test scoring and is never used for training,
selection or decoding. `evaluate` keeps its generations in `last_outputs` for the runner to save.

BLEU (tasks.style.style_metrics.corpus_bleu, sacrebleu 13a): Yelp lower-cases and applies `yelp_normalize`
to outputs, references and sources first (the human rewrites are untokenised and cased, the sentences
tokenised and lower-cased); GYAFC is scored case-sensitively on the raw text. Copying the source gives
BLEU 31.4 on the Yelp test set this way (28.9 without the normalisation).
"""
from __future__ import annotations

import math
import random
from typing import Any, Callable, Sequence

import torch

from salora.errors import SaloraError
from tasks.base import Example, Task, register
from tasks.generation import first_token_in_text, generate_texts
from tasks.style.markers import CONTENT_DEFAULTS, Deletion, delete, extract_markers
from tasks.prompts import SLOT, build_prompt, build_training_features, collate_features
from tasks.style.retrieval import MarkerRetriever
from tasks.style.selection import WordCountStyleClassifier, selection_score
from tasks.style.style_data import (GYAFC_DOMAINS, GYAFC_LAYOUT, GYAFC_STYLES, YELP_STYLES, check_direction,
                              find_gyafc_domain_dir, find_yelp_dir, make_example, read_gyafc_split,
                              read_yelp_labelled, read_yelp_pool, read_yelp_test, resolve_gyafc_domain, subsample)
from tasks.style.style_metrics import (Normalizer, corpus_bleu, g_score, perplexity, self_bleu, style_accuracy,
                                 yelp_normalize)


class StyleTask(Task):
    """Shared prompt/model/evaluation logic; subclasses read their data."""

    name = "style"
    style_names: tuple[str, ...] = ()
    main_metric = "bleu"
    eval_split = "dev"
    final_eval_split = "test"
    uses_scorer_models = True  # style accuracy and fluency (salora_cli.transfer.style_scoring)
    bleu_normalize: Normalizer | None = None  # applied to outputs, references and sources before BLEU
    bleu_lowercase = False
    default_max_new_tokens = 64
    _options: tuple[str, ...] = ("max_new_tokens", "num_beams", "style_classifier", "fluency_lm")

    def __init__(self, **options: Any) -> None:
        self.max_new_tokens = self.default_max_new_tokens
        self.num_beams = 1
        # Callable mapping texts to predicted style labels (indices into style_names), e.g. a
        # fine-tuned sentiment/formality classifier; enables "accuracy" and "g_score".
        self.style_classifier: Callable[[list[str]], list[int]] | None = None
        # (model, tokenizer) of a causal LM; enables "perplexity" of the outputs.
        self.fluency_lm: tuple[torch.nn.Module, Any] | None = None
        # The checkpoint-selection classifier (tasks.style.selection), never the evaluation classifier above;
        # enables "selection_accuracy" and "selection_score".
        self.selection_classifier: Callable[[list[str]], list[int]] | None = None
        self.last_outputs: list[dict[str, Any]] = []
        self.configure(**options)

    def configure(self, **options: Any) -> "StyleTask":
        """Set task options by name; unknown names are a user error."""
        for key, value in options.items():
            if key not in self._options:
                raise SaloraError(f"task {self.name} has no option '{key}' (options: {', '.join(self._options)})")
            setattr(self, key, value)
        return self

    def settings(self) -> dict[str, Any]:
        """The data/decoding options in effect, for the run record."""
        return {k: getattr(self, k) for k in self._options if k not in ("style_classifier", "fluency_lm")}

    # ----------------------------------------------------------------------------- model + batches
    def build_model(self, model_ref: str) -> tuple[torch.nn.Module, Any]:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from tasks.models import load_pretrained

        tokenizer = load_pretrained(AutoTokenizer, model_ref)
        model = load_pretrained(AutoModelForCausalLM, model_ref, dtype=torch.float32)
        prepare_tokenizer(tokenizer, model)
        return model, tokenizer

    def prompt(self, example: Example) -> str:
        return build_prompt(example["content"], self.style_names[example["target_style"]], example.get("words"))

    def collate(self, tokenizer: Any, examples: list[Example], max_length: int) -> dict[str, torch.Tensor]:
        """Prompt-masked LM batch: loss on the target rewrite (and EOS) only."""
        features = []
        for ex in examples:
            if not ex.get("target"):
                raise SaloraError(f"{self.name}: example without a target cannot be trained on: {ex['source']!r}")
            features.append(build_training_features(tokenizer, self.prompt(ex), ex["target"], max_length))
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        return collate_features(features, pad_id)

    # ---------------------------------------------------------------------------------- evaluation
    def evaluate(self, model: torch.nn.Module, tokenizer: Any, examples: list[Example], *, batch_size: int,
                 max_length: int, device: torch.device) -> dict[str, float]:
        """Generate a rewrite per example and score it.

        Always: "bleu" (against each example's references; NaN if an example has none), "self_bleu"
        (against the source). With `style_classifier`: "accuracy" (share of outputs classified as the
        target style) and "g_score" = sqrt(accuracy × bleu). With `fluency_lm`: "perplexity" of the
        outputs, and "perplexity_sources" of the inputs under the same LM, for scale. With two or more directions: "bleu_<source>_to_<target>" per direction.
        """
        outputs = self.predict(model, tokenizer, examples, batch_size=batch_size, max_length=max_length,
                               device=device)
        return self.score(examples, outputs, batch_size=batch_size)

    def predict(self, model: torch.nn.Module, tokenizer: Any, examples: list[Example], *, batch_size: int,
                max_length: int, device: torch.device) -> list[str]:
        """The generated rewrites, one per example (a shard's worth under several processes)."""
        banned = [banned_token_ids(tokenizer, ex.get("blocked", ())) for ex in examples]
        return generate_texts(model, tokenizer, [self.prompt(ex) for ex in examples], batch_size=batch_size,
                              max_new_tokens=self.max_new_tokens, num_beams=self.num_beams,
                              max_prompt_length=max_length, device=device,
                              banned_ids=banned if any(banned) else None)

    def outputs_to_save(self) -> list[dict[str, Any]]:
        return self.last_outputs

    def score(self, examples: list[Example], outputs: list[str], *, batch_size: int = 32) -> dict[str, float]:
        """Metrics of `outputs` (one rewrite per example); keeps them in `last_outputs`."""
        self.last_outputs = [
            {"source": ex["source"], "content": ex["content"],
             "source_style": self.style_names[ex["source_style"]],
             "target_style": self.style_names[ex["target_style"]],
             "generation": out, "references": list(ex["references"]),
             **({"words": list(ex["words"])} if ex.get("words") is not None else {})}
            for ex, out in zip(examples, outputs)
        ]
        bleu_kw = {"lowercase": self.bleu_lowercase, "normalize": self.bleu_normalize}
        metrics: dict[str, float] = {"self_bleu": self_bleu(outputs, [ex["source"] for ex in examples], **bleu_kw)}
        has_refs = bool(examples) and all(ex["references"] for ex in examples)
        metrics["bleu"] = corpus_bleu(outputs, [ex["references"] for ex in examples], **bleu_kw) if has_refs \
            else float("nan")
        directions = sorted({(ex["source_style"], ex["target_style"]) for ex in examples})
        if has_refs and len(directions) > 1:
            for src, tgt in directions:
                idx = [i for i, ex in enumerate(examples) if (ex["source_style"], ex["target_style"]) == (src, tgt)]
                key = f"bleu_{self.style_names[src]}_to_{self.style_names[tgt]}"
                metrics[key] = corpus_bleu([outputs[i] for i in idx], [examples[i]["references"] for i in idx],
                                           **bleu_kw)
        if self.style_classifier is not None:
            predicted = list(self.style_classifier(list(outputs)))
            metrics["accuracy"] = style_accuracy(predicted, [ex["target_style"] for ex in examples])
            if not math.isnan(metrics["bleu"]):
                metrics["g_score"] = g_score(metrics["accuracy"], metrics["bleu"])
        if self.selection_classifier is not None:
            predicted = list(self.selection_classifier(list(outputs)))
            metrics["selection_accuracy"] = style_accuracy(predicted, [ex["target_style"] for ex in examples])
            metrics["selection_score"] = selection_score(metrics["selection_accuracy"], metrics["self_bleu"])
        if self.fluency_lm is not None:
            lm, lm_tokenizer = self.fluency_lm
            metrics["perplexity"] = perplexity(lm, lm_tokenizer, outputs, batch_size=batch_size)
            # the same LM on the inputs: the scale against which the outputs' number reads
            metrics["perplexity_sources"] = perplexity(lm, lm_tokenizer, [ex["source"] for ex in examples],
                                                       batch_size=batch_size)
        return metrics

    def classifier_data(self, data_dir: str | None, *, seed: int = 0) -> tuple[list[Example], list[Example]]:
        """(train, held-out) examples the evaluation classifier (tasks.style.style_classifier) learns from."""
        splits = self.load_splits(data_dir, seed=seed)
        return splits["train"], splits["dev"]


def banned_token_ids(tokenizer: Any, words: Sequence[str]) -> list[int]:
    """First token of each word as it appears inside a rewrite (see tasks.generation)."""
    ids = (first_token_in_text(tokenizer, w) for w in words)
    return sorted({i for i in ids if i is not None and i != tokenizer.eos_token_id})


def prepare_tokenizer(tokenizer: Any, model: torch.nn.Module | None = None) -> Any:
    """Use EOS as padding when the tokenizer has no pad token, and left padding (for generation;
    training batches are padded explicitly by `collate`). Keeps the model's configs in step."""
    if tokenizer.eos_token_id is None:
        raise SaloraError("style tasks need a tokenizer with an EOS token (it ends every rewrite)")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    if model is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.pad_token_id = tokenizer.pad_token_id
    return tokenizer


# Yelp's transfer recipe (issue 11), each a task option `<key>` recorded in the run config:
YELP_DEFAULTS: dict[str, Any] = {
    "content_slots": True,  # the content marks each run of deleted words with SLOT (tasks.prompts)
    "retrieve_markers": True,  # delete-and-retrieve: a Words line (own words in training, retrieved at test)
    "block_source_markers": True,  # decoding may not start a source style word it deleted (tasks.generation)
    "train_balance": True,  # as many negative as positive training sentences
    "train_drop_fallback": True,  # train only on sentences whose markers removed something
    "dev_selection": "transfer",  # dev score: "transfer" (tasks.style.selection) or "reconstruction" (BLEU of x)
}
DEV_SELECTIONS = ("transfer", "reconstruction")


class YelpStyleTask(StyleTask):
    """Yelp sentiment transfer (0 negative, 1 positive) with delete-and-retrieve (or -generate) training."""

    name = "style/yelp"
    style_names = YELP_STYLES
    bleu_normalize = staticmethod(yelp_normalize)
    bleu_lowercase = True
    default_max_new_tokens = 48  # Yelp sentences have at most 15 words
    _options = (StyleTask._options + ("train_pool",) + tuple(YELP_DEFAULTS)
                + tuple(f"marker_{k}" for k in CONTENT_DEFAULTS))

    def __init__(self, **options: Any) -> None:
        self.train_pool = "shen2017-test"  # see tasks.style.style_data.YELP_TRAIN_POOLS
        for key, value in YELP_DEFAULTS.items():
            setattr(self, key, value)
        for key, value in CONTENT_DEFAULTS.items():  # marker_threshold, marker_fallback, ... (tasks.style.markers)
            setattr(self, f"marker_{key}", value)
        self.markers: dict[int, frozenset] = {}
        super().__init__(**options)

    @property
    def main_metric(self) -> str:  # type: ignore[override]
        """The dev score that picks the best checkpoint."""
        return "selection_score" if self.dev_selection == "transfer" else "bleu"

    def load_splits(self, data_dir: str | None, *, max_train_samples: int | None = None,
                    seed: int = 0) -> dict[str, list[Example]]:
        if self.dev_selection not in DEV_SELECTIONS:
            raise SaloraError(f"unknown dev_selection '{self.dev_selection}' "
                              f"(choose from: {', '.join(DEV_SELECTIONS)})")
        # Every file is read (and checked) before any work on it.
        folder = find_yelp_dir(data_dir)
        pool = read_yelp_pool(folder, self.train_pool)
        if not pool:
            raise SaloraError(f"Yelp train_pool '{self.train_pool}' in {folder} has no sentences")
        dev_pairs = read_yelp_labelled(folder, "sentiment.dev")
        test = read_yelp_test(folder)
        # Markers come from the whole pool even when training on a sample: more data, same split.
        self.markers = self.build_markers(pool)
        deletions = [delete(x, self.markers[y]) for x, y in pool]
        train = [self._reconstruction(*pool[i], deletions[i])
                 for i in self._training_slice(pool, deletions, max_train_samples, seed)]
        if not train:
            raise SaloraError(f"{self.name}: no training sentence left: the markers removed no word from any "
                              f"sentence of train_pool '{self.train_pool}' (only the fallback did); lower "
                              "marker_threshold or set task_options.train_drop_fallback=false")
        if self.dev_selection == "transfer":  # dev sentences rewritten into the other style, no references
            dev = [make_example(x, y, 1 - y) for x, y in dev_pairs]
        else:  # the old proxy: rebuild each dev sentence in its own style, BLEU against itself
            dev = [self._reconstruction(x, y, delete(x, self.markers[y])) for x, y in dev_pairs]
        # The selection classifier and the retrieval index are fitted on the training pool only.
        self.selection_classifier = (WordCountStyleClassifier(pool, normalize=yelp_normalize)
                                     if self.dev_selection == "transfer" else None)
        transfers = [ex for ex in dev + test if ex["target_style"] != ex["source_style"]]
        self._prepare_transfer(transfers, self._retriever(pool, deletions))
        return {"train": train, "dev": dev, "test": test}

    def build_markers(self, pool: list[tuple[str, int]]) -> dict[int, frozenset]:
        """Markers of each style learned from (sentence, style) pairs, with this task's marker_* options."""
        try:
            return extract_markers({s: [x for x, y in pool if y == s] for s in (0, 1)},
                                   **{k: getattr(self, f"marker_{k}") for k in CONTENT_DEFAULTS})
        except (TypeError, ValueError) as exc:
            raise SaloraError(f"{self.name}: invalid marker option: {exc}") from None

    def classifier_data(self, data_dir: str | None, *, seed: int = 0) -> tuple[list[Example], list[Example]]:
        # The whole pool and dev set as read, whatever slice, filters and prompts training uses: the
        # evaluation classifier (and its cache) stays the one every earlier Yelp run was scored with.
        folder = find_yelp_dir(data_dir)
        pool = read_yelp_pool(folder, self.train_pool)
        dev = read_yelp_labelled(folder, "sentiment.dev")
        return [make_example(x, y, y) for x, y in pool], [make_example(x, y, y) for x, y in dev]

    def score(self, examples: list[Example], outputs: list[str], *, batch_size: int = 32) -> dict[str, float]:
        metrics = super().score(examples, outputs, batch_size=batch_size)
        if math.isnan(metrics.get("bleu", 0.0)):  # dev transfer has no human rewrites: no BLEU, not NaN
            del metrics["bleu"]
        return metrics

    # ------------------------------------------------------------------------------ examples
    def _content(self, deletion: Deletion) -> str:
        return deletion.content(SLOT if self.content_slots else None)

    def _reconstruction(self, sentence: str, style: int, deletion: Deletion) -> Example:
        """Training (and reconstruction-dev) example: content + own style (+ own deleted words) → x."""
        ex = make_example(sentence, style, style, target=sentence, references=[sentence],
                          content=self._content(deletion))
        ex["words"] = deletion.spans() if self.retrieve_markers else None
        return ex

    def _training_slice(self, pool: list[tuple[str, int]], deletions: list[Deletion], k: int | None,
                        seed: int) -> list[int]:
        """Pool indices to train on: seeded, without fallback-only deletions (they teach copying) and,
        with train_balance, k // 2 of each style (all of the smaller style when k is None)."""
        usable = [i for i, d in enumerate(deletions) if d.by_markers or not self.train_drop_fallback]
        if not self.train_balance:
            return subsample(usable, k, seed)
        if k is not None and k < 2:
            raise SaloraError(f"max_train_samples must be at least 2 with train_balance (got {k})")
        by_style = [[i for i in usable if pool[i][1] == s] for s in (0, 1)]
        per_style = min(len(members) for members in by_style)
        if k is not None:
            per_style = min(per_style, k // 2)
        rng = random.Random(seed)
        chosen = [i for members in by_style for i in sorted(rng.sample(members, per_style))]
        rng.shuffle(chosen)
        return chosen

    def _retriever(self, pool: list[tuple[str, int]], deletions: list[Deletion]) -> MarkerRetriever | None:
        """Retrieval candidates: pool sentences whose every deleted word group holds a word typical of
        the sentence's style (so "$ _num_" or "middle" are never handed out as style words)."""
        if not self.retrieve_markers:
            return None

        def words(d: Deletion, style: int) -> list[str]:
            groups = d.spans() if d.by_markers else []
            return groups if all(self._typical(g.split(), style) for g in groups) else []

        return MarkerRetriever([(d.content(), y, words(d, y)) for (_, y), d in zip(pool, deletions)])

    def _typical(self, tokens: Sequence[str], style: int) -> list[str]:
        """The tokens that are style markers on their own: unigram salience above marker_threshold."""
        salience = self.markers[style].own_salience
        return [t for t in tokens if salience.get(t, 0.0) > self.marker_threshold]

    def _prepare_transfer(self, examples: list[Example], retriever: MarkerRetriever | None) -> None:
        """Content, target-style words and banned source words of each example rewritten into the
        other style (dev under "transfer", test)."""
        deletions = [delete(ex["source"], self.markers[ex["source_style"]]) for ex in examples]
        words: list[list[str] | None] = [None] * len(examples)
        if retriever is not None:
            words = retriever.retrieve([(d.content(), ex["target_style"], len(d.spans()))
                                        for ex, d in zip(examples, deletions)])
        for ex, d, given in zip(examples, deletions, words):
            ex["content"] = self._content(d)
            ex["words"] = given
            # The slot mark is never part of a sentence: banned too, so no rewrite can echo it.
            ex["blocked"] = self._blocked(d, ex["source_style"], given or []) + ([SLOT] if self.content_slots else [])

    def _blocked(self, deletion: Deletion, style: int, given: list[str]) -> list[str]:
        """Deleted tokens that are source-style markers on their own ("great", "not"; not "and" inside
        "friendly and helpful"), except those the prompt asks for."""
        if not self.block_source_markers:
            return []
        allowed = {t for group in given for t in group.split()}
        deleted = [t for t, kept in zip(deletion.tokens, deletion.keep) if not kept and t not in allowed]
        return list(dict.fromkeys(self._typical(deleted, style)))


class GyafcStyleTask(StyleTask):
    """GYAFC formality transfer (0 informal, 1 formal), parallel training, four references."""

    name = "style/gyafc"
    style_names = GYAFC_STYLES
    _options = StyleTask._options + ("domain", "direction")

    def __init__(self, **options: Any) -> None:
        self.domain = GYAFC_DOMAINS[0]  # Family_Relationships
        self.direction = "both"  # or "informal-to-formal", "formal-to-informal"
        super().__init__(**options)

    def load_splits(self, data_dir: str | None, *, max_train_samples: int | None = None,
                    seed: int = 0) -> dict[str, list[Example]]:
        domain_dir = find_gyafc_domain_dir(data_dir, resolve_gyafc_domain(self.domain))
        check_direction(self.direction)
        train = read_gyafc_split(domain_dir, "train", self.direction)
        if not train:
            raise SaloraError(f"GYAFC train split in {domain_dir} has no sentence pairs ({GYAFC_LAYOUT})")
        return {
            "train": subsample(train, max_train_samples, seed),
            "dev": read_gyafc_split(domain_dir, "tune", self.direction),
            "test": read_gyafc_split(domain_dir, "test", self.direction),
        }


register("style/yelp", YelpStyleTask)
register("style/gyafc", GyafcStyleTask)
