"""Eval datasets: typed cases read from the public dataset files.

``Case``/``Dataset`` (``cases``) are the containers; one module per format turns a file
into typed cases (``intents``, ``slots``, ``bfcl``, ``tau2``, ``gsm8k``); ``loaders``
maps dataset names to loaders and default files under ``$TIERFLOW_DATASETS``.
"""

from __future__ import annotations

from .bfcl import (
    ChatMessage,
    ExpectedCall,
    FunctionCallCase,
    FunctionCallDataset,
    FunctionCallExpected,
    FunctionCallInputs,
    FunctionDoc,
    load_bfcl,
)
from .cases import Case, Dataset, DatasetFormatError, DatasetSource
from .gsm8k import MathCase, MathDataset, MathExpected, MathInputs, RecordedAnswer, load_routellm_gsm8k
from .intents import (
    OUT_OF_SCOPE_LABEL,
    IntentCase,
    IntentDataset,
    IntentExpected,
    IntentInputs,
    by_label,
    load_banking77,
    load_clinc150,
)
from .loaders import DATASETS, default_dataset_file, load_dataset
from .numbers import extract_final_number, parse_number
from .paths import DATASETS_ENV, datasets_root, resolve_dataset_path
from .slots import (
    RESTAURANT8K_SLOTS,
    SlotCase,
    SlotDataset,
    SlotExpected,
    SlotInputs,
    SlotSpan,
    by_slot_set,
    load_restaurant8k,
)
from .tau2 import (
    READ_ONLY_RETAIL_TOOLS,
    GoldAction,
    RetailTaskCase,
    RetailTaskDataset,
    RetailTaskExpected,
    RetailTaskInputs,
    UserInstructions,
    load_tau2_retail,
)

__all__ = [
    "Case",
    "Dataset",
    "DatasetSource",
    "DatasetFormatError",
    "DATASETS",
    "DATASETS_ENV",
    "datasets_root",
    "resolve_dataset_path",
    "default_dataset_file",
    "load_dataset",
    "OUT_OF_SCOPE_LABEL",
    "IntentInputs",
    "IntentExpected",
    "IntentCase",
    "IntentDataset",
    "by_label",
    "load_banking77",
    "load_clinc150",
    "RESTAURANT8K_SLOTS",
    "SlotSpan",
    "SlotInputs",
    "SlotExpected",
    "SlotCase",
    "SlotDataset",
    "by_slot_set",
    "load_restaurant8k",
    "ChatMessage",
    "FunctionDoc",
    "ExpectedCall",
    "FunctionCallInputs",
    "FunctionCallExpected",
    "FunctionCallCase",
    "FunctionCallDataset",
    "load_bfcl",
    "READ_ONLY_RETAIL_TOOLS",
    "UserInstructions",
    "GoldAction",
    "RetailTaskInputs",
    "RetailTaskExpected",
    "RetailTaskCase",
    "RetailTaskDataset",
    "load_tau2_retail",
    "RecordedAnswer",
    "MathInputs",
    "MathExpected",
    "MathCase",
    "MathDataset",
    "load_routellm_gsm8k",
    "extract_final_number",
    "parse_number",
]
