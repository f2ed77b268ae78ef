"""The dashboard in headless Chromium (selenium): jobs, events, models, and a loss curve that really
renders (its pixels are counted after the browser rasterises the SVG). The metrics are written through
the same store calls the worker makes; this test is about what the page shows."""

from __future__ import annotations

import json
import shutil
import socket
import threading
from pathlib import Path

import pytest
from serve_int_toy import add_lines, wait_for

pytestmark = pytest.mark.integration

CHROME_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,900",
]

COUNT_BLUE = """
const svg = document.getElementById('curve');
const xml = new XMLSerializer().serializeToString(svg);
const img = new Image();
const done = arguments[arguments.length - 1];
img.onload = () => {
  const c = document.createElement('canvas'); c.width = 600; c.height = 260;
  const g = c.getContext('2d'); g.drawImage(img, 0, 0, 600, 260);
  const px = g.getImageData(0, 0, 600, 260).data; let n = 0;
  for (let i = 0; i < px.length; i += 4) if (px[i] < 90 && px[i+1] > 80 && px[i+1] < 150 && px[i+2] > 220) n++;
  done(n);
};
img.onerror = () => done(-1);
img.src = 'data:image/svg+xml;charset=utf-8,' + encodeURIComponent(xml);
"""


@pytest.fixture
def live_server(tmp_path: Path):
    import uvicorn

    from tunesmith.serve.app import ServeSettings, create_app

    app = create_app(ServeSettings(data_dir=tmp_path / "data", start_workers=False, api_keys=["dash-key"]))
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


@pytest.mark.skipif(shutil.which("chromedriver") is None, reason="needs chromium + chromium-driver (apt)")
def test_dashboard_shows_jobs_events_models_and_a_rendered_loss_curve(live_server, tmp_path: Path) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    from tunesmith.serve.testing import in_process_client

    app, url = live_server
    client = in_process_client(app, api_key="dash-key")
    f = client.files.create(file=("add.jsonl", add_lines(12)), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model="tiny", training_file=f.id, suffix="dash")
    store = app.state.store
    losses = [2.5, 2.1, 1.8, 1.7, 1.4, 1.3, 1.1, 1.05]
    for step, loss in enumerate(losses, start=1):
        store.add_event(
            job.id,
            f"Step {step}/8: training loss={loss:.4f}",
            data={"step": step, "train_loss": loss, "total_steps": 8},
            type_="metrics",
        )
    store.add_event(
        job.id, "Step 8: validation loss=1.2000", data={"step": 8, "valid_loss": 1.2}, type_="metrics"
    )
    report = app.state.settings.data_dir / "reports" / "demo" / "report.json"
    report.parent.mkdir(parents=True)
    report.write_text(
        json.dumps(
            {"task": "classification", "n": 20, "candidates": {"finetuned": {"metrics": {"accuracy": 0.95}}}}
        )
    )

    opts = webdriver.ChromeOptions()
    for flag in CHROME_FLAGS:
        opts.add_argument(flag)
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    try:
        driver.set_script_timeout(20)
        driver.get(f"{url}/?key=dash-key")
        wait_for(lambda: driver.find_elements(By.ID, "loss-line"), 20, "the loss curve")
        points = driver.find_element(By.ID, "loss-line").get_attribute("points").split()
        assert len(points) == len(losses)
        ys = [float(p.split(",")[1]) for p in points]
        assert ys == sorted(ys)  # falling loss -> rising y in SVG coordinates
        box = driver.execute_script(
            "const b = document.getElementById('loss-line').getBBox(); return [b.width, b.height];"
        )
        assert box[0] > 400 and box[1] > 100
        assert driver.execute_async_script(COUNT_BLUE) > 300  # the line's pixels are really drawn
        assert driver.find_elements(By.ID, "valid-line")
        rows = driver.find_elements(By.CSS_SELECTOR, "#jobs tbody tr")
        assert [r.get_attribute("data-id") for r in rows] == [job.id] and "queued" in rows[0].text
        events = driver.find_element(By.ID, "events").text
        assert "Step 8/8: training loss=1.0500" in events and "Created fine-tuning job" in events
        models = driver.find_element(By.ID, "models").text
        assert "tiny" in models and "smollm2-135m-instruct" in models
        assert "accuracy=0.950" in driver.find_element(By.ID, "reports").text
        client.fine_tuning.jobs.cancel(job.id)  # the page polls: the new status appears without a reload
        wait_for(
            lambda: "cancelled" in driver.find_element(By.CSS_SELECTOR, "#jobs tbody tr").text,
            10,
            "the live status",
        )
        # let the browser paint the new status before the screenshot: two animation frames, not a sleep
        driver.execute_async_script("requestAnimationFrame(() => requestAnimationFrame(arguments[0]))")
        driver.save_screenshot(str(tmp_path / "dashboard.png"))
        shot = Path("/tmp/tunesmith-dashboard.png")
        shutil.copy(tmp_path / "dashboard.png", shot)  # for a human look; the assertions above are the test
        driver.get(f"{url}/")  # without the key the page says so instead of showing data
        driver.execute_script("localStorage.clear()")
        driver.get(f"{url}/")
        wait_for(lambda: "error" in driver.find_element(By.ID, "err").text, 10, "the auth error")
        assert "API key" in driver.find_element(By.ID, "err").text
    finally:
        driver.quit()
