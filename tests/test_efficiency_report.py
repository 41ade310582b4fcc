"""efficiency.md's step-time columns: the mean and the median step time, each as a ratio to LoRA's
seed mean, blank where a seed recorded no per-step times (a record from before they were kept)."""
from pathlib import Path

from salora_cli.reports import efficiency
from salora_cli.reports.runs import RunRecord


def _record(method: str, seed: int, mean_s: float, median_s: float | None) -> RunRecord:
    raw = {"train_time_s": 100 * mean_s, "epochs": 1.0, "step_time_s": mean_s, "step_time_median_s": median_s,
           "peak_memory_mb": 10.0, "peak_memory_scope": "run"}
    return RunRecord(path=Path(f"/runs/{method}{seed}"), task="glue/sst2", method=method, seed=seed,
                     model="minilm-l6", main_metric="accuracy", status="finished", best={}, best_step=None,
                     final={}, final_step=None, test={}, params_initial=None, params_final=None,
                     train_time_s=100 * mean_s, steps=100, raw=raw)


def _row(text: str, method: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith(f"| glue/sst2 | {method} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_mean_and_median_ratios_to_lora(tmp_path, monkeypatch):
    monkeypatch.setattr(efficiency, "_inference_section", lambda runs, n, previous: [])
    runs = [_record("lora", 0, 0.20, 0.10), _record("lora", 1, 0.20, 0.10),
            # one burst of outside load slowed seed 1's run: its mean moves, its median does not
            _record("salora", 0, 0.21, 0.103), _record("salora", 1, 0.29, 0.105)]
    text = efficiency.build_efficiency_report(runs, tmp_path / "efficiency.md").read_text()
    assert "median ÷ LoRA" in text
    # task, method, n, s/epoch, s/step, ratio, median s/step, median ratio, memory
    assert _row(text, "salora")[3:8] == ["25.0", "0.250", "1.25", "0.104", "1.04"]
    assert _row(text, "lora")[4:8] == ["0.200", "1.00", "0.100", "1.00"]


def test_median_left_blank_when_a_seed_has_none(tmp_path, monkeypatch):
    monkeypatch.setattr(efficiency, "_inference_section", lambda runs, n, previous: [])
    runs = [_record("lora", 0, 0.2, 0.1), _record("salora", 0, 0.2, 0.1), _record("salora", 1, 0.2, None)]
    row = _row(efficiency.build_efficiency_report(runs, tmp_path / "efficiency.md").read_text(), "salora")
    assert row[4:6] == ["0.200", "1.00"] and row[6:8] == ["", ""]
