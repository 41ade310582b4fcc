"""salora: an experiment runner for SaLoRA (structure-aware low-rank adaptation)."""

__version__ = "0.1.0"
