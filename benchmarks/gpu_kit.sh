#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py) on a bare GPU machine that cannot reach a package registry.
#
#   benchmarks/gpu_kit.sh prepare      # here, with network: wheels for the GPU machine's Python into .whl/
#   benchmarks/gpu_kit.sh run OUT      # there, in the repository root: install them, run the check into OUT/
#   benchmarks/gpu_kit.sh with CMD...  # there: install them, then any command, e.g. a training run:
#       benchmarks/gpu_kit.sh with python3 -m MedGANTranslateLib.cli train \
#           --config models/mr-t1-to-ct-pix2pix/train_phantoms.yaml --out "$OUT/run" --progress none
#
# The GPU machine brings Python 3.12 with a CUDA torch, numpy, scipy, safetensors and PyYAML; it lacks MONAI,
# SimpleITK, isal and jsonschema. SimpleITK's wheel (53 MB) is repacked with xz (29 MB) so that the tree
# and the kit travel within 64 MiB. `run` writes gpu_results.json, gpu_check.log and pytest.log (the
# inference and pipeline tests on a machine where device "auto" means CUDA) into OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
KIT=.whl
PYVER=${GPU_PYTHON_VERSION:-3.12}
PACKAGES=(monai isal jsonschema jsonschema-specifications referencing rpds-py)

install() {  # the kit into /tmp/site, and the engine and benchmarks on the path
    mkdir -p /tmp/site
    python3 -m pip install -q --upgrade --no-index --no-deps --no-compile --target /tmp/site "$KIT"/*.whl
    tar -xJf "$KIT/simpleitk.tar.xz" -C /tmp/site
    export PYTHONPATH="/tmp/site:$PWD/MedGANTranslate:$PWD/benchmarks" PYTHONUNBUFFERED=1
}

case "${1:-}" in
prepare)
    mkdir -p "$KIT"
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$KIT" "${PACKAGES[@]}" SimpleITK
    for wheel in "$KIT"/simpleitk-*.whl; do
        unpacked=$(mktemp -d)
        python3 -m zipfile -e "$wheel" "$unpacked"
        tar -cJf "$KIT/simpleitk.tar.xz" -C "$unpacked" .
        rm -rf "$unpacked" "$wheel"
    done
    du -ch "$KIT"/* | tail -1
    ;;
run)
    out=${2:?usage: gpu_kit.sh run OUT}
    mkdir -p "$out"
    install
    python3 -m pytest -q -p no:cacheprovider tests/test_pipeline.py tests/test_large_windows.py \
        tests/test_test_time_mirror.py >"$out/pytest.log" 2>&1 || echo "pytest failed: see pytest.log"
    tail -3 "$out/pytest.log"
    python3 benchmarks/gpu_check.py --out "$out/gpu_results.json" 2>&1 | tee "$out/gpu_check.log"
    ;;
with)
    shift
    install
    "$@"
    ;;
*)
    echo "usage: $0 prepare | run OUT | with CMD..." >&2
    exit 2
    ;;
esac
