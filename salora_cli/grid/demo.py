"""`salora demo` / `make demo`: the offline main job, SaLoRA vs LoRA on SST-2 with MiniLM-L6."""
from __future__ import annotations

import os
import time
from pathlib import Path

from rich.console import Console

from salora_cli.core import config as cfgmod
from salora_cli.core import run_dir as rd
from salora_cli.core.errors import SaloraError


def run_or_resume(cfg, run: Path, console: Console, train) -> None:
    """Finished: reuse it. Interrupted with a checkpoint and the same config: continue from the
    checkpoint, as `--resume` does. Otherwise (new, no checkpoint yet, or an older demo config):
    start it from step 0."""
    if rd.is_finished(run):
        console.print(f"[dim]{run} already finished; reusing it[/]")
        return
    resume = _resumable(run, cfg, console)
    rd.prepare(run, cfg, resume=resume, overwrite=not resume)
    what = "resuming" if resume else "training"
    console.rule(f"{cfg.method} on SST-2 ({cfg.train.max_train_samples} training sentences): {what}")
    train(cfg, run, console, resume=resume)


def _resumable(run: Path, cfg, console: Console) -> bool:
    from salora_cli.run.train import CHECKPOINT

    if not (run / CHECKPOINT / "trainer_state.pt").is_file():
        return False
    try:
        rd.check(run, cfg, resume=True)
    except SaloraError as exc:  # the demo's config changed since: that run cannot be continued
        console.print(f"[yellow]{run} cannot be resumed ({exc}); starting it again[/]", highlight=False)
        return False
    return True


def run_demo(config: Path, data_dir: Path | None, out: Path, console: Console) -> None:
    from salora_cli.reports import build_metrics_report, build_rank_report, find_runs
    from salora_cli.run.train import train

    base = cfgmod.load_yaml(config)
    glue = data_dir or (Path(os.environ["SALORA_DATA"]) / "glue" if os.environ.get("SALORA_DATA") else None)
    if glue is None or not Path(glue).exists():
        raise SaloraError("the demo reads SST-2 from a local GLUE folder: pass --data-dir or set "
                          "SALORA_DATA (make demo uses ../shared/data)")
    started = time.perf_counter()
    runs = []
    for method, extra in (("salora", {}), ("lora", {"adapter": {"r_init": int(base["adapter"]["budget"])}})):
        cfg = cfgmod.build_config(base, {"method": method, "data_dir": str(glue)}, extra)
        run = out / f"sst2_{method}"
        run_or_resume(cfg, run, console, train)
        runs.append(run)
    report = build_metrics_report(find_runs(runs))
    report.print(console)
    report.write(out, "metrics")
    ranks = build_rank_report(out / "sst2_salora")
    ranks.print(console)
    written = ranks.write(out / "sst2_salora")
    console.print(f"figures: {', '.join(str(p) for p in written)}")
    console.print(f"demo wall time: {time.perf_counter() - started:.0f} s")
