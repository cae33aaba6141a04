"""Worker processes: results in order, errors raised in the parent, no children of daemons."""

from __future__ import annotations

import multiprocessing

import pytest

from mailhygiene.processes import Parallelism, map_in_workers

_prefix = ""


def _remember(prefix: str) -> None:
    global _prefix
    _prefix = prefix


def _label(number: int) -> str:
    if number == 13:
        raise ValueError("unlucky task 13")
    return f"{_prefix}{number * number}"


def test_results_come_back_in_task_order_after_each_worker_ran_the_initializer() -> None:
    results = map_in_workers(_label, range(12), workers=2, initializer=_remember, initargs=("n=",))
    assert list(results) == [f"n={n * n}" for n in range(12)]


def test_a_workers_error_is_raised_here_as_itself() -> None:
    results = map_in_workers(_label, range(20), workers=2, initializer=_remember, initargs=("",))
    with pytest.raises(ValueError, match="unlucky task 13"):
        list(results)


def _applies_here(answers: multiprocessing.Queue[bool]) -> None:
    answers.put(Parallelism(workers=2, threshold=1).applies(5, shareable=True))


def test_a_daemonic_process_judges_in_process_rather_than_start_workers() -> None:
    assert Parallelism(workers=2, threshold=1).applies(5, shareable=True)
    assert not Parallelism(workers=2, threshold=10).applies(5, shareable=True)
    assert not Parallelism(workers=0, threshold=1).applies(5, shareable=True)
    assert not Parallelism(workers=2, threshold=1).applies(5, shareable=False)
    context = multiprocessing.get_context("spawn")
    answers: multiprocessing.Queue[bool] = context.Queue()
    daemon = context.Process(target=_applies_here, args=(answers,), daemon=True)
    daemon.start()
    try:
        assert answers.get(timeout=60) is False
    finally:
        daemon.join(timeout=10)
