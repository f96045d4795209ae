"""The upgrade steps shipped in the package: one descriptor per consecutive stock version pair.

They are generated from the stock trees by ``scripts/build_steps.py`` (our own ``generate``) and
stored without file contents, which the stock store provides (``onetools.config.stock``).
"""

from __future__ import annotations

import os
from functools import cache

from onetools.config.descriptors import Descriptor, generate, load_yaml
from onetools.config.versions import CHAIN, STEPS, Step
from onetools.errors import FatalError

DATA_FILE = os.path.join(os.path.dirname(__file__), "data", "steps.json.xz")
FORMAT = 1


@cache
def _texts() -> dict[str, str]:
    import json
    import lzma

    try:
        with lzma.open(DATA_FILE, "rt", encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError, lzma.LZMAError) as exc:
        raise FatalError(f"Cannot read the shipped upgrade steps '{DATA_FILE}': {exc}") from None
    if data.get("format") != FORMAT:
        raise FatalError(f"Unsupported upgrade steps data format in '{DATA_FILE}'")
    steps: dict[str, str] = data["steps"]
    return steps


@cache
def load_step(step: Step) -> Descriptor:
    """The descriptor of a shipped step (without contents)."""
    try:
        text = _texts()[step.name]
    except KeyError:
        raise FatalError(f"No upgrade step {step} is shipped") from None
    return load_yaml(text, f"{DATA_FILE}:{step.name}")


def build_descriptor(source: str, target: str) -> Descriptor:
    """Generate the descriptor between two stock versions of the store."""
    from onetools.config.stock import store

    stock = store()
    return generate(stock.tree(source), stock.tree(target), source, target)


def build_data() -> bytes:
    """The content of ``steps.json.xz``, deterministic for the same stock data."""
    import json
    import lzma

    texts = {
        step.name: build_descriptor(str(step.source), str(step.target)).to_yaml(with_content=False)
        for step in STEPS
    }
    payload = json.dumps(
        {"format": FORMAT, "chain": list(CHAIN), "steps": texts}, sort_keys=True, ensure_ascii=False
    )
    return lzma.compress(payload.encode("utf-8"), preset=9 | lzma.PRESET_EXTREME)
