"""The memory plan's price of a training process on a CPU (train/plan.py ``memory_parts``): activations are
priced at what the process's allocator keeps resident (models/memory.py ``allocator_retention``), and the
estimate for the real SmolLM2 DPO run agrees with its measured peak.

The measured figures are those of ``tests/integration/train/test_pref_real.py::
test_real_dpo_long_pairs_peak_memory`` (LoRA r=8, ~600-token pairs, one 1,130-token pair per micro-batch),
taken under the shared lock on the 2-core machine with ``resource.getrusage``."""

from __future__ import annotations

import pytest

from tunesmith.config import load_config
from tunesmith.models.memory import ALLOCATOR_RETENTION, allocator_retention
from tunesmith.models.params import load_architecture
from tunesmith.train import plan as P

pytestmark = pytest.mark.unit

DPO_LONGEST = (
    1130  # tokens of the longest pair (chosen + rejected) of pref_toy.long_pairs(10), max_seq_len 1024
)
# getrusage peak of the real DPO test's run (2026-11-29): on glibc malloc, and the same run on jemalloc
DPO_MEASURED_GB = {"system": 4.52, "jemalloc": 2.68}


def _dpo_cfg():
    return load_config(None, ["model.name=smollm2-135m-instruct", "train.method=dpo", "lora.r=8"])


def _use_allocator(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    import tunesmith.train.runs as runs

    monkeypatch.setattr(runs, "allocator_in_use", lambda: name)


def test_activations_are_priced_at_the_allocators_retention(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg, arch = _dpo_cfg(), load_architecture("smollm2-135m-instruct")
    _use_allocator(monkeypatch, "jemalloc")
    fixed_j, per_token_j, state_j = P.memory_parts(cfg, arch, "cpu", False)
    gpu_j = P.memory_parts(cfg, arch, "cuda", False)
    _use_allocator(monkeypatch, "system")
    fixed_s, per_token_s, state_s = P.memory_parts(cfg, arch, "cpu", False)
    assert per_token_s == pytest.approx(2.0 * per_token_j)  # glibc keeps freed activations resident
    assert (fixed_s, state_s) == (fixed_j, state_j)  # weights, optimizer and runtime do not depend on it
    assert P.memory_parts(cfg, arch, "cuda", False) == gpu_j  # GPU memory is the caching allocator's
    assert allocator_retention("something else") == ALLOCATOR_RETENTION["system"]  # unknown: the larger


def test_a_budget_on_glibc_holds_half_the_micro_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    arch = load_architecture("smollm2-135m-instruct")
    _use_allocator(monkeypatch, "jemalloc")
    fixed, per_token, _ = P.memory_parts(_dpo_cfg(), arch, "cpu", False)
    budget = (fixed + per_token * 4000) / 1e9
    cfg = load_config(None, ["model.name=smollm2-135m-instruct", "train.method=dpo", "lora.r=8",
                             f"train.memory_budget_gb={budget}", "train.batch_tokens=4000"])  # fmt: skip
    assert P.plan_memory(cfg, arch, "cpu", 1000).micro_tokens == 4000
    _use_allocator(monkeypatch, "system")
    on_glibc = P.plan_memory(cfg, arch, "cpu", 1000)
    assert on_glibc.reason == "budget" and 1900 <= on_glibc.micro_tokens <= 2100


@pytest.mark.parametrize("allocator", sorted(DPO_MEASURED_GB))
def test_real_dpo_estimate_agrees_with_its_measured_peak(
    monkeypatch: pytest.MonkeyPatch, allocator: str
) -> None:
    _use_allocator(monkeypatch, allocator)
    cfg = load_config(None, ["model.name=smollm2-135m-instruct", "train.method=dpo", "lora.r=8",
                             "data.max_seq_len=1024", "train.memory_budget_gb=14"])  # fmt: skip
    plan = P.plan_memory(cfg, load_architecture("smollm2-135m-instruct"), "cpu", DPO_LONGEST, 2 * DPO_LONGEST)
    assert plan.micro_tokens == DPO_LONGEST  # one pair per micro-batch (a pair is never split)
    measured = DPO_MEASURED_GB[allocator]
    assert abs(plan.estimate / 1e9 - measured) <= 0.25 * measured, (plan.estimate / 1e9, measured)
