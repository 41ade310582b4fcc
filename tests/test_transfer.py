"""Zero-shot style transfer: the Alpaca template, the answer cut, the output checks, batched generation,
and `salora transfer` end to end on the GYAFC fixtures with a tiny random Llama (base model and run)."""
from __future__ import annotations

import json

import pytest
import torch

from cli_helpers import assert_clean_error, run_cli
from conftest import FIXTURES
from tasks.instruct.alpaca_template import alpaca_prompt
from tasks.generation import generate_texts
from tasks.instruct.output_checks import CHECKS_VERSION, check_output, outcome_shares, repeated_share
from tasks.style.style_metrics import corpus_bleu
from tasks.instruct.transfer_metrics import plain_text
from tasks.instruct.zero_shot import answer_complete, cut_answer, transfer_prompt
from test_style_generation import VOCAB
from salora_cli.transfer.transfer import needs_relabelling, relabel_folder
from salora_cli.transfer.transfer_config import INSTRUCTIONS


# ------------------------------------------------------------------------------------------- template
def test_alpaca_template_with_and_without_input():
    assert alpaca_prompt("Say hi.", "to bob") == (
        "Below is an instruction that describes a task, paired with an input that provides further context. "
        "Write a response that appropriately completes the request.\n\n### Instruction:\nSay hi.\n\n"
        "### Input:\nto bob\n\n### Response:\n")
    assert alpaca_prompt("Say hi.") == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the "
        "request.\n\n### Instruction:\nSay hi.\n\n### Response:\n")


def test_transfer_prompt_lowercases_the_source():
    prompt = transfer_prompt(INSTRUCTIONS["formal"], "He is such a JERK lol")
    assert "### Input:\nhe is such a jerk lol\n\n### Response:\n" in prompt
    assert "### Instruction:\nPlease rewrite the following sentence to be more formal.\n" in prompt


# ----------------------------------------------------------------------------------------- answer cut
SOURCE = "the food was cold ."


@pytest.mark.parametrize("generated,expected", [
    ("The food was warm.", "The food was warm."),  # EOS: decoding already dropped it
    ("The food was warm.\n\n### Instruction:\nPlease rewrite", "The food was warm."),  # template continues
    ("The food was warm.### Input:", "The food was warm."),  # "###" on the same line
    ("The food was warm. I changed the sentiment to positive.", "The food was warm."),  # second sentence
    ("\n  The food was warm.\nExplanation: I replaced cold.", "The food was warm."),  # leading newline, 2nd line
    ("Response: The food was warm.", "The food was warm."),  # the template's field label
    ('"The food was warm."', "The food was warm."),  # quoted rewrite
    ("### Instruction:\nPlease rewrite", ""),  # only template: empty
    ("", ""),
    ("Here is the rewritten sentence:\n\nThe food was warm.", "Here is the rewritten sentence:"),  # kept: off-task
])
def test_cut_answer(generated, expected):
    assert cut_answer(generated, SOURCE) == expected


@pytest.mark.parametrize("generated", [
    "The food was warm. I changed the sentiment.", "The food was warm.\nExplanation: none", "### Input: x",
    '"The food was warm." I replaced cold.', "Response: The food was warm. Done.", "\n\nThe food was warm.\n\nMore",
])
def test_answer_complete_agrees_with_the_cut(generated):
    """Once answer_complete says so for a prefix, generating the rest does not change the cut."""
    first = next(i for i in range(1, len(generated) + 1) if answer_complete(generated[:i], SOURCE))
    assert cut_answer(generated[:first], SOURCE) == cut_answer(generated, SOURCE)


def test_cut_answer_keeps_as_many_sentences_as_the_source():
    source = "i went there . it was bad ."
    assert cut_answer("I went there. It was great. Hope this helps!", source) == "I went there. It was great."
    assert cut_answer('"hi"', '"hi" she said') == '"hi"'  # the source is quoted itself: quotes kept
    assert cut_answer('"The food was warm." I replaced cold.', SOURCE) == "The food was warm."


