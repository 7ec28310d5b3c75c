"""Tuning runs started from elsewhere (the web page): checked and claimed here, at once, then trained in a process
of their own (``python -m loomwork.tuning.jobs NAME``), so that a run of minutes does not hold the server's model
thread or memory, survives the page closing, and can be followed and stopped by anyone who can see the adapters.

Following: the run's events (progress.jsonl in its directory). Stopping: a STOP file the run checks between
steps; it ends "stopped by request" with its last checkpoint, and ``tune NAME --resume`` goes on from there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from ..errors import InvalidInput
from ..store import access, journal
from . import adapters, provenance
from .train import STOP, TuneConfig, claim, prepare, run_claimed


def start(name: str, base: str, rows: list[dict], cfg: TuneConfig, source: dict,
          heldout_rows: list[dict] | None = None) -> dict:
    """Check everything that can be checked without the model, claim the name, and start the run's process.
    Bad input is refused here, with nothing written."""
    adapters.check_name(name)
    base = provenance.bare(base)
    if adapters.split_model(base)[1]:
        raise InvalidInput(f"{base!r} is an adapter: tune from its base model")
    from ..backends.hf_load import resolve_source

    resolve_source(base)  # an unknown base is refused before anything is claimed
    source = {**source, "by": journal.current_actor()}
    train, held, dropped, how = prepare(rows, cfg, heldout_rows)
    claim(name, base, rows, train, held, dropped, how, cfg, source)
    d = adapters.directory(name)
    with (d / "log.txt").open("ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "loomwork.tuning.jobs", name], stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL, start_new_session=True, env={**os.environ,
                                                                                      "LOOMWORK_PROGRESS": "0"})
    record = json.loads((d / adapters.CLAIM).read_text(encoding="utf-8"))
    (d / adapters.CLAIM).write_text(json.dumps({**record, "pid": proc.pid}), encoding="utf-8")
    return adapters.describe(name)


def request_stop(name: str) -> dict:
    """Ask a run in progress to stop after its current step."""
    m = adapters.describe(name)
    access.require_maker(adapters.maker(m), f"adapter {name!r}")
    if m["status"] not in ("training", "starting"):
        raise InvalidInput(f"adapter {name!r} is not being trained ({m['status']}): nothing to stop")
    (adapters.directory(name) / STOP).write_text("stop", encoding="utf-8")
    return m


def main(name: str) -> int:
    """The run's process: train, and on failure leave the reason where the page looks (the claim's record)."""
    try:
        run_claimed(name, keep_failed=True)
    except KeyboardInterrupt:
        return 130
    except Exception:  # noqa: BLE001 (recorded by run_claimed for the page; the log has the traceback)
        import traceback

        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
