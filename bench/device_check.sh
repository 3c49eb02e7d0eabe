#!/usr/bin/env bash
# The CUDA path on a real GPU, as one short command of the device tool (issue 17, docs/gpu.md).
# Prepare here first: `bash bench/device_wheels.sh` (fills the git-ignored .whl/, 46 MiB).
# Then one device call, in the repository root:
#   run(command="bash bench/device_check.sh", carry=[".whl"], timeout_s=540)
# Budget: about 5 minutes on one H200 with 16 cores (2026-11-28), plus the machine's start.
# Everything it finds goes to $OUT (at most 8 files): device_check.log, determinism.json,
# train_step_*.json, tiny_rows.json, tiny_results.tar.gz (tables and logs, no models). A step
# that fails is reported in the log and the next one still runs. TINY_ONLY=1 runs step 1 alone.
set -uo pipefail
OUT=${OUT:-$PWD/device-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/device_check.log") 2>&1
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
FAILED=()
step() {  # step NAME SECONDS COMMAND...: run with a time limit, record a failure, go on
    local name=$1 limit=$2; shift 2
    echo "=== $name ($(date -u +%T), limit ${limit}s)"
    timeout "$limit" "$@" || { echo "=== $name FAILED ($?)"; FAILED+=("$name"); }
}

if compgen -G ".whl/*.whl" > /dev/null; then  # the device machine reaches no package registry
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export PATH=/tmp/site/bin:$PATH
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
"$PY" -c "import torch, bibench; print('torch', torch.__version__, 'cuda', torch.version.cuda,
    'gpu', torch.cuda.get_device_name(0), 'bibench', bibench.__file__)" || exit 1

# The device image's onnx stamps a newer IR version on the models it builds than its
# onnxruntime reads (14 and 13 on 2026-11-28; qonnx builds a model per node). Cap the version
# at the newest this onnxruntime loads, for this check's processes only.
IRCAP=$("$PY" - <<'EOF'
import onnx, onnxruntime as ort
from onnx import TensorProto, helper
info = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1]) for n in "xy"]
graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", info[:1], info[1:])
for version in range(onnx.IR_VERSION, 6, -1):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = version
    try:
        ort.InferenceSession(model.SerializeToString())
    except Exception:
        continue
    print(version)
    break
EOF
)
if [ -n "$IRCAP" ] && [ "$IRCAP" -lt "$("$PY" -c 'import onnx; print(onnx.IR_VERSION)')" ]; then
    echo "onnx writes a newer IR than onnxruntime reads: capped at $IRCAP"
    echo "import onnx; onnx.IR_VERSION = $IRCAP" > /tmp/site/sitecustomize.py
fi

# 1. first, since it is what the check is for: the tiny grid end to end with device: cuda
#    (training and evaluation on the GPU; export and latency on the CPU as always), in a copy
#    so that the checkout stays clean
WF=/tmp/tiny_cuda
rm -rf "$WF" && mkdir -p "$WF"
cp -r Snakefile workflow profiles bibench "$WF"/
sed 's/^device: cpu$/device: cuda/' tests/configs/tiny.yaml > "$WF/tiny_cuda.yaml"
grep -q '^device: cuda$' "$WF/tiny_cuda.yaml" || { echo "tiny.yaml has no 'device: cpu' line"; exit 1; }
step tiny_grid 300 bash -c "cd '$WF' && PYTHONPATH='$WF:/tmp/site' '$PY' -m snakemake \
    results/report.html --cores 16 --configfile tiny_cuda.yaml"
step tiny_rows 60 "$PY" - "$WF" "$OUT/tiny_rows.json" <<'EOF'
"""Which device and model every row of the tiny grid names; fails unless training and
evaluation rows say cuda and the GPU's name."""
import json, sys
from pathlib import Path
import pandas as pd
import torch
root, out = Path(sys.argv[1]), sys.argv[2]
gpu = torch.cuda.get_device_name(0)
summary, bad = {}, []
for table in ("train", "eval", "export", "latency", "complexity", "sensitivity"):
    files = [p for p in (root / "results").rglob("*.parquet")
             if p.stem == table or (table == "sensitivity" and "sensitivity" in p.parts)]
    if not files:
        continue
    rows = pd.concat([pd.read_parquet(p) for p in files])
    cols = [c for c in ("device", "device_model", "precision", "deterministic") if c in rows]
    summary[table] = {"files": len(files),
                      "values": rows[cols].drop_duplicates().to_dict("records")}
    if table in ("train", "eval", "sensitivity"):
        wrong = rows[(rows["device"] != "cuda") | (rows["device_model"] != gpu)]
        bad += [f"{table}: {len(wrong)} rows not on cuda/{gpu}"] if len(wrong) else []
bad += [f"{t}: no table written" for t in ("train", "eval") if t not in summary]
summary["problems"] = bad
Path(out).write_text(json.dumps(summary, indent=1))
print(json.dumps(summary, indent=1))
sys.exit(1 if bad else 0)
EOF
tar -C "$WF" -czf "$OUT/tiny_results.tar.gz" --exclude="*.pt" --exclude="*.onnx" \
    --exclude=openvino results logs 2>/dev/null || true

if [ "${TINY_ONLY:-0}" != 1 ]; then  # TINY_ONLY=1: a rerun of step 1 alone
# 2. the CPU-testable parts again, plus the test that needs the GPU (device model in rows)
step pytest 150 "$PY" -m pytest -q -p no:cacheprovider tests/test_training_device.py

# 3. one cell twice with the same seed: identical losses and weights expected (tolerance 1e-6)
step determinism 150 bash -c "'$PY' bench/determinism_check.py --device cuda --epochs 2 \
    --max-train 1024 --out /tmp/determinism > '$OUT/determinism.json'"

# 4. binarized vs FP32 training step and samples/s, for the GPU-hour estimate (bench/gpu_hours.py)
step train_step_resnet20 90 bash -c "'$PY' bench/train_step.py --device cuda --threads 8 \
    --json > '$OUT/train_step_resnet20.json'"
step train_step_resnet20_bf16 90 bash -c "'$PY' bench/train_step.py --device cuda --threads 8 \
    --precision bf16 --json > '$OUT/train_step_resnet20_bf16.json'"
step train_step_resnet18_imagenet 120 bash -c "'$PY' bench/train_step.py --device cuda \
    --threads 8 --arch resnet18_imagenet --input-shape 3 224 224 --classes 1000 --batch 256 \
    --steps 5 --json > '$OUT/train_step_resnet18_imagenet.json'"
fi

echo "=== done $(date -u +%T); failed steps: ${FAILED[*]:-none}"
[ ${#FAILED[@]} -eq 0 ]