# -------------------------------------------------------------------------------------- output checks
@pytest.mark.parametrize("output,source,outcome", [
    ("", "the food was cold .", "empty"),
    ("The food was cold.", "the food was cold .", "echo"),  # case and punctuation ignored
    ("the food was cold", "the food was cold .", "echo"),
    ("I'm sorry, but I cannot help with that.", "the food was cold .", "refusal"),
    ("As an AI language model, I have no opinion.", "the food was cold .", "refusal"),
    ("This sentence expresses a negative sentiment.", "the food was cold .", "comment"),
    ("Here is the rewritten sentence:", "the food was cold .", "comment"),
    ("The sentiment of the sentence is negative.", "the food was cold .", "comment"),
    ("It seems like you're looking for a positive response.", "the food was cold .", "comment"),  # a reply
    ("positive", "the food was cold .", "label"),  # a style label, not a sentence
    ("Negative.", "the food was great .", "label"),
    ("Sentiment: formal", "hey what's up", "label"),
    ("good good good good food", "bad food", "loop"),  # a word 4 times in a row
    ("the food is good and the food is good and the food is good", "bad food", "loop"),  # repeated 3-grams
    ("The food was warm and tasty.", "the food was cold .", "rewrite"),
    ("here is the best taco in town !", "here is the worst taco in town !", "rewrite"),  # phrase in the source
    ("very very very good", "very very very bad", "rewrite"),  # a run of 3 is not a loop
    ("a positive experience", "a bad experience", "rewrite"),  # a label word inside a sentence
])
def test_outcome_of_each_check(output, source, outcome):
    assert check_output(output, source).outcome == outcome


def test_repeated_share_and_shares():
    assert repeated_share("a b c a b c".split()) == pytest.approx(1 / 4)  # abc, bca, cab, abc
    assert repeated_share("a b".split()) == 0.0
    shares = outcome_shares(["", "the food was cold .", "This sentence is bad.", "warm food"],
                            ["x y", "the food was cold .", "x y", "cold food"])
    assert shares["share_empty"] == shares["share_echo"] == shares["share_comment"] == 25.0
    assert shares["share_rewrite"] == 25.0 and shares["share_off_task"] == 25.0


def test_plain_text_fluency_normalisation():
    assert plain_text("the food did n't taste good , and it 's cold !") == "the food didn't taste good, and it's cold!"
    assert plain_text("Didn't like it (at all).") == "didn't like it (at all)."


# ----------------------------------------------------------------------------------- tiny model setup
TEMPLATE_WORDS = sorted(set((alpaca_prompt(INSTRUCTIONS["formal"], "x") + " " + " ".join(INSTRUCTIONS.values())
                             ).replace(".", " . ").replace(":", " : ").replace(",", " , ").split()))


def tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = VOCAB + [w for w in TEMPLATE_WORDS if w not in VOCAB]
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>")


def tiny_model(vocab_size: int, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      bos_token_id=1, eos_token_id=2, pad_token_id=0)
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-instruct-llama")
    tok = tiny_tokenizer()
    tiny_model(len(tok)).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: thread sync would dominate
    yield
    torch.set_num_threads(before)


def test_batched_generation_equals_one_at_a_time():
    tok = tiny_tokenizer()
    tok.padding_side = "left"
    model = tiny_model(len(tok))
    sources = ["i luv my family sooo much", "he is such a jerk lol", "u r never 2 old to find love",
               "dont let them push u around", "I love my family very much ."]
    prompts = [transfer_prompt(INSTRUCTIONS["formal"], s) for s in sources]
    done = lambda i, text: answer_complete(text, sources[i])  # noqa: E731
    kw = dict(max_new_tokens=8, stop_when=done, clean=None, options={"num_beams": 1, "do_sample": False})
    batched = generate_texts(model, tok, prompts, batch_size=4, **kw)
    alone = [generate_texts(model, tok, [p], batch_size=1, **kw)[0] for p in prompts]
    assert batched == alone and all(batched)


