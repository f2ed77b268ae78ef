"""Unit tests of the training engine's pure parts: peft translation, checkpoints (incl. kill -9 during a
save), the run registry and its migrations, the memory guard, data preparation and run-dir refusals."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tunesmith.config import load_config
from tunesmith.errors import TunesmithError
from tunesmith.results.run import RunSummary
from tunesmith.train import checkpoints as ckpt

pytestmark = pytest.mark.unit


# --------------------------------------------------------------------------- peft translation


@pytest.mark.parametrize("finetune", ["lora", "qlora", "dora"])
def test_to_lora_config_maps_every_field(finetune: str) -> None:
    from tunesmith.config import LoraConfig
    from tunesmith.train.adapters import to_lora_config

    lc = LoraConfig(
        r=8, lora_alpha=24, lora_dropout=0.1, target_modules=["q_proj", "v_proj"], layers_to_transform=[1]
    )
    out = to_lora_config(lc, finetune)
    assert out.r == 8 and out.lora_alpha == 24 and out.lora_dropout == 0.1
    assert set(out.target_modules) == {"q_proj", "v_proj"}
    assert out.layers_to_transform == [1]
    assert out.use_dora is (finetune == "dora")
    assert out.task_type == "CAUSAL_LM"


def test_to_lora_config_all_linear_and_full_refused() -> None:
    from tunesmith.config import LoraConfig
    from tunesmith.train.adapters import to_lora_config

    assert to_lora_config(LoraConfig(), "lora").target_modules == "all-linear"
    with pytest.raises(ValueError, match="full"):
        to_lora_config(LoraConfig(), "full")


# --------------------------------------------------------------------------- checkpoints


def _write(payload: str):
    def write(folder: Path) -> None:
        (folder / "weights.bin").write_text(payload)

    return write


def test_checkpoints_keep_last_k_plus_best(tmp_path: Path) -> None:
    root = tmp_path / "checkpoints"
    for step in range(1, 6):
        ckpt.save_checkpoint(root, step, _write(f"w{step}"), {"step": step}, keep=2, is_best=step == 2)
    kept = [p.name for p in ckpt.list_checkpoints(root)]
    assert kept == ["step-00000002", "step-00000004", "step-00000005"]
    assert ckpt.latest_checkpoint(root).name == "step-00000005"
    assert ckpt.best_checkpoint(root).name == "step-00000002"
    assert sorted(p.name for p in root.iterdir()) == sorted([*kept, "index.json"])  # pruned folders are gone
    assert (root / "step-00000005" / "weights.bin").read_text() == "w5"


def test_unrecorded_and_temp_folders_are_never_resumed(tmp_path: Path) -> None:
    root = tmp_path / "checkpoints"
    ckpt.save_checkpoint(root, 1, _write("w1"), {"step": 1}, keep=3)
    (root / ".tmp-step-00000002-999").mkdir()  # a save killed while writing
    complete_unrecorded = root / "step-00000003"  # killed between rename and record
    complete_unrecorded.mkdir()
    (complete_unrecorded / ckpt.STATE).write_text("{}")
    assert ckpt.latest_checkpoint(root).name == "step-00000001"
    ckpt.save_checkpoint(root, 4, _write("w4"), {"step": 4}, keep=3)
    assert not (root / ".tmp-step-00000002-999").exists()  # swept on the next save


def test_failed_write_leaves_previous_checkpoint(tmp_path: Path) -> None:
    root = tmp_path / "checkpoints"
    ckpt.save_checkpoint(root, 1, _write("w1"), {"step": 1}, keep=2)

    def broken(folder: Path) -> None:
        (folder / "weights.bin").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        ckpt.save_checkpoint(root, 2, broken, {"step": 2}, keep=2)
    assert [p.name for p in ckpt.list_checkpoints(root)] == ["step-00000001"]
    assert not list(root.glob(".tmp-*"))


def test_kill_9_during_save_leaves_previous_checkpoint_usable(tmp_path: Path) -> None:
    """A real SIGKILL in the middle of writing checkpoint 2 (after half its bytes are on disk)."""
    root = tmp_path / "checkpoints"
    script = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from tunesmith.train import checkpoints as ckpt
        root = Path({str(root)!r})
        ckpt.save_checkpoint(root, 1, lambda f: (f / "weights.bin").write_text("good"), {{"step": 1}}, keep=2)
        def dying(folder):
            with open(folder / "weights.bin", "w") as fh:
                fh.write("half-writ")
                fh.flush()
                os.kill(os.getpid(), signal.SIGKILL)
        ckpt.save_checkpoint(root, 2, dying, {{"step": 2}}, keep=2)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert list(root.glob(".tmp-step-00000002-*"))  # the half-written save is there...
    last = ckpt.latest_checkpoint(root)  # ...but is not what a resume sees
    assert last is not None and last.name == "step-00000001"
    assert (last / "weights.bin").read_text() == "good"
    assert json.loads((last / ckpt.STATE).read_text()) == {"step": 1}


# --------------------------------------------------------------------------- registry


def test_registry_records_runs(tmp_path: Path) -> None:
    from tunesmith.train.registry import RunRegistry

    reg = RunRegistry(tmp_path)
    reg.add("r1", tmp_path / "r1", "sft", "lora", "tiny")
    reg.add("r2", tmp_path / "r2", "cpt", "full", "tiny")
    summary = RunSummary(
        run_id="r1", method="sft", status="completed", final_train_loss=1.5, best_val_loss=1.25
    )
    reg.finish("r1", "completed", summary)
    runs = reg.list()
    assert [r.run_id for r in runs] == ["r1", "r2"]
    r1 = reg.get("r1")
    assert r1.summary == summary
    assert (r1.status, r1.final_loss, r1.best_loss, r1.summary.best_val_loss) == (
        "completed",
        1.5,
        1.25,
        1.25,
    )
    assert reg.get("r2").status == "running"
    reg.remove("r2")
    with pytest.raises(TunesmithError, match=r"(?s)No run .r2.*Recent runs: r1\."):
        reg.get("r2")


def test_registry_reads_an_old_dpo_summary_and_fills_its_final_loss(tmp_path: Path) -> None:
    """A dpo run recorded before RunSummary stored its final loss as train_loss_last, so the registry's
    final_loss column stayed empty and `runs list` showed none."""
    from tunesmith.train.registry import RunRegistry

    reg = RunRegistry(tmp_path)
    reg.add("dpo1", tmp_path / "dpo1", "dpo", "lora", "tiny")
    old = {"method": "dpo", "status": "completed", "train_loss_first": 0.69, "train_loss_last": 0.42}
    with sqlite3.connect(reg.path) as conn:
        conn.execute("UPDATE runs SET summary_json = ? WHERE run_id = 'dpo1'", (json.dumps(old),))
    rec = reg.get("dpo1")
    assert (rec.final_loss, rec.summary.final_train_loss, rec.summary.first_train_loss) == (0.42, 0.42, 0.69)


def test_registry_migrates_an_old_file_in_place(tmp_path: Path) -> None:
    from tunesmith.train.registry import MIGRATIONS, SCHEMA_VERSION, RunRegistry

    conn = sqlite3.connect(tmp_path / "registry.sqlite")  # a file written by schema version 1
    conn.executescript(MIGRATIONS[0] + "PRAGMA user_version = 1;")
    conn.execute(
        "INSERT INTO runs VALUES ('old', '/x/old', 'sft', 'lora', 'tiny', 'completed', 1.0, 2.0, 0.5, 0.4)"
    )
    conn.commit()
    conn.close()
    reg = RunRegistry(tmp_path)
    old = reg.get("old")
    assert (old.final_loss, old.best_loss, old.summary) == (0.5, 0.4, None)
    new = RunSummary(run_id="old", method="sft", status="completed", final_train_loss=0.5)
    reg.finish("old", "completed", new)
    assert reg.get("old").summary.final_train_loss == 0.5  # the v2 column works
    version = sqlite3.connect(tmp_path / "registry.sqlite").execute("PRAGMA user_version").fetchone()[0]
    assert version == SCHEMA_VERSION == 2


def test_registry_refuses_a_newer_file(tmp_path: Path) -> None:
    from tunesmith.train.registry import RunRegistry

    conn = sqlite3.connect(tmp_path / "registry.sqlite")
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(TunesmithError, match="newer tunesmith"):
        RunRegistry(tmp_path).list()


# --------------------------------------------------------------------------- guards and run folders


def _cfg(tmp_path: Path, *overrides: str):
    return load_config(None, ["model.name=tiny", f"train.output_dir={tmp_path / 'runs'}", *overrides])


def test_existing_run_folder_and_unwritable_output_are_refused(tmp_path: Path) -> None:
    from tunesmith.train.runs import check_new_run_dir

    (tmp_path / "runs" / "mine").mkdir(parents=True)
    (tmp_path / "runs" / "mine" / "keep.txt").write_text("precious")
    with pytest.raises(TunesmithError, match="already exists") as info:
        check_new_run_dir(_cfg(tmp_path, "train.run_name=mine"))
    assert "--resume" in info.value.hint
    assert (tmp_path / "runs" / "mine" / "keep.txt").read_text() == "precious"
    (tmp_path / "afile").write_text("x")
    with pytest.raises(TunesmithError, match="is a file, not a folder"):
        check_new_run_dir(load_config(None, [f"train.output_dir={tmp_path / 'afile' / 'runs'}"]))


def test_missing_metrics_sink_is_refused_before_writing(tmp_path: Path, monkeypatch) -> None:
    from tunesmith.train.runs import check_new_run_dir, create_run

    for sink in ("tensorboard", "mlflow"):
        with monkeypatch.context() as m:
            m.setitem(sys.modules, sink, None)  # what an environment without the package imports
            for call in (check_new_run_dir, create_run):
                with pytest.raises(
                    TunesmithError, match=f"lists {sink}, but the {sink} package is not installed"
                ) as e:
                    call(_cfg(tmp_path, f"train.report_to=[{sink}]"))
                assert "pip install 'tunesmith[trackers]'" in e.value.hint
                assert not (tmp_path / "runs").exists()


def test_an_output_dir_nobody_can_create_is_refused(tmp_path: Path) -> None:
    """Root included (CI runs as root, which ignores permission bits): nothing can be created under a
    regular file, so the run is refused before anything is written."""
    from tunesmith.train.runs import check_new_run_dir

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("keep me")
    with pytest.raises(TunesmithError, match="is a file, not a folder") as err:
        check_new_run_dir(load_config(None, [f"train.output_dir={blocker / 'deeper' / 'runs'}"]))
    assert str(blocker) in err.value.message and "train.output_dir" in err.value.hint
    assert blocker.read_text() == "keep me" and sorted(tmp_path.iterdir()) == [blocker]


def test_a_folder_without_write_permission_is_refused_only_for_users_it_stops(tmp_path: Path) -> None:
    """A 0o500 folder stops a normal user, so the run is refused up front; root writes there anyway, so
    refusing would be wrong. Each user gets the assertion that applies to them (no skip)."""
    from tunesmith.train.runs import check_new_run_dir

    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    cfg = load_config(None, [f"train.output_dir={locked / 'runs'}"])
    try:
        if os.access(locked, os.W_OK):  # root: the folder is writable for this process
            assert check_new_run_dir(cfg).parent == locked / "runs"
        else:
            with pytest.raises(TunesmithError, match="not writable"):
                check_new_run_dir(cfg)
        assert list(locked.iterdir()) == []  # checking wrote nothing
    finally:
        locked.chmod(0o700)


def test_resume_refuses_a_changed_config(tmp_path: Path) -> None:
    from tunesmith.train.runs import config_differences

    a = _cfg(tmp_path)
    b = _cfg(tmp_path, "train.lr=0.5", "lora.r=4", "train.save_every=3")
    assert config_differences(a, b) == ["lora.r", "train.lr"]


# --------------------------------------------------------------------------- data


def _write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_data_with_errors_is_refused_unless_forced(tmp_path: Path) -> None:
    from tunesmith.models.load import load_tokenizer
    from tunesmith.train.data import prepare_data

    rows = [{"text": f"message {i}", "label": "a" if i % 2 else "b"} for i in range(6)]
    rows.insert(3, '{"text": "broken", ')
    path = _write_jsonl(tmp_path / "train.jsonl", rows)
    cfg = _cfg(tmp_path, f"data.train={path}")
    tok = load_tokenizer("tiny")
    with pytest.raises(TunesmithError, match=r"train.jsonl line 4: .*\(invalid_json\)") as info:
        prepare_data(cfg, tok)
    assert "--force" in info.value.hint
    data = prepare_data(cfg, tok, force=True)
    assert data.skipped_lines == 1 and len(data.train) + len(data.holdout) == 6


def test_classification_trains_as_chat_with_label_answer(tmp_path: Path) -> None:
    from tunesmith.models.load import load_tokenizer
    from tunesmith.train.data import prepare_data

    rows = [{"text": f"message {i}", "label": "urgent" if i % 2 else "normal"} for i in range(5)]
    cfg = _cfg(
        tmp_path, f"data.train={_write_jsonl(tmp_path / 't.jsonl', rows)}", "data.holdout_fraction=0.2"
    )
    tok = load_tokenizer("tiny")
    data = prepare_data(cfg, tok)
    assert data.task == "classification" and "normal, urgent" in data.system_prompt
    assert (len(data.train), len(data.holdout)) == (4, 1)
    ex = data.train[0]
    trained = tok.decode([t for t in ex.labels if t != -100])
    assert trained.strip() in (
        "urgent<|im_end|>",
        "normal<|im_end|>",
    )  # the label plus end-of-turn, nothing else
    assert "<|im_start|>system" in ex.text


def test_sft_refuses_raw_text_and_cpt_windows_long_documents(tmp_path: Path) -> None:
    from tunesmith.models.load import load_tokenizer
    from tunesmith.train.data import prepare_data

    doc = " ".join(f"word{i}" for i in range(200))
    path = _write_jsonl(
        tmp_path / "docs.jsonl", [{"text": doc}, {"text": "short one"}, {"text": "another short"}]
    )
    tok = load_tokenizer("tiny")
    with pytest.raises(TunesmithError, match="method: cpt"):
        prepare_data(_cfg(tmp_path, f"data.train={path}"), tok)
    cfg = _cfg(
        tmp_path, f"data.train={path}", "train.method=cpt", "data.max_seq_len=64", f"data.holdout={path}"
    )
    data = prepare_data(cfg, tok)
    n_doc = len(tok(doc)["input_ids"]) + 1  # + EOS
    windows = [t for t in data.train if len(t.input_ids) == 64]
    assert len(windows) == n_doc // 64 and all(t.labels == t.input_ids for t in data.train)
    assert sum(len(t.input_ids) for t in data.train) == n_doc + sum(
        len(tok(s)["input_ids"]) + 1 for s in ("short one", "another short")
    )
