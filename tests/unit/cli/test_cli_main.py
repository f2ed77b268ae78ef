"""The real console entry point: usage errors, user errors and --version, as a user runs them."""

import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit


def _run(*args):
    return subprocess.run(
        [sys.executable, "-m", "tunesmith", *args], capture_output=True, text=True, timeout=120
    )


def test_usage_error_exits_2_without_traceback():
    r = _run("data", "check", "--bogus", "x")
    assert r.returncode == 2
    assert "No such option" in r.stderr and "Traceback" not in r.stderr


def test_missing_argument_exits_2():
    r = _run("data", "check")
    assert r.returncode == 2 and "Missing argument" in r.stderr and "Traceback" not in r.stderr


def test_user_error_renders_message_and_hint(tmp_path):
    r = _run("config", "validate", str(tmp_path / "missing.yaml"))
    assert r.returncode == 1
    assert "does not exist" in r.stderr and "Hint:" in r.stderr and "Traceback" not in r.stderr


def test_version_and_bare_help():
    from tunesmith import __version__

    r = _run("--version")
    assert r.returncode == 0 and r.stdout.strip() == __version__
    r = _run()
    assert r.returncode == 0 and "Commands" in r.stdout and "train" in r.stdout


def test_help_does_not_import_torch():
    code = "import sys; from tunesmith.cli import main; print('torch' in sys.modules, 'transformers' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "False False", r.stdout + r.stderr


def test_error_text_is_not_rich_markup(capsys):
    from tunesmith.cli.render import print_error
    from tunesmith.errors import TunesmithError

    print_error(TunesmithError("line 3: [bold]x[/bold] and [invalid_json]", "use [brackets]"))
    err = capsys.readouterr().err
    assert "[bold]x[/bold] and [invalid_json]" in err and "use [brackets]" in err
