# Two commands from a fresh clone: `make run` (set up + demo) and `make test`.
# Both are idempotent and quick once set up.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
DEMO   := build/demo

.PHONY: run test models demo clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@# journal fields + sd_notify via systemd-python need libsystemd headers to build (apt: libsystemd-dev pkg-config)
	if pkg-config --exists libsystemd 2>/dev/null; then $(PY) -m pip install --quiet -e '.[journal]'; \
	else echo "note: libsystemd-dev not installed; journal logging falls back to text (tests needing it skip)"; fi
	touch $@

models: $(STAMP)
	$(PY) -m pidetect models fetch

demo: $(STAMP)
	$(PY) -m pidetect.demo $(DEMO) >/dev/null

run: models demo
	$(PY) -m pidetect detect $(DEMO)/*.png

test: models
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) build
