"""`finetune`: one step's examples in, one folder out, ready to serve as a tier.

The folder holds:

* ``adapter.gguf``: the LoRA adapter for llama.cpp (an embedded tier's `adapter`) and Ollama;
* ``peft/``: the same adapter as a PEFT folder, for vLLM (``--lora-modules``) and transformers;
* ``Modelfile``: ``ollama create NAME -f Modelfile``;
* ``tier.toml``: the `[[tiers]]` entries to add (embedded, and ollama commented out);
* ``train.json``: data, hyper-parameters, loss curve, base model hash, time;
* ``training.jsonl``: the examples trained on.

``checkpoint.pt`` exists only while a run is unfinished (see `lora.py`).
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tierflow.model_tiers.errors import ConfigError
from tierflow.model_tiers.finetune.data import PromptRenderer, TrainingDataError, TrainingExample, write_training_file
from tierflow.model_tiers.finetune.gguf_adapter import SUPPORTED_ARCHITECTURES, write_gguf_adapter
from tierflow.model_tiers.finetune.lora import LoraSettings, load_base_model, quiet_peft, train_lora
from tierflow.model_tiers.spec import TierSpec

__all__ = ["FinetuneResult", "finetune", "prompt_mode_of", "tier_entry"]


@dataclass(frozen=True)
class FinetuneResult:
    out_dir: Path
    adapter: Path
    tier_name: str
    examples: int
    steps: int
    first_loss: float
    last_loss: float
    seconds: float
    resumed_from: int


def prompt_mode_of(examples: Sequence[TrainingExample]) -> Literal["full", "compact"]:
    """The prompt style the examples were written in (`metadata.prompt`, default full)."""
    modes = {str(e.metadata.get("prompt", "full")) for e in examples}
    if len(modes) > 1 or not modes <= {"full", "compact"}:
        raise TrainingDataError(f"the examples mix prompt styles {sorted(modes)}; a tier is trained on one ('full' or 'compact')")
    return "compact" if modes == {"compact"} else "full"


def _toml_value(value: Any) -> str:
    return json.dumps(value)  # TOML basic strings, numbers and booleans are JSON-compatible


def tier_entry(base: TierSpec, name: str, adapter: Path, prompt: str, modelfile: Path) -> str:
    lines = [
        f"# A fine-tuned {base.model} (from tier '{base.name}'): add it to your tiers.toml and point a role at it,",
        f"# e.g. [roles] classify = {_toml_value(name)}.",
        "[[tiers]]",
        f"name = {_toml_value(name)}",
        'provider = "embedded"',
        f"model = {_toml_value(base.model)}",
        f"adapter = {_toml_value(str(adapter.resolve()))}",
        f"prompt = {_toml_value(prompt)}",
        f"price_input_per_mtok = {base.price_input_per_mtok:g}",
        f"price_output_per_mtok = {base.price_output_per_mtok:g}",
        f"max_output_tokens = {base.max_output_tokens}",
        f"timeout_s = {base.timeout_s:g}",
        f"max_concurrency = {base.max_concurrency}",
        f"capabilities = {{ tools = {str(base.capabilities.tools).lower()}, structured_output = "
        f"{_toml_value(base.capabilities.structured_output)}, context_window = {base.capabilities.context_window} }}",
        "# Soft (heuristic) checks were made for a general model's mistakes. Where they flag this",
        "# tier's right answers and the next tier is no better on what they flag (measure it on",
        "# held-out cases, as python -m tierflow.evals.bench.finetune does), set: soft_checks = false",
        "",
        f"# The same adapter served by Ollama, after `ollama create {name} -f {modelfile.resolve()}`:",
        "# [[tiers]]",
        f"# name = {_toml_value(name)}",
        '# provider = "ollama"',
        f"# model = {_toml_value(name)}",
        f"# prompt = {_toml_value(prompt)}",
    ]
    return "\n".join(lines) + "\n"


def finetune(
    examples: Sequence[TrainingExample],
    base: TierSpec,
    out_dir: str | Path,
    *,
    tier_name: str,
    settings: LoraSettings = LoraSettings(),
    restart: bool = False,
    source: str = "",
    on_step: Callable[[int, int, float], None] | None = None,
) -> FinetuneResult:
    """Train a LoRA adapter for `base`'s model on `examples` and write the output folder."""
    from tierflow.model_tiers.providers.embedded import resolve_model_path
    from tierflow.model_tiers.providers.model_files import MODEL_FILES, sha256_of

    if base.provider != "embedded":
        raise ConfigError(f"tier '{base.name}' is a {base.provider} tier; fine-tuning starts from an embedded tier's GGUF file")
    if base.adapter is not None:
        raise ConfigError(f"tier '{base.name}' already has an adapter; fine-tune its base tier instead")
    if not examples:
        raise TrainingDataError("no training examples")
    prompt = prompt_mode_of(examples)
    gguf_path, _, _ = resolve_model_path(base.model)
    renderer = PromptRenderer(base.model, describe_schema=prompt == "full")
    try:
        tokenized = [renderer.render(e) for e in examples]
        metadata = renderer.metadata
        eos_id = renderer.eos_id
    finally:
        renderer.close()
    arch = metadata.get("general.architecture", "?")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise ConfigError(f"fine-tuning supports {', '.join(sorted(SUPPORTED_ARCHITECTURES))} models; {base.model} is '{arch}'")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / "checkpoint.pt"
    if restart and checkpoint.exists():
        checkpoint.unlink()
    started = time.time()
    base_model = load_base_model(gguf_path)
    run = train_lora(base_model, tokenized, settings, checkpoint=checkpoint, pad_id=eos_id, on_step=on_step)

    with quiet_peft():
        run.model.save_pretrained(str(out / "peft"))
    lora_state = {k: v for k, v in run.model.state_dict().items() if "lora_" in k}
    adapter = out / "adapter.gguf"
    write_gguf_adapter(
        adapter,
        lora_state,
        architecture=arch,
        alpha=settings.alpha,
        n_head=int(metadata[f"{arch}.attention.head_count"]),
        n_head_kv=int(metadata.get(f"{arch}.attention.head_count_kv", metadata[f"{arch}.attention.head_count"])),
    )
    modelfile = out / "Modelfile"
    modelfile.write_text(f"FROM {gguf_path.resolve()}\nADAPTER {adapter.resolve()}\nPARAMETER temperature 0\n", encoding="utf-8")
    (out / "tier.toml").write_text(tier_entry(base, tier_name, adapter, prompt, modelfile), encoding="utf-8")
    write_training_file(out / "training.jsonl", examples)
    known = MODEL_FILES.get(base.model)
    lengths = sorted(t.length for t in tokenized)
    record = {
        "tier": tier_name,
        "base_tier": base.name,
        "base_model": base.model,
        "base_file": str(gguf_path),
        "base_sha256": known.sha256 if known is not None else sha256_of(gguf_path),
        "architecture": arch,
        "prompt": prompt,
        "source": source,
        "examples": len(examples),
        "steps_by_name": _count_steps(examples),
        "tokens_per_example": {"min": lengths[0], "median": lengths[len(lengths) // 2], "max": lengths[-1]},
        "settings": settings.model_dump(),
        "steps": run.steps,
        "resumed_from_step": run.resumed_from,
        "loss_curve": [round(x, 5) for x in run.losses],
        "train_seconds": round(run.seconds, 1),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "wall_seconds": round(time.time() - started, 1),
        "host": {"python": platform.python_version(), "machine": platform.machine()},
    }
    (out / "train.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    checkpoint.unlink(missing_ok=True)
    return FinetuneResult(
        out_dir=out,
        adapter=adapter,
        tier_name=tier_name,
        examples=len(examples),
        steps=run.steps,
        first_loss=run.losses[0] if run.losses else float("nan"),
        last_loss=run.losses[-1] if run.losses else float("nan"),
        seconds=run.seconds,
        resumed_from=run.resumed_from,
    )


def _count_steps(examples: Sequence[TrainingExample]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for e in examples:
        counts[e.step or "?"] = counts.get(e.step or "?", 0) + 1
    return counts
