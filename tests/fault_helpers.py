"""Helpers for the fault tests: a tiny model folder and SST-2 subset, and a fast launcher of real
`salora` processes that can be SIGKILLed.

The launcher forks each process from a forkserver that has imported torch, transformers and
salora_cli once, so a run starts in about a second instead of six; every process still runs the
real CLI (`cli.main()` on its own argv) in its own address space, and dies for real.
"""
from __future__ import annotations

import importlib
import multiprocessing as mp
import os
import socket
import sys
import time
from pathlib import Path

PRELOAD = ["torch", "transformers", "salora_cli.cli.cli", "salora_cli.run.train", "tasks.classification.glue",
           "tasks.style.style", "tasks.style.style_classifier", "transformers.models.bert.modeling_bert",
           "transformers.models.auto.modeling_auto"]


def make_tiny_model(folder: Path) -> Path:
    """tiny_models' 2-layer BERT with MiniLM's tokenizer, saved as a model folder `--model` takes."""
    from transformers import AutoTokenizer

    from tasks.models import resolve_model
    from tiny_models import tiny

    tokenizer = AutoTokenizer.from_pretrained(resolve_model("minilm-l6"))
    model = tiny("bert")
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def make_small_glue(shared_glue: Path, folder: Path, train: int = 160, dev: int = 48) -> Path:
    """The first rows of SST-2 in the GLUE layout (loading all 67k rows costs more than a run)."""
    (folder / "SST-2").mkdir(parents=True)
    for name, rows in (("train.tsv", train), ("dev.tsv", dev)):
        lines = (shared_glue / "SST-2" / name).read_text(encoding="utf-8").splitlines(keepends=True)
        (folder / "SST-2" / name).write_text("".join(lines[:rows + 1]), encoding="utf-8")
    return folder


def _child(argv: list[str], env: dict, log: str) -> None:
    """One `salora` process: its own environment, output to `log`, the exit code of the CLI."""
    import torch

    os.environ.update(env)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    torch.set_num_threads(1)  # every run the same, so results compare bit for bit
    from salora_cli.cli import cli
    from salora_cli.core import faults

    importlib.reload(faults)  # SALORA_FAULT is read at import: this process's value
    sys.argv = ["salora", *argv]
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class Launcher:
    def __init__(self):
        self.ctx = mp.get_context("forkserver")
        self.ctx.set_forkserver_preload(PRELOAD)

    def run(self, argv: list[str], log: Path, fault: str | None = None, processes: int = 1,
            timeout: float = 180) -> list[int]:
        """Run the CLI in `processes` processes (2: a gloo process group, as torchrun starts it) and
        return their exit codes (-9: SIGKILLed). When one fails the others are killed, as torchrun
        does, so a resume restarts them all."""
        env = {"SALORA_FAULT": fault or "", "OMP_NUM_THREADS": "1"}
        if processes > 1:
            env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), WORLD_SIZE=str(processes),
                       LOCAL_WORLD_SIZE=str(processes))
        ranks = [{"RANK": str(r), "LOCAL_RANK": str(r)} if processes > 1 else {} for r in range(processes)]
        procs = [self.ctx.Process(target=_child, args=(list(map(str, argv)), {**env, **rank}, str(log)))
                 for rank in ranks]
        for p in procs:
            p.start()
        deadline = time.time() + timeout
        while any(p.is_alive() for p in procs) and time.time() < deadline:
            if any(p.exitcode not in (None, 0) for p in procs):
                break
            time.sleep(0.05)
        for p in procs:
            if p.is_alive():
                p.kill()
            p.join()
        assert time.time() < deadline, f"launch timed out: {argv}\n{log.read_text()[-3000:]}"
        return [p.exitcode for p in procs]

    def close(self) -> None:
        server = getattr(mp.forkserver, "_forkserver", None)
        if hasattr(server, "_stop"):  # the server holds torch in memory: not for the rest of the suite
            server._stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
