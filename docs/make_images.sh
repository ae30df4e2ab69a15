#!/usr/bin/env sh
# Regenerate the diagrams the README shows (needs Graphviz's dot program on PATH):
#     sh docs/make_images.sh
set -eu
cd "$(dirname "$0")/.."
python -m torchscope graph --input-size 2,20 -o docs/mlp.svg
python -m torchscope graph torchscope.examples:NestMLP --input-size 2,20 -o docs/nestmlp.svg
python -m torchscope graph torchscope.examples:FixedHiddenMLP --input-size 2,20 \
    -o docs/fixedhiddenmlp.svg
