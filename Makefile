# make demo: set everything up and render the sample campaign into out/.
# make test: set everything up (with test tools) and run the whole test suite.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) tools/check_system.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test,bench]'
	@touch $@

demo: $(STAMP)
	$(BIN)/dispatch validate
	$(BIN)/dispatch render
	@echo "The letters are in out/icc-states-parties-2020/. Next: dispatch preview NA, dispatch --help"

test: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -n auto

bench: $(STAMP)
	$(BIN)/python bench/render.py --recipients 125 --typst --whole
	$(BIN)/python bench/send.py --recipients 500

clean:
	rm -rf $(VENV) out .pytest_cache
