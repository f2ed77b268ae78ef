"""Parity of an exported GGUF with the run it came from: is what llama.cpp serves what tunesmith evaluated?

    hold-out + the run (from the GGUF's export.json, or given) -> the fine-tune's prompts (eval's own)
    -> tunesmith's answers (transformers, greedy: ``models.generate``)
    -> llama.cpp's answers (the GGUF, greedy, temperature 0, no penalties; the prompt text tokenized by
       llama.cpp's own tokenizer, as a server would)
    -> identical-answer rate (the task's answer key), the task metric of both, prompt-token agreement
    -> next-token log-probs of both on a sample of prompts (same token ids): the max difference
    -> the quant's gate -> ``ParityReport`` (+ parity.json) with every disagreement

Gates (``THRESHOLDS``): f16 needs >= 99% identical answers (f16 weights should change almost nothing);
q8_0 needs the task metric within 1 point of tunesmith's; q4_k_m is reported, and gated like q8_0 only when
asked (``gate_q4``). The log-prob difference is reported, not gated: it is the max over the sample of
``|log p_tunesmith(t) - log p_llama.cpp(t)|`` for ``t`` in the union of both top-10 next tokens.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.config import EvalConfig
from tunesmith.errors import TunesmithError
from tunesmith.models import llamacpp

IDENTICAL_F16 = 0.99  # share of identical answers an f16 GGUF must reach
METRIC_POINTS = 0.01  # q8_0 (and q4 when asked): |metric difference| at most 1 point
TOPK = 10


@dataclass(frozen=True)
class ParitySpec:
    """What to compare. ``run`` and ``system_prompt`` default to the GGUF's ``export.json``."""

    gguf: Path
    data: Path
    run: Path | None = None
    base_model: str | None = None
    system_prompt: str | None = None
    quant: str | None = None  # default: the export's, else read from the file name
    settings: EvalConfig = field(default_factory=EvalConfig)
    logprob_sample: int = 8
    gate_q4: bool = False
    out: Path | None = None


@dataclass(frozen=True)
class Disagreement:
    index: int
    input: str
    reference: str
    tunesmith: str
    gguf: str


@dataclass(frozen=True)
class ParityReport:
    """The comparison; ``passed`` is the quant's gate (``gate`` says which rule and why)."""

    gguf: str
    run: str
    quant: str
    task: str
    n: int
    metric: str
    metric_tunesmith: float
    metric_gguf: float
    identical_answers: float  # share of examples whose answers have the same answer key
    identical_text: float  # share with byte-identical answer text
    prompt_tokens_identical: float  # share of prompts llama.cpp tokenized to tunesmith's ids
    max_logprob_diff: float | None  # None when not measured (logprob_sample 0)
    logprob_prompts: int
    gate: str
    passed: bool
    disagreements: list[Disagreement]
    wall_s: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def check_parity(spec: ParitySpec) -> ParityReport:
    """Run the hold-out through the GGUF with llama.cpp and through the run with tunesmith; compare.

    Raises:
        TunesmithError: when the GGUF, its run or the hold-out cannot be found or loaded.
    """
    from tunesmith.eval.run import EvalSpec, candidate_prompts, candidate_tools, prepare
    from tunesmith.models.generate import GenerationSettings, generate
    from tunesmith.models.inference import load_for_inference

    t0 = time.perf_counter()
    manifest = llamacpp.read_manifest(spec.gguf)
    run = spec.run or (Path(manifest["run"]) if manifest.get("run") else None)
    if run is None:
        raise TunesmithError(
            f"Which run is {spec.gguf} from? It has no export.json beside it.",
            "Pass the run the GGUF was exported from (--adapter RUN).",
        )
    quant = spec.quant or manifest.get("quant") or _quant_from_name(spec.gguf)
    system = spec.system_prompt or manifest.get("system_prompt")
    ctx = prepare(EvalSpec(data=spec.data, adapter=Path(run), baselines=(), settings=spec.settings,
                           system_prompt=system, model=spec.base_model))  # fmt: skip
    convs = candidate_prompts(ctx, "finetuned")
    tools = candidate_tools(ctx)  # each row's tools, rendered as training and the server render them
    model, tok = load_for_inference(spec.base_model, Path(run), dtype="float32")
    max_tokens = ctx.task.max_tokens(tok, spec.settings.max_new_tokens)
    ours = [g.text for g in generate(model, tok, convs, GenerationSettings(max_tokens=max_tokens),
                                     batch_size=spec.settings.batch_size,
                                     tools_per_conversation=tools)]  # fmt: skip
    from tunesmith.data.tokenize import prompt_ids, render

    hf_ids = [prompt_ids(tok, c, tools=t) for c, t in zip(convs, tools, strict=True)]
    llm = llamacpp.load_gguf(spec.gguf, n_ctx=_ctx_size(max(map(len, hf_ids)) + max_tokens))
    gguf_ids = [
        llamacpp.tokenize_text(llm, render(tok, c, add_generation_prompt=True, tools=t))
        for c, t in zip(convs, tools, strict=True)
    ]
    theirs = [llamacpp.generate_greedy(llm, ids, max_tokens).text for ids in gguf_ids]
    logprob_diff = _logprob_diff(model, llm, hf_ids[: spec.logprob_sample]) if spec.logprob_sample else None
    task, rows = ctx.task, ctx.rows
    metric = task.headline[0]
    m_ours = _metric(task.score(rows, ours, spec.settings).metrics, metric)
    m_theirs = _metric(task.score(rows, theirs, spec.settings).metrics, metric)
    same = [task.answer_key(a) == task.answer_key(b) for a, b in zip(ours, theirs, strict=True)]
    identical = sum(same) / len(same)
    gate, passed = _gate(quant, identical, m_ours, m_theirs, spec.gate_q4)
    report = ParityReport(
        gguf=str(spec.gguf),
        run=str(run),
        quant=quant,
        task=task.name,
        n=len(rows),
        metric=metric,
        metric_tunesmith=m_ours,
        metric_gguf=m_theirs,
        identical_answers=identical,
        identical_text=sum(a == b for a, b in zip(ours, theirs, strict=True)) / len(rows),
        prompt_tokens_identical=sum(a == b for a, b in zip(hf_ids, gguf_ids, strict=True)) / len(rows),
        max_logprob_diff=logprob_diff,
        logprob_prompts=min(spec.logprob_sample, len(rows)),
        gate=gate,
        passed=passed,
        disagreements=[
            Disagreement(i, task.input_text(r), task.reference(r), ours[i], theirs[i])
            for i, r in enumerate(rows)
            if not same[i] or ours[i] != theirs[i]
        ],
        wall_s=round(time.perf_counter() - t0, 2),
    )
    if spec.out is not None:
        Path(spec.out).mkdir(parents=True, exist_ok=True)
        (Path(spec.out) / "parity.json").write_text(
            json.dumps(report.to_json(), indent=1) + "\n", encoding="utf-8"
        )
    return report


