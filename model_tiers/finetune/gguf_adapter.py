"""A PEFT LoRA adapter written as a GGUF LoRA file that llama.cpp and Ollama load.

Tensor names follow llama.cpp's GGUF names (`blk.N.attn_q.weight.lora_a`); A is stored as
PEFT keeps it (r x in) and B likewise (out x r), which are the shapes llama.cpp checks
against the base tensor. llama.cpp scales the update by `adapter.lora.alpha / r`, as PEFT
does.

llama-family GGUF files store the rows of the attention Q and K projections permuted
relative to Hugging Face's layout (llama.cpp's rotary embedding pairs neighbouring rows,
HF's pairs the two halves of each head). The update B·A acts on those rows, so B's rows are
permuted the same way; without it the adapter loads and silently computes something else
(the conformance test compares llama.cpp's next token with the merged torch model's).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tierflow.model_tiers.errors import ConfigError

__all__ = ["write_gguf_adapter", "SUPPORTED_ARCHITECTURES", "permute_rows"]

_MODULES = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
# Architectures whose GGUF permutes Q/K rows (llama) and those that keep HF's layout.
_PERMUTED = frozenset({"llama"})
SUPPORTED_ARCHITECTURES = frozenset({"llama", "qwen2"})
_PEFT_NAME = re.compile(r"layers\.(\d+)\.(self_attn\.[qkvo]_proj|mlp\.(?:gate|up|down)_proj)\.lora_([AB])\.(?:default\.)?weight$")


def permute_rows(weight: np.ndarray, n_head: int) -> np.ndarray:
    """HF row order -> llama.cpp's, for a Q (n_head) or K (n_head_kv) projection's rows."""
    rows = weight.shape[0]
    return weight.reshape(n_head, 2, rows // n_head // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def write_gguf_adapter(
    path: str | Path,
    lora_state: Mapping[str, Any],
    *,
    architecture: str,
    alpha: float,
    n_head: int,
    n_head_kv: int,
    permute_qk: bool | None = None,
) -> int:
    """Write `lora_state` (PEFT tensor name -> tensor) to `path`; returns the tensor count.

    `permute_qk` defaults to what the architecture needs; the conformance test passes
    False to show the permutation matters.
    """
    import gguf

    if architecture not in SUPPORTED_ARCHITECTURES:
        raise ConfigError(
            f"GGUF LoRA export supports {', '.join(sorted(SUPPORTED_ARCHITECTURES))} models; this base model is '{architecture}'"
        )
    permute = architecture in _PERMUTED if permute_qk is None else permute_qk
    tensors: dict[str, np.ndarray] = {}
    for name, tensor in lora_state.items():
        match = _PEFT_NAME.search(name)
        if match is None:
            raise ConfigError(f"unexpected LoRA tensor '{name}': only attention and MLP projections can be exported")
        layer, module, which = match.groups()
        array = tensor.detach().float().cpu().numpy() if hasattr(tensor, "detach") else np.asarray(tensor, dtype=np.float32)
        if which == "B" and permute and module in ("self_attn.q_proj", "self_attn.k_proj"):
            array = permute_rows(array, n_head if module == "self_attn.q_proj" else n_head_kv)
        tensors[f"blk.{layer}.{_MODULES[module]}.weight.lora_{which.lower()}"] = np.ascontiguousarray(array, dtype=np.float32)
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    writer = gguf.GGUFWriter(str(partial), architecture)
    writer.add_string("general.type", "adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", float(alpha))
    for name in sorted(tensors):
        writer.add_tensor(name, tensors[name])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    partial.replace(path)
    return len(tensors)
