"""Every figure tests/golden.py computes equals the one recorded before loomwork's model layer was restructured
(issue 21): the shape of the code changed, not what a user sees."""

import json

import pytest

pytest.importorskip("torch")

from tests import golden  # noqa: E402


async def test_figures_on_fixed_seeds_are_what_they_were(store):
    recorded = json.loads(golden.FIXTURE.read_text(encoding="utf-8"))
    now = json.loads(json.dumps(await golden.compute(store)))  # the same JSON round trip as the recording
    differences = golden.close(now, recorded)
    assert not differences, "\n".join(differences[:20])
