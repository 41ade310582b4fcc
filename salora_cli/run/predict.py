"""`salora predict`: a trained run's predictions for new rows (own data: `salora train classify`).

Everything that can be wrong with the request (the run, the input file, --out) is checked before the model
is loaded; the output holds every input row, in input order, with the prediction columns added.
"""
from __future__ import annotations

from pathlib import Path

import tasks
from salora_cli.core import atomic, run_dir as rd
from salora_cli.core.errors import SaloraError
from salora_cli.run.evaluation import reload_run
from tasks.tables import check_format, table_text

STDOUT_FORMAT = ".csv"


def predict_file(run_dir: Path, file: Path, out: Path | None, checkpoint: str = "best",
                 overwrite: bool = False) -> tuple[str, int]:
    """(the predictions as text in --out's format, the number of rows); written to `out` when given."""
    cfg = rd.load_config(run_dir)
    task = tasks.get(cfg.task).configure(**cfg.task_options)
    if not hasattr(task, "prediction_input"):
        raise SaloraError(f"predict needs a run trained with `salora train classify`; {run_dir} is a {cfg.task} run")
    suffix = STDOUT_FORMAT if out is None else check_format(out, "output")
    if out is not None:
        _check_out(file, out, overwrite)
    table, examples = task.prediction_input(file)
    _, _, method, tokenizer = reload_run(run_dir, checkpoint)
    model = method.model.eval()
    logits = task.logits(model, tokenizer, examples, batch_size=cfg.train.eval_batch_size,
                         max_length=cfg.train.max_length, device=next(model.parameters()).device)
    text = table_text(task.prediction_rows(table, logits), table.columns + task.prediction_columns(), suffix)
    if out is not None:
        atomic.write_text(out, text)
    return text, len(examples)


def _check_out(file: Path, out: Path, overwrite: bool) -> None:
    if out.exists() and file.exists() and out.resolve() == file.resolve():
        raise SaloraError(f"--out {out} is the input file; choose another")
    if out.is_dir():
        raise SaloraError(f"--out {out} is a folder; name a file")
    if out.exists() and not overwrite:
        raise SaloraError(f"{out} already exists; pass --overwrite to replace it, or choose another --out")
