# `make run` and `make test` each create the project virtualenv on first use.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
RUN_DIR ?= runs/quickstart

.PHONY: venv run test bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e '.[test]'
	touch $@

venv: $(VENV)/.installed

# The main job end to end on the embedded default data (synthetic), local Ray:
# prepare -> train -> test report, then tonight's top-N for every user from the trained model.
run: $(VENV)/.installed
	$(PY) jobs/train_pia.py --output-dir $(RUN_DIR) --resume=auto
	$(PY) jobs/score_users.py --model $(RUN_DIR) --input $(RUN_DIR)/prepared \
		--output $(RUN_DIR)/recommendations --run-date $$(date -u +%F) --top-n 20

test: $(VENV)/.installed
	$(PY) -m pytest -q tests

clean:
	rm -rf $(VENV) runs .pytest_cache
