"""The README's plain PyTorch loop runs as written: SaLoRA attached, trained (ranks removed during
training down to the budget), exported to a peft adapter that peft loads."""
from __future__ import annotations

import json
import re

import torch

from conftest import ROOT


def _readme_example() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- library-example -->\n```python\n(.*?)```", text, re.S)
    assert match, "README lost its library example"
    return match.group(1)


def test_readme_loop_runs_prunes_and_exports(tmp_path, monkeypatch):
    code = _readme_example()
    assert len(code.strip().splitlines()) <= 15
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    handle = scope["handle"]
    matrices = len(handle.adapters)
    assert handle.removed["gates"] > 0  # the gates closed components while it trained
    assert handle.adapters.total_rank() == 2 * matrices  # and it ended at the budget
    config = json.loads((tmp_path / "salora-peft" / "adapter_config.json").read_text())
    assert sum(config["rank_pattern"].values()) == 2 * matrices

    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    tok, model = scope["tok"], scope["model"]
    torch.manual_seed(1)
    base = AutoModelForSequenceClassification.from_pretrained(scope["path"], num_labels=2)
    peft_model = PeftModel.from_pretrained(base, str(tmp_path / "salora-peft")).eval()
    batch = tok(["a gripping , funny film"], return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(peft_model(**batch).logits, model.eval()(**batch).logits, atol=1e-5)
