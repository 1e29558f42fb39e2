"""LoRA training on the CPU, from a tier's own GGUF weights (dequantized by transformers).

Resumable: every `checkpoint_every` steps, and when interrupted (Ctrl-C), the adapter and
optimizer state, the step and the loss curve are written atomically to `checkpoint.pt` in
the output folder; a rerun with the same data and settings continues from there. The
batch order is a function of the seed and epoch, so a resumed run sees the same batches.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tierflow.model_tiers.errors import ConfigError, MissingDependency
from tierflow.model_tiers.finetune.data import TokenizedExample

__all__ = ["LoraSettings", "TrainingRun", "load_base_model", "train_lora", "TARGET_MODULES", "examples_digest", "quiet_peft"]

TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_IGNORE = -100


class LoraSettings(BaseModel):
    """Hyper-parameters of one fine-tune (recorded in train.json)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rank: int = Field(default=16, gt=0, le=256)
    alpha: float = Field(default=32.0, gt=0)
    learning_rate: float = Field(default=1e-3, gt=0)
    epochs: float = Field(default=1.0, gt=0)
    batch_size: int = Field(default=16, gt=0)
    warmup_steps: int = Field(default=10, ge=0)
    seed: int = 0
    # Examples longer than this (prompt + answer tokens) are cut from the prompt's start.
    max_tokens: int = Field(default=512, gt=8)
    checkpoint_every: int = Field(default=25, gt=0)


@dataclass
class TrainingRun:
    """What a finished (or resumed-and-finished) training produced."""

    model: Any  # the PEFT model, adapter not merged
    steps: int
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    resumed_from: int = 0


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise MissingDependency("torch", extra="finetune", purpose="tierflow finetune") from None
    return torch


def load_base_model(gguf_path: Path) -> Any:
    """The GGUF model dequantized to fp32 in transformers (Q/K rows back in HF order)."""
    _torch()
    try:
        from transformers import AutoModelForCausalLM
        from transformers.utils import logging as hf_logging
    except ImportError:
        raise MissingDependency("transformers", extra="finetune", purpose="tierflow finetune") from None
    import functools

    import torch
    import transformers.modeling_gguf_pytorch_utils as gguf_utils
    from tqdm.auto import tqdm

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    # transformers' GGUF reader draws its own tqdm bar (not behind its logging switch); the
    # fine-tune has its own progress bar.
    gguf_utils.tqdm = functools.partial(tqdm, disable=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32)


def examples_digest(examples: Sequence[TokenizedExample]) -> str:
    digest = hashlib.sha256()
    for ex in examples:
        digest.update(json.dumps([ex.prompt_ids, ex.answer_ids]).encode())
    return digest.hexdigest()


def _batch(examples: Sequence[TokenizedExample], max_tokens: int, pad_id: int) -> tuple[Any, Any, Any]:
    torch = _torch()
    rows = []
    for ex in examples:
        prompt = ex.prompt_ids[-max(1, max_tokens - len(ex.answer_ids)) :]
        ids = (prompt + ex.answer_ids)[-max_tokens:]
        labels = ([_IGNORE] * len(prompt) + ex.answer_ids)[-max_tokens:]
        rows.append((ids, labels))
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), _IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (ids, lab) in enumerate(rows):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        labels[i, : len(lab)] = torch.tensor(lab)
        mask[i, : len(ids)] = 1
    return input_ids, labels, mask


def _order(n: int, settings: LoraSettings) -> list[int]:
    """Example indices in training order: one seeded shuffle per (partial) epoch."""
    import random

    order: list[int] = []
    epoch = 0
    total = math.ceil(n * settings.epochs)
    while len(order) < total:
        rng = random.Random(settings.seed * 1000 + epoch)
        chunk = list(range(n))
        rng.shuffle(chunk)
        order.extend(chunk)
        epoch += 1
    return order[:total]


