"""Our RegStage (engine/omni/projector.py) against timm 1.0.3's, the version HumanOmni pins.

timm is not a dependency: the pinned wheel is fetched with `pip download --no-deps` into the test cache
and imported from there, with torchvision stubbed (timm imports it for its data pipeline only; the
RegNet model code never calls it). Same random weights → identical state-dict keys/shapes and outputs.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from unittest import mock

import pytest
import torch
from affectstream.engine.omni.projector import RegStage
from affectstream.engine.paths import home
from torch import nn

TIMM = "timm==1.0.3"


def _timm_dir() -> Path:
    dest = home() / "test-cache" / "timm-1.0.3"
    if (dest / "timm" / "models" / "regnet.py").exists():
        return dest
    with tempfile.TemporaryDirectory() as tmp:
        try:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, TIMM],
                check=True,
                timeout=300,
                capture_output=True,
            )
        except (subprocess.SubprocessError, OSError) as e:
            pytest.skip(f"cannot fetch {TIMM} from the package index: {e}")
        wheel = next(Path(tmp).glob("timm-*.whl"))
        zipfile.ZipFile(wheel).extractall(dest)
    return dest


@pytest.fixture(scope="module")
def timm_regnet():
    path = str(_timm_dir())
    stub = mock.MagicMock()
    names = [
        "torchvision",
        "torchvision.transforms",
        "torchvision.transforms.functional",
        "torchvision.ops",
        "torchvision.ops.misc",
        "torchvision.datasets",
        "torchvision.transforms.v2",
    ]
    saved = {n: sys.modules.get(n) for n in names}
    with mock.patch.dict(sys.modules, dict.fromkeys(names, stub)):
        sys.path.insert(0, path)
        try:
            from timm.layers import LayerNorm2d
            from timm.models.regnet import RegStage as TimmRegStage
        finally:
            sys.path.remove(path)
    assert all(sys.modules.get(n) is saved[n] for n in names)
    return TimmRegStage, LayerNorm2d


@pytest.mark.slow
@pytest.mark.parametrize(("cin", "cout"), [(768, 896), (896, 896)])
def test_regstage_equals_timm(timm_regnet, cin: int, cout: int) -> None:
    timm_stage_cls, layer_norm_2d = timm_regnet
    torch.manual_seed(0)
    # exactly how HumanOmni builds it: RegStage(depth, in, out, stride=1, dilation=1, SiLU, LayerNorm2d)
    ref = timm_stage_cls(
        2, cin, cout, stride=1, dilation=1, act_layer=nn.SiLU, norm_layer=layer_norm_2d
    ).eval()
    ours = RegStage(2, cin, cout, se_ratio=0.25).eval()
    assert {k: v.shape for k, v in ref.state_dict().items()} == {
        k: v.shape for k, v in ours.state_dict().items()
    }
    sd = {k: torch.randn_like(v) * 0.1 for k, v in ref.state_dict().items()}
    ref.load_state_dict(sd)
    ours.load_state_dict(sd)
    x = torch.randn(2, cin, 14, 14)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)
