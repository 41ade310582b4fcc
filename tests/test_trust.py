"""Issue 13, trustworthy under faults: Ctrl-C, export targets, eval from elsewhere, demo resume,
an unreachable hub, degenerate classifiers and malformed data rows.

Training here is tiny (QQP fixture, 12 pairs, 2 steps, MiniLM-L6); everything else is faked.
"""
from __future__ import annotations

import io
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import redirect_stderr, redirect_stdout
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from cli_helpers import assert_clean_error, run_cli
from conftest import FIXTURES, ROOT
from salora_cli.cli import cli
from tasks import models
from salora_cli.core.errors import SaloraError

QQP = FIXTURES / "glue" / "QQP"
TINY = ["--task", "qqp", "--method", "lora", "--rank", "2", "--max-steps", "2", "--batch-size", "4",
        "--max-length", "32", "--set", "train.eval_batch_size=16", "--set", "train.log_every=1"]


class _Sink:
    """Stands in for capsys in module-scoped fixtures (output goes to a buffer instead)."""

    def readouterr(self):
        return SimpleNamespace(out="", err="")


def _quiet(args) -> None:
    buf = io.StringIO()
    with redirect_stdout(buf), redirect_stderr(buf):
        code, _, _ = run_cli(args, _Sink())
    assert code == 0, buf.getvalue()


