#!/usr/bin/env bash
# TensorRT section of the GPU check (called by bench/gpu_check.sh; about 5-8 min on an H100).
#
# Where the `tensorrt` package is installed: runs the GPU tests (build, load, batch above the profile
# max, compare with ONNX Runtime CPU) with no skip allowed, then bench/bench_tensorrt.py: per encoder and
# precision the build time, accuracy vs ORT CPU on real windows and the latency ratio. Encoders:
# $AFFECTSTREAM_TRT_ONNX_DIR (a folder of .onnx files), else the prepared `lite` profile, else the tiny
# r1-omni encoders exported on the spot (the GPU machines have no network, so nothing is downloaded).
#
# Exit status: 0 when every step passed, or when TensorRT is not installed at all (reported "absent",
# nothing else attempted). Anything else that cannot run — tensorrt installed but not importable (e.g.
# libnvinfer missing), no GPU, a skipped or failed test, a failed build or accuracy check, a timeout —
# prints a FAILED line and exits 1.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
PY=${PYTHON:-python}
echo "== TensorRT plans =="

if ! "$PY" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("tensorrt") is None)' 2>/dev/null; then
    echo "tensorrt: absent (the tensorrt Python package is not installed here); no plans built or timed"
    exit 0
fi
if ! err=$("$PY" -c "import tensorrt" 2>&1); then
    echo "gpu_check_trt: FAILED: tensorrt is installed but does not import: $(printf '%s' "$err" | tail -n 1)" >&2
    exit 1
fi

status=0
fail() {
    echo "gpu_check_trt: FAILED: $*" >&2
    status=1
}

"$PY" -c "import tensorrt, torch; print('tensorrt', tensorrt.__version__, '| torch', torch.__version__, '| cuda', torch.cuda.is_available())" \
    || fail "could not report the TensorRT/torch versions"

# No skip may pass as success here: AFFECTSTREAM_STRICT_SKIPS=all turns every skip into a failure.
AFFECTSTREAM_STRICT_SKIPS=all timeout 180 "$PY" -m pytest -q -p no:cacheprovider -m gpu tests/test_tensorrt_runtime.py
rc=$?
case "$rc" in
    0) ;;
    124) fail "TensorRT GPU tests timed out after 180 s" ;;
    5) fail "no TensorRT GPU test was collected (pytest exit 5)" ;;
    *) fail "TensorRT GPU tests exited $rc" ;;
esac

src=()
if [ -n "${AFFECTSTREAM_TRT_ONNX_DIR:-}" ]; then
    src=(--onnx-dir "${AFFECTSTREAM_TRT_ONNX_DIR}")
elif "$PY" -c "from affectstream.engine.profile import Profile; Profile.load('lite')" >/dev/null 2>&1; then
    src=(--profile lite)
else
    dir=$(mktemp -d)
    echo "lite profile not prepared here: exporting the tiny r1-omni encoders to ${dir}"
    if "$PY" - "${dir}" <<'PY'
import sys, tempfile
from pathlib import Path
from affectstream.engine.omni.tiny import make_tiny_checkpoint
from affectstream.export.omni_onnx import export_omni
ck = make_tiny_checkpoint(Path(tempfile.mkdtemp()))
export_omni(ck, sys.argv[1], parts=("vision", "audio"))
PY
    then
        src=(--onnx-dir "${dir}")
    else
        fail "exporting the tiny r1-omni encoders to ONNX failed"
    fi
fi

if [ "${#src[@]}" -gt 0 ]; then
    timeout 420 "$PY" bench/bench_tensorrt.py "${src[@]}" --require-tensorrt --precisions fp32,fp16,int8 --iters 100
    rc=$?
    case "$rc" in
        0) ;;
        124) fail "bench/bench_tensorrt.py timed out after 420 s" ;;
        *) fail "bench/bench_tensorrt.py exited $rc (a plan failed to build or to pass its accuracy check)" ;;
    esac
fi

[ "$status" -eq 0 ] && echo "gpu_check_trt: all TensorRT steps passed"
exit "$status"
