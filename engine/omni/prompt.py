"""The text side: chat rendering, placeholder tokenisation and answer reading (docs/r1omni.md §1.7, §3.4).

The prompt is rendered here rather than by the tokenizer's jinja template so that the real checkpoint
(Qwen2-VL template) and our tiny test tokenizer produce the same string; with the default system prompt
it equals the Qwen2-VL rendering of a plain-string user turn. Placeholders `<video>`/`<audio>` become the
negative ids −201/−202 and every text chunk between them is tokenised on its own, so BPE never merges
across a placeholder. `<vi_start>`… are plain text, not added tokens, exactly as in the reference.
"""

from __future__ import annotations

import re
from typing import Any

from affectstream.engine.omni.config import MODAL_INDEX, X_START_END

SYSTEM_PROMPT = "You are a helpful assistant."
# The README demo instruction, two spaces before "Output" included (docs/r1omni.md §3.4).
DEFAULT_INSTRUCTION = (
    "As an emotional recognition expert; throughout the video, which emotion conveyed by the characters is the "
    "most obvious to you?  Output the thinking process in <think> </think> and final emotion in <answer> </answer> tags."
)
_PLACEHOLDER = re.compile("(" + "|".join(re.escape(k) for k in MODAL_INDEX) + ")")


def render(
    instruction: str, video: bool, audio: bool, x_start_end: bool = True, system: str = SYSTEM_PROMPT
) -> str:
    """The user turn is "<video>\\n<audio>\\n{instruction}" (modal prefix of the present modalities).

    Video-only and audio-only simply drop the absent placeholder: the reference instead feeds a dummy
    384-px video that SigLIP-224 cannot take, which is why those modes crash there.
    """
    if not (video or audio):
        raise ValueError("a prompt needs at least one of video or audio")
    tags = [t for t, on in (("<video>", video), ("<audio>", audio)) if on]
    content = "\n".join(tags) + "\n" + instruction
    if x_start_end:
        for tag, (start, end) in X_START_END.items():
            content = content.replace(tag, f"{start}{tag}{end}")
    return f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{content}<|im_end|>\n<|im_start|>assistant\n"


def tokenize(text: str, tokenizer: Any) -> list[int]:
    """Token ids with −201/−202 at the placeholders; chunks encoded with add_special_tokens=False."""
    ids: list[int] = []
    for chunk in _PLACEHOLDER.split(text):
        if chunk in MODAL_INDEX:
            ids.append(MODAL_INDEX[chunk])
        elif chunk:
            ids.extend(tokenizer.encode(chunk, add_special_tokens=False))
    return ids
