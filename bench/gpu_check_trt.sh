#!/usr/bin/env bash
# TensorRT section of the GPU check (call it from bench/gpu_check.sh; about 5-8 min on an H100).
#
# Where `tensorrt` imports: runs the GPU tests (build, load, batch above the profile max, compare with
# ONNX Runtime CPU), then bench/bench_tensorrt.py: per encoder and precision the build time, accuracy
# vs ORT CPU on real windows and the latency ratio. Encoders: $AFFECTSTREAM_TRT_ONNX_DIR (a folder of
# .onnx files), else the prepared `lite` profile, else the tiny r1-omni encoders exported on the spot
# (the GPU machines have no network, so nothing is downloaded). Elsewhere it prints that TensorRT is
# absent and exits 0.
set -u
cd "$(dirname "$0")/.." || exit 1
echo "== TensorRT engines =="
if ! python -c "import tensorrt" >/dev/null 2>&1; then
    echo "tensorrt: absent on this machine ($(python -c 'import tensorrt' 2>&1 | tail -n 1)); no engines built or timed"
    exit 0
fi
python -c "import tensorrt, torch; print('tensorrt', tensorrt.__version__, '| torch', torch.__version__, '| cuda', torch.cuda.is_available())"
timeout 180 python -m pytest -q -p no:cacheprovider -m gpu tests/test_tensorrt_runtime.py || echo "TensorRT GPU tests FAILED"

src=()
if [ -n "${AFFECTSTREAM_TRT_ONNX_DIR:-}" ]; then
    src=(--onnx-dir "${AFFECTSTREAM_TRT_ONNX_DIR}")
elif python -c "from affectstream.engine.profile import Profile; Profile.load('lite')" >/dev/null 2>&1; then
    src=(--profile lite)
else
    dir=$(mktemp -d)
    echo "lite profile not prepared here: exporting the tiny r1-omni encoders to ${dir}"
    python - "${dir}" <<'PY'
import sys, tempfile
from pathlib import Path
from affectstream.engine.omni.tiny import make_tiny_checkpoint
from affectstream.export.omni_onnx import export_omni
ck = make_tiny_checkpoint(Path(tempfile.mkdtemp()))
export_omni(ck, sys.argv[1], parts=("vision", "audio"))
PY
    src=(--onnx-dir "${dir}")
fi
timeout 420 python bench/bench_tensorrt.py "${src[@]}" --precisions fp32,fp16,int8 --iters 100 \
    || echo "bench_tensorrt.py FAILED or timed out"
