# Two commands do all set-up on a fresh machine: `make run` (the pipeline on the tiny default)
# and `make test` (the tests). Both create .venv and install the project the first time.
PY := .venv/bin/python
STAMP := .venv/.installed

.PHONY: run test venv clean

$(STAMP): pyproject.toml constraints.txt
	python3 -m venv .venv
	.venv/bin/pip install -q --upgrade pip
	.venv/bin/pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(PY) -m flows.full_pipeline

test: $(STAMP)
	$(PY) -m pytest tests --ignore=tests/kernels -q
	TRITON_INTERPRET=1 $(PY) -m pytest tests/kernels -q

clean:
	rm -rf .venv runs mlruns mlflow.db .prefect
