#!/usr/bin/env bash
# The GPU checks of issue 22 in one call of the device tool (a lent H200: torch, transformers and peft are there;
# loomwork's other needs travel as wheels in .whl, carried). Prepare once, here, in the repo's root:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
#     pydantic==2.* pydantic-core annotated-types typing-inspection sqlalchemy greenlet platformdirs orjson \
#     pytest-asyncio
# (keep one version of each; pydantic-core must be the one that pydantic pins). Then run, with carry [".whl"]:
#   bash scripts/gpu_check.sh
set -e
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD/src:$PWD OUT=${OUT:-.}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -m pytest -q -p no:cacheprovider -m cuda tests/test_device.py 2>&1 | tail -15 | tee "$OUT/cuda-tests.txt"
python3 bench/gpu.py --out "$OUT/gpu-bench.json" 2>&1 | tail -60
