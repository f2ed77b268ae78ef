"""How `--nproc N` processes share the model (train/plan.py ``plan_processes``, ``train.distributed``): auto
picks ddp when a whole copy fits each process's budget and fsdp when only a 1/N share does; the FSDP
estimate; the refusals (config and plan)."""

from __future__ import annotations

import pytest

from tunesmith.config import load_config
from tunesmith.errors import TunesmithError
from tunesmith.models.params import load_architecture
from tunesmith.train import plan as P

pytestmark = pytest.mark.unit

GB = 1e9


def _cfg(*overrides: str):
    return load_config(None, ["train.finetune=full", *overrides])


def test_auto_shards_only_when_a_whole_copy_does_not_fit():
    arch = load_architecture("7b")  # full fine-tune: ~16 bytes per parameter before activations
    whole, _, _ = P.memory_parts(_cfg(), arch, "cpu", True)
    shard, _, state = P.memory_parts(_cfg(), arch, "cpu", True, shards=4)
    assert whole > 100 * GB and shard < whole / 3  # a quarter of the state, plus what is gathered at once

    roomy = P.plan_processes(_cfg(f"train.memory_budget_gb={whole / GB + 5:.0f}"), arch, "cpu", 512, None, 4)
    assert roomy.distributed == "ddp" and roomy.distributed_reason.startswith("auto")

    budget = f"train.memory_budget_gb={shard / GB + 5:.0f}"
    tight = P.plan_processes(_cfg(budget), arch, "cpu", 512, None, 4)
    assert tight.distributed == "fsdp" and "sharded over 4 processes" in tight.distributed_reason
    assert tight.fixed == pytest.approx(shard) and tight.state == pytest.approx(state)
    assert P.describe(P.Schedule(8, 1, 1, 1, 1e-5, 0, {}), tight)["memory"]["distributed"] == "fsdp"

    # the same budget: one process, or ddp asked for, cannot hold the model and says so
    with pytest.raises(TunesmithError, match="memory budget"):
        P.plan_processes(_cfg(budget), arch, "cpu", 512, None, 1)
    with pytest.raises(TunesmithError, match="memory budget"):
        P.plan_processes(_cfg(budget, "train.distributed=ddp"), arch, "cpu", 512, None, 4)
    # fsdp asked for is followed even when a whole copy would fit; one process is single whatever is set
    asked = P.plan_processes(
        _cfg("train.distributed=fsdp", "train.memory_budget_gb=900"), arch, "cpu", 512, None, 4
    )
    assert asked.distributed == "fsdp" and asked.distributed_reason == "train.distributed: fsdp"
    one = P.plan_processes(
        _cfg("train.distributed=fsdp", "train.memory_budget_gb=900"), arch, "cpu", 512, None, 1
    )
    assert one.distributed == "single"


def test_check_budget_counts_the_processes(tmp_path):
    cfg = _cfg("model.name=7b", "train.memory_budget_gb=60", f"data.train={tmp_path / 'missing.jsonl'}")
    with pytest.raises(TunesmithError, match="memory budget"):
        P.check_budget(cfg, "cpu")  # one process: refused before any data is read
    assert P.check_budget(cfg, "cpu", world=4).distributed == "fsdp"


@pytest.mark.parametrize(
    "overrides, named",
    [
        (["train.method=dpo", "train.finetune=lora"], "method: dpo"),
        (["train.finetune=qlora"], "finetune: qlora"),
    ],
)
def test_fsdp_is_refused_where_it_does_not_apply(overrides, named):
    with pytest.raises(TunesmithError) as exc:
        load_config(None, ["train.distributed=fsdp", *overrides])
    assert "train.distributed: fsdp" in str(exc.value) and named in str(exc.value)
    assert "ddp" in str(exc.value)
