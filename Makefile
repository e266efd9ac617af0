# Two commands from a fresh clone: `make run` (set up + demo) and `make test`.
# Both are idempotent and quick once set up.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.run-stamp
TEST_STAMP := $(VENV)/.test-stamp
DEMO   := build/demo

# A second venv with the fallback backend tflite-runtime 2.14 (numpy<2), so `make test` checks it for real.
TFL_VENV  := .venv-tflite
TFL_STAMP := $(TFL_VENV)/.installed-stamp

.PHONY: run test models demo journal clean

# What running needs (the daemon and the demo's photos); `make test` adds the test tools on top.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[demo]'
	touch $@

$(TEST_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

# journal fields + sd_notify via systemd-python need libsystemd headers to build (apt: libsystemd-dev pkg-config).
# Checked on every make, not remembered in a stamp: installing libsystemd-dev later is enough to get it.
journal: $(STAMP)
	@if $(PY) -c 'import systemd.journal' 2>/dev/null; then :; \
	elif pkg-config --exists libsystemd 2>/dev/null; then $(PY) -m pip install --quiet -e '.[journal]'; \
	else echo "note: libsystemd-dev not installed; journal logging falls back to text (tests needing it skip)"; fi

models: $(STAMP) journal
	$(PY) -m pidetect models fetch

demo: $(STAMP)
	$(PY) -m pidetect.tools.demo $(DEMO) >/dev/null

# The daemon on the first camera that delivers a frame; with no camera, on the demo clip, looped and paced like a
# camera, until Ctrl-C. Its config, event store, snapshots and clips are under build/demo-state, never the system's
# folders, whoever runs it (an installed /etc/pidetect/pidetect.toml is not read either).
DEMO_STATE := build/demo-state
DEMO_ARGS = --config $(DEMO_STATE)/demo.toml --display mjpeg --log-format text --metrics-interval 10 \
	--state-dir $(DEMO_STATE) --snapshots --snapshot-dir $(DEMO_STATE)/snapshots \
	$$(command -v ffmpeg >/dev/null && echo --record --record-dir $(DEMO_STATE)/clips)
run: models demo
	$(PY) -m pidetect detect $(DEMO)/*.png
	@mkdir -p $(DEMO_STATE) && touch $(DEMO_STATE)/demo.toml
	@echo "pidetect on your PATH in this clone: . $(VENV)/bin/activate   (or: ln -s $$PWD/$(VENV)/bin/pidetect ~/.local/bin/)"
	@if $(PY) -m pidetect check --config $(DEMO_STATE)/demo.toml --source auto --log-format text >/dev/null 2>&1; then \
	  echo "camera found: the daemon runs on it until Ctrl-C; open http://127.0.0.1:8080/ (events: /events)"; \
	  $(PY) -m pidetect run --source auto $(DEMO_ARGS); \
	else \
	  echo "no camera found: the daemon runs on the demo clip, looped, until Ctrl-C; open http://127.0.0.1:8080/"; \
	  $(PY) -m pidetect run --source $(DEMO)/demo.avi --realtime --loop $(DEMO_ARGS); \
	fi

$(TFL_STAMP): pyproject.toml
	test -x $(TFL_VENV)/bin/python || $(PYTHON) -m venv $(TFL_VENV)
	if $(TFL_VENV)/bin/python -m pip install --quiet -e '.[tflite]'; then touch $@; \
	else echo "note: tflite-runtime 2.14 has no wheel for this Python; its backend test will skip"; fi

test: models $(TEST_STAMP) $(TFL_STAMP)
	PIDETECT_TFLITE_PYTHON=$(TFL_VENV)/bin/python $(PY) -m pytest -q

clean:
	rm -rf $(VENV) $(TFL_VENV) build
