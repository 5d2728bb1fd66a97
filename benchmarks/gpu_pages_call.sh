#!/usr/bin/env bash
# The pages on the GPU in one device call, best right after gpu_train_call.sh while the machine
# is warm: every page test (the test files that drive the app with Streamlit's AppTest; the
# browser tests need a Chromium the device lacks), then the page benchmarks.
#
# Here, before the call (the device image lacks streamlit, plotly and captum):
#   python ../shared/tools/gpu_pack.py pages
#   mkdir -p ../aside && mv checkpoints/fer2013-* dashboard/screenshots ../aside/   (if not already)
# The call: run(command="bash benchmarks/gpu_pages_call.sh", carry=[".gpu/pages"], timeout_s=420)
# It brings back page_tests.txt, page_benchmarks.txt and suite.md.
set -uo pipefail
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.."
out=${OUT:?OUT must name the folder the files go to}
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/pages/*.whl
export PYTHONPATH=/tmp/site:$PWD
nvidia-smi -L
# shellcheck disable=SC2046
timeout 300 python3 -m pytest -q -m "not browser" -p no:cacheprovider \
  $(grep -l AppTest tests/test_*.py) 2>&1 | tee "$out/page_tests.txt" | tail -n 25
timeout 240 python3 -m benchmarks --only dashboard,confusions,filters 2>&1 \
  | tee "$out/page_benchmarks.txt" | tail -n 20
cp benchmarks/results/suite.md "$out/" 2>/dev/null
