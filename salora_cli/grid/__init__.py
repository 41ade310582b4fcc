"""Many runs at once: `salora reproduce` runs a profile's grid under the comparison protocol and rebuilds
results/ (reproduce.py, protocol.py); `--plan` says what a grid would cost without loading a model
(plan.py, plan_data.py, cost_model.py, model_specs.py); `--dry-run` sends every distinct path of a
profile through the grid's own code on tiny stand-in models (dry_run.py, stand_ins.py); `salora ablate`
runs the design ablations (ablations.py); `salora demo` the offline SaLoRA-against-LoRA demo (demo.py)."""
