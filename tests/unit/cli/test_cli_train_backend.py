"""`tunesmith train --backend openai` reaches the remote backend (validate locally first, then upload)."""

import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit


def _run(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "tunesmith", *args], capture_output=True, text=True, timeout=120, cwd=cwd
    )


def test_openai_backend_needs_base_url(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model:\n  name: tiny\n")
    r = _run("train", str(cfg), "--backend", "openai")
    assert r.returncode == 2 and "--base-url" in r.stderr and "Traceback" not in r.stderr


def test_unknown_backend_is_a_usage_error(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model:\n  name: tiny\n")
    r = _run("train", str(cfg), "--backend", "modal")
    assert r.returncode == 2 and "modal" in r.stderr


def test_openai_backend_validates_data_before_any_upload(tmp_path):
    bad = tmp_path / "bad.jsonl"
    good = '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n'
    bad.write_text(good * 12 + '{"messages": [{"role": "user"}]}\n')
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"model:\n  name: tiny\ndata:\n  train: {bad}\n")
    # port 9 (discard) on loopback: nothing listens; the bad line must be reported before any connection
    r = _run(
        "train", str(cfg), "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--api-key", "k"
    )
    assert r.returncode == 1 and "13" in r.stderr and "Traceback" not in r.stderr, r.stderr
