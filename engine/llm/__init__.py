"""The reasoning LLM (slow path): a small quantized model explains a window in `<think>`/`<answer>`.

prompt (evidence → R1-Omni-worded text) → llama (llama.cpp + GBNF grammar) → parse (first `<answer>`,
label validation) → reasoner (never raises) → scheduler (triggers, one generation per stream, worker
threads). The transformers reference on the same GGUF, for parity checks, is a test helper
(tests/hf_reference.py), not part of the package.
"""