@contextlib.contextmanager
def quiet_peft() -> Iterator[None]:
    """PEFT looks for a config.json beside a GGUF base on every save and warns that there is none."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Could not find a config file")
        yield


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    torch = _torch()
    partial = path.with_name(path.name + ".partial")
    torch.save(state, partial)
    os.replace(partial, path)


def train_lora(
    base: Any,
    examples: Sequence[TokenizedExample],
    settings: LoraSettings,
    *,
    checkpoint: Path,
    pad_id: int,
    on_step: Callable[[int, int, float], None] | None = None,
) -> TrainingRun:
    """Train a LoRA adapter on `examples` (loss on the answer tokens only)."""
    torch = _torch()
    try:
        from peft import LoraConfig, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
    except ImportError:
        raise MissingDependency("peft", extra="finetune", purpose="tierflow finetune") from None
    torch.manual_seed(settings.seed)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    config = LoraConfig(
        r=settings.rank,
        # peft annotates lora_alpha as int, and only divides by it (alpha / r): a float scales the same.
        lora_alpha=settings.alpha,  # type: ignore[arg-type]
        lora_dropout=0.0, bias="none", target_modules=list(TARGET_MODULES), task_type="CAUSAL_LM",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # transformers 5 renames a method PEFT still calls
        model = get_peft_model(base, config)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.learning_rate, weight_decay=0.0)
    order = _order(len(examples), settings)
    total = math.ceil(len(order) / settings.batch_size)

    def lr_at(step: int) -> float:
        if step < settings.warmup_steps:
            return (step + 1) / (settings.warmup_steps + 1)
        return max(0.05, 1.0 - (step - settings.warmup_steps) / max(1, total - settings.warmup_steps))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    digest = examples_digest(examples)
    key = {"data": digest, "settings": settings.model_dump()}
    start, losses, seconds = 0, [], 0.0
    if checkpoint.is_file():
        state = torch.load(checkpoint, weights_only=False)
        if state.get("key") != key:
            raise ConfigError(
                f"{checkpoint} belongs to a fine-tune with other data or settings; pass --restart to discard it, "
                "or another --out folder"
            )
        set_peft_model_state_dict(model, state["lora"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start, losses, seconds = int(state["step"]), list(state["losses"]), float(state["seconds"])

    def save(step: int, elapsed: float) -> None:
        with quiet_peft():
            lora = get_peft_model_state_dict(model)
        _save_checkpoint(
            checkpoint,
            {
                "key": key,
                "step": step,
                "losses": losses,
                "seconds": elapsed,
                "lora": lora,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
            },
        )

    model.train()
    began = time.perf_counter() - seconds
    done = start  # steps whose update is applied and whose loss is recorded
    # Ctrl-C stops at the next step boundary, so a checkpoint never holds half a step; a
    # second Ctrl-C stops at once (the last checkpoint stands).
    asked = threading.Event()

    def on_sigint(signum: int, frame: Any) -> None:
        if asked.is_set():
            raise KeyboardInterrupt
        asked.set()
        print("\ntierflow: stopping after this step (Ctrl-C again to stop now)", file=sys.stderr)

    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, on_sigint) if main_thread else None
    try:
        for step in range(start, total):
            batch = [examples[i] for i in order[step * settings.batch_size : (step + 1) * settings.batch_size]]
            input_ids, labels, mask = _batch(batch, settings.max_tokens, pad_id)
            loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            done = step + 1
            if on_step is not None:
                on_step(done, total, losses[-1])
            if asked.is_set():
                raise KeyboardInterrupt
            if done % settings.checkpoint_every == 0 and done < total:
                save(done, time.perf_counter() - began)
    except KeyboardInterrupt:
        save(done, time.perf_counter() - began)
        print(f"\ntierflow: interrupted after step {done}/{total}; rerun the same command to resume", file=sys.stderr)
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    model.eval()
    return TrainingRun(model=model, steps=total, losses=losses, seconds=time.perf_counter() - began, resumed_from=start)