def test_generation_stops_at_the_template_mark():
    """A model that writes "###" is stopped there (the answer cut would drop the rest anyway)."""
    tok = tiny_tokenizer()
    tok.padding_side = "left"
    model = tiny_model(len(tok))
    mark = tok.convert_tokens_to_ids("###")
    with torch.no_grad():  # make "###" the most likely next token everywhere
        model.lm_head.bias = None
        model.lm_head.weight[mark] += 50.0 * model.model.norm.weight.sign()
    prompts = [transfer_prompt(INSTRUCTIONS["formal"], "he is such a jerk lol")]
    kw = dict(max_new_tokens=6, clean=None, options={"num_beams": 2, "do_sample": False})
    done = lambda i, text: answer_complete(text, "he is such a jerk lol")  # noqa: E731
    stopped = generate_texts(model, tok, prompts, stop_when=done, **kw)[0]
    going = generate_texts(model, tok, prompts, **kw)[0]
    assert stopped.split().count("###") == 1 and len(going.split()) > len(stopped.split())


# ------------------------------------------------------------------------------------------ end to end
GYAFC = FIXTURES / "gyafc"
FAST = ["--max-new-tokens", "6", "--num-beams", "2", "--batch-size", "4", "--no-fluency", "--no-style-scoring"]


def test_transfer_base_model_on_gyafc_both_directions(tmp_path, capsys, monkeypatch, tiny_llama):
    monkeypatch.setenv("SALORA_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "base"
    code, stdout, err = run_cli(["transfer", tiny_llama, "--task", "gyafc", "--data-dir", GYAFC, "--out", out,
                                 "--max-new-tokens", "6", "--num-beams", "2", "--batch-size", "3"], capsys)
    assert code == 0, err + stdout
    assert {p.name for p in out.iterdir()} == {"config.yaml", "command.txt", "metrics.json", "generations.jsonl"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["kind"] == "transfer" and metrics["method"] == "base" and metrics["task"] == "transfer/gyafc"
    test = metrics["test"]
    rows = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    test_dir = GYAFC / "GYAFC_Corpus" / "Family_Relationships" / "test"
    n_informal = len((test_dir / "informal").read_text().splitlines())
    n_formal = len((test_dir / "formal").read_text().splitlines())
    assert len(rows) == test["examples"] == n_informal + n_formal
    assert all(len(r["references"]) == 4 and r["references"] == [x.lower() for x in r["references"]] for r in rows)
    assert set(test["directions"]) == {"formal_to_informal", "informal_to_formal"}
    for block in (test["metrics"], *test["directions"].values()):
        assert {"bleu", "self_bleu", "accuracy", "g_score", "perplexity", "perplexity_sources",
                "perplexity_references", "perplexity_ratio", "share_empty", "share_echo", "share_off_task"} <= set(block)
    assert test["metrics"]["bleu"] == pytest.approx(
        corpus_bleu([r["generation"] for r in rows], [r["references"] for r in rows], lowercase=True))
    assert {"generate_time_s", "score_time_s", "scorer_setup_s", "generate_s_per_1000"} <= set(test)
    assert all(r["generation"] == cut_answer(r["raw"], r["source"]) for r in rows)
    # never clobbered without --overwrite
    code, _, err = run_cli(["transfer", tiny_llama, "--task", "gyafc", "--data-dir", GYAFC, "--out", out], capsys)
    assert_clean_error(code, err, "--overwrite")
    # `salora eval` rescores generations.jsonl: the same numbers
    code, stdout, err = run_cli(["eval", out], capsys)
    assert code == 0, err
    again = json.loads((out / "eval_test.json").read_text())["metrics"]
    for name in ("bleu", "self_bleu", "accuracy", "perplexity", "perplexity_references", "share_echo"):
        assert again[name] == pytest.approx(test["metrics"][name]), name
    # and `salora report metrics` tables it
    code, stdout, err = run_cli(["report", "metrics", out, "--out", tmp_path / "rep"], capsys)
    assert code == 0, err
    table = (tmp_path / "rep" / "metrics.md").read_text()
    assert "transfer/gyafc" in table and "PPL rewrites / refs" in table
    # a transfer labelled by older output checks is relabelled from its generations, nothing else redone
    assert metrics["output_checks_version"] == CHECKS_VERSION and not needs_relabelling(out)
    first = dict(rows[0], generation="Formal.")  # as if the model had answered with a style label
    (out / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [first, *rows[1:]]))
    old = dict(metrics, output_checks_version=1)
    (out / "metrics.json").write_text(json.dumps(old))
    command = (out / "command.txt").read_text()
    assert needs_relabelling(out)
    shares = relabel_folder(out)
    assert shares["share_label"] == pytest.approx(100 / len(rows)) and not needs_relabelling(out)
    relabelled = json.loads((out / "metrics.json").read_text())
    assert relabelled["test"]["metrics"]["bleu"] == test["metrics"]["bleu"]  # scores are not redone
    assert "version 1" in relabelled["relabelled"] and (out / "command.txt").read_text() == command
    assert json.loads((out / "generations.jsonl").read_text().splitlines()[0])["outcome"] == "label"


def test_transfer_of_a_run_folder(tmp_path, capsys, tiny_llama):
    run = tmp_path / "run"
    code, stdout, err = run_cli(["train", "style", "--task", "gyafc", "--model", tiny_llama, "--data-dir", GYAFC,
                                 "--out", run, "--method", "lora", "--rank", "2", "--set", "style_scoring=false",
                                 "--max-steps", "1", "--batch-size", "4", "--max-length", "48",
                                 "--max-eval-samples", "2", "--set", "task_options.max_new_tokens=2"], capsys)
    assert code == 0, err + stdout
    code, stdout, err = run_cli(["transfer", run, "--task", "gyafc", "--data-dir", GYAFC,
                                 "--direction", "informal-to-formal", *FAST], capsys)
    assert code == 0, err + stdout
    metrics = json.loads((run / "transfer" / "gyafc" / "metrics.json").read_text())
    assert metrics["method"] == "lora" and metrics["seed"] == 0 and metrics["subject_run"] == str(run.resolve())
    assert list(metrics["test"]["directions"]) == ["informal_to_formal"]


@pytest.mark.parametrize("ref,fragment", [
    ("/no/such/run", "no run folder or model folder"),
    ("{tmp}", "neither a run folder"),
])
def test_bad_run_or_model_is_one_line(tmp_path, capsys, ref, fragment):
    code, _, err = run_cli(["transfer", ref.format(tmp=tmp_path), "--task", "gyafc", "--data-dir", GYAFC], capsys)
    assert code == 2
    assert_clean_error(code, err, fragment)
    assert len([ln for ln in err.strip().splitlines() if ln.strip()]) == 1


def test_bad_task_is_one_line(capsys, tiny_llama):
    code, _, err = run_cli(["transfer", tiny_llama, "--task", "imdb"], capsys)
    assert code == 2
    assert_clean_error(code, err, "unknown transfer task 'imdb'")


# -------------------------------------------------------------------------------------------- style.md
def _fake_transfer(folder, method, seed, g, outputs):
    """A transfer folder as salora transfer writes it (no model): two sources per direction."""
    from salora_cli.reports.runs import load_run

    folder.mkdir(parents=True)
    sources = [("the food was cold .", "negative", "positive"), ("bad service .", "negative", "positive"),
               ("great staff !", "positive", "negative"), ("i love it .", "positive", "negative")]
    rows = [{"source": s, "source_style": a, "target_style": b, "references": ["ref"], "content": s,
             "generation": o} for (s, a, b), o in zip(sources, outputs)]
    (folder / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    block = {"n": 4, "accuracy": 50.0, "bleu": g * g / 50.0, "self_bleu": 30.0, "g_score": g, "perplexity": 90.0,
             "perplexity_sources": 100.0, "perplexity_references": 60.0, "perplexity_ratio": 1.5,
             "share_empty": 0.0, "share_echo": 25.0, "share_off_task": 25.0}
    (folder / "metrics.json").write_text(json.dumps({
        "kind": "transfer", "status": "finished", "task": "transfer/yelp", "method": method, "seed": seed,
        "model": "smollm2-135m", "main_metric": "g_score",
        "test": {"split": "test", "metrics": block, "generate_s_per_1000": 100.0,
                 "directions": {"negative_to_positive": block, "positive_to_negative": block}}}))
    return load_run(folder)


def test_style_report_task_agnostic(tmp_path):
    from salora_cli.reports.style_report import write_style_report

    runs = [_fake_transfer(tmp_path / "base", "base", None, 10.0, ["a", "b", "c", "d"]),
            _fake_transfer(tmp_path / "s0", "salora", 0, 30.0, ["a", "x", "c", "y"]),
            _fake_transfer(tmp_path / "s1", "salora", 1, 20.0, ["a", "x", "c", "y"]),
            _fake_transfer(tmp_path / "l0", "lora", 0, 25.0, ["a", "x", "z", "y"]),
            _fake_transfer(tmp_path / "l1", "lora", 1, 22.0, ["a", "x", "z", "y"])]
    written = write_style_report(runs, tmp_path)
    md = (tmp_path / "style.md").read_text()
    assert written[0] == tmp_path / "style.md"
    for header in ("ref-BLEU", "self-BLEU", "PPL rewrites", "PPL sources", "PPL refs", "empty %", "echo %", "off-task %"):
        assert header in md
    assert md.index("| base |") < md.index("| salora · seed 0 |") < md.index("| lora · seed 0 |")
    assert "salora · mean of 2 seeds" in md
    assert "| base / salora · seed 0 | 50.0 % | 4 |" in md and "| salora · seed 0 / lora · seed 0 | 75.0 % | 4 |" in md
    assert "SaLoRA is ahead on 1 of 2 seed(s)" in md  # 30 vs 25 ahead, 20 vs 22 behind
    assert "#### negative → positive (2 of 2 sources)" in md
    assert "Alternative" not in md  # no task-specific runs given


def test_reproduce_keeps_the_transfers_of_planned_runs_and_base_models(tmp_path):
    """results/ is rebuilt from copies: a planned run's RUN/transfer/<task> and a base model's transfer under
    the grid folder are copied with their place; a transfer of an unplanned run is left out."""
    from salora_cli.reports.runs import load_run
    from salora_cli.grid.reproduce import _copy_provenance, _planned_transfers

    root = tmp_path / "grid"
    planned = root / "instruct_lora_seed0"
    planned.mkdir(parents=True)
    base = _fake_transfer(root / "transfer" / "smollm2-135m" / "yelp", "base", None, 10.0, ["a"] * 4)
    ours = _fake_transfer(planned / "transfer" / "yelp", "lora", 0, 20.0, ["b"] * 4)
    other = _fake_transfer(tmp_path / "elsewhere" / "transfer" / "yelp", "lora", 1, 20.0, ["c"] * 4)
    for record, subject in ((ours, planned), (other, tmp_path / "elsewhere")):
        data = json.loads((record.path / "metrics.json").read_text())
        (record.path / "metrics.json").write_text(json.dumps({**data, "subject_run": str(subject)}))
    records = [load_run(r.path) for r in (base, ours, other)]
    planned_record = type("R", (), {"path": planned})()
    kept = _planned_transfers(records, [planned_record], root)
    assert [r.path for r in kept] == [base.path, ours.path]
    dest = tmp_path / "copies"
    dest.mkdir()
    _copy_provenance(kept, root, dest)
    assert (dest / "transfer" / "smollm2-135m" / "yelp" / "generations.jsonl").is_file()
    assert (dest / "instruct_lora_seed0" / "transfer" / "yelp" / "metrics.json").is_file()