def _glue_copy(root: Path) -> Path:
    """A GLUE root holding the QQP fixture, at root/data."""
    shutil.copytree(QQP, root / "data" / "QQP")
    return root / "data"


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A finished tiny LoRA run, trained from its own folder with a *relative* --data-dir."""
    root = tmp_path_factory.mktemp("trust")
    _glue_copy(root)
    old = os.getcwd()
    os.chdir(root)
    try:
        _quiet(["train", "glue", *TINY, "--data-dir", "data", "--out", root / "run"])
    finally:
        os.chdir(old)
    return root / "run"


def _copy(run: Path, where: Path) -> Path:
    shutil.copytree(run, where / "run")
    return where / "run"


def _no_model_load(monkeypatch):
    """Fail the test if a command gets as far as loading a model."""
    from tasks.classification.glue import GlueTask

    def refuse(*_a, **_k):
        raise AssertionError("the model was loaded before the problem was reported")
    monkeypatch.setattr(GlueTask, "build_model", refuse)


# ------------------------------------------------------------------------------ Ctrl-C
def _interrupt_message(code: int, err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert code == 130, err
    assert len(lines) == 1 and lines[0].startswith("interrupted:"), err
    return lines[0]


def test_ctrl_c_during_training_exits_130_with_the_resume_command(tmp_path, monkeypatch, capsys):
    from salora_cli.run.train import Trainer

    data = _glue_copy(tmp_path)
    out = tmp_path / "run"
    real_run = Trainer.run

    def interrupted(self):
        raise KeyboardInterrupt
    monkeypatch.setattr(Trainer, "run", interrupted)
    code, _, err = run_cli(["train", "glue", *TINY, "--data-dir", data, "--out", out, "--overwrite"], capsys)
    line = _interrupt_message(code, err)
    assert str(out) in line and "--resume" in line and "--overwrite" not in line
    command = line.split("with: ", 1)[1]

    # the named command really continues the run
    monkeypatch.setattr(Trainer, "run", real_run)
    code, _, err = run_cli(shlex.split(command)[1:], capsys)
    assert code == 0, err
    assert json.loads((out / "metrics.json").read_text())["status"] == "finished"


def test_resume_command_names_the_run_and_drops_overwrite():
    argv = ["/venv/bin/salora", "train", "glue", "--task", "sst2", "--set", "train.lr=1e-3", "--overwrite"]
    assert cli.resume_command(argv, Path("runs/x")) == \
        "/venv/bin/salora train glue --task sst2 --set train.lr=1e-3 --out runs/x --resume"
    argv = ["/p/salora_cli/__main__.py", "train", "glue", "--out", "my run", "--resume"]
    assert cli.resume_command(argv, Path("my run")).endswith("-m salora_cli train glue --out 'my run' --resume")


def test_ctrl_c_in_any_command_is_not_success(monkeypatch, capsys, tmp_path):
    # Typer turns Ctrl-C into the return value 130, which main() once dropped (exit 0, no output)
    import salora_cli.reports as reports

    def interrupted(*_a, **_k):
        raise KeyboardInterrupt
    monkeypatch.setattr(reports, "find_runs", interrupted)
    code, _, err = run_cli(["report", "metrics", tmp_path], capsys)
    _interrupt_message(code, err)


def test_sigint_to_a_real_training_process(tmp_path):
    data = _glue_copy(tmp_path)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "salora_cli", "train", "glue", *TINY, "--max-steps", "100000",  # the last wins
           "--data-dir", str(data), "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    # A shell's background job inherits SIGINT ignored, and Python then installs no Ctrl-C handler:
    # give the child the default disposition, as a terminal would, so the test means the same anywhere.
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    log = out / "log.jsonl"
    while proc.poll() is None and not (log.exists() and log.read_text().strip()):
        time.sleep(0.05)  # training has started once a step is logged
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the training process kept running after Ctrl-C")
    line = _interrupt_message(proc.returncode, err)
    assert "--resume" in line and str(out) in line
    assert not (out / "metrics.json").exists()


# ------------------------------------------------------------------------------ export
def _fake_run(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text("task: glue/sst2\nmethod: lora\n")
    (folder / "metrics.json").write_text("{}")
    return folder


@pytest.mark.parametrize("where", ["run-itself", "run-adapter", "other-run"])
def test_export_never_writes_inside_a_run(tmp_path, capsys, monkeypatch, where):
    _no_model_load(monkeypatch)
    run = _fake_run(tmp_path / "run")
    (run / "adapter").mkdir()
    (run / "adapter" / "weights.safetensors").write_text("final weights")
    other = _fake_run(tmp_path / "other")
    out = {"run-itself": run, "run-adapter": run / "adapter", "other-run": other / "sub" / "peft"}[where]
    code, _, err = run_cli(["export", run, out, "--overwrite"], capsys)
    assert_clean_error(code, err, "inside the run folder")
    assert code == 2
    assert (run / "adapter" / "weights.safetensors").read_text() == "final weights"
    assert not (other / "sub").exists()


def test_export_refuses_an_existing_folder(tmp_path, capsys, monkeypatch):
    _no_model_load(monkeypatch)
    run = _fake_run(tmp_path / "run")
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "thesis.tex").write_text("precious")
    for extra in ([], ["--overwrite"]):  # not an export: never replaced, even with --overwrite
        code, _, err = run_cli(["export", run, notes, *extra], capsys)
        assert_clean_error(code, err, "notes", "not an exported adapter")
    assert (notes / "thesis.tex").read_text() == "precious"
    (tmp_path / "file").write_text("x")
    code, _, err = run_cli(["export", run, tmp_path / "file"], capsys)
    assert_clean_error(code, err, "existing file")


def test_export_overwrites_an_earlier_export_only_when_asked(tmp_path, capsys, run):
    out = tmp_path / "peft"
    code, _, err = run_cli(["export", run, out], capsys)
    assert code == 0, err
    (out / "stale.bin").write_text("from an older export")
    code, _, err = run_cli(["export", run, out], capsys)
    assert_clean_error(code, err, "already holds an exported adapter", "--overwrite")
    assert (out / "stale.bin").exists()
    code, _, err = run_cli(["export", run, out, "--overwrite"], capsys)
    assert code == 0, err
    assert (out / "adapter_config.json").is_file() and not (out / "stale.bin").exists()


# ------------------------------------------------------------------------------ eval from elsewhere
def _saved_data_dir(run: Path) -> str:
    return yaml.safe_load((run / "config.yaml").read_text())["data_dir"]


def test_relative_data_dir_is_saved_absolute(run, tmp_path, monkeypatch):
    saved = _saved_data_dir(run)
    assert Path(saved).is_absolute() and Path(saved).resolve() == (run.parent / "data").resolve()
    monkeypatch.chdir(tmp_path)
    cfg = cli._resolve("glue", "qqp", None, [], {"data_dir": Path("rel/glue")})
    assert Path(cfg.data_dir) == tmp_path.resolve() / "rel" / "glue"


def test_eval_from_another_directory(run, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(["eval", run, "--checkpoint", "final"], capsys)
    assert code == 0, err
    assert "accuracy" in out


def test_eval_with_moved_data_fails_fast_then_takes_data_dir(run, tmp_path, monkeypatch, capsys):
    copy = _copy(run, tmp_path)
    moved = tmp_path / "moved"
    shutil.copytree(run.parent / "data", moved)
    saved = yaml.safe_load((copy / "config.yaml").read_text())
    (copy / "config.yaml").write_text(yaml.safe_dump({**saved, "data_dir": str(tmp_path / "gone")}))
    with monkeypatch.context() as m:
        _no_model_load(m)
        code, _, err = run_cli(["eval", copy], capsys)
        assert_clean_error(code, err, str(tmp_path / "gone"), "does not exist", "--data-dir")
    code, _, err = run_cli(["eval", copy, "--data-dir", moved], capsys)
    assert code == 0, err


def test_eval_without_the_checkpoint_fails_before_loading_the_model(run, tmp_path, monkeypatch, capsys):
    copy = _copy(run, tmp_path)
    shutil.rmtree(copy / "best")
    _no_model_load(monkeypatch)
    code, _, err = run_cli(["eval", copy], capsys)
    assert_clean_error(code, err, "no best checkpoint")


# ------------------------------------------------------------------------------ demo resumes
def _demo_run(tmp_path: Path, lr: float = 1e-3):
    from salora_cli.core.config import build_config

    return build_config({"task": "glue/sst2", "data_dir": str(tmp_path), "train": {"lr": lr}})


class _FakeTrain:
    def __init__(self):
        self.calls = []

    def __call__(self, cfg, run, console, resume=False):
        self.calls.append((run, resume, (run / "keep.txt").exists()))


def _interrupted_run(run: Path, cfg, checkpoint: bool = True) -> None:
    from salora_cli.core import run_dir as rd
    from salora_cli.run.train import CHECKPOINT

    rd.prepare(run, cfg, resume=False)
    (run / "keep.txt").write_text("written before the interruption")
    if checkpoint:
        (run / CHECKPOINT).mkdir(parents=True)
        (run / CHECKPOINT / "trainer_state.pt").write_bytes(b"state")


def test_demo_resumes_an_interrupted_run(tmp_path):
    from rich.console import Console

    from salora_cli.grid.demo import run_or_resume

    cfg, train, run = _demo_run(tmp_path), _FakeTrain(), tmp_path / "sst2_salora"
    _interrupted_run(run, cfg)
    run_or_resume(cfg, run, Console(file=io.StringIO()), train)
    assert train.calls == [(run, True, True)]  # resumed, and nothing was wiped first
    assert len((run / "command.txt").read_text().splitlines()) == 2


def test_demo_skips_finished_and_restarts_what_cannot_resume(tmp_path):
    from rich.console import Console

    from salora_cli.grid.demo import run_or_resume

    console, cfg = Console(file=io.StringIO()), _demo_run(tmp_path)
    finished, early, changed = (tmp_path / n for n in ("finished", "early", "changed"))
    _interrupted_run(finished, cfg)
    (finished / "metrics.json").write_text(json.dumps({"status": "finished"}))
    _interrupted_run(early, cfg, checkpoint=False)  # stopped before its first checkpoint
    _interrupted_run(changed, _demo_run(tmp_path, lr=5e-4))  # made by an older demo config
    train = _FakeTrain()
    for run in (finished, early, changed):
        run_or_resume(cfg, run, console, train)
    assert train.calls == [(early, False, False), (changed, False, False)]


# ------------------------------------------------------------------------------ unreachable hub
@pytest.fixture
def hub_down(monkeypatch):
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(models, "hub_reachable", lambda *a, **k: False)


class _FakeAuto:
    def __init__(self, cached: bool):
        self.cached, self.kwargs = cached, None

    def from_pretrained(self, ref, **kwargs):
        self.kwargs = kwargs
        if not self.cached:
            raise OSError("We couldn't connect to 'https://huggingface.co' ... (retried)")
        return "model"


def test_unreachable_hub_model_fails_fast_unless_cached(hub_down):
    auto = _FakeAuto(cached=False)
    with pytest.raises(SaloraError, match="hub .* is unreachable .*'someone/model'.*--model"):
        models.load_pretrained(auto, "someone/model", num_labels=2)
    assert auto.kwargs == {"num_labels": 2, "local_files_only": True}  # no download, no retries
    assert models.load_pretrained(_FakeAuto(cached=True), "someone/model") == "model"


def test_offline_mode_never_probes(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def probe(*_a, **_k):
        raise AssertionError("probed the hub in offline mode")
    monkeypatch.setattr(models, "hub_reachable", probe)
    auto = _FakeAuto(cached=True)
    models.load_pretrained(auto, "someone/model")
    assert auto.kwargs == {}


def test_unreachable_hub_dataset_fails_before_load_dataset(hub_down, monkeypatch):
    import datasets

    from tasks.classification.glue import get_glue_task

    monkeypatch.delenv("SALORA_GLUE_DIR", raising=False)

    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: calls.append(a))  # would retry for a minute
    with pytest.raises(SaloraError, match="hub .* is unreachable.*--data-dir"):
        get_glue_task("sst2").load_splits(None)
    assert calls == []


def test_unreachable_hub_through_the_cli(hub_down, capsys, tmp_path):
    code, _, err = run_cli(["train", "glue", *TINY, "--data-dir", QQP.parent, "--out", tmp_path / "run",
                            "--model", "nobody-xyz/no-such-model"], capsys)
    assert_clean_error(code, err, "unreachable", "nobody-xyz/no-such-model", "--model")
    assert code == 2


class _NotFound(BaseHTTPRequestHandler):
    def do_HEAD(self):
        self.send_response(404)
        self.end_headers()

    def log_message(self, *_a):
        pass


def test_probe_counts_any_answer_and_no_answer(monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    server = HTTPServer(("127.0.0.1", 0), _NotFound)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
        models.hub_reachable.cache_clear()
        assert models.hub_reachable(timeout=5)  # a 404 is an answer
    finally:
        server.shutdown()
        server.server_close()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")  # nothing listens there now
    models.hub_reachable.cache_clear()
    try:
        assert not models.hub_reachable(timeout=5)
    finally:
        models.hub_reachable.cache_clear()


# ------------------------------------------------------------------------------ degenerate classifiers
def test_single_class_predictions_are_flagged():
    from tasks.base import degenerate_flag
    from tasks.classification.glue import get_glue_task

    mrpc = get_glue_task("mrpc")
    examples = [{"text_a": "a", "text_b": "b", "label": y} for y in (1, 1, 0, 1)]
    mrpc.score(examples, [1, 1, 1, 1])
    assert degenerate_flag(mrpc) == {"degenerate": True, "predicted_class": "1"}
    mrpc.score(examples, [1, 0, 1, 1])
    assert degenerate_flag(mrpc) == {}
    stsb = get_glue_task("stsb")
    stsb.score([{"text_a": "a", "text_b": "b", "label": y} for y in (1.0, 2.0)], [3.0, 3.0])
    assert degenerate_flag(stsb) == {}  # regression has no classes


def _always_one(self, model, tokenizer, examples, **_k):
    return [1] * len(examples)


def test_degenerate_run_is_flagged_in_metrics_and_console(tmp_path, monkeypatch, capsys):
    from tasks.classification.glue import GlueTask

    monkeypatch.setattr(GlueTask, "predict", _always_one)
    out = tmp_path / "run"
    code, stdout, err = run_cli(["train", "glue", *TINY, "--data-dir", QQP.parent, "--out", out], capsys)
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    for entry in (metrics["best"], metrics["final"], *metrics["evals"]):
        assert entry["degenerate"] is True and entry["predicted_class"] == "1"
    assert "warning" in stdout and "degenerate" in stdout


def test_degenerate_eval_warns(run, tmp_path, monkeypatch, capsys):
    from tasks.classification.glue import GlueTask

    copy = _copy(run, tmp_path)
    monkeypatch.setattr(GlueTask, "predict", _always_one)
    code, out, err = run_cli(["eval", copy], capsys)
    assert code == 0, err
    assert "warning" in out and "degenerate" in out
    assert json.loads((copy / "eval_dev_best.json").read_text())["degenerate"] is True


def _metrics_run(folder: Path, method: str, seed: int, acc: float, degenerate: bool) -> None:
    folder.mkdir(parents=True)
    flag = {"degenerate": True, "predicted_class": "1"} if degenerate else {}
    block = {"step": 10, "metrics": {"accuracy": acc, "f1": 81.22}, **flag}
    (folder / "metrics.json").write_text(json.dumps({
        "task": "glue/mrpc", "method": method, "seed": seed, "model": "m", "main_metric": "accuracy",
        "best": block, "final": block, "trainable_params": {"initial": 10, "final": 8},
        "train_time_s": 1.0, "steps": 10, "status": "finished"}))


def test_degenerate_runs_are_marked_in_the_tables(tmp_path):
    from salora_cli.reports import build_metrics_report, find_runs

    _metrics_run(tmp_path / "lora0", "lora", 0, 68.38, degenerate=True)
    _metrics_run(tmp_path / "salora0", "salora", 0, 80.0, degenerate=False)
    report = build_metrics_report(find_runs([tmp_path]))
    md = report.to_markdown()
    lora_rows = [ln for ln in md.splitlines() if ln.startswith("| glue/mrpc | lora")]
    salora_rows = [ln for ln in md.splitlines() if ln.startswith("| glue/mrpc | salora")]
    assert lora_rows and "68.38†" in lora_rows[0]
    assert salora_rows and "†" not in salora_rows[0]
    assert "† at least one seed" in md and "predicts class '1'" in md
    summary = [ln for ln in md.splitlines() if ln.startswith("| lora |")]
    assert summary and "68.38†" in summary[0]
    rows = {r.split(",")[2]: r for r in report.csv.splitlines()[1:]}
    assert rows["lora"].endswith(",0") and rows["salora"].endswith(",")


# ------------------------------------------------------------------------------ malformed data rows
def _glue(tmp_path: Path, name: str, text: bytes) -> Path:
    folder = tmp_path / "glue" / name
    folder.mkdir(parents=True, exist_ok=True)
    good = {"SST-2": b"sentence\tlabel\na fine film\t1\n", "MRPC": b"Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
            b"1\t1\t2\tone\ttwo\n"}[name]
    (folder / "train.tsv").write_bytes(good)
    (folder / "dev.tsv").write_bytes(text)
    return tmp_path / "glue"


@pytest.mark.parametrize("name,text,fragments", [
    ("SST-2", b"sentence\tlabel\ngood\t1\nbad \xff\xfe bytes\t0\n", ("dev.tsv, line 3", "not UTF-8")),
    ("SST-2", b"sentence\tlabel\ngood\t1\n  \t0\n", ("dev.tsv, line 3", "empty sentence")),
    ("SST-2", b"sentence\tlabel\ngood\t1\nbad\t0\textra\n", ("dev.tsv, line 3", "expected 2", "found 3")),
    ("SST-2", b"sentence\tlabel\ngood\t1\nbad\tnegative\n", ("dev.tsv, line 3", "label 'negative'")),
    ("MRPC", b"Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\tone\t\n", ("dev.tsv, line 2",
                                                                              "empty second sentence")),
], ids=["non-utf8", "empty-sentence", "field-count", "label", "empty-second-sentence"])
def test_malformed_glue_row_names_file_and_line(tmp_path, name, text, fragments):
    from tasks.classification.glue import get_glue_task

    root = _glue(tmp_path, name, text)
    with pytest.raises(SaloraError) as info:
        get_glue_task({"SST-2": "sst2", "MRPC": "mrpc"}[name]).load_splits(root)
    message = str(info.value)
    assert "\n" not in message and str(root / name / "dev.tsv") in message
    for fragment in fragments:
        assert fragment in message, message


@pytest.mark.parametrize("file,text,fragments", [
    ("sentiment.dev.0", b"fine food .\n\nbad service .\n", ("sentiment.dev.0, line 2", "empty sentence")),
    ("sentiment.dev.1", b"great \xc3\x28 place .\n", ("sentiment.dev.1, line 1", "not UTF-8")),
    ("sentiment.dev.0", b"ok .\nbad\tfood .\n", ("sentiment.dev.0, line 2", "tab-separated")),
    ("reference.0", b"the food was cold .\t\nstaff was rude .\tstaff was kind .\n",
     ("reference.0 line 1", "source<TAB>rewrite")),
], ids=["empty-line", "non-utf8", "tab", "empty-rewrite"])
def test_malformed_yelp_line_names_file_and_line(tmp_path, file, text, fragments):
    from tasks.style.style import YelpStyleTask

    folder = tmp_path / "yelp"
    shutil.copytree(FIXTURES / "yelp_tiny", folder)
    if file.startswith("reference"):  # keep the source column aligned with sentiment.test.0
        sources = (folder / "sentiment.test.0").read_text().splitlines()
        text = text.replace(b"the food was cold .", sources[0].encode()).replace(
            b"staff was rude .", sources[1].encode())
    (folder / file).write_bytes(text)
    with pytest.raises(SaloraError) as info:
        YelpStyleTask().load_splits(str(folder))
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_yelp_trailing_empty_lines_are_fine(tmp_path):
    from tasks.style.style_data import read_yelp_labelled

    folder = tmp_path / "yelp"
    shutil.copytree(FIXTURES / "yelp_tiny", folder)
    text = (folder / "sentiment.dev.0").read_text()
    (folder / "sentiment.dev.0").write_text(text + "\n\n")
    assert len(read_yelp_labelled(folder, "sentiment.dev")) == len(
        read_yelp_labelled(FIXTURES / "yelp_tiny", "sentiment.dev"))
