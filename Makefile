# The two commands: `make demo` and `make test`. Both create .venv and install everything from scratch.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
BENCH  := $(VENV)/bin/bench
# The CPU wheel of torch when no NVIDIA GPU is visible, the regular (CUDA) build otherwise.
TORCH  := $(shell if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then echo torch; else echo torch==2.13.0; fi)
DEMO_STUDY   ?= ablation_lgm
DEMO_PROFILE ?= cpu
JOBS   ?= 2
# pytest-xdist workers for `make test`; each trains with its share of the cores ($BENCH_CORES, tests/conftest.py)
TEST_WORKERS ?= 2

.PHONY: install latex cluster demo test clean

install: $(VENV)/.installed

# torch through pip (it finds the CPU wheel in the machine's pip configuration), the rest through uv: the same
# versions as pip resolves, in about 20 s instead of about 100 s; plain pip when uv cannot be had.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check "$(TORCH)"
	{ $(PY) -m pip install --quiet --disable-pip-version-check uv \
	  && $(VENV)/bin/uv pip install --quiet --compile-bytecode --python $(PY) -e '.[dev,postgres,slurm]'; } \
	  || $(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,postgres,slurm]'
	touch $@

demo: install
	$(BENCH) run --study $(DEMO_STUDY) --profile $(DEMO_PROFILE) --jobs $(JOBS)
	$(BENCH) report $(DEMO_STUDY)

# The LaTeX-compilation test needs pdflatex. Under CI (or with INSTALL_LATEX=1), as root on Debian/Ubuntu,
# it is installed here (about 1 minute); otherwise that one test is skipped with its reason.
latex:
	@if ! command -v pdflatex >/dev/null 2>&1 && [ -n "$$CI$$INSTALL_LATEX" ] && [ "$$(id -u)" = 0 ] \
	    && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing pdflatex for the LaTeX table test"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    texlive-latex-base texlive-latex-recommended) >/dev/null 2>&1 \
	    || echo "could not install pdflatex; the LaTeX compilation test will be skipped"; \
	fi

# The cluster tests start a real one-node SLURM (with accounting) and PostgreSQL (tests/cluster/*.sh). Under CI
# (or with INSTALL_CLUSTER=1), as root on Debian, their packages are installed here (about 30 s); without them
# (not root, no apt) those tests are skipped with their reason, except under CI, where they fail.
CLUSTER_PACKAGES := slurm-wlm munge slurmdbd mariadb-server postgresql
cluster:
	@if { ! command -v slurmctld >/dev/null 2>&1 || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } \
	    && [ -n "$$CI$$INSTALL_CLUSTER" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing SLURM, MariaDB and PostgreSQL for the cluster tests"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    $(CLUSTER_PACKAGES)) >/dev/null 2>&1 || echo "could not install the cluster packages"; \
	fi

test: install latex cluster
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup --durations=15

clean:
	rm -rf $(VENV) runs .pytest_cache
