"""The layering rule (docs/ARCHITECTURE.md, "Layering"), checked on the source tree's imports.

Every ``.py`` file under ``proxy/``, ``filters/``, ``icul/`` and ``benchmarks/`` is parsed with
:mod:`ast`; every static import counts, wherever it is written (module level, inside a
function, under ``if TYPE_CHECKING:``), relative imports resolved. The rule:

- ``proxy.core`` imports nothing of the project outside ``proxy.core``. ``proxy/__init__.py``
  is held to the same rule, since every import of ``proxy.core`` runs it first.
- ``filters`` and ``icul`` import only ``proxy.core``, each other and themselves.
- nothing in the product (``proxy``, ``filters``, ``icul``) imports ``benchmarks``; the CLI's
  ``bench`` subcommand finds the harness by name (``importlib``), which is not an import here.
- ``benchmarks`` may import anything.

Plus the issue's own check (issue 14): ``grep -rn "from proxy\\.\\(server\\|pipeline\\|runtime\\|
backends\\|admin\\|cli\\)" filters icul`` finds nothing.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("proxy", "filters", "icul", "benchmarks")
CORE = "proxy.core"

# what each layer may import of the project (stdlib and third-party are always allowed)
ALLOWED: dict[str, frozenset[str]] = {
    "core": frozenset({"core"}),
    "filters": frozenset({"core", "filters", "icul"}),
    "icul": frozenset({"core", "filters", "icul"}),
    "proxy": frozenset({"core", "proxy", "filters", "icul"}),
    "benchmarks": frozenset({"core", "proxy", "filters", "icul", "benchmarks"}),
}
LAYER_NAMES = {"core": "proxy.core", "filters": "filters", "icul": "icul",
               "proxy": "proxy (outside proxy.core)", "benchmarks": "benchmarks"}

# the grep, as a Python pattern
GREP = re.compile(r"from proxy\.(server|pipeline|runtime|backends|admin|cli)")
GREP_DIRS = ("filters", "icul")


@dataclass(frozen=True)
class Import:
    """One imported module: who imports it, on which line."""

    module: str
    line: int
    target: str | None  # None: a relative import beyond the top-level package
    written: str  # as written, for the message


def module_name(path: Path, root: Path) -> str:
    """The dotted name of the module in ``path`` (a package for ``__init__.py``)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files(root: Path, packages: tuple[str, ...] = PACKAGES) -> Iterator[Path]:
    for package in packages:
        base = root / package
        if base.is_dir():
            yield from sorted(p for p in base.rglob("*.py") if "__pycache__" not in p.parts)


def _is_module(root: Path, dotted: str) -> bool:
    path = root.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _resolve(module: str, is_package: bool, level: int, name: str | None) -> str | None:
    """The absolute module of ``from <level dots><name> import ...`` in ``module``."""
    if level == 0:
        return name or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    if level - 1 >= len(package):
        return None
    base = package[: len(package) - (level - 1)]
    return ".".join([*base, name] if name else base)


