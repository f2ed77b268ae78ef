"""The run's plan (train/plan.py): the schedule rule, the memory plan and its refusals, example-sized steps,
the measured re-plan and the out-of-memory retry (train/microbatch.py)."""

from __future__ import annotations

import math
import random

import pytest
import torch

from tunesmith.config import load_config
from tunesmith.data.tokenize import Tokenized
from tunesmith.errors import TunesmithError
from tunesmith.models.params import load_architecture
from tunesmith.train import plan as P
from tunesmith.train.microbatch import MicroBatcher, is_oom
from tunesmith.train.packing import build_batches, build_steps, step_batches

pytestmark = pytest.mark.unit

GB = 1e9


def _examples(n: int, seed: int = 0) -> list[Tokenized]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = rng.randint(6, 40)
        ids = [rng.randrange(3, 500) for _ in range(k)]
        labels = [-100] * (k // 2) + ids[k // 2 :]
        out.append(Tokenized(ids, labels, k))
    return out


def _cfg(*overrides: str):
    return load_config(None, ["model.name=smollm2-135m-instruct", *overrides])


# --------------------------------------------------------------------------- schedule


def test_small_data_gets_small_steps_and_enough_of_them():
    cfg = _cfg()
    per_step, why = P.examples_per_step(cfg, 320)
    assert per_step == 8 and why.startswith("rule")
    s = P.choose_schedule(cfg, 320, math.ceil(320 / 8), 134_515_008, per_step, why)
    assert (s.epochs, s.total_steps) == (4.0, 160)  # >= 150 steps
    assert s.lr == 5e-4 and s.warmup_steps == 8
    assert all(v.startswith("rule") for v in s.rule.values())


def test_rule_scales_with_data_and_model_size():
    cfg = _cfg()
    assert P.examples_per_step(cfg, 5_000)[0] == 16
    assert P.examples_per_step(cfg, 50_000)[0] == 32
    big = P.choose_schedule(cfg, 50_000, 1_563, 7_000_000_000, 32, "rule")
    assert big.epochs == 1.0 and big.lr == 2e-4
    assert P.choose_schedule(cfg, 50_000, 1_563, 70_000_000_000, 32, "rule").lr == 1e-4
    full = _cfg("train.finetune=full")
    assert P.choose_schedule(full, 100, 13, 134_515_008, 8, "rule").lr == 2e-5
    tiny = P.choose_schedule(cfg, 40, 5, 134_515_008, 8, "rule")
    assert tiny.epochs == P.MAX_EPOCHS  # capped: 40 rows do not get 150 steps


def test_every_choice_can_be_overridden():
    cfg = _cfg(
        "train.batch_size=4",
        "train.grad_accum=2",
        "train.epochs=2",
        "train.lr=1e-4",
        "train.warmup_ratio=0.1",
    )
    per_step, why = P.examples_per_step(cfg, 320)
    assert per_step == 8 and why.startswith("config")
    s = P.choose_schedule(cfg, 320, 40, 134_515_008, per_step, why)
    assert (s.epochs, s.total_steps, s.lr, s.warmup_steps) == (2.0, 80, 1e-4, 8)
    assert {s.rule[k] for k in ("epochs", "lr")} == {"config"}
    assert P.examples_per_step(_cfg("train.batch_tokens=256"), 320)[0] is None  # token-sized steps
    assert P.choose_schedule(cfg.model_copy(), 320, 40, 1, 8, "").total_steps == 80
    capped = _cfg("train.max_steps=7")
    assert P.choose_schedule(capped, 320, 40, 134_515_008, 8, "rule").total_steps == 7


@pytest.mark.parametrize("value", ["0", "-1", ".nan", ".inf"])
def test_bad_budgets_are_config_errors(value):
    with pytest.raises(TunesmithError) as exc:
        _cfg(f"train.memory_budget_gb={value}")
    msg = exc.value.message
    assert "train.memory_budget_gb" in msg and ("finite number" in msg or "> 0" in msg)


# --------------------------------------------------------------------------- memory plan


def test_budget_bounds_the_micro_batch_and_checkpointing_comes_when_needed():
    arch = load_architecture("smollm2-135m-instruct")
    fixed, per_token, _ = P.memory_parts(_cfg(), arch, "cpu", False)
    roomy = P.plan_memory(_cfg("train.memory_budget_gb=20"), arch, "cpu", 200)
    assert roomy.micro_tokens == P.SPEED_CAP["cpu"] and not roomy.gradient_checkpointing
    budget = (fixed + per_token * 300) / GB
    tight = P.plan_memory(_cfg(f"train.memory_budget_gb={budget}"), arch, "cpu", 200)
    assert tight.reason == "budget" and 290 <= tight.micro_tokens <= 300 and tight.estimate <= budget * GB
    # one 1,024-token example does not fit without checkpointing: auto turns it on
    ckpt = P.plan_memory(_cfg(f"train.memory_budget_gb={budget}"), arch, "cpu", 1024)
    assert ckpt.gradient_checkpointing and ckpt.micro_tokens >= 1024
    with pytest.raises(TunesmithError, match="cannot hold one example of 1024 tokens"):
        P.plan_memory(
            _cfg(f"train.memory_budget_gb={budget}", "train.gradient_checkpointing=false"), arch, "cpu", 1024
        )


def test_budget_smaller_than_the_model_is_refused_with_what_would_fit():
    arch = load_architecture("smollm2-135m-instruct")
    with pytest.raises(TunesmithError) as exc:
        P.plan_memory(_cfg("train.memory_budget_gb=2", "train.finetune=full"), arch, "cpu", 512)
    e = exc.value
    assert "2.00 GB" in e.message and "about" in e.message and "fixed" in e.message
    assert "train.memory_budget_gb=" in e.hint and "train.finetune=" in e.hint
    # the suggested budget does fit
    need = float(e.hint.split("train.memory_budget_gb=")[1].split(";")[0].rstrip("."))
    P.plan_memory(_cfg(f"train.memory_budget_gb={need}", "train.finetune=full"), arch, "cpu", 512)


def test_refusal_happens_before_any_data_is_read(tmp_path):
    cfg = _cfg("train.memory_budget_gb=0.2", f"data.train={tmp_path / 'missing.jsonl'}")
    with pytest.raises(TunesmithError, match="memory budget"):
        P.check_budget(cfg, "cpu")


# --------------------------------------------------------------------------- steps and micro-batches


def test_example_steps_do_not_depend_on_the_micro_batch():
    ex = _examples(50)
    steps = build_steps(ex, examples_per_step=8, batch_tokens=4096, window=1, packing=True, seed=1, epoch=0)
    assert [len(s[0]) for s in steps] == [8] * 6 + [2]
    for packing in (True, False):
        for cap in (40, 100, 10_000):
            batches = step_batches(steps[0], micro_tokens=cap, packing=packing)
            assert sum(b.n_examples for b in batches) == 8
            assert sum(b.n_trained for b in batches) == sum(_n(x) for x in steps[0][0])
            assert all(b.input_ids.numel() <= max(cap, 40) for b in batches)
    assert len(step_batches(steps[0], micro_tokens=10_000, packing=True)) == 1
    again = build_steps(ex, examples_per_step=8, batch_tokens=4096, window=1, packing=True, seed=1, epoch=0)
    assert [[id(x) for x in s[0]] for s in again] == [[id(x) for x in s[0]] for s in steps]


def test_token_steps_reproduce_the_old_batches():
    ex = _examples(60)
    for packing in (True, False):
        old = build_batches(ex, batch_tokens=128, packing=packing, seed=3, epoch=2)
        steps = build_steps(
            ex, examples_per_step=None, batch_tokens=128, window=2, packing=packing, seed=3, epoch=2
        )
        new = [b for s in steps for b in step_batches(s, micro_tokens=128, packing=packing)]
        assert len(steps) == math.ceil(len(old) / 2)
        assert [b.input_ids.tolist() for b in new] == [b.input_ids.tolist() for b in old]


def _n(ex: Tokenized) -> int:
    return sum(1 for x in ex.labels[1:] if x != -100)


# --------------------------------------------------------------------------- re-plan, OOM


def _plan(micro: int = 512, reason: str = "budget", budget: float = 2 * GB) -> P.MemoryPlan:
    return P.MemoryPlan("cpu", budget, "test", 1.0 * GB, 1e6, micro, False, reason, state=0.05 * GB)


def test_measured_peak_replans_once_when_the_estimate_was_wrong():
    plan = _plan()
    # activations measured at 3 MB/token instead of 1: 512 tokens would pass the 2 GB budget
    peak = 0.95 * GB + 0.05 * GB + 3e6 * 400
    new = P.replan(plan, peak, 0.95 * GB, 400, None)
    assert new.replanned_from == 512 and new.micro_tokens < 512 and new.measured_peak == peak
    assert new.fixed + new.per_token * new.micro_tokens <= plan.budget
    # within tolerance: only the peak is recorded
    ok = P.replan(plan, 0.95 * GB + 0.05 * GB + 1.1e6 * 400, 0.95 * GB, 400, None)
    assert ok.replanned_from is None and ok.micro_tokens == 512 and ok.measured_peak is not None
    # a speed-capped plan that still fits keeps its micro-batch even when the estimate was high
    capped = P.replan(_plan(reason="speed cap (cpu)", budget=20 * GB), 1.2 * GB, 0.95 * GB, 400, None)
    assert capped.micro_tokens == 512


def test_peak_meter_sees_an_allocation():
    # In a fresh process: in this long-lived one an allocation can reuse pages that earlier tests freed but
    # the C heap kept resident, and then neither VmRSS nor VmHWM grows.
    import subprocess
    import sys

    code = (
        "import torch\n"
        "from tunesmith.train.plan import PeakMeter\n"
        "meter = PeakMeter('cpu')\n"
        "meter.reset()\n"
        "x = torch.ones(64 * 2**20 // 4 * 3)\n"  # 192 MiB, touched
        "peak = meter.peak()\n"
        "print(peak - meter.baseline)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    assert float(out.stdout.split()[-1]) > 150 * 2**20


def test_out_of_memory_halves_the_micro_batch_and_retries_once():
    steps = build_steps(
        _examples(16), examples_per_step=16, batch_tokens=0, window=1, packing=True, seed=0, epoch=0
    )
    total = sum(len(x.input_ids) for x in steps[0][0])
    mb = MicroBatcher(_plan(micro=total), packing=True, emit=(events := []).append)
    calls, resets = [], []

    def step(batches):
        calls.append([b.n_tokens for b in batches])
        if max(b.n_tokens for b in batches) > total // 2 + 40:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return sum(b.n_trained for b in batches)

    assert mb.run(steps[0], step, reset=lambda: resets.append(1)) == sum(_n(x) for x in steps[0][0])
    assert len(calls) == 2 and len(calls[0]) == 1 and len(calls[1]) >= 2 and resets == [1]
    assert mb.plan.oom_retries == 1 and mb.plan.micro_tokens == total // 2
    assert events[0]["event"] == "oom" and events[0]["micro_tokens"] == total // 2

    def always(batches):
        raise torch.OutOfMemoryError("CUDA out of memory")

    with pytest.raises(TunesmithError, match="Out of memory twice"):
        mb.run(steps[0], always, reset=lambda: None)

    def other(batches):
        raise ValueError("not memory")

    with pytest.raises(ValueError):
        mb.run(steps[0], other, reset=lambda: None)
    assert is_oom(RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate 1 GB"))
    assert not is_oom(RuntimeError("shape mismatch"))
