# Two entry points, each setting up what it needs first:
#   make run    the main job: `minigpt-bench run` with its defaults
#   make test   lint, format check, the test suite, and the wheel check (.ci/check-wheel:
#               the built wheel, installed without this checkout, runs from an empty folder)
#   make mutmut mutation testing of the modules that decide verdicts and plans ([tool.mutmut] in
#               pyproject.toml; not part of `make test`: it takes hours on 2 cores). Narrow it
#               with MUTANTS='minigpt.stats*', widen it with MUTMUT_CHILDREN=N (parallel mutants),
#               and read the survivors with `mutmut results` (reports/MUTATION.md: the scores).
# On a machine without an NVIDIA GPU the set-up pins torch to a CPU build first (on a machine
# that fetches from PyPI directly, point TORCH_INDEX_URL at a CPU wheel index), so resolving
# the project's dependencies never pulls a multi-GB CUDA build.

VENV ?= .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= $(if $(shell command -v nvidia-smi 2>/dev/null),torch,torch==2.13.0)
TORCH_INDEX_URL ?=
EXTRAS ?= dev,hf,ray,tensorboard,wandb,mlflow

.PHONY: setup run test wheel-check mutmut

$(BIN)/minigpt-bench: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet "$(TORCH_SPEC)" $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL))
	$(BIN)/pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

setup: $(BIN)/minigpt-bench

run: setup
	$(BIN)/minigpt-bench run

test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest
	$(MAKE) --no-print-directory wheel-check

wheel-check: setup
	VENV=$(VENV) bash .ci/check-wheel

# Every module [tool.mutmut] mutates (the modules that decide verdicts, plans and budgets);
# MUTANTS='minigpt.stats*' narrows it.
MUTANTS ?= 'minigpt.stats*' 'minigpt.decide*' 'minigpt.tune*' 'minigpt.stages*' 'minigpt.equal_time*' 'minigpt.sizes*' 'minigpt.store*' 'minigpt.report.fair*' 'minigpt.report.findings*'
MUTMUT_CHILDREN ?= 1

# One mutant at a time and one torch thread each: on 2 shared cores more only oversubscribe them.
mutmut: setup
	OMP_NUM_THREADS=1 $(BIN)/mutmut run --max-children $(MUTMUT_CHILDREN) $(MUTANTS)
	$(BIN)/mutmut results | grep -v ': not checked$$' || true  # the survivors; the unscored modules' mutants are not run
