"""Fixtures for the expression / voice / runtime / fusion / lite tests (area h4).

Everything comes from the real prepared `lite` profile (`lite_profile` in fixtures_models.py): the
mini-Xception ONNX file, fer's original HDF5 and int8 TFLite files, Silero VAD and Whisper-base.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ASTRONAUT_FACE = (177, 66, 272, 161)  # the face in scikit-image's 512×512 astronaut photo


@pytest.fixture(scope="session")
def lite_prof(lite_profile: Path):
    from affectstream.engine.profile import Profile

    return Profile.load(lite_profile)


@pytest.fixture(scope="session")
def fer_hdf5(lite_prof) -> Path:
    return lite_prof.path("expression_hdf5")


@pytest.fixture(scope="session")
def fer_tflite(lite_prof) -> Path:
    return lite_prof.path("expression_tflite")


@pytest.fixture(scope="session")
def fer_torch(fer_hdf5: Path):
    from affectstream.export.fer import load_hdf5

    return load_hdf5(fer_hdf5)


@pytest.fixture(scope="session")
def expression_model(lite_prof):
    from affectstream.engine.models.expression import ExpressionModel

    return ExpressionModel.from_path(lite_prof.path("expression"), threads=1)


@pytest.fixture(scope="session")
def silero(lite_prof):
    from affectstream.engine.models.vad import SileroVad

    return SileroVad.from_path(lite_prof.path("vad"), threads=1)


@pytest.fixture(scope="session")
def beckett():
    from media import beckett_audio

    return beckett_audio()


@pytest.fixture(scope="session")
def lite_analyzer(lite_prof):
    """One shared LiteAnalyzer (BlazeFace short-range); tests use distinct stream ids."""
    from affectstream.engine.lite import LiteAnalyzer

    a = LiteAnalyzer(lite_prof, threads=1)
    yield a
    a.close()


@pytest.fixture(scope="session")
def silero_sequence_path(lite_profile: Path, tmp_path_factory) -> Path:
    """Silero's sequence model, from the same pinned silero-vad wheel the profile was prepared from."""
    import zipfile

    from fixtures_models import test_home

    wheels = sorted((test_home() / "wheels").glob("silero_vad-6.2.3-*.whl"))
    if not wheels:
        pytest.skip("silero-vad wheel not in the test wheel cache (lite_profile prepares it)")
    dest = tmp_path_factory.mktemp("vadseq")
    with zipfile.ZipFile(wheels[0]) as z:
        z.extract("silero_vad/data/silero_vad_16k_sequence.onnx", dest)
    return dest / "silero_vad/data/silero_vad_16k_sequence.onnx"
