"""Training examples for one step, and their rendering into the exact tokens a tier sees.

The file format is the chat JSONL that `tierflow export-finetune` writes (OpenAI's
fine-tuning format), one example per line::

    {"messages": [{"role": "system", ...}, {"role": "user", ...}, {"role": "assistant", "content": "{...}"}],
     "response_format": {"type": "json_schema", "json_schema": {"name": "...", "schema": {...}}},
     "tools": [...], "tool_choice": "...", "metadata": {"graph": "...", "step": "..."}}

Everything after `messages` is optional: `response_format` (a structured step) or `tools`
(a tool step) say what the grammar constrains the reply to, and on a tier that describes
the schema in its prompt the training prompt carries that description too. `metadata.step`
lets one file hold several steps' examples.

A prompt is rendered through the same code an embedded tier serves it with
(`embedded_chat`, then the model's own chat template as llama-cpp-python applies it, then
llama.cpp's tokenizer), so a tier is trained on exactly the tokens it will be sent.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tierflow.model_tiers.errors import ConfigError

__all__ = [
    "ChatTurn",
    "TrainingExample",
    "TrainingDataError",
    "load_training_file",
    "write_training_file",
    "TokenizedExample",
    "PromptRenderer",
]


class TrainingDataError(ConfigError):
    """A training file that cannot be used (nothing is trained or written)."""


class ChatTurn(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = ""
    tool_calls: list[dict[str, Any]] | None = None


class TrainingExample(BaseModel):
    """One prompt and the answer the step should have given."""

    model_config = ConfigDict(extra="ignore")

    messages: list[ChatTurn] = Field(min_length=2)
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def step(self) -> str | None:
        step = self.metadata.get("step")
        return str(step) if step is not None else None

    def answer_text(self, forced: str | None) -> str:
        """The reply text as the tier decodes it under its grammar."""
        last = self.messages[-1]
        if last.tool_calls:
            fn = last.tool_calls[0].get("function", last.tool_calls[0])
            args = fn.get("arguments", fn.get("args", {}))
            args = json.loads(args) if isinstance(args, str) else args
            if forced is not None:
                return json.dumps(args, ensure_ascii=False)
            return json.dumps({"name": fn["name"], "arguments": args}, ensure_ascii=False)
        return last.content or ""

    def prompt_messages(self) -> list[BaseMessage]:
        out: list[BaseMessage] = []
        for turn in self.messages[:-1]:
            text = turn.content or ""
            if turn.role == "system":
                out.append(SystemMessage(text))
            elif turn.role == "assistant":
                out.append(AIMessage(text))
            else:
                out.append(HumanMessage(text))
        return out

    def grammar_tools(self) -> tuple[list[dict[str, Any]] | None, Any]:
        """The tools and tool_choice the step binds (a structured step is one forced tool)."""
        if self.tools:
            return self.tools, self.tool_choice or "any"
        if self.response_format:
            spec = self.response_format.get("json_schema", self.response_format)
            name = str(spec.get("name") or spec.get("schema", {}).get("title") or "answer")
            tool = {
                "type": "function",
                "function": {
                    "name": name,
                    "description": str(spec.get("description") or spec.get("schema", {}).get("description") or ""),
                    "parameters": spec.get("schema", {}),
                },
            }
            return [tool], name
        return None, None


def _problem(path: Path, line_no: int, what: str) -> TrainingDataError:
    return TrainingDataError(f"{path}, line {line_no}: {what}", source=str(path))


def load_training_file(path: str | Path, *, step: str | None = None) -> list[TrainingExample]:
    """Read and validate a chat JSONL training file (optionally only `step`'s examples).

    Every line must parse and end with an assistant answer; the first bad line is named.
    """
    path = Path(path)
    if not path.is_file():
        raise TrainingDataError(f"training file not found: {path}")
    examples: list[TrainingExample] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise TrainingDataError(f"cannot read {path}: {err}") from None
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as err:
            raise _problem(path, line_no, f"not JSON ({err.msg})") from None
        if not isinstance(raw, dict) or "messages" not in raw:
            raise _problem(path, line_no, 'expected an object with "messages" (chat JSONL, as `tierflow export-finetune` writes)')
        try:
            example = TrainingExample.model_validate(raw)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(x) for x in first["loc"])
            raise _problem(path, line_no, f"{where}: {first['msg']}") from None
        last = example.messages[-1]
        if last.role != "assistant" or not (last.content or last.tool_calls):
            raise _problem(path, line_no, "the last message must be the assistant's answer (content or tool_calls)")
        if step is None or example.step in (None, step):
            examples.append(example)
    if not examples:
        scope = f" for step '{step}'" if step else ""
        raise TrainingDataError(f"{path} holds no training examples{scope}")
    return examples


def write_training_file(path: str | Path, examples: Iterable[TrainingExample]) -> int:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as handle:
        for example in examples:
            handle.write(json.dumps(example.model_dump(exclude_none=True, exclude_defaults=True), ensure_ascii=False) + "\n")
            count += 1
    return count


@dataclass(frozen=True)
class TokenizedExample:
    prompt_ids: list[int]
    answer_ids: list[int]  # the reply, then the end-of-turn token

    @property
    def length(self) -> int:
        return len(self.prompt_ids) + len(self.answer_ids)


class PromptRenderer:
    """Renders examples into token ids as an embedded tier of `model` would be sent them."""

    def __init__(self, model: str, *, describe_schema: bool) -> None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        from tierflow.model_tiers.providers.embedded import _llama_cpp, fold_system, resolve_model_path

        path, chat_format, fold = resolve_model_path(model)
        self._vocab = _llama_cpp().Llama(model_path=str(path), vocab_only=True, verbose=False)
        template = self._vocab.metadata.get("tokenizer.chat_template")
        if chat_format is not None or not template:
            raise ConfigError(
                f"fine-tuning needs a model whose GGUF carries its own chat template; '{model}' is "
                f"served with the named format '{chat_format}'"
            )
        eos_id, bos_id = self._vocab.token_eos(), self._vocab.token_bos()
        text_of = self._vocab._model.token_get_text
        self._formatter = Jinja2ChatFormatter(
            template=template, eos_token=text_of(eos_id) if eos_id != -1 else "", bos_token=text_of(bos_id) if bos_id != -1 else ""
        )
        self._fold = fold_system if fold else None
        self.eos_id = eos_id
        self.describe_schema = describe_schema
        self.metadata: dict[str, str] = dict(self._vocab.metadata)

    def prompt_text(self, messages: Sequence[BaseMessage], tools: list[dict[str, Any]] | None, tool_choice: Any) -> tuple[str, str | None]:
        from tierflow.model_tiers.providers.embedded import embedded_chat

        chat, _, forced = embedded_chat(messages, tools, tool_choice, describe_schema=self.describe_schema)
        if self._fold is not None:
            chat = self._fold(chat)
        # llama-cpp-python types its messages as its own TypedDicts; `chat` holds the same JSON.
        return self._formatter(messages=chat).prompt, forced  # type: ignore[arg-type]

    def tokenize(self, text: str) -> list[int]:
        # As llama-cpp-python tokenizes a templated prompt: no BOS added, special tokens parsed.
        return list(self._vocab.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def render(self, example: TrainingExample) -> TokenizedExample:
        tools, choice = example.grammar_tools()
        prompt, forced = self.prompt_text(example.prompt_messages(), tools, choice)
        answer = [*self.tokenize(example.answer_text(forced)), self.eos_id]
        return TokenizedExample(prompt_ids=self.tokenize(prompt), answer_ids=answer)

    def close(self) -> None:
        self._vocab.close()
