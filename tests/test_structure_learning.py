"""SaLoRA learns its structure during training: gates close on the schedule, the freeze step only
trims, and the orthogonality term leaves each component's size to the task."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn

from cli_helpers import run_cli
from salora.budget import orthogonality_penalty
from salora.config import AdapterConfig
from salora.model import attach_adapters as attach  # the AdapterSet alone (no step handle)


@pytest.mark.parametrize("r_init,budget", [(12, 8), (4, 2)])
def test_gates_close_during_training_on_real_data(tmp_path, capsys, shared_data, r_init, budget):
    """A short real SST-2 run with the real MiniLM: from the end of the ramp on, the physical total
    rank is within 5 % of the target, and the freeze removes at most 2 % of the initial components."""
    out = tmp_path / "run"
    steps = 60
    code, stdout, err = run_cli([
        "train", "glue", "--task", "sst2", "--method", "salora", "--data-dir", shared_data / "glue",
        "--out", out, "--max-train-samples", "480", "--max-steps", str(steps), "--batch-size", "8",
        "--max-length", "32", "--max-eval-samples", "16", "--eval-every", "60",
        "--rank", str(r_init), "--budget", str(budget), "--set", "train.log_every=1"], capsys)
    assert code == 0, err + stdout
    ranks = json.loads((out / "ranks.json").read_text())
    n_init = r_init * ranks["n_matrices"]
    budget_total = ranks["budget_total"]
    trajectory = ranks["trajectory"]
    ramp_end = AdapterConfig().ramp_end * steps
    after = [p for p in trajectory if p["step"] >= ramp_end]
    assert after, trajectory
    for point in after:
        assert abs(point["total_rank"] / point["target_total"] - 1) <= 0.05, point
    last = trajectory[-1]
    assert last["total_rank"] == budget_total
    assert last["removed_by_projection"] <= 0.02 * n_init, last
    assert last["removed_by_gates"] + last["removed_by_projection"] == n_init - budget_total
    # removal is spread over training, not one cut: several trajectory points see it fall
    assert len({p["total_rank"] for p in trajectory}) >= 5
    # the rank report names both causes
    code, stdout, err = run_cli(["report", "ranks", out], capsys)
    assert code == 0, err
    assert "closed by their gates during training" in " ".join(stdout.split())


class _Pair(nn.Module):
    def __init__(self):
        super().__init__()
        self.f = nn.Linear(16, 24)

    def forward(self, x):
        return self.f(x)


def _adapter(seed: int = 0):
    torch.manual_seed(seed)
    model = _Pair()
    adapters = attach(model, AdapterConfig(r_init=4, target_modules=["f"], budget=2))
    layer = next(iter(adapters))
    with torch.no_grad():
        layer.lora_B.copy_(torch.randn_like(layer.lora_B) * 0.5)
    return adapters, layer


def test_angle_penalty_has_no_radial_pull_frobenius_does():
    """The default penalty only sees cosines: its gradient on each column of B is orthogonal to
    that column, so it cannot shrink or grow a component. The Frobenius form pulls norms to 1."""
    adapters, layer = _adapter()
    orthogonality_penalty(adapters, "angles").backward()
    radial = (layer.lora_B.grad * layer.lora_B).sum(0) / layer.lora_B.norm(dim=0)
    assert radial.abs().max() < 1e-2 * layer.lora_B.grad.norm(dim=0).max()

    adapters, layer = _adapter()
    orthogonality_penalty(adapters, "frobenius").backward()
    radial = (layer.lora_B.grad * layer.lora_B).sum(0) / layer.lora_B.norm(dim=0)
    assert radial.abs().max() > 0.3 * layer.lora_B.grad.norm(dim=0).max()


def test_angle_penalty_is_zero_for_orthogonal_components_of_any_size():
    adapters, layer = _adapter()
    with torch.no_grad():
        q, _ = torch.linalg.qr(torch.randn(24, 4))
        layer.lora_B.copy_(q * torch.tensor([3.0, 0.5, 0.1, 2.0]))
    assert float(orthogonality_penalty(adapters, "angles")) < 1e-8
    assert float(orthogonality_penalty(adapters, "frobenius")) > 1.0


def test_ranked_push_moves_only_the_lowest_open_components():
    adapters, layer = _adapter()
    with torch.no_grad():
        layer.log_alpha.copy_(torch.tensor([3.0, 1.0, 2.0, -5.0]))  # the last one is closed
    pushed = adapters.push_marginal(keep_total=2, amount=0.5)
    assert pushed == 1  # 3 open, keep 2: only the lowest open one (log α 1.0) moves
    assert layer.log_alpha.tolist() == pytest.approx([3.0, 0.5, 2.0, -5.0])
    assert adapters.push_marginal(keep_total=3, amount=0.5) == 0
