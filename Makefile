# Two entry points for a fresh clone (only python3 >= 3.10, pip and make needed):
#   make demo   install, train the embedded reverse demo, then decode unseen sequences
#   make test   install with test extras, lint, run the test suite
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= runs/reverse

$(BIN)/t2t-jax: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

install: $(BIN)/t2t-jax

demo: install
	$(BIN)/t2t-jax train --config configs/reverse.py --workdir $(DEMO_DIR)
	printf '3 1 4 1 5 9 2 6\n2 7 1 8 2 8\n1 6 1 8 0 3 3 9 8 8 7 4 9\n' > $(DEMO_DIR)/unseen.txt
	@echo "--- inputs:"; cat $(DEMO_DIR)/unseen.txt
	@echo "--- t2t-jax decode:"; $(BIN)/t2t-jax decode --workdir $(DEMO_DIR) --input $(DEMO_DIR)/unseen.txt

test: install
	$(BIN)/ruff check .
	$(BIN)/pytest -q -n 2 --dist loadgroup

# for iteration: the same without the tests marked slow (multi-process runs, trained-model checks)
test-fast: install
	$(BIN)/ruff check .
	$(BIN)/pytest -q -n 2 --dist loadgroup -m "not slow"

.PHONY: install demo test test-fast
