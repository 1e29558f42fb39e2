"""`tierflow finetune` for real: LoRA on SmolLM2-135M's own GGUF weights, on the CPU, served
by llama.cpp as an embedded tier.

* a short fine-tune (a few dozen examples, interrupted once and resumed) lowers the loss,
  and the adapter, loaded by llama.cpp, answers the trained label on training messages the
  base model got wrong;
* conformance: llama.cpp with the GGUF adapter and the merged torch model agree on the
  next-token argmax; an adapter written without the Q/K permutation does not;
* the prompt trained on is, token for token, the prompt the tier is served.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest

from tierflow.evals.bench.finetune import TASKS, step_on
from tierflow.evals.datasets.intents import IntentCase, IntentExpected, IntentInputs
from tierflow.evals.finetune import step_examples
from tierflow.evals.suites.ticket_triage import BANKING77
from tierflow.model_tiers.config import load_tier_config
from tierflow.model_tiers.finetune import LoraSettings, finetune
from tierflow.model_tiers.finetune.data import PromptRenderer
from tierflow.model_tiers.registry import TierRegistry

pytestmark = pytest.mark.timeout(900)

MODEL = "smollm2-135m-instruct"

# Hand-written messages (not from any dataset) for four intents.
MESSAGES = {
    "card_arrival": [
        "My new card still has not arrived in the post.",
        "When will the card you sent me get here?",
        "It has been two weeks and no card in my mailbox.",
        "Is my replacement card on its way yet?",
        "How long does delivery of a new card take?",
        "I ordered a card ten days ago, where is it?",
    ],
    "exchange_rate": [
        "What rate do you use to convert pounds to euros?",
        "How is the exchange rate for dollars worked out?",
        "Which currency conversion rate applies to my transfer?",
        "Do you use the interbank rate when I exchange money?",
        "What is today's rate from EUR to GBP?",
        "Tell me the exchange rate you apply abroad.",
    ],
    "top_up_failed": [
        "My top up did not go through this morning.",
        "I tried to add money and the top up failed.",
        "Why was my top-up declined?",
        "Topping up with my card keeps failing.",
        "The app says my top up was unsuccessful.",
        "I could not top up my account, it errored.",
    ],
    "lost_or_stolen_card": [
        "Someone stole my card on the train.",
        "I lost my card, please block it.",
        "My wallet with my card was stolen last night.",
        "I cannot find my card anywhere, I think it is lost.",
        "Freeze my card, it was taken from my bag.",
        "I dropped my card somewhere in town.",
    ],
}


def _cases() -> list[IntentCase]:
    return [
        IntentCase(id=f"{label}-{i}", inputs=IntentInputs(text=text), expected=IntentExpected(label=label))
        for label, texts in MESSAGES.items()
        for i, text in enumerate(texts)
    ]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("ft")
    base = load_tier_config(None, env={}).cheapest
    examples = step_examples(BANKING77, "classify", _cases(), prompt="compact").examples
    settings = LoraSettings(epochs=4, batch_size=8, learning_rate=2e-3, warmup_steps=2, checkpoint_every=2)

    def interrupt_at_4(step: int, total: int, loss: float) -> None:
        if step == 4:  # Ctrl-C, as a user sends it: the run stops at the end of this step
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        finetune(examples, base, out, tier_name="slm-ft", settings=settings, on_step=interrupt_at_4)
    assert (out / "checkpoint.pt").is_file() and not (out / "adapter.gguf").exists()
    result = finetune(examples, base, out, tier_name="slm-ft", settings=settings)
    return {"out": out, "result": result, "base": base, "examples": examples}


def test_finetune_resumes_lowers_the_loss_and_writes_every_artifact(trained: dict) -> None:
    out: Path = trained["out"]
    result = trained["result"]
    import json

    record = json.loads((out / "train.json").read_text())
    assert result.resumed_from == 4
    assert len(record["loss_curve"]) == result.steps == 12  # 24 examples x 4 epochs / 8
    first, last = record["loss_curve"][:2], record["loss_curve"][-3:]
    assert sum(last) / len(last) < 0.5 * sum(first) / len(first)
    assert record["base_sha256"].startswith("b179c952") and record["prompt"] == "compact"
    for name in ("adapter.gguf", "peft/adapter_config.json", "peft/adapter_model.safetensors", "Modelfile", "tier.toml", "training.jsonl"):
        assert (out / name).is_file(), name
    assert not (out / "checkpoint.pt").exists()
    assert "ADAPTER " in (out / "Modelfile").read_text()
    assert 'prompt = "compact"' in (out / "tier.toml").read_text()


def test_the_adapter_served_by_llama_cpp_answers_what_it_was_trained_on(trained: dict) -> None:
    out: Path = trained["out"]
    base = trained["base"]
    tuned = base.model_copy(update={"name": "slm-ft", "adapter": str(out / "adapter.gguf"), "prompt": "compact"})
    config = load_tier_config(None, env={})
    cases = _cases()
    # Both with the compact prompt (the message alone), so only the adapter differs.
    compact_base = base.model_copy(update={"name": "slm-compact", "prompt": "compact"})
    registry = TierRegistry(config.model_copy(update={"tiers": [base, compact_base, tuned, config.frontier]}))
    before = {o.case_id: o.right for o in step_on(registry, "slm-compact", TASKS["banking77"], cases)}
    after = {o.case_id: o.right for o in step_on(registry, "slm-ft", TASKS["banking77"], cases)}
    wrong_before = [c for c in cases if not before[c.id]]
    assert wrong_before, "the base model already knew every label: the test proves nothing"
    fixed = [c for c in wrong_before if after[c.id]]
    assert len(fixed) >= len(wrong_before) / 2, (before, after)


def test_the_trained_prompt_is_the_served_prompt_token_for_token(trained: dict) -> None:
    out: Path = trained["out"]
    base = trained["base"]
    example = trained["examples"][0]
    renderer = PromptRenderer(MODEL, describe_schema=False)
    try:
        expected = len(renderer.render(example).prompt_ids)
    finally:
        renderer.close()
    tuned = base.model_copy(update={"name": "slm-ft", "adapter": str(out / "adapter.gguf"), "prompt": "compact"})
    config = load_tier_config(None, env={})
    registry = TierRegistry(config.model_copy(update={"tiers": [base, tuned, config.frontier]}))
    from tierflow.evals.finetune import step_of

    spec = step_of("ticket_triage", "classify")
    reply = registry.call("slm-ft", example.prompt_messages(), schema=spec.output_model)
    assert reply.usage.input_tokens == expected
    assert reply.usage.model == "smollm2-135m-instruct+adapter"


def test_llama_cpp_adapter_and_merged_torch_model_agree_on_the_next_token(tmp_path: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model

    from tierflow.model_tiers.finetune.gguf_adapter import write_gguf_adapter
    from tierflow.model_tiers.finetune.lora import TARGET_MODULES, load_base_model
    from tierflow.model_tiers.providers.embedded import _llama_cpp, resolve_model_path

    path, _, _ = resolve_model_path(MODEL)
    torch.manual_seed(0)
    model = get_peft_model(load_base_model(path), LoraConfig(r=8, lora_alpha=16, target_modules=list(TARGET_MODULES)))
    # A random, strong update (B is zero at initialisation, which would test nothing).
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.3)
    state = {k: v for k, v in model.state_dict().items() if "lora_" in k}
    right, unpermuted = tmp_path / "right.gguf", tmp_path / "unpermuted.gguf"
    write_gguf_adapter(right, state, architecture="llama", alpha=16, n_head=9, n_head_kv=3)
    write_gguf_adapter(unpermuted, state, architecture="llama", alpha=16, n_head=9, n_head_kv=3, permute_qk=False)

    Llama = _llama_cpp().Llama
    texts = [
        "The capital of France is",
        "def fibonacci(n):",
        "My card has not arrived yet, what should I do?",
        "1, 2, 3, 4, 5,",
        "Dear customer, thank you for your message about",
        "The weather today is",
    ]
    vocab = Llama(model_path=str(path), vocab_only=True, verbose=False)
    prompts = [list(vocab.tokenize(t.encode(), add_bos=False)) for t in texts]
    vocab.close()
    with torch.no_grad():
        merged = [model(torch.tensor([ids])).logits[0].argmax(-1).tolist() for ids in prompts]
        with model.disable_adapter():
            plain = [model(torch.tensor([ids])).logits[0].argmax(-1).tolist() for ids in prompts]

    def llama_cpp_argmax(adapter: Path) -> list[list[int]]:
        llm = Llama(model_path=str(path), lora_path=str(adapter), n_ctx=256, verbose=False, logits_all=True)
        try:
            out = []
            for ids in prompts:
                llm.reset()
                llm.eval(ids)
                out.append([int(np.argmax(llm.scores[j])) for j in range(len(ids))])
            return out
        finally:
            llm.close()

    def agreement(a: list[list[int]], b: list[list[int]]) -> float:
        pairs = [(x, y) for ra, rb in zip(a, b, strict=True) for x, y in zip(ra, rb, strict=True)]
        return sum(x == y for x, y in pairs) / len(pairs)

    assert agreement(plain, merged) < 0.5, "the random adapter barely changes the model: the test would prove nothing"
    assert agreement(llama_cpp_argmax(right), merged) >= 0.9
    assert agreement(llama_cpp_argmax(unpermuted), merged) < 0.8
