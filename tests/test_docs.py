import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_cli_reference_matches_help():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "cli_docs.py"), "--check"])
    assert result.returncode == 0, "docs/cli.md is out of date: run scripts/cli_docs.py"


def test_importing_loomwork_does_not_import_torch():
    code = "import sys, loomwork, loomwork.cli; loomwork.list_models(); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def _script(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_demo_tables_in_the_docs_are_the_runs_tables():
    """docs/graders.md and docs/tuning.md show the tables their demo scripts wrote from the runs whose JSON is
    committed beside them: a hand edit of a figure fails here."""
    import json

    for script, doc, data in (("goodhart_demo", "graders.md", "graders/goodhart.json"),
                              ("tune_demo", "tuning.md", "tuning/tune-demo.json")):
        module = _script(script)
        text = (ROOT / "docs" / doc).read_text(encoding="utf-8")
        shown = text[text.index(module.MARK_BEGIN) + len(module.MARK_BEGIN):text.index(module.MARK_END)].strip()
        assert shown == module.table(json.loads((ROOT / "docs" / data).read_text(encoding="utf-8"))), \
            f"docs/{doc}: run scripts/{script}.py --docs"
