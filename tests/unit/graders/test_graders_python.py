"""The python grader: the user's grade(sample, item) in a limited process (issue 14, acceptance 1: a grader
that loops, allocates 10 GB or opens a socket is stopped with a clear error)."""

from __future__ import annotations

import pytest

from tunesmith.errors import TunesmithError
from tunesmith.graders import load_grader

pytestmark = pytest.mark.unit


def python_grader(source: str, **kw: object) -> object:
    return load_grader({"type": "python", "name": "custom", "source": source, **kw})


def test_grades_with_the_users_function_by_hand() -> None:
    g = python_grader(
        "def grade(sample, item):\n"
        "    words = sample['output_text'].split()\n"
        "    return 1.0 if item['keyword'] in words else len(words) / 10\n",
        pass_threshold=0.5,
    )
    items = [{"keyword": "refund"}, {"keyword": "refund"}, {"keyword": "x"}]
    grades = g.evaluate(["your refund is on its way", "no", "a b c d e f"], items)
    assert [x.score for x in grades] == [1.0, 0.1, 0.6]
    assert [x.passed for x in grades] == [True, False, True]
    assert g.grade_batch(["refund"], [{"keyword": "refund"}]) == [1.0]


def test_its_prints_do_not_break_the_protocol() -> None:
    g = python_grader("def grade(sample, item):\n    print('debug', sample)\n    return 0.25\n")
    assert g.grade_batch(["a", "b"], [{}, {}]) == [0.25, 0.25]


def test_an_endless_loop_is_stopped_at_the_time_limit() -> None:
    g = python_grader("def grade(sample, item):\n    while True:\n        pass\n", timeout_s=1)
    with pytest.raises(TunesmithError, match=r"'custom' ran past its time limit of 1 s on row 0.*stopped"):
        g.grade("a", {})


def test_a_10_gb_allocation_is_stopped_by_the_memory_limit() -> None:
    g = python_grader("def grade(sample, item):\n    block = bytearray(10 * 1024**3)\n    return 1.0\n")
    with pytest.raises(TunesmithError, match=r"failed on row 0: ran out of memory.*limit 1024 MiB"):
        g.grade("a", {})


def test_opening_a_socket_is_refused() -> None:
    g = python_grader(
        "import socket\n"
        "def grade(sample, item):\n"
        "    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)\n"
        "    s.connect(('127.0.0.1', 9))\n"
        "    return 1.0\n"
    )
    with pytest.raises(
        TunesmithError, match=r"tried to open a network socket \(socket.__new__\).*without network"
    ):
        g.grade("a", {})


def test_a_socket_refusal_caught_by_the_source_still_fails_the_grade() -> None:
    g = python_grader(
        "import urllib.request\n"
        "def grade(sample, item):\n"
        "    try:\n"
        "        urllib.request.urlopen('http://example.com', timeout=1)\n"
        "    except Exception:\n"
        "        return 1.0\n"
        "    return 0.5\n"
    )
    with pytest.raises(TunesmithError, match="tried to open a network socket"):
        g.grade("a", {})


def test_starting_a_process_is_refused() -> None:
    g = python_grader(
        "import subprocess\ndef grade(sample, item):\n    subprocess.run(['true'])\n    return 1.0\n"
    )
    with pytest.raises(TunesmithError, match="tried to start another process"):
        g.grade("a", {})


def test_errors_in_the_source_name_the_row_and_line() -> None:
    g = python_grader("def grade(sample, item):\n    return 1 / len(sample['output_text'])\n")
    assert g.grade("ab", {}) == 0.5
    with pytest.raises(TunesmithError, match=r"failed on row 1: ZeroDivisionError.*line 2 of the source"):
        g.grade_batch(["ab", ""], [{}, {}])


def test_a_non_number_is_refused() -> None:
    g = python_grader("def grade(sample, item):\n    return 'good'\n")
    with pytest.raises(TunesmithError, match=r"returned 'good' \(str\); it must return a number"):
        g.grade("a", {})


def test_a_source_that_fails_on_import_is_reported_before_grading() -> None:
    g = python_grader("import no_such_module_here\ndef grade(sample, item):\n    return 1\n")
    with pytest.raises(TunesmithError, match="source failed to load: ModuleNotFoundError"):
        g.grade("a", {})
