"""OpenAI's ``batch_size`` hyperparameter sets what actually sets the batch of the job's method
(``train.batch_size``: the plan's examples per optimizer step, pairs for dpo), and the server's
``--train-override`` settings reach only the jobs whose method reads them (docs/server.md)."""

from __future__ import annotations

import pytest
from serve_unit_toy import chat_lines, dpo_lines, make_app

from tunesmith.serve import jobs
from tunesmith.serve.testing import in_process_client

pytestmark = pytest.mark.unit

SERVER_OVERRIDES = ["train.save_every=4", "train.forgetting_probe=true", "train.max_steps=3"]


def _job(tmp_path, lines: bytes, method: dict):  # noqa: ANN001, ANN202
    app = make_app(tmp_path)
    client = in_process_client(app)
    fid = client.files.create(file=("t.jsonl", lines), purpose="fine-tune").id
    client.fine_tuning.jobs.create(model="tiny", training_file=fid, method=method)
    return app, app.state.store.claim_job(12345)


def test_batch_size_sets_the_examples_per_optimizer_step_of_an_sft_job(tmp_path) -> None:
    from tunesmith.train.plan import examples_per_step

    app, job = _job(
        tmp_path, chat_lines(12), {"type": "supervised", "supervised": {"hyperparameters": {"batch_size": 6}}}
    )
    cfg = jobs.job_config(job, app.state.settings.data_dir, SERVER_OVERRIDES)
    assert cfg.train.method == "sft" and cfg.train.batch_size == 6
    # the plan's optimizer step: 6 examples, whatever the micro-batch
    assert examples_per_step(cfg, 12)[0] == 6
    # sft reads all three server-wide settings
    assert (cfg.train.save_every, cfg.train.forgetting_probe, cfg.train.max_steps) == (4, True, 3)


def test_batch_size_sets_the_pairs_per_step_of_a_dpo_job_and_unread_overrides_stay_out(tmp_path) -> None:
    from tunesmith.train.plan import examples_per_step

    app, job = _job(tmp_path, dpo_lines(12), {"type": "dpo", "dpo": {"hyperparameters": {"batch_size": 3}}})
    cfg = jobs.job_config(job, app.state.settings.data_dir, SERVER_OVERRIDES)
    assert cfg.train.method == "dpo" and cfg.train.batch_size == 3
    assert examples_per_step(cfg, 12)[0] == 3  # dpo trains on the same plan: 3 pairs per optimizer step
    # the forgetting probe does nothing for dpo: the job leaves it out instead of failing; the others apply
    assert (cfg.train.save_every, cfg.train.forgetting_probe, cfg.train.max_steps) == (4, False, 3)
