# The two commands: `make demo` and `make test`. Both create .venv and install everything from scratch.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
BENCH  := $(VENV)/bin/bench
# The CPU wheel of torch when no NVIDIA GPU is visible, the regular (CUDA) build otherwise.
TORCH  := $(shell if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then echo torch; else echo torch==2.13.0; fi)
DEMO_STUDY   ?= smoke
DEMO_PROFILE ?= cpu
JOBS   ?= 2

.PHONY: install demo test clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check "$(TORCH)"
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

demo: install
	$(BENCH) run --study $(DEMO_STUDY) --profile $(DEMO_PROFILE) --jobs $(JOBS)
	$(BENCH) report $(DEMO_STUDY)

test: install
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache
