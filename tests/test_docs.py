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
