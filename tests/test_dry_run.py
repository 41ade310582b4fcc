"""`salora reproduce --profile paper --dry-run`: every distinct path of the paper profile, end to end on
tiny random stand-ins of its models (RoBERTa, DeBERTa-v2, GPT-2, LLaMA), each checked as a user would use
the run: salora eval, the folder alone reloads the model, salora export to plain peft, the zero-shot
transfers of the instruction-tuned runs. About a minute on 2 cores."""
from __future__ import annotations

import re

from cli_helpers import run_cli
from salora_cli.grid.dry_run import DRY_STEPS, distinct_paths, features
from salora_cli.grid.reproduce import load_profile, plan
from conftest import ROOT

PAPER = ROOT / "configs" / "reproduce" / "paper.yaml"


def test_the_distinct_paths_cover_every_task_architecture_method_and_budget():
    planned = plan(load_profile(PAPER), ROOT)
    chosen = [p for p, _ in distinct_paths(planned)]
    assert set().union(*(features(p) for p in chosen)) == set().union(*(features(p) for p in planned))
    assert len(chosen) <= 20 < len(planned)  # a handful of runs stands for the paper's 859
    assert all(p.seed == 0 for p in chosen)


def test_the_paper_profile_s_dry_run_passes_every_path(tmp_path, capsys, shared_data, monkeypatch):
    monkeypatch.setenv("SALORA_DATA", str(shared_data))
    code, out, err = run_cli(["reproduce", "--profile", "paper", "--dry-run", "--out", tmp_path], capsys)
    report = (tmp_path / "paper-dry-run" / "dry_run.md").read_text()
    assert code == 0, err + report
    rows = [line for line in report.splitlines() if re.match(r"\| (glue|style|instruct)-", line)]
    assert rows and all(line.endswith("| ok |") for line in rows), report
    covered = " ".join(rows)
    for arch in ("roberta", "deberta-v2", "gpt2", "llama"):
        for method in ("salora", "lora", "adalora"):
            assert f"{arch}/{method}" in covered, (arch, method)
    for task in ("mnli", "qqp", "qnli", "sst2", "cola", "rte", "mrpc", "stsb"):
        assert f"glue-{task}_" in covered, task
    # the methods that learn their rank removed components within the few steps
    for line in rows:
        if re.match(r"\| [a-z-]+_(salora|adalora)_", line):
            assert re.search(r"total rank (\d+) → (\d+)", line), line
    assert f"{DRY_STEPS} steps" in covered and "same outputs" in covered and "peft loads it" in covered
    # each instruction-tuned run and the base model rewrote Yelp and GYAFC sentences; salora eval rescored them
    transfers = re.findall(r"^- `(.+/transfer/(?:yelp|gyafc)|transfer/.+/(?:yelp|gyafc))`: 4 sources rewritten, "
                           r"rescored", report, re.M)
    assert len(transfers) == 8, report
    assert "not covered by --dry-run for huggyllama/llama-7b" in report
