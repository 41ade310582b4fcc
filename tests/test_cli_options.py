"""The CLI's flags come from the config dataclasses; --help, --version, metavars, the `wrote:` lines,
and the rank report's wording for plain LoRA. Nothing here trains: `_train` is replaced by a stub
that only resolves the config."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import types
import typing

import pytest

from cli_helpers import assert_clean_error, run_cli
from conftest import ROOT
from salora.config import AdapterConfig
from salora_cli.cli import cli
from salora_cli.cli.cli_options import config_flags
from salora_cli.core.config import RunConfig, TrainConfig
from test_reports import bert_ranks, write_run

SCALARS = (bool, int, float, str)


def _scalar_fields(cls) -> list[str]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        union = typing.get_origin(tp) in (typing.Union, types.UnionType)
        args = [a for a in typing.get_args(tp) if a is not type(None)] if union else [tp]
        if len(args) == 1 and args[0] in SCALARS:
            out.append(f.name)
    return out


def _click_options(*path: str) -> dict:
    """{option name: click parameter} of a command, e.g. _click_options("train", "glue")."""
    import typer

    command = typer.main.get_command(cli.app)
    for name in path:
        command = command.commands[name]
    return {opt: p for p in command.params for opt in (*p.opts, *p.secondary_opts)}


@pytest.fixture
def resolved(monkeypatch):
    """Run `salora train ...` up to the built config (no data, no model): returns it."""
    seen = {}

    def fake_train(family, task, known, config, sets, out, resume, overwrite, overrides):
        seen["overrides"] = overrides
        seen["cfg"] = cli._resolve(family, task, config, sets, overrides)

    monkeypatch.setattr(cli, "_train", fake_train)
    monkeypatch.delenv("SALORA_DATA", raising=False)

    def run(args: list, capsys) -> RunConfig:
        code, _, err = run_cli(["train", *args], capsys)
        assert code == 0, err
        return seen["cfg"]

    run.seen = seen
    return run


# ------------------------------------------------------------------ one flag per field
@pytest.mark.parametrize("command", ["glue", "style"])
def test_every_scalar_field_is_a_flag_with_help(command):
    options = _click_options("train", command)
    for prefix, cls in (("train", TrainConfig), ("adapter", AdapterConfig)):
        for name in _scalar_fields(cls):
            if (prefix, name) == ("adapter", "method"):  # set from --method
                continue
            flag = "--" + name.replace("_", "-")
            assert flag in options, flag
            assert options[flag].help and options[flag].help.strip(), flag
    for flag in ("--method", "--model", "--data-dir", "--seed", "--out", "--rank", "--budget", "--alpha", "--lr",
                 "--epochs", "--max-steps", "--batch-size", "--max-length", "--eval-every", "--max-train-samples",
                 "--max-eval-samples", "--set", "--resume", "--overwrite", "--config", "--task",
                 "--group-by-length", "--no-group-by-length", "--report-to"):
        assert flag in options, flag
    style_only = {"--num-beams", "--direction", "--style-scoring"}
    assert style_only <= set(options) if command == "style" else not style_only & set(options)


def test_every_config_field_has_help_metadata():
    for cls in (RunConfig, TrainConfig, AdapterConfig):
        for f in dataclasses.fields(cls):
            assert f.metadata.get("help", "").strip(), f"{cls.__name__}.{f.name}"
    assert not [f.key for f in config_flags() if not f.help.strip()]


def test_defaults_are_the_dataclass_defaults():
    flags = {f.key: f for f in config_flags()}
    assert flags["train.warmup_fraction"].default == TrainConfig().warmup_fraction
    assert flags["adapter.r_init"].decls == ("--rank", "--r-init")
    assert flags["train.group_by_length"].decls == ("--group-by-length/--no-group-by-length",)
    assert "adapter.method" not in flags and "task" not in flags


# ------------------------------------------------------------------ flags reach the config
def test_generated_flags_reach_the_config(resolved, capsys):
    cfg = resolved(["glue", "--task", "sst2", "--warmup-fraction", "0.1", "--orth-reg", "0.05",
                    "--group-by-length", "--report-to", "tensorboard", "--budget-push", "uniform",
                    "--gate-low", "-0.2", "--r-init", "6", "--budget", "3", "--eval-batch-size", "7"], capsys)
    assert cfg.train.warmup_fraction == 0.1 and cfg.adapter.orth_reg == 0.05
    assert cfg.train.group_by_length is True and cfg.train.report_to == "tensorboard"
    assert cfg.adapter.budget_push == "uniform" and cfg.adapter.gate_low == -0.2
    assert (cfg.adapter.r_init, cfg.adapter.budget, cfg.train.eval_batch_size) == (6, 3.0, 7)
    # only the given flags make up the override layer
    assert resolved.seen["overrides"] == {
        "train": {"warmup_fraction": 0.1, "group_by_length": True, "report_to": "tensorboard", "eval_batch_size": 7},
        "adapter": {"orth_reg": 0.05, "budget_push": "uniform", "gate_low": -0.2, "r_init": 6, "budget": 3.0}}


def test_existing_flags_keep_working(resolved, capsys, tmp_path):
    cfg = resolved(["glue", "--task", "mrpc", "--method", "lora", "--model", "tiny", "--data-dir", tmp_path,
                    "--seed", "3", "--rank", "4", "--alpha", "8", "--lr", "0.002", "--epochs", "2",
                    "--max-steps", "9", "--batch-size", "5", "--max-length", "40", "--eval-every", "3",
                    "--max-train-samples", "50", "--max-eval-samples", "20", "--set", "train.log_every=2"], capsys)
    assert (cfg.method, cfg.model, cfg.data_dir) == ("lora", "tiny", str(tmp_path))
    t, a = cfg.train, cfg.adapter
    assert (t.seed, t.lr, t.epochs, t.max_steps, t.batch_size, t.max_length, t.eval_every) == (3, 2e-3, 2, 9, 5, 40, 3)
    assert (t.max_train_samples, t.max_eval_samples, t.log_every, a.r_init, a.alpha) == (50, 20, 2, 4, 8.0)
    cfg = resolved(["style", "--task", "gyafc", "--num-beams", "4", "--direction", "formal-to-informal",
                    "--no-style-scoring"], capsys)
    assert cfg.task_options["num_beams"] == 4 and cfg.task_options["direction"] == "formal-to-informal"
    assert cfg.style_scoring is False


def test_flags_not_given_keep_the_yaml(resolved, capsys, tmp_path):
    # configs/glue/sst2.yaml sets lr 1e-3 and max_length 64 (dataclass defaults: 5e-4 and 128)
    cfg = resolved(["glue", "--task", "sst2"], capsys)
    assert cfg.train.lr == 1e-3 and cfg.train.max_length == 64 and cfg.adapter.budget == 8
    assert resolved.seen["overrides"] == {}
    config = tmp_path / "c.yaml"
    config.write_text("task: glue/sst2\ntrain: {warmup_fraction: 0.2, group_by_length: true}\n"
                      "adapter: {orth_reg: 0.3, budget: 4}\n")
    cfg = resolved(["glue", "--task", "sst2", "--config", config], capsys)
    assert (cfg.train.warmup_fraction, cfg.train.group_by_length, cfg.adapter.orth_reg) == (0.2, True, 0.3)
    cfg = resolved(["glue", "--task", "sst2", "--config", config, "--orth-reg", "0.01", "--no-group-by-length"],
                   capsys)
    assert (cfg.train.warmup_fraction, cfg.train.group_by_length, cfg.adapter.orth_reg) == (0.2, False, 0.01)
    # a flag given with the dataclass default still wins over the YAML
    cfg = resolved(["glue", "--task", "sst2", "--config", config, "--warmup-fraction", "0.06"], capsys)
    assert cfg.train.warmup_fraction == 0.06
    # --set wins over a flag
    cfg = resolved(["glue", "--task", "sst2", "--orth-reg", "0.01", "--set", "adapter.orth_reg=0.02"], capsys)
    assert cfg.adapter.orth_reg == 0.02


def test_bad_generated_flag_values(resolved, capsys):
    code, _, err = run_cli(["train", "glue", "--task", "sst2", "--warmup-fraction", "abc"], capsys)
    assert_clean_error(code, err, "--warmup-fraction")
    code, _, err = run_cli(["train", "glue", "--task", "sst2", "--warmup-fraction", "1.5"], capsys)
    assert_clean_error(code, err, "warmup_fraction", "1.5")
    code, _, err = run_cli(["train", "glue", "--task", "sst2", "--report-to", "nope"], capsys)
    assert_clean_error(code, err, "report_to", "nope")


# ------------------------------------------------------------------ --version, --help
def test_version(capsys):
    from importlib import metadata

    code, out, _ = run_cli(["--version"], capsys)
    assert code == 0 and out.strip() == f"salora {metadata.version('salora')}"


HELP_SCRIPT = """
import sys
from salora_cli.cli import cli
for args in (["--help"], ["train", "glue", "--help"], ["train", "style", "--help"], ["eval", "--help"]):
    print("=== " + " ".join(args))
    sys.argv = ["salora", *args]
    try:
        cli.main()  # as the `salora` script runs it
    except SystemExit as exc:
        assert not exc.code, exc.code
