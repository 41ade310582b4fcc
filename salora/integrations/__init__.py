"""Integrations with training frameworks (imported on demand: `salora` itself needs none of them)."""