def _gate(quant: str, identical: float, ours: float, theirs: float, gate_q4: bool) -> tuple[str, bool]:
    """The quant's rule in words, and whether it holds."""
    drop = abs(theirs - ours)
    if quant in ("f16", "f32", "bf16"):
        return f"identical answers {identical:.1%} >= {IDENTICAL_F16:.0%}", identical >= IDENTICAL_F16
    rule = f"metric difference {drop * 100:.2f} points <= {METRIC_POINTS * 100:.0f}"
    if quant == "q8_0" or gate_q4:
        return rule, drop <= METRIC_POINTS + 1e-9
    return f"{quant}: reported only (gate it with --gate-q4: {rule})", True


def _logprob_diff(model: Any, llm: Any, prompts: list[list[int]]) -> float:
    """Max |Δ log p| over each prompt's union of both top-10 next tokens (same token ids on both sides)."""
    import numpy as np
    import torch

    worst = 0.0
    for ids in prompts:
        with torch.inference_mode():
            logits = model(input_ids=torch.tensor([ids])).logits[0, -1].double()
        ours = torch.log_softmax(logits, -1).numpy()
        theirs = llamacpp.next_token_logprobs(llm, ids)
        n = min(len(ours), len(theirs))
        ours, theirs = ours[:n], theirs[:n]
        top = set(np.argsort(-ours)[:TOPK].tolist()) | set(np.argsort(-theirs)[:TOPK].tolist())
        worst = max(worst, max(abs(float(ours[t] - theirs[t])) for t in top))
    return worst


def _metric(metrics: dict[str, Any], path: str) -> float:
    value: Any = metrics
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if not isinstance(value, int | float) or math.isnan(value):
        raise TunesmithError(f"The task metric {path} was not computed.")
    return float(value)


def _ctx_size(tokens: int) -> int:
    return max(256, -(-(tokens + 16) // 256) * 256)


def _quant_from_name(path: Path) -> str:
    name = Path(path).name.lower()
    for q in ("q4_k_m", "q8_0", "f16", "bf16", "f32"):
        if q in name:
            return q
    raise TunesmithError(
        f"Cannot tell the quantization of {path} (no export.json, none in the name).",
        "Pass --quant f16|q8_0|q4_k_m.",
    )
