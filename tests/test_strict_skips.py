"""The CI skip rule (tests/strict_skips.py), run for real: pytest in a subprocess on generated tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from strict_skips import mode, reason_allowed

TESTS = Path(__file__).parent

CASES = '''
import pytest

def test_passes():
    assert True

def test_needs_a_tool():
    pytest.skip("mosquitto not installed (apt-get install mosquitto)")

def test_needs_cuda():
    pytest.skip("no CUDA device here (torch.cuda.is_available() is False)")

@pytest.mark.skipif(True, reason="tensorrt is installed here")
def test_tensorrt_variant():
    pass

@pytest.mark.gpu
def test_marked_gpu():
    pytest.skip("cannot build: no device")

@pytest.mark.xfail(reason="known", strict=True)
def test_expected_failure():
    assert False
'''
MODULE_SKIP = '''
import pytest
pytest.importorskip("no_such_module_affectstream", reason="the optional extra is not installed")

def test_never_runs():
    pass
'''


def run_pytest(tmp_path: Path, env_over: dict[str, str], *files: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_cases.py").write_text(CASES)
    (tmp_path / "test_module_skip.py").write_text(MODULE_SKIP)
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    gpu: needs a GPU\n")
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "AFFECTSTREAM_STRICT_SKIPS", "PYTEST_ADDOPTS")}
    env.update(env_over)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "strict_skips", "-p", "no:cacheprovider", "-rA", *files],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_off_outside_ci(tmp_path: Path) -> None:
    r = run_pytest(tmp_path, {})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "skips not allowed" not in r.stdout


def test_ci_fails_on_a_tool_skip_and_a_module_skip_but_allows_gpu_ones(tmp_path: Path) -> None:
    r = run_pytest(tmp_path, {"CI": "true"})
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "FAILED test_cases.py::test_needs_a_tool" in out
    assert "skipped in strict mode: mosquitto not installed" in out
    assert "test_module_skip.py: the optional extra is not installed" in out
    for reason in ("no CUDA device here", "tensorrt is installed here", "cannot build: no device"):
        assert any(ln.startswith("SKIPPED") and reason in ln for ln in out.splitlines()), reason
    assert "XFAIL test_cases.py::test_expected_failure" in out
    assert "1 failed, 1 passed, 4 skipped, 1 xfailed" in out  # 3 allowed skips + the module


def test_a_module_skip_alone_fails_the_session(tmp_path: Path) -> None:
    r = run_pytest(tmp_path, {"AFFECTSTREAM_STRICT_SKIPS": "1"}, "test_module_skip.py")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "skips not allowed in strict mode" in r.stdout


def test_all_mode_allows_nothing_and_zero_turns_it_off(tmp_path: Path) -> None:
    r = run_pytest(tmp_path, {"AFFECTSTREAM_STRICT_SKIPS": "all"}, "test_cases.py")
    # a skipif marker skips in setup, so its strict failure shows as an error
    assert r.returncode == 1 and "3 failed, 1 passed, 1 xfailed, 1 error" in r.stdout, r.stdout
    r = run_pytest(tmp_path, {"CI": "true", "AFFECTSTREAM_STRICT_SKIPS": "0"}, "test_cases.py")
    assert r.returncode == 0, r.stdout


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "off"),
        ({"CI": "true"}, "allow-list"),
        ({"CI": "1"}, "allow-list"),
        ({"CI": "false"}, "off"),
        ({"AFFECTSTREAM_STRICT_SKIPS": "1"}, "allow-list"),
        ({"AFFECTSTREAM_STRICT_SKIPS": "all"}, "all"),
        ({"CI": "true", "AFFECTSTREAM_STRICT_SKIPS": "0"}, "off"),
    ],
)
def test_mode(env: dict[str, str], expected: str) -> None:
    assert mode(env) == expected


def test_allow_list() -> None:
    assert reason_allowed("no CUDA device here")
    assert reason_allowed("tensorrt is installed here: the real build runs instead")
    assert reason_allowed("this machine has GPU providers: covered by GPU tests")
    assert reason_allowed("anything", ("gpu",))
    assert not reason_allowed("ffmpeg not installed (apt-get install ffmpeg)")
    assert not reason_allowed("cannot fetch timm from the package index: offline")
    assert not reason_allowed("a gpuless-sounding word: gpus3")  # whole words only
    assert not reason_allowed("no CUDA device here", strict_mode="all")
