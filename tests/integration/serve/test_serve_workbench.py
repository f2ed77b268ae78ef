"""The workbench in headless Chromium (selenium), the whole loop with the tiny model and real worker and task
processes: upload (a broken file first: its errors with their lines) -> check report with the trained-token
view -> plan -> job (loss curve, events) -> evaluation against the prompted baselines (gate verdict) ->
promote to ``prod`` (refused without the gate, then with a recorded override) -> a logged request to ``prod``
with personal data -> review (masked, flagged, confidence scored) -> correct it (SFT row) and pick the better of
two answers (DPO pair) -> retrain -> comparison with ``prod`` on hold-out + reviewed rows -> promote or keep
-> audit log and rollback. Every assertion is on what the page shows. Screenshots of each page go to
``tmp_path/shots`` and, for the walkthrough, to ``/tmp/tunesmith-workbench/`` (docs/img/workbench-*.png are
copies of a run)."""

from __future__ import annotations

import json
import shutil
import socket
import threading
from pathlib import Path

import pytest
from serve_int_toy import wait_for

pytestmark = pytest.mark.integration

KEY = "wb-key"
SHOTS = Path("/tmp/tunesmith-workbench")
CHROME_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,1000",
]
# every form control has a label and every action is a <button>: usable from the keyboard
UNLABELLED = """
return [...document.querySelectorAll('input, select, textarea')]
  .filter(e => e.type !== 'hidden' && e.labels.length === 0).map(e => e.id || e.outerHTML.slice(0, 60));
"""
PICK = """
const s = document.getElementById(arguments[0]);
const o = [...s.options].find(o => o.text.includes(arguments[1]));
if (!o) return false;
s.value = o.value; s.dispatchEvent(new Event('change')); return true;
"""
CLICKABLE_NON_BUTTONS = """
return [...document.querySelectorAll('[onclick], a[href="#"], div[role=button], span[role=button]')].length;
"""


def tickets(n: int, start: int = 0) -> bytes:
    """Support tickets routed to two queues (chat lines), short so tiny-model steps are fast."""
    rows = []
    for i in range(start, start + n):
        label = ("billing", "technical")[i % 2]
        text = f"invoice {i} charged twice" if label == "billing" else f"app crashes on page {i}"
        rows.append(
            {"messages": [{"role": "user", "content": text}, {"role": "assistant", "content": label}]}
        )
    return ("\n".join(json.dumps(r) for r in rows) + "\n").encode()


@pytest.fixture
def live_workbench(tmp_path: Path):
    import uvicorn

    from tunesmith.serve.app import ServeSettings, create_app
    from tunesmith.serve.jobs import Supervisor

    settings = ServeSettings(
        data_dir=tmp_path / "data",
        start_workers=False,
        api_keys=[KEY],
        log_requests=True,
        train_overrides=["train.max_steps=6", "data.max_seq_len=64"],
    )
    app = create_app(settings)
    app.state.supervisor = Supervisor(settings.data_dir, 1, settings.train_overrides, tick_s=0.2)
    app.state.supervisor.start()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 20, "uvicorn")
    yield app, f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
    app.state.supervisor.stop()


