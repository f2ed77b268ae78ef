"""dpo and reward on tunesmith's own loop (train/pref_engine.py, train/pref_run.py), tiny model:

- a packed row of pairs gives each sequence the answer log-prob (reward score) it has alone, as the
  scorer ``tunesmith eval`` uses computes it (no attention across sequences, answer positions only);
- kill -9 in the middle of a run, --resume, and the losses equal the uninterrupted run's (as sft's test);
  should_stop saves and a resume finishes it;
- pairs longer than data.max_seq_len are cut prompt first, counted in the summary and an event."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pref_toy import write_jsonl, yes_no_pairs

from tunesmith.config import ProjectConfig, dump_config, load_config
from tunesmith.train.api import train
from tunesmith.train.checkpoints import latest_checkpoint
from tunesmith.train.registry import RunRegistry

pytestmark = pytest.mark.integration

N = 4
TOL = 1e-4


def _pairs() -> list[dict]:
    # varied lengths so rows pack several pairs of different sizes
    rows = yes_no_pairs(12)
    for i, r in enumerate(rows):
        r["prompt"][0]["content"] += " Please answer." * (i % 4)
    return rows


def _cfg(tmp: Path, model_dir: Path, method: str, *overrides: str) -> ProjectConfig:
    return load_config(
        None,
        [
            f"model.name={model_dir}",
            f"data.train={write_jsonl(tmp / 'pairs.jsonl', _pairs())}",
            "data.max_seq_len=64",
            f"train.method={method}",
            "train.lr=5e-3",
            "train.batch_size=4",
            "train.warmup_ratio=0",
            "lora.r=8",
            f"train.output_dir={tmp / 'runs'}",
            *overrides,
        ],
    )


def test_packed_pairs_score_like_each_sequence_alone(tmp_path: Path, toy_model_dir: Path) -> None:
    import torch

    from tunesmith.models.load import load_tokenizer
    from tunesmith.models.scoring import RewardScorer, pair_logps
    from tunesmith.train.adapters import build_trainable
    from tunesmith.train.packing import build_batches
    from tunesmith.train.pref_engine import build_pair_examples, sequence_logps, sequence_rewards
    from tunesmith.train.reward import build_reward_model

    cfg = _cfg(tmp_path, toy_model_dir, "dpo", "train.finetune=full")
    tok = load_tokenizer(str(toy_model_dir))
    pairs = _pairs()
    examples, cut = build_pair_examples(tok, pairs, 64)
    assert cut == 0
    batches = build_batches(examples, batch_tokens=400, packing=True, seed=0, epoch=0)
    assert any(b.n_examples >= 3 for b in batches)  # several pairs share a row
    model = build_trainable(cfg).eval()
    order = [ex for b in batches for ex in _members(b, examples)]
    with torch.no_grad():
        ours = torch.cat([sequence_logps(model, b)[0] for b in batches]).tolist()
    alone = dict(zip((e.key for e in examples), pair_logps(model, tok, pairs, max_len=64), strict=True))
    expected = [x for ex in order for x in alone[ex.key]]
    assert ours == pytest.approx(expected, abs=1e-4)

    rcfg = _cfg(tmp_path, toy_model_dir, "reward")
    rmodel, rtok = build_reward_model(rcfg)
    rmodel.eval()
    with torch.no_grad():
        ours_r = torch.cat([sequence_rewards(rmodel, b) for b in batches]).tolist()
    scored = dict(
        zip((e.key for e in examples), RewardScorer(rmodel, rtok, 64).pair_scores(pairs), strict=True)
    )
    assert ours_r == pytest.approx([x for ex in order for x in scored[ex.key]], abs=1e-4)


def _members(batch, examples):  # noqa: ANN001, ANN202
    from tunesmith.train.pref_engine import pair_keys

    by_key = {ex.key: ex for ex in examples}
    return [by_key[k] for k in pair_keys(batch)]


def _losses(run_dir: Path) -> dict[int, float]:
    out: dict[int, float] = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if "loss" in row:
            out[row["step"]] = row["loss"]
    return out


@pytest.mark.parametrize("method", ["dpo", "reward"])
def test_kill_9_resume_matches_uninterrupted_run(tmp_path: Path, toy_model_dir: Path, method: str) -> None:
    common = ("train.max_steps=8", f"train.save_every={N}", "lora.lora_dropout=0.1")
    straight = train(_cfg(tmp_path, toy_model_dir, method, *common, "train.run_name=straight"))
    assert straight.summary.epochs_completed >= 1  # 9 training pairs, 4 per step: 8 steps cross epochs

    killed_cfg = _cfg(tmp_path, toy_model_dir, method, *common, "train.run_name=killed")
    cfg_file = tmp_path / "killed.yaml"
    cfg_file.write_text(dump_config(killed_cfg))
    script = textwrap.dedent(
        f"""
        import os, signal
        from tunesmith.config import load_config
        from tunesmith.train.api import train
        def progress(e):
            if e["event"] == "step" and e["step"] == {N + 1}:
                os.kill(os.getpid(), signal.SIGKILL)
        train(load_config({str(cfg_file)!r}), on_progress=progress)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    run_dir = tmp_path / "runs" / "killed"
    assert latest_checkpoint(run_dir / "checkpoints").name == f"step-{N:08d}"
    assert RunRegistry(tmp_path / "runs").get("killed").status == "running"

    resumed = train(killed_cfg, resume=run_dir)
    assert resumed.summary.status == "completed" and resumed.summary.steps == 8
    assert resumed.summary.resumed_from.endswith(f"step-{N:08d}")
    a, b = _losses(straight.run_dir), _losses(run_dir)
    assert sorted(a) == sorted(b) == list(range(1, 9))
    for step in a:
        assert b[step] == pytest.approx(a[step], rel=TOL), f"step {step}: {b[step]} vs {a[step]}"
    assert resumed.summary.final_val_loss == pytest.approx(straight.summary.final_val_loss, rel=TOL)
    acc = "holdout_preference_accuracy" if method == "dpo" else "holdout_pairwise_accuracy"
    assert getattr(resumed.summary.extras, acc) == getattr(straight.summary.extras, acc)

    steps: list[int] = []
    stopped = train(
        _cfg(tmp_path, toy_model_dir, method, *common, "train.run_name=paused"),
        on_progress=lambda e: steps.append(e["step"]) if e["event"] == "step" else None,
        should_stop=lambda: bool(steps) and steps[-1] == N - 1,
    )
    assert stopped.status == "stopped" and stopped.summary.steps == N - 1
    assert latest_checkpoint(stopped.run_dir / "checkpoints").name == f"step-{N - 1:08d}"
    done = train(
        _cfg(tmp_path, toy_model_dir, method, *common, "train.run_name=paused"), resume=stopped.run_dir
    )
    assert done.summary.final_train_loss == pytest.approx(straight.summary.final_train_loss, rel=TOL)


