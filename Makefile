# Two entry points for a fresh clone (only python3 >= 3.10, pip and make needed):
#   make demo   install, train the embedded reverse demo, then decode unseen sequences
#   make test   install with test extras, lint, run the test suite
VENV ?= .venv
BIN := $(VENV)/bin
TPU_VENV ?= .venv-tpu
DEMO_DIR ?= runs/reverse

$(BIN)/t2t-jax: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

install: $(BIN)/t2t-jax

# libtpu (the [tpu] extra), to compile for TPU slices on this CPU machine (t2t-jax plan); its own environment, so
# that the main suite's JAX never looks for a TPU
$(TPU_VENV)/bin/t2t-jax: pyproject.toml
	python3 -m venv $(TPU_VENV)
	$(TPU_VENV)/bin/python -m pip install -q --upgrade pip
	$(TPU_VENV)/bin/python -m pip install -q -e '.[tpu,test]'
	touch $@

demo: install
	$(BIN)/t2t-jax train --config configs/reverse.py --workdir $(DEMO_DIR)
	printf '3 1 4 1 5 9 2 6\n2 7 1 8 2 8\n1 6 1 8 0 3 3 9 8 8 7 4 9\n' > $(DEMO_DIR)/unseen.txt
	@echo "--- inputs:"; cat $(DEMO_DIR)/unseen.txt
	@echo "--- t2t-jax decode:"; $(BIN)/t2t-jax decode --workdir $(DEMO_DIR) --input $(DEMO_DIR)/unseen.txt

test: install $(TPU_VENV)/bin/t2t-jax
	$(BIN)/ruff check .
	$(BIN)/pytest -q -n 2 --dist loadgroup --durations=30
	JAX_PLATFORMS=cpu ALLOW_MULTIPLE_LIBTPU_LOAD=1 JAX_ENABLE_COMPILATION_CACHE=false $(TPU_VENV)/bin/pytest -q -p no:cacheprovider tests/test_plan.py

# for iteration: the same without the tests marked slow (multi-process runs, trained-model checks)
test-fast: install
	$(BIN)/ruff check .
	$(BIN)/pytest -q -n 2 --dist loadgroup -m "not slow"

# docs/attention_reverse.{png,html}, the README's attention pictures, made again from a fresh model
docs: install
	$(BIN)/t2t-jax train --config configs/reverse.py --workdir runs/reverse-docs --config.train.steps=800
	for format in png html; do $(BIN)/t2t-jax attention --workdir runs/reverse-docs \
	  --source "3 1 4 1 5 9 2 6 5 3" --output docs/attention_reverse.$$format; done

.PHONY: install demo test test-fast docs
