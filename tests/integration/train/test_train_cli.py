"""The CLI end to end on the tiny model: train, runs list/show/rm, export --merged, chat, refusals, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from train_toy import logits, toy_chat

from tunesmith.cli.main import main
from tunesmith.results.run import read_run_summary

pytestmark = pytest.mark.integration


def _cli(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str, stdin: str | None = None
) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["tunesmith", *args])
    if stdin is not None:
        import io

        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def _project(tmp_path: Path, model_dir: Path, **train: object) -> Path:
    data = toy_chat(tmp_path / "train.jsonl")
    cfg = {
        "model": {"name": str(model_dir)},
        "data": {"train": data.name},
        "lora": {"r": 8},
        "train": {
            "finetune": "lora",
            "lr": 0.03,
            "max_steps": 3,
            "batch_tokens": 128,
            "output_dir": "runs",
            **train,
        },
    }
    path = tmp_path / "tunesmith.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_cli_train_runs_export_chat_rm(tmp_path: Path, toy_model_dir: Path, capsys, monkeypatch) -> None:  # noqa: ANN001
    config = _project(tmp_path, toy_model_dir, run_name="cli")
    code, out, err = _cli(capsys, monkeypatch, "train", str(config), "train.logging_steps=1")
    assert code == 0, err
    assert "completed" in out and "hold-out loss" in out and "step 3/3" in out and "tok/s" in out
    runs = tmp_path / "runs"
    run_dir = runs / "cli"
    assert (run_dir / "adapter" / "adapter_config.json").exists()

    code, out, _ = _cli(capsys, monkeypatch, "runs", "list", "--dir", str(runs), "--json")
    listed = json.loads(out)
    assert code == 0 and [r["run_id"] for r in listed] == ["cli"] and listed[0]["status"] == "completed"
    code, out, _ = _cli(capsys, monkeypatch, "runs", "show", "cli", "--dir", str(runs))
    shown = json.loads(out)
    assert shown["summary"]["steps"] == 3 and shown["summary"]["base_model"] == str(toy_model_dir)

    merged = tmp_path / "merged"
    code, _, err = _cli(capsys, monkeypatch, "export", str(run_dir), "--merged", str(merged))
    assert code == 0, err
    from transformers import AutoModelForCausalLM

    from tunesmith.models.inference import load_for_inference

    plain = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32)  # plain transformers, no peft
    with_adapter, _ = load_for_inference(None, run_dir)
    ids = [5, 17, 42, 99, 300, 7]
    torch.testing.assert_close(logits(plain, ids), logits(with_adapter, ids), rtol=1e-4, atol=1e-4)
    assert not any("lora" in k for k in plain.state_dict())
    assert (merged / "tokenizer_config.json").exists() and list(merged.glob("*.safetensors"))
    code, _, err = _cli(capsys, monkeypatch, "export", str(run_dir), "--merged", str(merged))
    assert code == 1 and "not empty" in err and "Traceback" not in err

    code, out, err = _cli(
        capsys, monkeypatch, "chat", str(run_dir), "--max-tokens", "4", stdin="Is apple a fruit?\n/exit\n"
    )
    assert code == 0, err
    assert "model>" in out and "tokens" in out

    code, _, err = _cli(capsys, monkeypatch, "train", str(config))  # same run_name again
    assert code == 1 and "already exists" in err and "Traceback" not in err
    assert (run_dir / "adapter" / "adapter_config.json").exists()  # untouched

    code, out, _ = _cli(capsys, monkeypatch, "runs", "rm", "cli", "--dir", str(runs), "--yes")
    assert code == 0 and not run_dir.exists()
    code, _, err = _cli(capsys, monkeypatch, "runs", "show", "cli", "--dir", str(runs))
    assert code == 1 and "No run 'cli'" in err


def test_cli_refuses_bad_data_and_typos_without_writing(
    tmp_path: Path, toy_model_dir: Path, capsys, monkeypatch
) -> None:  # noqa: ANN001
    config = _project(tmp_path, toy_model_dir)
    with open(tmp_path / "train.jsonl", "a") as fh:
        fh.write('{"messages": [{"role": "user", "content": "no answer"}]}\n')
    code, _, err = _cli(capsys, monkeypatch, "train", str(config))
    assert code == 1 and "Traceback" not in err
    assert (
        "train.jsonl line 17: The conversation has no assistant message to learn from. (no_assistant_message)"
        in err
        and "--force" in err
    )
    assert not (tmp_path / "runs").exists() or not [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]

    code, _, err = _cli(capsys, monkeypatch, "train", str(config), "train.lrr=0.1")
    assert code == 1 and "train.lrr" in err and "train.lr" in err

    code, out, err = _cli(
        capsys, monkeypatch, "train", str(config), "--force", "train.max_steps=1", "train.run_name=forced"
    )
    assert code == 0, err
    assert read_run_summary(tmp_path / "runs" / "forced").extras.skipped_lines == 1


def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(tmp_path: Path, toy_model_dir: Path) -> None:
    config = _project(tmp_path, toy_model_dir, run_name="interrupted", max_steps=500, save_every=1000)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunesmith.cli.main", "train", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.stdout is not None
    for line in proc.stdout:  # waits on the run's own progress lines; the suite's timeout guards a hang
        if line.startswith("step 2/500"):
            proc.send_signal(signal.SIGINT)
            break
    else:
        pytest.fail(f"the run ended without a 'step 2/500' line: {proc.communicate()[1][-2000:]}")
    out, err = proc.communicate(timeout=600)  # a hang guard: saving and stopping take seconds
    assert proc.returncode == 0, err[-2000:]
    assert "Traceback" not in err and "stopping" in err
    assert "stopped" in out and "--resume" in out
    run_dir = tmp_path / "runs" / "interrupted"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "stopped" and 2 <= summary["steps"] < 500
    index = json.loads((run_dir / "checkpoints" / "index.json").read_text())
    assert index["checkpoints"][-1]["step"] == summary["steps"]
    # issue 17: the hold-out was measured at the stop, and that is the loss the summary shows
    vals = [
        json.loads(line)
        for line in (run_dir / "metrics.jsonl").read_text().splitlines()
        if "val_loss" in line
    ]
    assert vals[-1]["step"] == summary["steps"] and summary["final_val_loss"] == pytest.approx(
        vals[-1]["val_loss"]
    )


@pytest.mark.parametrize("switch", ["", "system"])
def test_train_process_runs_on_jemalloc_where_installed(
    tmp_path: Path, toy_model_dir: Path, switch: str
) -> None:
    # the real entry point in a subprocess: `python -m tunesmith train` re-executes itself under jemalloc
    # (tunesmith/allocator.py) unless TUNESMITH_ALLOCATOR=system; the run records what it ran on
    from tunesmith.allocator import jemalloc_path

    config = _project(tmp_path, toy_model_dir, run_name="alloc", max_steps=1)
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"} | {"TUNESMITH_ALLOCATOR": switch}
    proc = subprocess.run(
        [sys.executable, "-m", "tunesmith", "train", str(config)], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((tmp_path / "runs" / "alloc" / "summary.json").read_text())
    expected = "jemalloc" if jemalloc_path() and sys.platform.startswith("linux") and not switch else "system"
    assert summary["allocator"] == expected
    assert f"allocator {expected}" in proc.stdout