def imports_of(path: Path, root: Path) -> list[Import]:
    """Every static import in ``path``. ``from M import n`` imports ``M.n`` when that is a
    module of the tree, else ``M``."""
    module = module_name(path, root)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(module, node.lineno, a.name, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            written = "." * node.level + (node.module or "")
            base = _resolve(module, path.name == "__init__.py", node.level, node.module)
            if base is None:
                found.append(Import(module, node.lineno, None, written))
                continue
            for alias in node.names:
                candidate = f"{base}.{alias.name}" if base else alias.name
                is_sub = alias.name != "*" and _is_module(root, candidate)
                found.append(Import(module, node.lineno, candidate if is_sub else base, written))
    return found


def layer(dotted: str) -> str | None:
    """The layer a module belongs to, or None outside the project's packages."""
    if dotted == CORE or dotted.startswith(CORE + "."):
        return "core"
    top = dotted.split(".")[0]
    return top if top in PACKAGES else None


def importer_layer(module: str) -> str | None:
    # proxy/__init__.py runs on every import of proxy.core: it is held to core's rule
    return "core" if module == "proxy" else layer(module)


def layering_violations(root: Path) -> list[str]:
    """``module:line imports X (why)`` for every import that breaks the rule."""
    problems: list[str] = []
    for path in source_files(root):
        for imp in imports_of(path, root):
            if imp.target is None:
                problems.append(f"{imp.module}:{imp.line} imports {imp.written} (a relative "
                                "import beyond the top-level package)")
                continue
            own, theirs = importer_layer(imp.module), layer(imp.target)
            if own is None or theirs is None or theirs in ALLOWED[own]:
                continue
            allowed = ", ".join(sorted(LAYER_NAMES[name] for name in ALLOWED[own]))
            problems.append(f"{imp.module}:{imp.line} imports {imp.target} "
                            f"({LAYER_NAMES[own]} may import only {allowed})")
    return problems


def grep_violations(root: Path) -> list[str]:
    """The issue's grep over every file under ``filters/`` and ``icul/``: ``where:line imports
    proxy.X (the line)`` for each match, in code, comments or strings alike."""
    problems: list[str] = []
    for directory in GREP_DIRS:
        base = root / directory
        if not base.is_dir():
            continue
        for path in sorted(p for p in base.rglob("*") if p.is_file()):
            if "__pycache__" in path.parts:
                continue
            where = module_name(path, root) if path.suffix == ".py" else str(
                path.relative_to(root))
            text = path.read_bytes().decode("utf-8", errors="replace")
            for lineno, line in enumerate(text.splitlines(), start=1):
                for match in GREP.finditer(line):
                    problems.append(f"{where}:{lineno} imports proxy.{match.group(1)} "
                                    f"(the issue's grep: {line.strip()!r})")
    return problems


def test_the_source_tree_keeps_the_layering_rule() -> None:
    parsed = {module_name(p, REPO).split(".")[0] for p in source_files(REPO)}
    assert parsed == set(PACKAGES), f"packages not found under {REPO}: {set(PACKAGES) - parsed}"
    problems = layering_violations(REPO) + grep_violations(REPO)
    assert not problems, ("imports that break the layering rule (docs/ARCHITECTURE.md, "
                          "Layering):\n" + "\n".join(problems))


SYNTHETIC = {
    # proxy/__init__.py runs whenever proxy.core is imported: held to core's rule
    "proxy/__init__.py": "from proxy.server import app\n",
    "proxy/core/__init__.py": "",
    "proxy/core/registry.py": "import importlib\n",
    "proxy/core/errors.py": "import os\nfrom proxy.core.registry import Registry\n",
    "proxy/core/bad.py": (
        "from proxy.pipeline import Pipeline\n"
        "import filters.base\n"
        "from icul import context\n"
        "import benchmarks.harness\n"
    ),
    "proxy/core/relative.py": "from .. import server\nfrom . import errors\n",
    "proxy/server.py": (
        "from filters.base import Verdict\n"
        "from icul.context import ICULMethod\n"
        "from proxy.core.errors import ConfigError\n"
        "from proxy import pipeline\n"
    ),
    "proxy/pipeline.py": "def run():\n    from benchmarks.harness.run import run_from_file\n",
    "proxy/cli.py": 'import importlib\nENTRY = "benchmarks.harness.run:run_from_file"\n',
    "filters/__init__.py": "",
    "filters/base.py": "from proxy.core.registry import Registry\nimport icul.context\n",
    "filters/bad.py": "from proxy import server\nfrom proxy.runtime import Runtime\n",
    "icul/__init__.py": "from .context import ICULMethod\n",
    "icul/context.py": (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from proxy.backends.base import Backend\n"
        "from filters.base import Verdict\n"
    ),
    "icul/notes.py": '"""Never write: from proxy.cli import main."""\n',
    "icul/deep.py": "from .. import nothing\n",
    "icul/readme.txt": "a text file with from proxy.admin import x\n",
    "benchmarks/__init__.py": "",
    "benchmarks/harness/__init__.py": "",
    "benchmarks/harness/run.py": (
        "from proxy.server import app\nfrom proxy.pipeline import Pipeline\nimport filters.base\n"
    ),
}


def test_the_checker_reports_each_kind_of_violation(tmp_path: Path) -> None:
    for name, text in SYNTHETIC.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")

    reported = [p.split(" (")[0] for p in layering_violations(tmp_path)]
    assert sorted(reported) == sorted([
        "proxy:1 imports proxy.server",                    # the package init, as core
        "proxy.core.bad:1 imports proxy.pipeline",         # core -> top layer
        "proxy.core.bad:2 imports filters.base",           # core -> filters
        "proxy.core.bad:3 imports icul.context",           # core -> icul (from package import)
        "proxy.core.bad:4 imports benchmarks.harness",     # core -> benchmarks
        "proxy.core.relative:1 imports proxy.server",      # a relative import, resolved
        "proxy.pipeline:2 imports benchmarks.harness.run",  # product -> benchmarks, in a function
        "filters.bad:1 imports proxy.server",              # filters -> top layer
        "filters.bad:2 imports proxy.runtime",
        "icul.context:3 imports proxy.backends.base",      # icul -> top layer, TYPE_CHECKING
        "icul.deep:1 imports ..",                          # beyond the top-level package
    ])
    grepped = [p.split(" (")[0] for p in grep_violations(tmp_path)]
    assert sorted(grepped) == sorted([
        "filters.bad:2 imports proxy.runtime",
        "icul.context:3 imports proxy.backends",
        "icul.notes:1 imports proxy.cli",                  # grep sees docstrings too
        "icul/readme.txt:1 imports proxy.admin",           # and every file, as grep -r does
    ])
    message = "\n".join(layering_violations(tmp_path))
    assert ("filters.bad:1 imports proxy.server (filters may import only filters, icul, "
            "proxy.core)") in message


def test_imports_resolve_relative_and_from_package_forms(tmp_path: Path) -> None:
    for name in ("pkg/__init__.py", "pkg/sub/__init__.py", "pkg/sub/mod.py", "pkg/other.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("", encoding="utf-8")
    source = tmp_path / "pkg" / "sub" / "mod.py"
    source.write_text("from . import mod\nfrom .. import other, CONSTANT\nfrom ..other import f\n"
                      "import pkg.sub as s\n", encoding="utf-8")
    targets = [(i.line, i.target) for i in imports_of(source, tmp_path)]
    assert targets == [(1, "pkg.sub.mod"), (2, "pkg.other"), (2, "pkg"), (3, "pkg.other"),
                       (4, "pkg.sub")]
    init = tmp_path / "pkg" / "sub" / "__init__.py"
    init.write_text("from .mod import x\n", encoding="utf-8")
    assert [i.target for i in imports_of(init, tmp_path)] == ["pkg.sub.mod"]
