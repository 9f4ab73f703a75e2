"""Sphinx configuration for trio-asyncio.

The build must pass offline with ``-W`` (that is how ``make docs`` runs it), so
intersphinx is opt-in: set ``TRIO_ASYNCIO_DOCS_INTERSPHINX=1`` when the
Python and Trio inventories can be downloaded.  Without it, cross-references to
objects outside trio_asyncio (stdlib, Trio, ...) are not resolved, and
``nitpick_ignore_regex`` keeps them from being reported; references into
trio_asyncio itself are still checked.
"""

from __future__ import annotations

import ast
import builtins
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Let autodoc import the package from the source tree even when it is not
# installed (it is, editable, in make's .venv).
sys.path.insert(0, str(ROOT))


def _read_version() -> str:
    """Return ``__version__`` from trio_asyncio/_version.py without importing it."""
    path = ROOT / "trio_asyncio" / "_version.py"
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError):
        return "unknown"
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets)
            and isinstance(node.value, ast.Constant)
        ):
            return str(node.value.value)
    return "unknown"


# -- Project information ------------------------------------------------------

project = "trio-asyncio"
author = "the trio-asyncio authors"
copyright = author
release = _read_version()
version = ".".join(release.split(".")[:2])

# -- General configuration ----------------------------------------------------

extensions = [
    "sphinx.ext.autodoc",
]

exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
nitpicky = True
default_role = "py:obj"

autodoc_member_order = "bysource"

USE_INTERSPHINX = os.environ.get("TRIO_ASYNCIO_DOCS_INTERSPHINX", "") not in ("", "0")

if USE_INTERSPHINX:
    extensions.append("sphinx.ext.intersphinx")
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "trio": ("https://trio.readthedocs.io/en/stable", None),
    }
else:
    # Offline: nothing outside trio_asyncio can be resolved, so do not report
    # references to it.  Dotted names outside the trio_asyncio package...
    nitpick_ignore_regex = [
        (r"py:.*", r"(?!trio_asyncio\b)[A-Za-z_]\w*\.[\w.]+"),
        # ...and bare builtin names (int, str, Exception, None, ...).
        (
            r"py:.*",
            "|".join(re.escape(name) for name in sorted(dir(builtins)) if not name.startswith("_"))
            + "|None",
        ),
    ]

# Type variables of generic classes are not documented objects.
nitpick_ignore_regex = [*globals().get("nitpick_ignore_regex", []), (r"py:class", r"trio_asyncio\..*\.T")]

# -- HTML output --------------------------------------------------------------

html_theme = "alabaster"
html_title = f"trio-asyncio {release}"
html_static_path: list[str] = []
