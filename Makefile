.PHONY: run test bench

run:  ## set up .venv, register the demo models, start the portal on http://127.0.0.1:8501
	scripts/run.sh

test:  ## set up .venv (+ chromium, postgresql), run the full test suite incl. browser tests
	scripts/test.sh

bench:  ## print every benchmark (ratios against baselines measured in the same run)
	scripts/setup.sh
	for b in predict_overhead ui load compression explain; do \
		echo "=== bench/$$b.py"; .venv/bin/python bench/$$b.py || exit 1; done