@pytest.mark.skipif(shutil.which("chromedriver") is None, reason="needs chromium + chromium-driver (apt)")
def test_workbench_drives_the_whole_loop_in_a_browser(live_workbench, tmp_path: Path) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from tunesmith.serve.testing import in_process_client

    app, url = live_workbench
    files = tmp_path / "in"
    files.mkdir()
    (files / "broken.jsonl").write_bytes(tickets(11) + b'{"messages": [{"role": "user", "content": "hi"}]}\n')
    (files / "tickets.jsonl").write_bytes(tickets(16))
    (files / "holdout.jsonl").write_bytes(tickets(4, start=100))
    shots = tmp_path / "shots"
    shots.mkdir()

    opts = webdriver.ChromeOptions()
    for flag in CHROME_FLAGS:
        opts.add_argument(flag)
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)

    def el(id_: str):
        return driver.find_element(By.ID, id_)

    def text(id_: str) -> str:  # read in one script: polled parts of the page are re-rendered
        return driver.execute_script(
            "const e = document.getElementById(arguments[0]); return e ? e.innerText : '';", id_
        )

    def click(id_: str) -> None:
        driver.execute_script("document.getElementById(arguments[0]).click();", id_)

    def page(name: str) -> None:
        driver.find_element(By.CSS_SELECTOR, f'nav button[data-page="{name}"]').click()
        wait_for(lambda: el(f"page-{name}").is_displayed(), 10, f"the {name} page")

    def pick(select_id: str, contains: str) -> None:
        # in one script: the page re-renders its lists while it polls, so an element read earlier goes stale
        wait_for(
            lambda: driver.execute_script(PICK, select_id, contains), 30, f"{contains!r} in #{select_id}"
        )

    def shot(name: str) -> None:
        driver.execute_async_script("requestAnimationFrame(() => requestAnimationFrame(arguments[0]))")
        driver.save_screenshot(str(shots / f"workbench-{name}.png"))

    def upload(name: str) -> None:
        el("upload-file").send_keys(str(files / name))
        el("upload-btn").click()

    try:
        driver.set_script_timeout(20)
        driver.get(f"{url}/workbench?key={KEY}#data")
        wait_for(lambda: el("page-data").is_displayed(), 20, "the workbench")
        assert driver.execute_script(UNLABELLED) == []
        assert driver.execute_script(CLICKABLE_NON_BUTTONS) == 0
        assert {b.tag_name for b in driver.find_elements(By.CSS_SELECTOR, "nav button")} == {"button"}

        # 1 data: a broken file is refused with its line; the good one shows what is trained
        upload("broken.jsonl")
        wait_for(lambda: "error" in text("check-report"), 60, "the broken file's report")
        errors = text("check-errors")
        assert "\n12\tno_assistant_message" in errors  # the line and the code of the problem
        upload("holdout.jsonl")
        wait_for(lambda: "4 examples" in text("check-report"), 60, "the hold-out's report")
        upload("tickets.jsonl")
        wait_for(lambda: "16 examples" in text("check-report"), 60, "the training file's report")
        assert "no errors" in text("check-report") and "chat" in text("check-report")
        views = driver.find_elements(By.CSS_SELECTOR, "pre.trained-view")
        assert len(views) == 3
        trained = [m.text for m in views[0].find_elements(By.TAG_NAME, "mark")]
        assert trained and "billing" in "".join(trained) and "invoice 0" not in "".join(trained)
        assert "broken.jsonl" in text("files")
        shot("data")

        # 2 train: the plan's defaults, a job, its loss curve and events
        page("train")
        pick("train-file", "tickets.jsonl")
        Select(el("train-model")).select_by_value("tiny")
        el("plan-btn").click()
        wait_for(lambda: "steps" in text("plan-view"), 120, "the plan")
        assert "examples per step" in text("plan-table") and "GB" in text("plan-table")
        el("start-job").click()
        wait_for(lambda: any(s in text("job-summary") for s in ("succeeded", "failed")), 600, "the job")
        assert "succeeded" in text("job-summary"), text("job-summary")
        model = text("job-summary").split("→")[1].split()[0]
        assert model.startswith("ft:tiny:local:wb:")
        wait_for(lambda: driver.find_elements(By.ID, "train-line"), 20, "the loss curve")
        assert len(el("train-line").get_attribute("points").split()) == 6
        assert "New fine-tuned model created" in text("job-events")
        shot("train")

        # 3 evaluate: the job's model against the prompted baselines, the gate's verdict with its reasons
        page("evaluate")
        pick("eval-job", model)
        pick("eval-holdout", "holdout.jsonl")
        el("eval-start").click()
        wait_for(lambda: "Gate" in text("eval-view") or "failed" in text("eval-view"), 600, "the evaluation")
        view = text("eval-view")
        assert "Gate" in view, view
        assert "base:zero-shot" in view and "base:few-shot" in view and "finetuned" in view
        assert "base:few-shot.accuracy" in view  # the default rule: beat the few-shot prompt
        first_gate_passed = "Gate PASSED" in view
        wait_for(lambda: el("eval-html").get_attribute("srcdoc"), 20, "the rendered report")
        shot("evaluate")

        # 4 promote: without a passed gate the move is refused until a reason is given, and recorded
        page("promote")
        pick("alias-model", model)
        pick("alias-eval", "gate")
        el("alias-name").clear()
        el("alias-name").send_keys("prod")
        if not first_gate_passed:
            el("alias-move").click()
            wait_for(lambda: "override_reason" in text("promote-msg"), 20, "the refusal")
            el("override-reason").send_keys("first model of the project; nothing to compare with yet")
        el("alias-move").click()
        wait_for(lambda: "moved" in text("promote-msg"), 20, "the move")
        wait_for(lambda: model in text("aliases"), 20, "the alias table")
        audit = text("audit")
        assert "set" in audit and "key-" in audit and model in audit
        if not first_gate_passed:
            assert "first model of the project" in audit and "failed" in audit
        el("try-btn").click()
        wait_for(lambda: "prod answered" in text("try-answer"), 120, "the alias's answer")
        shot("promote")

        # a logged request to prod, with personal data in it (as production traffic would have)
        client = in_process_client(app, api_key=KEY)
        client.chat.completions.create(
            model="prod",
            messages=[{"role": "user", "content": "invoice 7 charged twice, write to jane.doe@example.com"}],
            max_tokens=8,
            temperature=0,
        )

        # 5 review: masked and flagged, scored, corrected, a preference pair
        page("review")
        el("review-score").click()
        el("f-maxconf").send_keys("1")  # every scored answer: confidence <= 1
        el("f-model").send_keys("prod")

        def scored_log():  # the newest log once its confidence is scored (the list re-renders: read it at once)
            el("review-filter").click()
            return driver.execute_script(
                "const a = document.querySelector('#review-list article.log');"
                "return a && a.innerText.includes('confidence') ? [a.dataset.log, a.innerText] : null;"
            )

        log_id, card = wait_for(scored_log, 300, "the scored, masked log")
        assert "[EMAIL]" in card and "PII masked: email" in card and "invoice 7 charged twice" in card
        assert "jane.doe@example.com" not in driver.page_source  # masked in the page, not only hidden
        wait_for(lambda: "confidence scored" in text("status"), 60, "the end of scoring")
        # one script per action: a list re-rendered by an earlier filter click would make elements stale
        driver.execute_script(
            "document.getElementById('fix-' + arguments[0]).value = 'billing';"
            "document.querySelector(`button[data-correct='${arguments[0]}']`).click();",
            log_id,
        )
        wait_for(lambda: "sft" in text("review-items"), 20, "the SFT row")
        driver.execute_script(
            "document.getElementById('alt-model-' + arguments[0]).value = 'tiny';"
            "document.querySelector(`button[data-alt='${arguments[0]}']`).click();",
            log_id,
        )
        wait_for(lambda: "B is better" in text(f"pair-{log_id}"), 120, "the side-by-side answers")
        shot("review-pair")
        driver.execute_script(f"document.querySelector('#pair-{log_id} button[data-pick=\"b\"]').click();")
        wait_for(lambda: "dpo" in text("review-items"), 20, "the DPO pair")
        items = text("review-items")
        assert "[EMAIL]" in items and "email" in items and "billing" in items
        assert "version 2" in text("review-version")
        el("export-sft").click()
        wait_for(lambda: "1 sft line(s)" in text("export-view"), 20, "the export")
        exported = json.loads(text("export-view").split("\n", 1)[1])
        assert exported["messages"][-1] == {"role": "assistant", "content": "billing"}

        # retrain on the training file + reviewed rows, compare with prod, then promote or keep
        pick("retrain-file", "tickets.jsonl")
        pick("retrain-holdout", "holdout.jsonl")
        Select(el("retrain-model")).select_by_value("tiny")
        el("retrain-btn").click()
        wait_for(lambda: driver.find_elements(By.ID, "retrain-report"), 600, "the retrain job")
        wait_for(
            lambda: "Gate" in text("retrain-report") or "failed" in text("retrain-report"),
            600,
            "the comparison",
        )
        report = text("retrain-report")
        assert "Gate" in report, report
        assert "prod" in report and "finetuned" in report and "incl. 1 reviewed rows" in report
        shot("review")
        if "Gate PASSED" in report:
            click("retrain-promote")
            wait_for(lambda: "promoted" in text("retrain-view"), 20, "the promotion")
        else:
            assert driver.execute_script("return document.getElementById('retrain-promote').disabled;")
            click("retrain-keep")  # the gate decides: no promotion offered
            wait_for(lambda: "kept" in text("retrain-view"), 20, "keeping prod")
        promoted = "promoted" in text("retrain-view")

        # the audit log, then a one-click rollback
        page("promote")
        wait_for(
            lambda: len(el("audit").find_elements(By.CSS_SELECTOR, "tbody tr")) == (2 if promoted else 1),
            20,
            "audit",
        )
        if promoted:
            el("alias-rollback").click()
            wait_for(lambda: "rolled back" in text("promote-msg"), 20, "the rollback")
            wait_for(lambda: "rollback" in text("audit"), 20, "the rollback in the audit log")
            assert model in text("aliases")
        shot("promote-audit")

        # readable on a phone: nothing wider than the screen but the scrollable tables
        driver.set_window_size(390, 900)
        page("review")
        overflow = driver.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth;"
        )
        assert overflow <= 0
        shot("phone-review")
    finally:
        driver.quit()
        SHOTS.mkdir(exist_ok=True)
        for f in shots.glob("*.png"):  # for a human look; the assertions above are the test
            shutil.copy(f, SHOTS / f.name)
