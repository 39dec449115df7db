"""The floor plan holds (``docs/architecture.md``): config loads no HTTP stack, every SQL
statement lives in ``poller/store/``, modules stay small and say what they are for."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "poller"
MODULES = sorted(PACKAGE.rglob("*.py"))
MAX_LINES = 400

HTTP_STACK = ("httpx", "aiohttp")
SQL_MODULES = ("sqlite3", "psycopg", "alembic")
SQLALCHEMY_OUTSIDE_STORE = frozenset({"Engine", "pool", "make_url", "URL", "ArgumentError",
                                      "NoSuchModuleError"})
"""What code outside ``poller/store/`` may take from SQLAlchemy: URLs, the engine's type, the
pool choice and errors; nothing that builds or runs a statement."""
SQL_CALLS = frozenset({"execute", "exec_driver_sql", "scalar", "scalars", "executemany"})


def _name(path: Path) -> str:
    return path.relative_to(PACKAGE.parent).as_posix()


def _loaded_by(code: str) -> list[str]:
    """The HTTP-stack modules a fresh interpreter has loaded after running ``code``."""
    check = (f"{code}\nimport sys\nprint(sorted(m for m in sys.modules "
             f"if m.split('.')[0] in {HTTP_STACK!r}))")
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True,
                            check=True, timeout=120)
    return list(ast.literal_eval(result.stdout.strip().splitlines()[-1]))


def test_config_imports_nothing_of_the_http_stack() -> None:
    """``import poller.config`` loads neither httpx nor aiohttp."""
    assert _loaded_by("import poller.config") == []


def test_migrations_import_nothing_of_the_http_stack(tmp_path: Path) -> None:
    """Running the migrations (Alembic's ``env.py`` reads the database URL through
    ``poller.config``) loads neither httpx nor aiohttp."""
    url = f"sqlite:///{tmp_path / 'm.db'}"
    code = ("from alembic.config import main\n"
            f"main(argv=['-c', {str(PACKAGE.parent / 'alembic.ini')!r}, '-x', 'db_url={url}', "
            "'upgrade', 'head'])")
    assert _loaded_by(code) == []
    assert (tmp_path / "m.db").stat().st_size > 0


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_module_is_small_and_says_what_it_is_for(path: Path) -> None:
    """Every module of the package has a docstring and at most 400 lines."""
    source = path.read_text()
    assert len(source.splitlines()) <= MAX_LINES, f"{_name(path)} is over {MAX_LINES} lines"
    assert ast.get_docstring(ast.parse(source)), f"{_name(path)} has no module docstring"


@pytest.mark.parametrize("path", [p for p in MODULES if "store" not in p.relative_to(
    PACKAGE).parts], ids=_name)
def test_no_sql_outside_the_store(path: Path) -> None:
    """Outside ``poller/store/`` no module builds or runs SQL: no statement constructs of
    SQLAlchemy, no database driver or Alembic, no ``execute``."""
    problems: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            problems += [a.name for a in node.names if a.name.split(".")[0] in SQL_MODULES
                         or a.name.split(".")[0] == "sqlalchemy"]
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            root = node.module.split(".")[0]
            if root in SQL_MODULES:
                problems.append(node.module)
            elif root == "sqlalchemy":
                problems += [f"{node.module}.{a.name}" for a in node.names
                             if a.name not in SQLALCHEMY_OUTSIDE_STORE]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in SQL_CALLS):
            problems.append(f".{node.func.attr}() on line {node.lineno}")
    assert not problems, f"{_name(path)}: {problems}"


STAGES = ("errors", "model", "config", "providers", "store", "polling", "daemon", "app",
          "reports", "commands", "cli", "entry")
"""The stages of the flow, each allowed to import only those before it (and itself)."""
SIDE_PACKAGES = {"simulator": {"errors", "model", "simulator"}}
"""Packages off the flow, and what they may import."""


def _stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _runtime_imports(tree: ast.Module) -> list[ast.ImportFrom]:
    """``from poller… import`` statements outside ``if TYPE_CHECKING:`` blocks."""
    typing_only = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and getattr(block.test, "id", None) == "TYPE_CHECKING"
                   for node in ast.walk(block)}
    return [node for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
            and node.module is not None and node.module.split(".")[0] == "poller"
            and id(node) not in typing_only]


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_each_stage_imports_only_earlier_stages(path: Path) -> None:
    """No module imports a later stage of the flow at run time (config never loads the
    providers, providers never the store, the store never the poller, …); the simulator is
    a side package that knows only the model."""
    me = _stage(".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts))
    if me == "__init__":
        return
    if me in SIDE_PACKAGES:
        allowed = SIDE_PACKAGES[me]
    else:  # the command line also serves and demonstrates the simulator
        allowed = set(STAGES[:STAGES.index(me) + 1]) | (
            {"simulator"} if me in ("commands", "cli", "entry") else set())
    later = [f"{node.module} (line {node.lineno})"
             for node in _runtime_imports(ast.parse(path.read_text()))
             if node.module is not None and (
                 _stage(node.module) if node.module != "poller"
                 else node.names[0].name) not in allowed]
    assert not later, f"{_name(path)} imports a later stage: {later}"
