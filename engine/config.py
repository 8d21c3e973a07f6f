"""The typed settings model: one place that documents every knob.

Values come, lowest to highest precedence, from the defaults here, a TOML file (`--config`), environment
variables `AFFECTSTREAM_*` (nested with `__`, e.g. `AFFECTSTREAM_MQTT__URL`) and command-line flags.
`affectstream run --print-config` shows the merged result, so what runs is never a guess.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


def _default_node_id() -> str:
    """Hostname-based so two machines on one broker do not collide; override with `mqtt.node_id`."""
    name = socket.gethostname().split(".")[0].lower()
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name) or "node"


class WindowSettings(BaseModel):
    length: float = Field(2.0, gt=0, description="Window length in seconds (R1-Omni clips are short).")
    hop: float = Field(1.0, gt=0, description="Seconds between window starts; < length means overlap.")
    frames: int = Field(8, ge=1, le=64, description="Frames sampled per window at segment midpoints.")
    max_pending: int = Field(
        2, ge=1, description="Windows waiting per live stream; beyond this the oldest is dropped and counted."
    )


class MqttSettings(BaseModel):
    enabled: bool = Field(True, description="False (or --no-mqtt) disables MQTT entirely.")
    url: str | None = Field(
        None, description="mqtt://[user:pass@]host:port or mqtts://...; None starts an embedded broker."
    )
    embedded_host: str = Field("127.0.0.1", description="Bind address of the embedded broker.")
    embedded_port: int = Field(1883, description="Port of the embedded broker.")
    prefix: str = Field("affectstream", description="Topic root; topics are <prefix>/<node_id>/...")
    node_id: str = Field(default_factory=_default_node_id, description="Unique per engine instance.")
    window_qos: Literal[0, 1] = Field(0, description="QoS of per-window messages (state/reasoning use 1).")
    username: str | None = None
    password: str | None = None
    tls_ca: Path | None = Field(None, description="CA file; setting any tls_* enables TLS.")
    tls_cert: Path | None = None
    tls_key: Path | None = None
    offline_queue: int = Field(10_000, ge=1, description="Messages kept while the broker is away.")
    stats_interval: float = Field(10.0, gt=0, description="Seconds between `stats` messages.")


class LiteSettings(BaseModel):
    detector: Literal["short", "full"] = Field(
        "short", description="BlazeFace short-range (faces within ~2 m, fastest) or full-range."
    )
    max_faces: int = Field(4, ge=1, description="Faces measured per frame, largest first.")
    min_face: int = Field(24, ge=1, description="Smallest face side in pixels that is measured.")
    threads: int = Field(
        1, ge=1, description="ONNX Runtime intra-op threads (1 measured fastest for these small models)."
    )
    actions: bool = Field(True, description="Facial actions (smile, mouth open, brows) from the face mesh.")
    transcript: bool = Field(False, description="Whisper-base transcript (off the fast path, rate-limited).")


class ReasoningSettings(BaseModel):
    enabled: bool = Field(True, description="Run the slow-path LLM that writes <think>/<answer>.")
    model: Path | None = Field(None, description="GGUF to use instead of the profile's LLM.")
    lora: Path | None = Field(None, description="GGUF LoRA adapter; default: the profile's trained adapter.")
    every_n: int = Field(5, ge=1, description="Reason at least every N windows per stream.")
    on_change: bool = Field(True, description="Also reason when the dominant label changes.")
    max_tokens: int = Field(64, ge=8, description="Bound on generated tokens.")
    threads: int = Field(1, ge=1, description="llama.cpp threads (leave cores to the fast path).")
    grammar: bool = Field(True, description="Constrain output to <think>..</think><answer>LABEL</answer>.")


class OmniSettings(BaseModel):
    checkpoint: Path | None = Field(None, description="R1-Omni / HumanOmni-0.5B checkpoint folder.")
    device: str = Field("cpu", description="cpu or cuda[:N].")
    dtype: Literal["fp32", "fp16", "bf16"] = "fp32"
    audio_mode: Literal["fast", "faithful"] = Field(
        "fast", description="fast: encode only the window's audio; faithful: pad to 30 s like R1-Omni."
    )
    max_new_tokens: int = Field(256, ge=1, description="Bound on the generated <think>/<answer> tokens.")
    bert_dir: Path | None = Field(
        None, description="bert-base-uncased folder (the checkpoint ships BERT weights but not its vocab)."
    )
    vision_dir: Path | None = Field(None, description="External siglip-base-patch16-224 folder (optional).")
    audio_dir: Path | None = Field(None, description="External whisper-large-v3 folder (optional).")
    onnx_dir: Path | None = Field(None, description="Run the encoders from these exported ONNX files.")
    llm_gguf: Path | None = Field(None, description="Decode with llama.cpp from this GGUF (fed embeddings).")


class ExecutorSettings(BaseModel):
    """Where the fast path runs (engine/executor/): in-process thread, worker processes, or Ray."""

    backend: Literal["auto", "thread", "process", "ray"] = Field(
        "auto",
        description="auto: thread for one stream (and files), process when several live streams run; "
        "thread: one analyzer in this process; process: a pool of warm worker processes; ray: a cluster.",
    )
    workers: int | None = Field(
        None, ge=1, description="Worker processes (process backend); default: the machine's core count."
    )
    capacity: int = Field(
        16, ge=1, description="Windows handed to the executor at once; more wait in their stream's queue."
    )
    max_batch: int = Field(8, ge=1, description="Most windows analysed in one call (batches across streams).")
    latency_target_ms: float = Field(
        150.0, gt=0, description="Window close -> published target: a batch is cut so its first window meets it."
    )
    stagger: bool = Field(
        True, description="Offset each new live stream's window grid so streams' windows do not close together."
    )
    start_method: Literal["spawn", "forkserver"] = Field(
        "spawn", description="How worker processes start (never fork: ONNX Runtime and threads do not survive it)."
    )
    threads_per_worker: int = Field(1, ge=1, description="ONNX Runtime intra-op threads in each worker process.")
    start_timeout: float = Field(120.0, gt=0, description="Seconds a worker may take to load its models.")


class SmoothingSettings(BaseModel):
    tau: float = Field(1.5, gt=0, description="Time constant (s) of the exponential smoothing.")
    hysteresis: float = Field(0.1, ge=0, le=1, description="Margin a new label needs to take over.")


class Settings(BaseSettings):
    """Everything `affectstream run` can be told. See README 'Configuration'."""

    model_config = SettingsConfigDict(env_prefix="AFFECTSTREAM_", env_nested_delimiter="__", extra="forbid")

    profile: Literal["lite", "r1-omni"] = "lite"
    runtime: str = Field("auto", description="auto | tensorrt | onnxruntime | torch")
    realtime: bool = Field(False, description="Pace file sources at their real speed.")
    jsonl: str | None = Field(None, description="Also write results as JSON lines to a path or '-'.")
    progress: bool = Field(True, description="Progress bar for file sources on a terminal.")
    window: WindowSettings = Field(default_factory=WindowSettings)
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    lite: LiteSettings = Field(default_factory=LiteSettings)
    reasoning: ReasoningSettings = Field(default_factory=ReasoningSettings)
    omni: OmniSettings = Field(default_factory=OmniSettings)
    smoothing: SmoothingSettings = Field(default_factory=SmoothingSettings)
    executor: ExecutorSettings = Field(default_factory=ExecutorSettings)

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2)


def _deep_set(d: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    for k in keys[:-1]:
        d = d.setdefault(k, {})
    d[keys[-1]] = value


def load_settings(config_file: Path | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Merge defaults < TOML file < environment < `overrides` (dotted keys allowed, e.g. 'mqtt.url')."""
    if config_file is not None and not Path(config_file).is_file():
        raise FileNotFoundError(f"config file not found: {config_file}")
    init: dict[str, Any] = {}
    for k, v in (overrides or {}).items():
        if v is not None:
            _deep_set(init, k, v)

    class _FileSettings(Settings):
        model_config = SettingsConfigDict(
            env_prefix="AFFECTSTREAM_", env_nested_delimiter="__", extra="forbid", toml_file=config_file
        )

        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
            if config_file is not None:
                sources.append(TomlConfigSettingsSource(settings_cls))
            return tuple(sources)

    merged = _FileSettings(**init)
    return Settings.model_validate(merged.model_dump())
