"""Fine-tuning a tier's small model on one step's examples (LoRA on the CPU).

`finetune` trains and writes the output folder; `load_training_file` reads the chat JSONL
that `tierflow export-finetune` writes. torch, transformers, peft and gguf are imported only
when training starts (the `finetune` extra).
"""

from tierflow.model_tiers.finetune.data import TrainingDataError, TrainingExample, load_training_file, write_training_file
from tierflow.model_tiers.finetune.lora import LoraSettings
from tierflow.model_tiers.finetune.run import FinetuneResult, finetune

__all__ = [
    "TrainingDataError",
    "TrainingExample",
    "load_training_file",
    "write_training_file",
    "LoraSettings",
    "FinetuneResult",
    "finetune",
]
