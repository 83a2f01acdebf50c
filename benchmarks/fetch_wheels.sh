#!/usr/bin/env bash
# Download, into .whl/ (git-ignored), the wheels of cifarctl's dependencies that the GPU
# machine's image lacks (it has torch, numpy, rich, typer, pyyaml, matplotlib, opencv),
# for its Python 3.12 on x86-64. Run on a machine with PyPI access.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || true
plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
      --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any)
for pkg in albumentations==2.0.8 albucore==0.0.24 "plotext==6.1.0" torch-lr-finder==0.2.2 \
           pydantic==2.13.4 pydantic-core==2.46.4 annotated-types typing-inspection stringzilla simsimd; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${plat[@]}" -d .whl "$pkg"
done
ls -la .whl
