# Two commands on a fresh Debian/Ubuntu machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The demo clip is rendered (seeded, ~7 s) from the committed fixture faces rather than committed.
SAMPLE := .cache/sample/clip.mp4

.PHONY: setup demo test lint train clean

$(BIN)/aicctv: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found: sudo apt install python3 python3-venv" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV) || { echo "error: cannot create a venv: sudo apt install python3-venv" >&2; exit 1; }
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

setup: $(BIN)/aicctv
	$(BIN)/python -m edge.vision.fetch

$(SAMPLE): tests/fixtures/faces bench/clipgen.py
	$(BIN)/python -m bench.clipgen --out $(dir $@) --data tests/fixtures/faces --visitors 12 --seed 1

# Broker (embedded), one edge replaying the sample clip, one central subscriber: the hourly table.
demo: setup $(SAMPLE)
	$(BIN)/aicctv demo --clip $(SAMPLE)

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Retrain the age/gender model from scratch into .cache/runs/release (UTKFace, LFW and FairFace:
# the model card's "Retrain"); the shipped model stays until `python -m conversion.pipeline` installs it.
train: setup
	$(BIN)/pip install --quiet -e '.[train]'
	$(BIN)/python -m conversion.pipeline --no-install

clean:
	rm -rf $(VENV) .cache build *.egg-info
