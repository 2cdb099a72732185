.PHONY: run test bench

run:  ## set up .venv, register the demo models, start the portal on http://127.0.0.1:8501
	scripts/run.sh

test:  ## set up .venv (+ chromium), run the full test suite incl. browser tests
	scripts/test.sh

bench:  ## print the benchmark figures (ratios against in-run baselines)
	scripts/setup.sh
	.venv/bin/python bench/predict_overhead.py
