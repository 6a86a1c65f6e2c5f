#!/usr/bin/env bash
# Prepare what `benchmarks/gpu_check.py` needs on a GPU machine that has no network (see benchmarks/README.md):
#   bash benchmarks/prepare_gpu_carry.sh      # run here, in the repo root, with .venv set up (make setup)
# .whl/: wheels the GPU image lacks (datasets and its two missing needs, for Python 3.12);
# .gpu_tokenizer/: the embedded model's tokenizer files (the 100 MB GGUF cannot travel).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .git/info && touch .git/info/exclude
for path in /.whl/ /.gpu_tokenizer/; do grep -qx "$path" .git/info/exclude || echo "$path" >> .git/info/exclude; done
version() { .venv/bin/python -m pip show "$1" | awk '/^Version/{print $2}'; }
rm -rf .whl .gpu_tokenizer && mkdir -p .whl .gpu_tokenizer
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
  "datasets==$(version datasets)" "dill==$(version dill)" "multiprocess==$(version multiprocess)"
model_dir="$(.venv/bin/python -c 'from forgetless.models.embedded import embedded_model_dir as d; print(d())')"
cp "$model_dir"/tokenizer.json "$model_dir"/tokenizer_config.json .gpu_tokenizer/
cp "$model_dir"/chat_template.jinja .gpu_tokenizer/ 2>/dev/null || true
du -sh .whl .gpu_tokenizer
