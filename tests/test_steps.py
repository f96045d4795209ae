"""The shipped upgrade steps are what our own generate makes from the shipped stock trees."""

from __future__ import annotations

from pathlib import Path

from onetools.config.steps import DATA_FILE, build_data, load_step
from onetools.config.versions import STEPS


def test_shipped_steps_are_up_to_date() -> None:
    # Fails when the stock data, a format's diff or the descriptor layout changed without
    # re-running scripts/build_steps.py.
    assert Path(DATA_FILE).read_bytes() == build_data()


def test_every_step_is_shipped_with_known_actions() -> None:
    for step in STEPS:
        descriptor = load_step(step)
        assert (descriptor.source, descriptor.target) == (str(step.source), str(step.target))
        assert descriptor.entries
        for entry in descriptor.entries.values():
            assert entry.action in (None, "apply", "create", "delete")
            assert bool(entry.change) == (entry.action == "apply")
            assert entry.content is None  # contents come from the stock store
