"""Instruction tuning without a training run: the Alpaca template, the record rules (errors, skips,
placeholders), the response-only loss mask, the cutoff rule, the splits and the dev loss."""
from __future__ import annotations

import json
import math

import pytest
import torch

from salora_cli.core.errors import SaloraError
from tasks.instruct.alpaca_template import alpaca_prompt
from tasks.instruct.instruct import InstructTask, record_prompt, response_features
from tasks.instruct.instruct_data import find_instruct_file, is_placeholder, read_instruct_file
from tasks.prompts import IGNORE_INDEX, prompt_ids
from tiny_instruct import FIXTURE, make_model, make_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return make_tokenizer()


# ---------------------------------------------------------------------------------- template
def test_template_with_input():
    assert alpaca_prompt("Sort the list.", "3, 1, 2") == (
        "Below is an instruction that describes a task, paired with an input that provides further context. "
        "Write a response that appropriately completes the request.\n\n"
        "### Instruction:\nSort the list.\n\n### Input:\n3, 1, 2\n\n### Response:\n")


@pytest.mark.parametrize("empty", [None, "", "  \n"])
def test_template_without_input(empty):
    assert alpaca_prompt("Name a colour.", empty) == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the "
        "request.\n\n### Instruction:\nName a colour.\n\n### Response:\n")


# ---------------------------------------------------------------------------------- records
def write(tmp_path, name: str, content: str | bytes):
    path = tmp_path / name
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    return path


