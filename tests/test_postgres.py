"""The same store code against a real PostgreSQL server, started by the tests (conftest: initdb in a temp dir).

CI installs Debian's postgresql (see .ci/run); elsewhere these tests skip when no server binaries exist."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from loomwork import curation, ledger, ops
from loomwork.backends import SamplingParams, get_backend
from loomwork.errors import InvalidInput
from loomwork.formats import io
from loomwork.supervision import queues, ratings, summary

DEMO = Path(__file__).parent.parent.parent / "shared" / "fixtures" / "pyloom" / "loom_demo.json"


def test_tree_operations_and_history_on_postgres(pg):
    assert pg.engine.dialect.name == "postgresql" and pg.version() >= 4
    tree, root = ops.new_tree(pg, "Postgres keeps the loom")
    kids = asyncio.run(ops.expand(pg, root.id, get_backend("mock"), SamplingParams(n=3, max_tokens=5, seed=1)))
    a = ops.add_child(pg, kids[0].id, " and 100% of_its_text")
    e = ops.edit(pg, a.id, " edited")
    head, tail = ops.split(pg, kids[1].id, 2)
    assert ops.merge(pg, head.id).text == kids[1].text
    with pytest.raises(InvalidInput, match="cycle"):
        ops.move(pg, kids[0].id, a.id)
    ops.set_archived(pg, kids[2].id)
    assert [c.id for c in pg.children(root.id)] == [kids[0].id, kids[1].id]
    assert [n.id for n in pg.path(a.id)] == [root.id, kids[0].id, a.id]
    with pg.tx() as tx:
        assert [n.id for n in tx.search("100%")] == [a.id]  # LIKE wildcards in the query are escaped
        assert [n.id for n in tx.search("of_its")] == [a.id]
    assert ops.undo(pg, tree.id)["kind"] == "archive"
    assert len(pg.children(root.id)) == 3
    ops.redo(pg, tree.id)
    assert pg.resolve(e.id[:6]) == ("node", e.id)


def test_import_export_and_accounting_on_postgres(pg, tmp_path):
    report = io.import_file(pg, DEMO)
    assert report.nodes == 764
    out = tmp_path / "demo.json"
    out.write_text(io.export(pg, report.trees[0], "pyloom"))
    assert io.import_file(pg, out).nodes == 764
    tree, root = ops.new_tree(pg, "Pick")
    kids = asyncio.run(ops.expand(pg, root.id, get_backend("mock"), SamplingParams(n=4, max_tokens=3, seed=2)))
    curation.record_choice(pg, kids[1].id)
    w = ops.add_child(pg, kids[1].id, " mine")
    r = asyncio.run(ledger.path_report(pg, w.id, "mock:default", get_backend("mock")))
    assert r["path"]["selection_bits"] == 2.0 and r["path"]["intervention_bits"] > 0
    q = queues.create_queue(pg, "pg", tree=tree.id, questions=["ok?"])
    ratings.rate(pg, kids[0].id, "ann", 1, "ok?", queue="pg")
    ratings.rate(pg, kids[0].id, "bob", -1, "ok?", queue="pg")
    s = summary.queue_summary(pg, "pg")["questions"][0]
    assert s["ratings"] == 2 and s["pairs"][0]["agreement"] == 0.0
    assert queues.next_item(pg, q, "ann") != kids[0].id
