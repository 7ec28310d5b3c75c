"""Shared fixtures: a temporary LOOMWORK_HOME and database per test, and a tiny random transformers model."""

from __future__ import annotations

import os

import pytest

from loomwork.store import Store

# Keep converted model weights in the real user cache: converting Gemma takes over a minute.
os.environ.setdefault("LOOMWORK_PROGRESS", "0")


@pytest.fixture(autouse=True)
def loomwork_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("LOOMWORK_HOME", str(home))
    monkeypatch.setenv("LOOMWORK_DB", str(home / "loom.sqlite"))
    monkeypatch.delenv("LOOMWORK_MODEL", raising=False)
    # set (not deleted) so that a value a command sets for its process (--device, --dtype) is undone after the test
    monkeypatch.setenv("LOOMWORK_DEVICE", "auto")
    monkeypatch.setenv("LOOMWORK_DTYPE", "auto")
    monkeypatch.delenv("LOOMWORK_OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    return home


@pytest.fixture
def store(loomwork_home):
    s = Store.open()
    yield s
    s.close()


@pytest.fixture(scope="session")
def pg_server():
    """A PostgreSQL server for the whole run (started on first use); yields a maker of fresh database URLs."""
    pytest.importorskip("psycopg")
    from tests.servers import postgres_available, postgres_server

    if not postgres_available():
        pytest.skip("PostgreSQL server binaries are not installed (apt-get install postgresql)")
    with postgres_server() as new_database:
        yield new_database


@pytest.fixture
def pg(pg_server):
    """A store on a fresh PostgreSQL database."""
    store = Store.open(pg_server())
    yield store
    store.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request, loomwork_home):
    """The same test on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        store = Store.open()
    else:
        store = Store.open(request.getfixturevalue("pg_server")())
    yield store
    store.close()


@pytest.fixture(scope="session")
def tiny_lm():
    """A 2-layer Llama with random weights and a character-level tokenizer, built here (no downloads)."""
    pytest.importorskip("torch")
    from tests.tiny_model import build_tiny_lm

    return build_tiny_lm()



@pytest.fixture(scope="module")
def gemma():
    """A tiny random Gemma 3 (sliding-window layers with a window of 8) and its tokenizer (test_steering,
    test_logit_lens)."""
    pytest.importorskip("torch")
    from tests.tiny_model import build_tiny_gemma

    return build_tiny_gemma(window=8)


@pytest.fixture
def backend(gemma):
    """The tiny Gemma 3 as an hf backend (``hf:tiny``)."""
    from loomwork.backends.hf import HFBackend

    lm, tok = gemma
    return HFBackend("tiny", lm=lm, tokenizer=tok)


@pytest.fixture
def tiny_base(tmp_path):
    """The tiny random Llama saved as a Hugging Face directory: a base model loomwork loads (and tunes) by path."""
    pytest.importorskip("torch")
    from tests.tiny_model import build_tiny_lm

    lm, tok = build_tiny_lm(seed=3)
    d = tmp_path / "tiny-base"
    lm.save_pretrained(d)
    tok.save_pretrained(d)
    return str(d)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under LOOMWORK_NO_SKIP (set by .ci/run) a skipped test fails: CI must run everything, except the tests
    marked ``cuda`` on a machine without a CUDA device (CI's machines have none; they run where one is lent)."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("LOOMWORK_NO_SKIP") and report.skipped and "cuda" not in item.keywords:
        report.outcome = "failed"
        report.longrepr = f"skipped, which LOOMWORK_NO_SKIP forbids: {report.longrepr}"