def one_line_error(call) -> str:
    with pytest.raises(SaloraError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    return message


def test_missing_field_names_file_and_record(tmp_path):
    path = write(tmp_path, "d.json", json.dumps([{"instruction": "a", "input": "", "output": "b"},
                                                 {"instruction": "a", "input": ""}]))
    message = one_line_error(lambda: read_instruct_file(path))
    assert message == f"{path}, record 1: missing field 'output'"


def test_non_string_field(tmp_path):
    path = write(tmp_path, "d.jsonl", '{"instruction": "a", "output": "b"}\n{"instruction": 3, "output": "b"}\n')
    assert one_line_error(lambda: read_instruct_file(path)) == \
        f"{path}, line 2: field 'instruction' must be a string, got int"


def test_not_utf8_names_the_line(tmp_path):
    good = json.dumps({"instruction": "a", "input": "", "output": "b"})
    path = write(tmp_path, "d.jsonl", (good + "\n" + good + "\n").encode() + b'{"instruction": "caf\xe9"}\n')
    message = one_line_error(lambda: read_instruct_file(path))
    assert message.startswith(f"{path}, line 3: not UTF-8 text")


def test_malformed_jsonl_line(tmp_path):
    path = write(tmp_path, "d.jsonl", '{"instruction": "a", "output": "b"}\n{"instruction": "a", "output": \n')
    message = one_line_error(lambda: read_instruct_file(path))
    assert message.startswith(f"{path}, line 2: not valid JSON")


def test_malformed_json_list(tmp_path):
    path = write(tmp_path, "d.json", '[\n  {"instruction": "a", "output": "b"}\n  {"instruction": "c"}\n]')
    assert one_line_error(lambda: read_instruct_file(path)).startswith(f"{path}, line 3, column 3: not valid JSON")


def test_empty_outputs_skipped_and_placeholders_counted():
    data = read_instruct_file(FIXTURE)
    assert data.read == 22 and len(data.records) == 21
    assert data.skipped_empty_output == 1 and data.placeholder_inputs == 2
    assert all(r["output"].strip() for r in data.records)
    fly = next(r for r in data.records if r["instruction"] == "Name an animal that can fly.")
    assert fly["input"] is None and record_prompt(fly) == alpaca_prompt("Name an animal that can fly.")


@pytest.mark.parametrize("text,placeholder", [
    ("<noinput>", True), ("No input.", True), ("  NoInput ", True), ('"<noinput>"', True), ("(no input)", True),
    ("[3, 4, <noinput>]", False), ("no inputs were given", False), ("John", False)])
def test_placeholder_rule(text, placeholder):
    assert is_placeholder(text) is placeholder


def test_data_location(tmp_path, monkeypatch):
    folder = tmp_path / "root" / "instruct"
    folder.mkdir(parents=True)
    (folder / "alpaca_data.json").write_text(FIXTURE.read_text())
    assert find_instruct_file(tmp_path / "root") == folder / "alpaca_data.json"  # a data root
    assert find_instruct_file(folder) == folder / "alpaca_data.json"
    monkeypatch.setenv("SALORA_DATA", str(tmp_path / "root"))
    assert find_instruct_file(None) == folder / "alpaca_data.json"
    assert "does not exist" in one_line_error(lambda: find_instruct_file(tmp_path / "nowhere.json"))


# ---------------------------------------------------------------------------------- features
def test_loss_mask_covers_the_response_and_eos_only(tokenizer):
    task = InstructTask()
    examples = read_instruct_file(FIXTURE).records[:3]
    batch = task.collate(tokenizer, examples, max_length=128)
    for row, ex in enumerate(examples):
        n_prompt = len(prompt_ids(tokenizer, record_prompt(ex)))
        ids, labels, mask = batch["input_ids"][row], batch["labels"][row], batch["attention_mask"][row]
        length = int(mask.sum())
        assert ids[0] == tokenizer.bos_token_id and (labels[:n_prompt] == IGNORE_INDEX).all()
        assert torch.equal(labels[n_prompt:length], ids[n_prompt:length])  # the response, then EOS
        assert labels[length - 1] == tokenizer.eos_token_id
        assert (labels[length:] == IGNORE_INDEX).all() and (mask[length:] == 0).all()  # right padding
        response = tokenizer.decode(ids[n_prompt:length - 1])
        assert response.split() == tokenizer.decode(tokenizer(ex["output"], add_special_tokens=False)["input_ids"]).split()


def test_cutoff_keeps_the_prompt_and_cuts_the_response(tokenizer):
    prompt = alpaca_prompt("Count the words in the sentence.", "the dog runs")
    n_prompt = len(prompt_ids(tokenizer, prompt))
    whole = response_features(tokenizer, prompt, "There are three words.", 10_000)
    assert whole["labels"][-1] == tokenizer.eos_token_id
    cut = response_features(tokenizer, prompt, "There are three words.", n_prompt + 2)
    assert cut["input_ids"] == whole["input_ids"][:n_prompt + 2]  # prompt whole, two response tokens, no EOS
    assert cut["labels"][n_prompt:] == whole["labels"][n_prompt:n_prompt + 2]
    assert response_features(tokenizer, prompt, "There are three words.", n_prompt) is None  # no room: dropped


def test_fit_to_length_drops_and_counts(tokenizer):
    task = InstructTask()
    examples = read_instruct_file(FIXTURE).records
    lengths = [len(prompt_ids(tokenizer, record_prompt(ex))) for ex in examples]
    cutoff = sorted(lengths)[len(lengths) // 2] + 1  # about half the prompts leave room
    kept = task.fit_to_length(tokenizer, examples, cutoff, "train")
    assert kept == [ex for ex, n in zip(examples, lengths) if n < cutoff]
    counts = task.length_counts["train"]
    assert counts["dropped_long_prompt"] == len(examples) - len(kept) > 0
    assert counts["truncated_response"] > 0 and counts["examples"] == len(kept)


# ---------------------------------------------------------------------------------- splits, dev loss
def test_dev_slice_is_fixed_and_held_out():
    splits = [InstructTask(dev_size=4).load_splits(str(FIXTURE), seed=s, max_train_samples=m)
              for s, m in ((0, None), (1, None), (1, 5))]
    dev_ids = [[r["index"] for r in s["dev"]] for s in splits]
    assert len(dev_ids[0]) == 4 and dev_ids[0] == dev_ids[1] == dev_ids[2]  # the same for every seed
    assert len(splits[0]["train"]) == 17 and not {r["index"] for r in splits[0]["train"]} & set(dev_ids[0])
    assert len(splits[2]["train"]) == 5
    assert "dev_size is 30" in one_line_error(lambda: InstructTask(dev_size=30).load_splits(str(FIXTURE)))
    assert "no option 'dev_sise'" in one_line_error(lambda: InstructTask(dev_sise=3))


def test_dev_loss_is_the_token_mean_over_the_slice(tokenizer):
    task = InstructTask()
    model = make_model()
    examples = read_instruct_file(FIXTURE).records[:5]
    with torch.no_grad():
        metrics = task.evaluate(model, tokenizer, examples, batch_size=2, max_length=128, device=torch.device("cpu"))
        reference = model(**task.collate(tokenizer, examples, 128)).loss.item()  # one batch: HF's token mean
    assert metrics["loss"] == pytest.approx(reference, rel=1e-5)
    assert metrics["neg_loss"] == -metrics["loss"] and metrics["perplexity"] == pytest.approx(math.exp(reference))
