"""OpenAI's reinforcement fine-tuning through the real openai SDK (strict response validation) and a real
worker process: a prompts-only training file, ``method: {type: "reinforcement", reinforcement: {grader,
hyperparameters}}``, GRPO on the tiny model against the grader, the mean reward of every step in the job's
metrics events; refused requests are 400s naming the field."""

from __future__ import annotations

import json

import openai
import pytest
from serve_int_toy import add_lines, start_app, wait_for

from tunesmith.serve.testing import in_process_client

pytestmark = pytest.mark.integration

STEPS = 3
OVERRIDES = [f"train.max_steps={STEPS}", "train.max_completion_length=6", "train.save_every=4"]
GRADER = {
    "type": "python",
    "name": "length",
    "source": "def grade(sample, item):\n    return min(len(sample['output_text']), 20) / 20\n",
}


def _prompts(n: int = 12) -> bytes:
    rows = [{"messages": [{"role": "user", "content": f"Ticket {i}: reply in one line."}], "queue": "billing"}
            for i in range(n)]  # fmt: skip
    return ("\n".join(json.dumps(r) for r in rows) + "\n").encode()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    app = start_app(tmp_path_factory.mktemp("serve-rft"), OVERRIDES)
    client = in_process_client(app)
    yield app, client
    app.state.supervisor.stop()
    app.state.engine.close()


def test_a_reinforcement_job_trains_grpo_and_reports_reward_per_step(served) -> None:
    app, client = served
    upload = client.files.create(file=("prompts.jsonl", _prompts()), purpose="fine-tune")
    assert upload.status == "processed"  # prompts without answers are reinforcement data, not broken chat
    job = client.fine_tuning.jobs.create(
        model="tiny",
        training_file=upload.id,
        seed=3,
        method={
            "type": "reinforcement",
            "reinforcement": {"grader": GRADER, "hyperparameters": {"batch_size": 8, "n_epochs": 1}},
        },
    )
    assert job.method.type == "reinforcement" and job.method.reinforcement.grader.name == "length"
    done = wait_for(
        lambda: (j := client.fine_tuning.jobs.retrieve(job.id)).status in ("succeeded", "failed") and j,
        240,
        "the reinforcement job",
    )
    assert done.status == "succeeded", done.error
    events = list(client.fine_tuning.jobs.list_events(job.id, limit=100))
    rewards = [e.data for e in events if e.type == "metrics" and "train_mean_reward" in e.data]
    assert sorted(m["step"] for m in rewards) == list(range(1, STEPS + 1))
    assert all(0.0 <= m["train_mean_reward"] <= 1.0 for m in rewards)
    assert any("mean reward=" in e.message for e in events)
    from tunesmith.results.run import read_run_summary

    summary = read_run_summary(app.state.settings.data_dir / "runs" / job.id)
    assert summary.method == "grpo" and summary.extras.grader.endswith(f"{job.id}.json")
    r = client.chat.completions.create(model=done.fine_tuned_model, messages=[{"role": "user", "content": "hi"}],
                                       max_tokens=4)  # fmt: skip
    assert r.choices[0].message.content is not None


def test_reinforcement_requests_are_checked(served) -> None:
    _, client = served
    prompts = client.files.create(file=("p.jsonl", _prompts()), purpose="fine-tune")
    chat = client.files.create(file=("chat.jsonl", add_lines(12)), purpose="fine-tune")

    def create(method: dict, training_file: str = prompts.id, **kw: object) -> None:
        client.fine_tuning.jobs.create(model="tiny", training_file=training_file, method=method, **kw)

    with pytest.raises(openai.BadRequestError) as exc:
        create({"type": "reinforcement", "reinforcement": {"hyperparameters": {}}})
    assert exc.value.body["param"] == "method.reinforcement.grader"
    with pytest.raises(openai.BadRequestError) as exc:
        create({"type": "reinforcement", "reinforcement": {"grader": {"type": "string_check", "name": "x"}}})
    assert (
        exc.value.body["param"] == "method.reinforcement.grader"
        and "invalid grader" in exc.value.body["message"]
    )
    with pytest.raises(openai.BadRequestError) as exc:  # chat lines with answers are supervised data
        create({"type": "reinforcement", "reinforcement": {"grader": GRADER}}, chat.id)
    assert "needs prompts lines" in exc.value.body["message"]
    with pytest.raises(openai.BadRequestError) as exc:
        create({"type": "reinforcement", "reinforcement": {"grader": GRADER}}, validation_file=prompts.id)
    assert exc.value.body["param"] == "validation_file"
    with pytest.raises(openai.BadRequestError):  # and prompts alone are no supervised data
        create({"type": "supervised"})
