# Two commands on a fresh machine (python3 + pip, nothing else):
#   make demo   - install into .venv if needed, then run the whole pipeline on the toy corpus
#   make test   - install into .venv if needed, then run the test suite
# and one for maintainers:
#   make lint   - ruff check (pyflakes, import order: pyproject.toml's [tool.ruff.lint]) and ruff format --check
#   make lock   - re-resolve every dependency into constraints.txt (after editing pyproject.toml's
#                 dependencies, or to take newer releases on purpose; then run make test)
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.dv-installed
EXTRAS ?= dev,eval,corpora,denoise,phonemes
# Every install reads the lock through PIP_CONSTRAINT, so pip's isolated build environment
# (setuptools for the editable install) is held to it as well as the packages themselves.
LOCK := constraints.txt
PIP := PIP_CONSTRAINT=$(CURDIR)/$(LOCK) $(PY) -m pip --disable-pip-version-check
# The lock's resolver (uv's, run from its own venv so it never enters .venv) and its settings:
# one universal lock (markers per platform and Python) from the lowest supported Python.
UV_VERSION := 0.13.9
LOCK_VENV := .venv-lock
LOCK_PYTHON := 3.10

.PHONY: demo test lint install lock clean

install: $(STAMP)

$(STAMP): pyproject.toml $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet -e '.[$(EXTRAS)]'
	# resemblyzer (SECS) without its declared dependencies: see the eval extra in pyproject.toml.
	case ',$(EXTRAS),' in *,eval,*) $(PIP) install --quiet --no-deps 'resemblyzer==0.1.4';; esac
	# pyrnnoise (--denoise rnnoise) without its declared dependencies: see the denoise extra.
	case ',$(EXTRAS),' in *,denoise,*) $(PIP) install --quiet --no-deps 'pyrnnoise==0.4.5';; esac
	touch $(STAMP)

lock:
	test -x $(LOCK_VENV)/bin/uv || { $(PYTHON) -m venv $(LOCK_VENV) && \
		$(LOCK_VENV)/bin/pip install --quiet --disable-pip-version-check 'uv==$(UV_VERSION)'; }
	$(LOCK_VENV)/bin/uv pip compile pyproject.toml --all-extras --universal \
		--python-version $(LOCK_PYTHON) --custom-compile-command 'make lock' --quiet -o $(LOCK)

demo: $(STAMP)
	$(VENV)/bin/dv demo -o demo

test: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf demo .pytest_cache