heavy = sorted(m for m in ("torch", "transformers") if m in sys.modules)
print("HEAVY=" + ",".join(heavy))
"""


@pytest.fixture(scope="module")
def help_text() -> dict[str, str]:
    env = {**os.environ, "COLUMNS": "220", "TERM": "dumb", "NO_COLOR": "1"}
    env.pop("FORCE_COLOR", None)
    proc = subprocess.run([sys.executable, "-c", HELP_SCRIPT], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    sections = {}
    for block in proc.stdout.split("=== ")[1:]:
        name, _, text = block.partition("\n")
        sections[name] = text
    sections["heavy"] = proc.stdout.rsplit("HEAVY=", 1)[1].strip()
    return sections


def test_help_imports_neither_torch_nor_transformers(help_text):
    assert help_text["heavy"] == ""


def _entry(help_text: str, flag: str) -> str:
    """The rows of one option in a --help panel: from its flag to the next option."""
    lines = help_text.splitlines()
    def opens(line: str) -> str:
        return line.lstrip("│|* ")
    start = next(i for i, ln in enumerate(lines) if opens(ln).startswith((flag + " ", flag + ",")))
    end = next((i for i in range(start + 1, len(lines)) if opens(lines[i]).startswith("--")), len(lines))
    return " ".join(lines[start:end])


def test_help_shows_defaults(help_text):
    train = help_text["train glue --help"]
    for flag, default in (("--warmup-fraction", "0.06"), ("--orth-reg", "0.1"), ("--lr", "0.0005"),
                          ("--rank", "12"), ("--group-by-length", "no-group-by-length"),
                          ("--budget-push", "ranked"), ("--mixed-precision", "no")):
        assert f"[default: {default}]" in _entry(train, flag), flag
    assert "--warmup-fraction" in train and "Fraction of the optimizer steps" in train
    assert "[default: style-scoring]" in help_text["train style --help"]
    assert "[default: best]" in help_text["eval --help"]
    assert "--version" in help_text["--help"]


def test_metavars(help_text):
    train, ev = help_text["train glue --help"], help_text["eval --help"]
    assert "RUN_DIR" in ev and "FILE" in train and "DIR" in train and "KEY=VALUE" in train
    for command in (["export"], ["report", "ranks"], ["report", "metrics"]):
        params = {p.name: p for p in _click_options(*command).values()}
        assert params["run_dir" if command != ["report", "metrics"] else "paths"].metavar == "RUN_DIR", command
    assert {p.name: p for p in _click_options("export").values()}["out"].metavar == "OUT"
    assert _click_options("train", "glue")["--config"].metavar == "FILE"
    assert _click_options("train", "glue")["--data-dir"].metavar == "DIR"


# ------------------------------------------------------------------ wrote: ..., rank wording
def _lora_run(folder):
    ranks = bert_ranks([[8] * 6, [8] * 6], r_init=8, method="lora")
    ranks.update(budget_avg=8, budget_total=96, trajectory=[{"step": 0, "total_rank": 96},
                                                            {"step": 10, "total_rank": 96}])
    return write_run(folder, task="glue/sst2", method="lora", seed=0, best={"accuracy": 90.0}, ranks=ranks)


def test_report_ranks_lora_speaks_of_a_fixed_rank(tmp_path, capsys):
    run = _lora_run(tmp_path / "lora")
    code, out, err = run_cli(["report", "ranks", run], capsys)
    assert code == 0, err
    md = (run / "ranks.md").read_text()
    for text in (out, md):
        assert "fixed rank r = 8" in text
        assert "budget" not in text.lower() and "learned" not in text.lower()
    last = out.strip().splitlines()[-1]
    assert last.startswith("wrote: ") and "ranks.md" in out and "ranks_heatmap.png" in out


def test_report_ranks_salora_keeps_learned_and_budget(tmp_path, capsys):
    run = write_run(tmp_path / "salora", task="glue/sst2", method="salora", seed=0, best={"accuracy": 90.0},
                    ranks=bert_ranks([[8, 4, 6, 9, 12, 3]], budget_total=42))
    code, out, err = run_cli(["report", "ranks", run], capsys)
    assert code == 0, err
    assert "Learned ranks" in out and "budget 42" in out and "fixed rank" not in out


def test_report_metrics_names_its_files(tmp_path, capsys):
    _lora_run(tmp_path / "runs" / "lora")
    code, out, err = run_cli(["report", "metrics", tmp_path / "runs"], capsys)
    assert code == 0, err
    assert out.strip().splitlines()[-1].startswith("wrote nothing")
    code, out, err = run_cli(["report", "metrics", tmp_path / "runs", "--out", tmp_path / "tables"], capsys)
    assert code == 0, err
    assert out.strip().splitlines()[-1] == \
        f"wrote: {tmp_path / 'tables' / 'metrics.md'}, {tmp_path / 'tables' / 'metrics.csv'}"


def test_run_files_lists_results_first(tmp_path):
    run = tmp_path / "run"
    for name in ("config.yaml", "command.txt", "log.jsonl", "ranks.json", "metrics.json"):
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text("{}")
    (run / "adapter").mkdir()
    assert [p.name for p in cli._run_files(run)] == ["metrics.json", "ranks.json", "command.txt", "config.yaml",
                                                     "log.jsonl", "adapter"]


def test_finished_resume_writes_nothing(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({"status": "finished"}))
    monkeypatch.delenv("SALORA_DATA", raising=False)
    from salora_cli.core import run_dir as rd

    monkeypatch.setattr(rd, "check", lambda *a, **k: None)
    code, out, err = run_cli(["train", "glue", "--task", "sst2", "--out", run, "--resume"], capsys)
    assert code == 0, err
    assert out.strip().splitlines()[-1] == "wrote nothing"


def test_grid_commands_name_what_changed(tmp_path):
    import time

    old = time.time() - 3600
    out, results = tmp_path / "runs", tmp_path / "results"
    for folder in ("cpu/glue-sst2_lora_seed0", "cpu/glue-sst2_salora_seed0", "cpu/glue-rte_lora_seed0"):
        (out / folder).mkdir(parents=True)
    results.mkdir()
    (results / "glue.md").write_text("old")
    for path in (out / "cpu" / "glue-sst2_lora_seed0", out / "cpu" / "glue-rte_lora_seed0", results / "glue.md"):
        os.utime(path, (old, old))
    started = time.time()
    (results / "README.md").write_text("new")
    assert cli._changed_since(results, started) == [results / "README.md"]
    assert cli._changed_runs(out, started) == [f"{out / 'cpu'}/ (1 run folder)"]
    assert cli._changed_since(tmp_path / "missing", started) == []
