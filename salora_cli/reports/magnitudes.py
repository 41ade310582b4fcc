"""How big each rank-1 piece of a trained ΔW is, for SaLoRA and LoRA side by side.

SaLoRA's component i adds s·λ_i·ẑ_i·b_i a_iᵀ, so its size is s·|λ_i ẑ_i|·‖a_i‖·‖b_i‖. LoRA's
components (columns of B times rows of A) are not orthogonal, so their individual sizes are not
meaningful; the comparable quantity for both methods is the spectrum of ΔW = s·B·diag(λ⊙ẑ)·A
(or s·B·A), whose singular values equal SaLoRA's component sizes when its components are
orthogonal. Both are read from a run's saved adapter (adapter/), nothing is recomputed.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from salora.gates import HardConcrete
from salora.io import CONFIG, WEIGHTS, load_tensors
from salora_cli.core.errors import SaloraError


def adapter_spectra(folder: Path) -> dict[str, dict[str, list[float]]]:
    """Per adapted matrix: singular values of ΔW, and (gated adapters) each component's size and
    the norms of its a_i and b_i, from an adapter folder in our format."""
    meta_path = folder / CONFIG
    if not meta_path.exists():
        raise SaloraError(f"{folder} holds no salora/lora adapter ({CONFIG} missing)")
    meta = json.loads(meta_path.read_text())
    cfg, tensors = meta["adapter"], load_tensors(folder / WEIGHTS)
    gates = HardConcrete(cfg["gate_temperature"], cfg["gate_low"], cfg["gate_high"])
    out = {}
    for name, info in meta["modules"].items():
        if info["rank"] == 0:
            out[name] = {"singular_values": [], "component_sizes": []}
            continue
        a, b = tensors[f"{name}.lora_A"].double(), tensors[f"{name}.lora_B"].double()
        coef = torch.full((info["rank"],), cfg["alpha"] / info["r_init"], dtype=torch.float64)
        if f"{name}.log_alpha" in tensors:
            coef = coef * tensors[f"{name}.lora_lambda"].double() \
                * gates.deterministic(tensors[f"{name}.log_alpha"].double())
        delta = (b * coef) @ a
        entry = {"singular_values": torch.linalg.svdvals(delta)[:info["rank"]].tolist()}
        a_norm, b_norm = a.norm(dim=1), b.norm(dim=0)
        entry["component_sizes"] = (coef.abs() * a_norm * b_norm).tolist()
        entry["b_norms"] = b_norm.tolist()
        entry["a_norms"] = a_norm.tolist()
        out[name] = entry
    return out


def _quantiles(values: list[float]) -> dict[str, float]:
    t = torch.tensor(values, dtype=torch.float64)
    q = torch.quantile(t, torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)).tolist()
    return {"n": len(values), "p10": q[0], "median": q[1], "p90": q[2], "max": float(t.max())}


def summarise(spectra: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, float]]:
    """Distribution (n, p10, median, p90, max) of every per-component quantity over all matrices."""
    keys = {k for entry in spectra.values() for k in entry}
    summary = {}
    for key in sorted(keys):
        values = [v for entry in spectra.values() for v in entry.get(key, [])]
        if values:
            summary[key] = _quantiles(values)
    return summary


def write_comparison(runs: dict[str, Path], out_md: Path, out_png: Path | None = None) -> str:
    """Markdown (and a histogram) of ΔW's singular values per labelled run, plus SaLoRA's
    component sizes and B-column norms. `runs`: label -> run folder (its adapter/ is read)."""
    from salora_cli.core import atomic

    rows, all_spectra = [], {}
    for label, run in runs.items():
        spectra = adapter_spectra(run / "adapter")
        all_spectra[label] = spectra
        for key, q in summarise(spectra).items():
            rows.append(f"| {label} | {key} | {q['n']} | {q['p10']:.4f} | {q['median']:.4f} | "
                        f"{q['p90']:.4f} | {q['max']:.4f} |")
    text = "\n".join([
        "| run | quantity | components | p10 | median | p90 | max |",
        "|---|---|---:|---:|---:|---:|---:|", *rows, ""])
    atomic.write_text(out_md, text)
    if out_png is not None:
        _histogram(all_spectra, out_png)
    return text


def _histogram(all_spectra: dict, out_png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from salora_cli.core import atomic

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for label, spectra in all_spectra.items():
        values = [v for e in spectra.values() for v in e["singular_values"]]
        ax.hist(values, bins=40, alpha=0.5, label=f"{label} ({len(values)} components)")
    ax.set_xlabel("singular value of ΔW (component size)")
    ax.set_ylabel("components")
    ax.legend()
    fig.tight_layout()
    with atomic.atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def write_for_grid(runs, results: Path, task: str = "glue/sst2") -> list[Path]:
    """results/magnitudes.md (+ .png): SaLoRA beside LoRA on `task`, same seed, budget and lr
    rule as the tables (the first seed of each at the largest budget among `runs`, which are the
    runs the tables report). Skipped, with nothing written, when either run is missing. When an
    adapter is missing (a run restored from results/runs/ on a fresh machine), the files already in
    results/ are kept if they were read from these same two runs; otherwise nothing is written."""
    def pick(method):
        mine = [r for r in runs if r.task == task and r.method == method]
        if not mine:
            return None
        top = max((r.budget or 0) for r in mine)
        return min((r for r in mine if (r.budget or 0) == top), key=lambda r: (r.seed is None, r.seed))

    salora, lora = pick("salora"), pick("lora")
    if salora is None or lora is None:
        return []
    md, png = results / "magnitudes.md", results / "magnitudes.png"
    if not all((r.path / "adapter").is_dir() for r in (salora, lora)):
        kept = md.read_text(encoding="utf-8") if md.is_file() and png.is_file() else ""
        same = all(f"({r.path.name})" in kept for r in (salora, lora))
        return [md, png] if same else []
    table = write_comparison({f"SaLoRA ({salora.path.name})": salora.path,
                              f"LoRA ({lora.path.name})": lora.path}, md, None)
    text = "\n".join([
        f"# Component sizes — {task}, SaLoRA beside LoRA",
        "",
        "Read from each run's saved adapter. `singular_values`: the spectrum of ΔW (for SaLoRA "
        "s·B·diag(λ⊙ẑ)·A, for LoRA s·B·A), comparable across methods. SaLoRA only: "
        "`component_sizes` = s·|λ ẑ|·‖a‖·‖b‖ per component, `b_norms` and `a_norms` its factors. "
        "Under the original Frobenius orthogonality penalty every b_norm sat at 1.00 (the penalty "
        "set each size); with the angle-only penalty they are learned.",
        "",
        table,
        "![distribution](magnitudes.png)",
        "",
    ])
    from salora_cli.core import atomic

    atomic.write_text(md, text)
    _histogram({"SaLoRA": adapter_spectra(salora.path / "adapter"),
                "LoRA": adapter_spectra(lora.path / "adapter")}, png)
    return [md, png]
