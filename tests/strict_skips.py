"""pytest plugin: in CI a skipped test is a failure unless its reason is on the allow-list.

Why: many tests skip themselves when a tool (mosquitto, ffmpeg, llama-cpp-python, hadolint, ...) or a
download is missing. On a developer's laptop that is a convenience; in CI it means whole suites can
silently turn into skips while the run stays green. So when `CI=true` (set by CI services) or
`AFFECTSTREAM_STRICT_SKIPS=1`, every skip must be explained by hardware the CI machine does not have:

- a test marked `@pytest.mark.gpu`, or
- a skip reason matching `ALLOWED_REASONS` (GPU, CUDA, TensorRT): those parts cannot run on a CPU-only
  machine and are exercised by `bench/gpu_check.sh` on a GPU instead.

`AFFECTSTREAM_STRICT_SKIPS=all` allows nothing (used by the GPU check, where a GPU test that skips means
the check did not run). `AFFECTSTREAM_STRICT_SKIPS=0` turns the plugin off even under `CI=true`.

A test that skips against the rules is reported as failed, with its reason; a whole module that skips at
collection (e.g. `pytest.importorskip` at module level) is listed in the summary and fails the session.
Expected failures (`xfail`) are not skips and are left alone.
"""

from __future__ import annotations

import os
import re
from collections.abc import Generator
from typing import Any

import pytest

ALLOWED_REASONS: tuple[str, ...] = (
    r"\bgpus?\b",
    r"\bcuda\b",
    r"\btensorrt\b",
)
ALLOWED_MARKERS: tuple[str, ...] = ("gpu",)
_ALLOWED = re.compile("|".join(ALLOWED_REASONS), re.IGNORECASE)
_TRUE = {"1", "true", "yes", "on"}


def mode(env: dict[str, str] | os._Environ[str] | None = None) -> str:
    """"off", "allow-list" or "all" (no skip allowed), from AFFECTSTREAM_STRICT_SKIPS and CI."""
    env = os.environ if env is None else env
    explicit = env.get("AFFECTSTREAM_STRICT_SKIPS", "").strip().lower()
    if explicit == "all":
        return "all"
    if explicit in _TRUE:
        return "allow-list"
    if explicit in {"0", "false", "no", "off"}:
        return "off"
    return "allow-list" if env.get("CI", "").strip().lower() in _TRUE else "off"


def reason_allowed(reason: str, markers: tuple[str, ...] = (), strict_mode: str = "allow-list") -> bool:
    """True when a skip with this reason (on a test carrying `markers`) may pass in this mode."""
    if strict_mode == "off":
        return True
    if strict_mode == "all":
        return False
    return any(m in ALLOWED_MARKERS for m in markers) or bool(_ALLOWED.search(reason))


def _reason(longrepr: Any) -> str:
    """The skip message pytest keeps as (path, line, 'Skipped: why')."""
    text = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return text.removeprefix("Skipped: ")


class StrictSkips:
    def __init__(self, strict_mode: str) -> None:
        self.mode = strict_mode
        self.rejected: list[tuple[str, str]] = []  # (node id, reason)

    def _rule(self) -> str:
        if self.mode == "all":
            return "no skip is allowed (AFFECTSTREAM_STRICT_SKIPS=all)"
        return (
            "only GPU/CUDA/TensorRT skips are allowed in CI (tests/strict_skips.py; "
            "AFFECTSTREAM_STRICT_SKIPS=0 turns this off)"
        )

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, Any, None]:
        outcome = yield
        rep = outcome.get_result()
        if not rep.skipped or hasattr(rep, "wasxfail"):
            return
        reason = _reason(rep.longrepr)
        markers = tuple(m.name for m in item.iter_markers())
        if reason_allowed(reason, markers, self.mode):
            return
        self.rejected.append((item.nodeid, reason))
        rep.outcome = "failed"
        rep.longrepr = f"skipped in strict mode: {reason}\n{self._rule()}"

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.skipped:
            reason = _reason(report.longrepr)
            if not reason_allowed(reason, (), self.mode):
                self.rejected.append((report.nodeid, reason))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.rejected:
            terminalreporter.section("skips not allowed in strict mode", red=True)
            for nodeid, reason in self.rejected:
                terminalreporter.line(f"{nodeid}: {reason}")
            terminalreporter.line(self._rule())

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.rejected and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_configure(config: pytest.Config) -> None:
    strict_mode = mode()
    if strict_mode != "off":
        config.pluginmanager.register(StrictSkips(strict_mode), "affectstream-strict-skips")
