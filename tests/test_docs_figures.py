"""The figures in docs/graders.md (strategies at an equal budget), docs/lens.md (the packaged models compared, and
what that says) and docs/metrics.md (control tokens' pressure) are the runs' own: each passage between its script's
markers must be what the script writes from the JSON committed beside it. A hand edit fails here."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _between(doc: str, begin: str, end: str) -> str:
    text = (ROOT / "docs" / doc).read_text(encoding="utf-8")
    return text[text.index(begin) + len(begin):text.index(end)].strip()


def test_grow_comparison_is_the_runs():
    m = _script("grow_compare")
    report = json.loads((ROOT / "docs" / "graders" / "grow-compare.json").read_text(encoding="utf-8"))
    assert _between("graders.md", m.MARK_BEGIN, m.MARK_END) == m.table(report), "run scripts/grow_compare.py --docs"
    # and the KL column is the runs' recorded choices: uniform is the model's own (0 bits), the others are not
    uniform = [r["kl_bits"] for r in report["runs"] if r["name"] == "uniform"]
    assert uniform and all(b == 0.0 for b in uniform)


def test_lens_figures_are_the_runs():
    m = _script("lens_demo")
    report = json.loads((ROOT / "docs" / "lens" / "report.json").read_text(encoding="utf-8"))
    assert _between("lens.md", *m.MARKS["table"]) == m.table(report), "run scripts/lens_demo.py --docs"
    assert _between("lens.md", *m.MARKS["reading"]) == m.reading(report), "run scripts/lens_demo.py --docs"
    mass = json.loads((ROOT / "docs" / "lens" / "control-mass.json").read_text(encoding="utf-8"))
    assert _between("metrics.md", *m.MARKS["control"]) == m.control(mass), "run scripts/lens_demo.py --docs"
    assert mass["positions"] == len(mass["bits"]) >= 100


def test_the_reading_follows_the_numbers():
    """The reading is computed: swap which model has more mass on a probe and the sentence changes with it."""
    m = _script("lens_demo")
    report = json.loads((ROOT / "docs" / "lens" / "report.json").read_text(encoding="utf-8"))
    probe = report["probes"][0]
    for r in probe["results"]:
        r["mass_on_set"] = 0.9 if r["model"] == m.MODELS[0] else 0.1
    assert f"but not on {probe['id']}" in m.reading(report) or f"not on {probe['id']}," in m.reading(report)