def test_long_pairs_are_cut_prompt_first_and_counted(tmp_path: Path, toy_model_dir: Path) -> None:
    from tunesmith.data.tokenize import IGNORE_INDEX
    from tunesmith.models.load import load_tokenizer
    from tunesmith.train.pref_engine import build_pair_examples

    long_prompt = "word " * 200
    rows = _pairs()
    rows[0]["prompt"][0]["content"] = long_prompt
    rows[1]["prompt"][0]["content"] = long_prompt
    tok = load_tokenizer(str(toy_model_dir))
    examples, cut = build_pair_examples(tok, rows, 64)
    assert cut == 2
    for ex in examples[:2]:
        chosen, rejected = ex.input_ids[: ex.split], ex.input_ids[ex.split :]
        assert len(chosen) == 64 and len(rejected) == 64
        # the whole answer survived: its labelled tokens are the last ones, as in the uncut sequence
        full = tok(tok.apply_chat_template([*rows[0]["prompt"], *rows[0]["chosen"]], tokenize=False),
                   add_special_tokens=False)["input_ids"]  # fmt: skip
        assert chosen[-10:] == full[-10:]
        assert ex.labels[ex.split - 2] != IGNORE_INDEX  # the answer's end is trained
    long = load_config(
        None,
        [f"model.name={toy_model_dir}", f"data.train={write_jsonl(tmp_path / 'long.jsonl', rows)}",
         "data.max_seq_len=64", "train.method=dpo", "train.max_steps=2", "train.batch_size=4", "lora.r=8",
         f"train.output_dir={tmp_path / 'runs'}", "train.run_name=long"],
    )  # fmt: skip
    events: list[dict] = []
    result = train(long, on_progress=events.append)
    assert result.summary.extras.truncated_pairs == 2
    assert [e["pairs"] for e in events if e["event"] == "truncated"] == [2]
