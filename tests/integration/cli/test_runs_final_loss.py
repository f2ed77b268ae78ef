"""`runs list` and `compare` show the final training loss of every method's run (sft, cpt, dpo, reward).

Before RunSummary, dpo and reward wrote their final loss as ``train_loss_last``, so both commands showed
none for them. Each case trains a real tiny run for two steps and reads it back through the CLI."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from tunesmith.cli.main import main
from tunesmith.config import load_config
from tunesmith.results.run import read_run_summary
from tunesmith.train.api import train

pytestmark = pytest.mark.integration

CHAT = [
    {"messages": [{"role": "user", "content": f"Is {w} a fruit?"}, {"role": "assistant", "content": a}]}
    for w, a in [("apple", "yes"), ("car", "no"), ("pear", "yes"), ("chair", "no")] * 3
]
TEXT = [{"text": "The quick brown fox jumps over the lazy dog. " * 3} for _ in range(6)]
PAIRS = [
    {
        "prompt": [{"role": "user", "content": f"Is {i} a number?"}],
        "chosen": [{"role": "assistant", "content": "yes"}],
        "rejected": [{"role": "assistant", "content": "no"}],
    }
    for i in range(10)
]
DATA = {"sft": CHAT, "cpt": TEXT, "dpo": PAIRS, "reward": PAIRS}
SETTINGS = {
    "sft": ["train.batch_tokens=128"],
    "cpt": ["train.batch_tokens=128", "data.max_seq_len=32"],
    "dpo": ["train.batch_size=4", "data.max_seq_len=64"],
    "reward": ["train.batch_size=4", "data.max_seq_len=64"],
}


def _cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str) -> str:
    from tunesmith.cli.render import console

    monkeypatch.setattr(sys, "argv", ["tunesmith", *args])
    monkeypatch.setattr(console, "width", 220)  # a table narrower than its rows would fold the numbers
    try:
        main()
    except SystemExit as exc:
        assert not exc.code, capsys.readouterr().err
    return capsys.readouterr().out


@pytest.mark.parametrize("method", ["sft", "cpt", "dpo", "reward"])
def test_runs_list_and_compare_show_the_final_loss(
    method: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in DATA[method]))
    cfg = load_config(
        None,
        [
            "model.name=tiny",
            f"data.train={data}",
            f"train.method={method}",
            "train.lr=1e-3",
            "train.max_steps=2",
            "train.logging_steps=1",
            "train.warmup_ratio=0",
            "lora.r=4",
            f"train.output_dir={tmp_path / 'runs'}",
            f"train.run_name={method}-run",
            *SETTINGS[method],
        ],
    )
    result = train(cfg)
    assert result.status == "completed"
    loss = read_run_summary(result.run_dir).final_train_loss  # what summary.json holds
    assert loss is not None and math.isfinite(loss) and loss == result.summary.final_train_loss

    listed = _cli(capsys, monkeypatch, "runs", "list", "--dir", str(tmp_path / "runs"))
    row = next(line for line in listed.splitlines() if f"{method}-run" in line)
    assert f"{loss:.4f}" in row, listed

    compared = _cli(capsys, monkeypatch, "compare", str(result.run_dir))
    row = next(line for line in compared.splitlines() if "final_train_loss" in line)
    assert f"{loss:.3f}" in row, compared
