"""The typed settings model: one place that documents every knob.

Values come, lowest to highest precedence, from the defaults here, a TOML file (`--config`), environment
variables `AFFECTSTREAM_*` (nested with `__`, e.g. `AFFECTSTREAM_MQTT__URL`) and command-line flags.
`affectstream run --print-config` shows the merged result, so what runs is never a guess.
"""

from __future__ import annotations

import json
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

from affectstream.engine.errors import UsageError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class SettingsError(UsageError):
    """A setting the user must fix: one line naming the setting, where its value came from, and the fix."""


def default_node_id() -> str:
    """The host name, reduced to characters that are safe in a topic segment: two machines on one broker
    then publish under different node ids without configuration; set `mqtt.node_id` to choose one."""
    host = re.sub(r"[^A-Za-z0-9_-]+", "-", socket.gethostname().split(".")[0]).strip("-").lower()
    return host[:48] or "node"


class Section(BaseModel):
    """Base of every settings section: an unknown key or a NaN/infinite number is an error, not a
    value silently ignored or accepted that only fails later, after the models have loaded."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class WindowSettings(Section):
    length: float = Field(2.0, gt=0, description="Window length in seconds (R1-Omni clips are short).")
    hop: float = Field(1.0, gt=0, description="Seconds between window starts; < length means overlap.")
    frames: int = Field(8, ge=1, le=64, description="Frames sampled per window at segment midpoints.")
    max_pending: int = Field(
        2, ge=1, description="Windows waiting per live stream; beyond this the oldest is dropped and counted."
    )


_SEGMENT = re.compile(r"^[^/#+\s\x00]{1,64}$")
MQTT_SCHEMES = ("mqtt", "mqtts", "tcp", "ssl")
# `--mqtt URL?option=value` names: the URL alias (left) sets the `mqtt.*` setting (right).
MQTT_URL_OPTIONS = {
    "node": "node_id",
    "node_id": "node_id",
    "window_qos": "window_qos",
    "qos": "window_qos",
    "client_id": "client_id",
    "prefix": "prefix",
    "ca": "tls_ca",
    "tls_ca": "tls_ca",
    "cert": "tls_cert",
    "tls_cert": "tls_cert",
    "key": "tls_key",
    "tls_key": "tls_key",
    "insecure": "tls_insecure",
    "tls_insecure": "tls_insecure",
    "keepalive": "keepalive",
    "offline_queue": "offline_queue",
    "ha_discovery": "ha_discovery",
}


@dataclass(frozen=True, slots=True)
class MqttUrl:
    """A parsed `mqtt[s]://[user[:pass]@]host[:port][?option=value&...]` (the one parser of it)."""

    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = None
    options: dict[str, str] = field(default_factory=dict)  # setting name -> value as written


def parse_mqtt_url(url: str) -> MqttUrl:
    """Parse a broker URL; raises ValueError with one line for an unknown scheme or option, no host,
    or a port outside 1-65535 (port 0 is not "the default port": it is an error)."""
    shown = redact_url(url)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in MQTT_SCHEMES:
        raise ValueError(f"unsupported URL scheme {parts.scheme!r} in {shown!r}; use mqtt:// or mqtts://")
    if not parts.hostname:
        raise ValueError(f"no host in {shown!r}; e.g. mqtt://127.0.0.1:1883")
    tls = scheme in ("mqtts", "ssl")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"bad port in {shown!r}: use 1-65535") from None
    if port is None:
        port = 8883 if tls else 1883
    elif not 0 < port < 65536:
        raise ValueError(f"bad port {port} in {shown!r}: use 1-65535")
    options: dict[str, str] = {}
    for k, v in parse_qs(parts.query, keep_blank_values=True).items():
        name = MQTT_URL_OPTIONS.get(k)
        if name is None:
            raise ValueError(
                f"unknown URL option {k!r} in {shown!r}; known: {', '.join(sorted(set(MQTT_URL_OPTIONS)))}"
            )
        options[name] = v[-1]
    return MqttUrl(
        host=parts.hostname,
        port=port,
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        options=options,
    )


def redact_url(url: str) -> str:
    """The URL without its password, for messages, logs and `--print-config`."""
    return re.sub(r"(//[^:/@]*):[^@/]*@", r"\1:***@", url)


def _same(value: Any, raw: str) -> bool:
    if isinstance(value, bool):
        return value == (raw.lower() in ("1", "true", "yes", "on"))
    return str(value) == raw


class MqttSettings(Section):
    """Where and how results are published: the one MQTT settings model (the sink takes its values)."""

    enabled: bool = Field(True, description="False (or --no-mqtt) disables MQTT entirely.")
    url: str | None = Field(
        None,
        description="mqtt://[user:pass@]host:port[?node=..&window_qos=..&client_id=..&ca=..&cert=..&key=.."
        "&insecure=1] or mqtts://...; URL options set the mqtt.* setting of that name. None starts an "
        "embedded broker.",
    )
    embedded_host: str = Field("127.0.0.1", description="Bind address of the embedded broker.")
    embedded_port: int = Field(1883, ge=1, le=65535, description="Port of the embedded broker.")
    prefix: str = Field("affectstream", description="Topic root; topics are <prefix>/<node_id>/...")
    node_id: str = Field(
        default_factory=default_node_id,
        description="Topics live under <prefix>/<node_id>; default: the host name. Unique per engine.",
    )
    client_id: str | None = Field(
        None,
        description="MQTT client id; default: affectstream-<node_id>-<random>, unique per process, so two "
        "processes never take over each other's session.",
    )
    window_qos: int = Field(0, ge=0, le=1, description="QoS of per-window messages (state/reasoning use 1).")
    username: str | None = None
    password: str | None = Field(None, description="Shown as *** by --print-config.")
    tls_ca: Path | None = Field(
        None, description="CA file; setting any tls_* (or an mqtts:// URL) enables TLS."
    )
    tls_cert: Path | None = Field(None, description="Client certificate (mutual TLS); needs tls_key.")
    tls_key: Path | None = None
    tls_insecure: bool = Field(False, description="Skip host name verification (self-signed test brokers).")
    keepalive: int = Field(30, ge=5, le=65535, description="MQTT keepalive in seconds.")
    offline_queue: int = Field(10_000, ge=1, description="Messages kept while the broker is away.")
    stats_interval: float = Field(10.0, gt=0, description="Seconds between `stats` messages.")
    ha_discovery: bool = Field(False, description="Publish Home Assistant discovery configs per stream.")

    @field_validator("node_id", "client_id")
    @classmethod
    def _topic_safe(cls, v: str | None) -> str | None:
        if v is not None and not _SEGMENT.match(v):
            raise ValueError("use 1-64 characters without '/', '+', '#' or spaces")
        return v

    @model_validator(mode="before")
    @classmethod
    def _url_options(cls, data: Any) -> Any:
        """Options written in the URL (and its user:password) set the setting of that name, validated
        like any other value; the same setting given twice with different values (in the URL and in a
        flag, file or env var) is an error, since either one silently winning would surprise."""
        if not isinstance(data, dict) or not isinstance(data.get("url"), str):
            return data
        u = parse_mqtt_url(data["url"])
        out = dict(data)
        given = {"username": u.username, "password": u.password, **u.options}
        for name, raw in given.items():
            if raw is None:
                continue
            if name in data and data[name] is not None and not _same(data[name], raw):
                shown = "***" if name == "password" else repr(raw)
                raise ValueError(
                    f"{name} is given twice, {shown} in the URL and another value elsewhere; keep one"
                )
            out[name] = raw
        return out

    @model_validator(mode="after")
    def _tls_pair(self) -> MqttSettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("a client certificate needs both tls_cert and tls_key")
        return self

    @property
    def tls(self) -> bool:
        scheme = urlsplit(self.url).scheme.lower() if self.url else ""
        return scheme in ("mqtts", "ssl") or self.tls_ca is not None or self.tls_cert is not None


class LiteSettings(Section):
    detector: Literal["short", "full"] = Field(
        "short", description="BlazeFace short-range (faces within ~2 m, fastest) or full-range."
    )
    max_faces: int = Field(4, ge=1, description="Faces measured per frame, largest first.")
    min_face: int = Field(24, ge=1, description="Smallest face side in pixels that is measured.")
    threads: int = Field(
        1, ge=1, description="ONNX Runtime intra-op threads (1 measured fastest for these small models)."
    )
    actions: bool = Field(True, description="Facial actions (smile, mouth open, brows) from the face mesh.")
    voice_model: bool = Field(
        True,
        description="Speech-emotion model (Whisper-base encoder + the profile's trained voice_emotion head) on "
        "windows with speech; off: voice cues are prosody only.",
    )
    voice_head: Path | None = Field(
        None,
        description="A retrained voice head (.onnx from `affectstream train voice`) instead of the profile's.",
    )
    parallel_voice: bool = Field(
        False,
        description="Run a batch's voice part (VAD, prosody, speech-emotion model) in a second thread while "
        "its faces are analysed. Off by default: on a 2-core machine it measured no faster than one "
        "thread after the other (bench/RESULTS.md, voice); try it on machines with spare cores.",
    )
    transcript: bool | None = Field(
        None,
        description="Whisper-base transcript (off the fast path, rate-limited); default (None): on whenever "
        "reasoning is on, since the words are evidence the reasoner reads.",
    )
    transcript_nice: int = Field(
        10,
        ge=0,
        le=19,
        description="How much lower the transcript thread's CPU priority is (Linux nice steps, Whisper's "
        "own threads included) when `transcript_idle` is off: the fast path keeps the cores when both "
        "want them; 0 = same priority.",
    )
    transcript_idle: bool = Field(
        True,
        description="Run the transcript thread (and Whisper's own threads) under Linux SCHED_IDLE: only on "
        "CPU time the fast path leaves unused. Under sustained full load transcripts then nearly stop; "
        "off: `transcript_nice` applies.",
    )


class ReasoningSettings(Section):
    enabled: bool = Field(True, description="Run the slow-path LLM that writes <think>/<answer>.")
    model: Path | None = Field(None, description="GGUF to use instead of the profile's LLM.")
    lora: Path | None = Field(None, description="GGUF LoRA adapter; default: the profile's trained adapter.")
    every_n: int = Field(5, ge=1, description="Reason at least every N windows per stream.")
    on_change: bool = Field(True, description="Also reason when the dominant label changes.")
    max_tokens: int = Field(64, ge=8, description="Bound on generated tokens.")
    threads: int = Field(1, ge=1, description="llama.cpp threads (leave cores to the fast path).")
    nice: int = Field(
        10,
        ge=0,
        le=19,
        description="How much lower the reasoning thread's CPU priority is (Linux nice steps) when `idle` is "
        "off: the fast path's labels keep the cores when both want them; 0 = same priority.",
    )
    idle: bool = Field(
        True,
        description="Run the reasoning thread under Linux SCHED_IDLE: only on CPU time the fast path leaves "
        "unused (the labels never wait for the LLM); a generation starved longer than `idle_grace_s` "
        "finishes at `nice`. Off: `nice` applies throughout.",
    )
    idle_grace_s: float = Field(
        10.0,
        ge=0.0,
        description="With `idle`: a generation still running after this many seconds (the CPU is saturated) "
        "finishes at the `nice` level instead, so a busy node still explains now and then (counted as "
        "`left_idle` in stats); 0 = never.",
    )
    grammar: bool = Field(True, description="Constrain output to <think>..</think><answer>LABEL</answer>.")
    layout: Literal["auto", "evidence", "compact", "ranked", "legacy"] = Field(
        "auto",
        description="Prompt layout: evidence (fixed instruction first, cached prefix), compact (the same with "
        "scores in whole percents: fewer tokens), ranked (compact with the cue lines strongest first) or "
        "legacy; auto = the "
        "layout the profile's adapter was trained with (its pin's prompt_layout), else evidence.",
    )


class OmniSettings(Section):
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


class ExecutorSettings(Section):
    """Where the fast path runs (engine/executor/): in-process thread, worker processes, or Ray."""

    backend: Literal["auto", "thread", "process", "ray"] = Field(
        "auto",
        description="auto: thread for one stream (and files), process when several live streams run; "
        "thread: one analyzer in this process; process: a pool of warm worker processes; ray: a cluster.",
    )
    workers: int | None = Field(
        None,
        ge=1,
        description="Worker processes (process backend); default: the machine's core count (`serve`: one "
        "fewer, at least one, because the engine process decodes the callers' video).",
    )
    capacity: int = Field(
        16, ge=1, description="Windows handed to the executor at once; more wait in their stream's queue."
    )
    max_batch: int = Field(8, ge=1, description="Most windows analysed in one call (batches across streams).")
    latency_target_ms: float = Field(
        150.0,
        gt=0,
        description="Window close -> published target: a batch is cut so its first window meets it.",
    )
    stagger: bool = Field(
        True,
        description="Offset each new live stream's window grid so streams' windows do not close together.",
    )
    early_frames: bool = Field(
        True,
        description="Live streams, process backend: analyse each sampled frame (faces, expressions) as "
        "soon as it is chosen, in idle worker time, so a window's close leaves only its audio to do.",
    )
    start_method: Literal["spawn", "forkserver"] = Field(
        "spawn",
        description="How worker processes start (never fork: ONNX Runtime and threads do not survive it).",
    )
    threads_per_worker: int = Field(
        1, ge=1, description="ONNX Runtime intra-op threads in each worker process."
    )
    start_timeout: float = Field(120.0, gt=0, description="Seconds a worker may take to load its models.")


class SmoothingSettings(Section):
    tau: float = Field(1.5, gt=0, description="Time constant (s) of the exponential smoothing.")
    hysteresis: float = Field(0.1, ge=0, le=1, description="Margin a new label needs to take over.")


class RaySettings(Section):
    """Scale-out on a Ray cluster (`--ray [ADDRESS]`, engine/distributed/); unused without it."""

    address: str | None = Field(
        None, description="Cluster address (host:port, 'auto' = the one on this machine); None: a local Ray."
    )
    actors: int = Field(2, ge=0, description="CPU analyzer actors (each loads the profile once).")
    cpus_per_actor: float = Field(1.0, gt=0, description="Ray CPUs each CPU analyzer actor reserves.")
    gpu_fraction: float = Field(0.25, gt=0, le=1, description="num_gpus per analyzer actor on GPU nodes.")
    gpu_actors: int | None = Field(
        None, ge=0, description="GPU analyzer actors; default: GPUs / gpu_fraction."
    )
    call_timeout: float = Field(60.0, gt=0, description="An analyzer silent this long is replaced (s).")
    heartbeat_timeout: float = Field(
        6.0, gt=0, description="A stream actor silent this long is restarted on another node (s)."
    )
    reasoners: int = Field(
        1, ge=0, description="Reasoner actors (LLM slow path), 1 CPU each; 0: no reasoning."
    )


class PrivacySettings(Section):
    """Responsible-use controls (README "Responsible use"). Frames and audio are never stored or published
    whatever is set here; these settings govern the results, which are personal data too."""

    retention_hours: float | None = Field(
        None,
        gt=0,
        description="Keep JSONL/report outputs at most this long: when affectstream writes one, it deletes its "
        "own older outputs in that folder (recognised by content) and reports leave out older results. "
        "None: keep.",
    )
    notice: str = Field(
        "Emotion analysis active: this page estimates emotions from your camera and microphone. Nothing is "
        "recorded; only labels and scores leave the server.",
        max_length=2000,
        description="Notice shown on the call page before and during a call.",
    )
    consent: bool = Field(
        True, description="The call page asks the caller to agree to the notice before the call can start."
    )


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
    ray: RaySettings = Field(default_factory=RaySettings)
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)

    @model_validator(mode="after")
    def _transcript_follows_reasoning(self) -> Settings:
        """Resolve `lite.transcript = None` to `reasoning.enabled` (an explicit true/false wins)."""
        if self.lite.transcript is None:
            self.lite.transcript = bool(self.reasoning.enabled)
        return self

    def to_json(self) -> str:
        """The merged settings as JSON, with the MQTT password (field and URL) shown as `***`."""
        data = self.model_dump(mode="json")
        m = data.get("mqtt", {})
        if m.get("password") is not None:
            m["password"] = "***"
        if m.get("url"):
            m["url"] = redact_url(m["url"])
        return json.dumps(data, indent=2)


def _deep_set(d: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    for k in keys[:-1]:
        d = d.setdefault(k, {})
    d[keys[-1]] = value


def load_settings(config_file: Path | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Merge defaults < TOML file < environment < `overrides` (dotted keys allowed, e.g. 'mqtt.url').

    Every problem is a `SettingsError` (a `UsageError`: one line, exit code 2) that names the setting,
    where the bad value came from (flag, env var, config file) and how to fix it, raised here, before
    anything loads: a missing or invalid TOML file, an unknown key, a value out of range or not finite.
    """
    if config_file is not None and not Path(config_file).is_file():
        raise SettingsError(f"config file not found: {config_file} (check the --config path)")
    init: dict[str, Any] = {}
    for k, v in (overrides or {}).items():
        if v is not None:
            _deep_set(init, k, v)
    toml: dict[str, Any] = {}
    if config_file is not None:
        toml = _read_toml(Path(config_file))

    class _FileSettings(Settings):
        model_config = SettingsConfigDict(
            env_prefix=ENV_PREFIX,
            env_nested_delimiter="__",
            extra="forbid",
            allow_inf_nan=False,
            toml_file=config_file,
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

    try:
        merged = _FileSettings(**init)
        settings = Settings.model_validate(merged.model_dump())
    except ValidationError as e:
        raise SettingsError(_explain(e, init, toml, config_file)) from None
    except ValueError as e:  # pydantic-settings: an env var whose JSON cannot be parsed
        raise SettingsError(f"{_env_hint(str(e))}") from None
    _check_paths(settings)
    return settings


ENV_PREFIX = "AFFECTSTREAM_"
# The command-line flag of a setting, to name it in error lines (engine/cli.py maps flags to settings).
FLAGS = {
    "window.hop": "--hop",
    "window.length": "--window",
    "mqtt.url": "--mqtt",
    "mqtt.node_id": "--node-id",
    "jsonl": "--jsonl",
    "profile": "--profile",
    "omni.checkpoint": "--checkpoint",
}


def env_name(dotted: str) -> str:
    """The environment variable of a setting: `mqtt.window_qos` -> `AFFECTSTREAM_MQTT__WINDOW_QOS`."""
    return ENV_PREFIX + "__".join(part.upper() for part in dotted.split("."))


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib  # type: ignore[import-not-found]
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise SettingsError(f"config file {path}: not a UTF-8 text file (expected TOML)") from None
    except tomllib.TOMLDecodeError as e:
        raise SettingsError(f"config file {path}: invalid TOML: {e}; fix the syntax at that place") from None
    except OSError as e:
        raise SettingsError(f"config file {path}: cannot read it ({e.strerror or e})") from None


def _lookup(d: dict[str, Any], dotted: str) -> tuple[bool, Any]:
    cur: Any = d
    for k in dotted.split("."):
        if not isinstance(cur, dict) or k not in cur:
            return False, None
        cur = cur[k]
    return True, cur


def _origin(dotted: str, init: dict[str, Any], toml: dict[str, Any], config_file: Path | None) -> str:
    """Where a setting's value came from, in the words a user would use to find it."""
    found, _ = _lookup(init, dotted)
    if found:
        flag = FLAGS.get(dotted)
        return f"the command line, {flag}" if flag else "the command line"
    name = env_name(dotted)
    if name in os.environ:
        return f"env {name}"
    top = dotted.split(".")[0]
    if env_name(top) in os.environ and top != dotted:
        return f"env {env_name(top)}"
    found, _ = _lookup(toml, dotted)
    if found and config_file is not None:
        return f"config file {config_file}"
    return "the defaults"


def _explain(e: ValidationError, init: dict[str, Any], toml: dict[str, Any], config_file: Path | None) -> str:
    """The first validation problem as one line: setting, value, origin, what is wrong, how to fix it."""
    err = e.errors(include_url=False)[0]
    loc = [str(p) for p in err["loc"] if not isinstance(p, int)]
    dotted = ".".join(loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        section, _, _key = dotted.rpartition(".")
        model: Any = Settings
        for part in section.split(".") if section else []:
            model = model.model_fields[part].annotation
        known = ", ".join(sorted(getattr(model, "model_fields", {})))
        where = _origin(dotted, init, toml, config_file)
        return (
            f"unknown setting {dotted!r} (from {where}); "
            f"valid keys{' in [' + section + ']' if section else ''}: {known}"
        )
    where = _origin(dotted, init, toml, config_file)
    value = err.get("input")
    if isinstance(value, dict) and isinstance(value.get("url"), str):  # a check of the whole URL
        dotted, value = f"{dotted}.url", redact_url(value["url"])
        where = _origin(dotted, init, toml, config_file)
    elif where == "the defaults" and dotted.startswith("mqtt."):
        where = "an option in the mqtt.url URL"
    shown = "***" if dotted.endswith("password") else _short(value)
    msg = str(err["msg"]).removeprefix("Value error, ").replace("Input should be", "must be")
    if kind == "finite_number":
        msg = "must be a finite number"
    return f"invalid setting {dotted or 'settings'} = {shown} (from {where}): {msg}; change it there"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _env_hint(text: str) -> str:
    m = re.search(r'field "(\w+)" from source "(\w+)"', text)
    if m:
        return (
            f"invalid value for setting {m.group(1)!r} in {env_name(m.group(1))}: "
            "a section given as one variable must be JSON; or set its keys one by one, e.g. "
            f"{env_name(m.group(1) + '.key')}=..."
        )
    return f"invalid settings: {text.splitlines()[0]}"


def _check_paths(settings: Settings) -> None:
    """Paths that cannot work are reported now, not after the models have loaded."""
    out = settings.jsonl
    if out and out != "-":
        p = Path(out).expanduser()
        if p.is_dir():
            raise SettingsError(f"--jsonl {out}: is a directory; give a file path or '-' for stdout")
        parent = p.parent if str(p.parent) else Path(".")
        if not parent.is_dir():
            raise SettingsError(f"--jsonl {out}: directory {parent} does not exist; create it or pick a path")
        if (p.exists() and not os.access(p, os.W_OK)) or (not p.exists() and not os.access(parent, os.W_OK)):
            raise SettingsError(f"--jsonl {out}: permission denied; pick a writable path")
    m = settings.mqtt
    for name in ("tls_ca", "tls_cert", "tls_key"):
        f = getattr(m, name)
        if f is not None and not Path(f).is_file():
            raise SettingsError(f"mqtt.{name} {f}: no such file; give the path of the PEM file")
