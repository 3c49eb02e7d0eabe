#!/usr/bin/env bash
# Fetch the wheels of bench/device_wheels.txt into .whl/ (git-ignored) for the device machine,
# which reaches no package registry: its python3 3.12 installs them from the carried folder
# (bench/device_check.sh does). Run here, in the repository root, with network access:
#   bash bench/device_wheels.sh [python]
set -euo pipefail
PY=${1:-python3}
DEST=.whl
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || grep -qx '/.whl/' "$(git rev-parse --git-common-dir)/info/exclude" 2>/dev/null \
    || echo '/.whl/' >> "$(git rev-parse --git-common-dir)/info/exclude"
mkdir -p "$DEST"
mapfile -t PKGS < <(grep -v '^#' bench/device_wheels.txt | tr ' ' '\n' | grep .)
PLATFORM=(--only-binary=:all: --python-version 3.12 --implementation cp
          --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
          --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
          --platform manylinux1_x86_64)
for pkg in "${PKGS[@]}"; do
    "$PY" -m pip download -q --no-deps "${PLATFORM[@]}" -d "$DEST" "$pkg" 2>/dev/null \
        || "$PY" -m pip wheel -q --no-deps -w "$DEST" "$pkg"  # pure Python, source archive only
done
"$PY" bench/slim_wheel.py "$DEST"/openvino-*.whl  # its CPU plugin and ONNX/IR readers only
echo "$(ls "$DEST"/*.whl | wc -l) wheels, $(du -sh "$DEST" | cut -f1) in $DEST (the device tool carries 64 MiB in all)"
