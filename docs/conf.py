"""Sphinx configuration of the fastpoly documentation.

Build (warnings are errors; the gallery scripts in ``docs/examples`` are executed)::

    pip install ".[docs]"
    sphinx-build -W -b html docs docs/_build/html

The API reference is generated at build time from the package's public surface: ``fastpoly.__all__``
and, for every subpackage found under ``fastpoly/`` (a new one appears without editing anything), its
``__all__`` (or its module docstring and public members when it has none).
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))  # document the checkout, not an installed copy
os.environ.setdefault("MPLBACKEND", "Agg")

import fastpoly  # noqa: E402

project = "fastpoly"
author = "fastpoly developers"
copyright = "fastpoly developers"  # noqa: A001
release = fastpoly.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
    "sphinxarg.ext",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "api/generated/**.md", "examples/README.txt", "**.ipynb_checkpoints"]
templates_path = ["_templates"]

html_theme = "pydata_sphinx_theme"
html_title = f"fastpoly {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
}
html_static_path: list[str] = []

# Markdown pages (myst): heading anchors so that links like design.md#keys resolve.
myst_heading_anchors = 3
myst_enable_extensions = ["dollarmath", "deflist"]

# autodoc / autosummary / numpydoc
autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {"members": True, "show-inheritance": False}
autodoc_typehints = "none"  # the numpydoc Parameters sections carry the types
autodoc_mock_imports = ["cupy"]
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks: set[str] = set()

nitpicky = False
suppress_warnings = [
    "myst.xref_missing",  # design.md links to source files of the repository (not pages of the site)
]

# sphinx-gallery: the examples run at build time (a broken example fails the build)
sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "abort_on_example_error": True,
    "only_warn_on_example_error": False,
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "plot_gallery": "True",
}


# --------------------------------------------------------------------------------------------------
# The API reference: one page per public subpackage, written before the build reads the sources.
# --------------------------------------------------------------------------------------------------

#: subpackages that are not part of the Python API (the CLI has its own, generated, reference)
API_SKIP = {"fastpoly.cli"}

#: public modules of subpackages that have an ``__all__``: their docstring and the names of their
#: ``__all__`` that the subpackage does not export are documented on the subpackage's page too
#: (a subpackage without ``__all__`` documents all its modules anyway)
API_MODULES = {
    "fastpoly.counts": ["meta"],
    "fastpoly.poly": ["classifiers", "bridge", "hierarchy"],
}


def _public_names(mod) -> list[str]:
    names = getattr(mod, "__all__", None)
    if names is None:
        return []
    return [n for n in names if not n.startswith("_")]


def _object_kind(mod, name: str) -> str:
    obj = getattr(mod, name)
    if isinstance(obj, type(sys)):
        return "module"
    if isinstance(obj, type):
        return "class"
    if callable(obj):
        return "function"
    return "data"


def _autosummary(modname: str, names: list[str], kinds: dict[str, str]) -> list[str]:
    out: list[str] = []
    for kind, title in (("class", "Classes"), ("function", "Functions"), ("data", "Constants")):
        sel = [n for n in names if kinds[n] == kind]
        if not sel:
            continue
        out += [title, "-" * len(title), "", f".. currentmodule:: {modname}", "",
                ".. autosummary::", "   :toctree: generated", "   :nosignatures:", ""]
        out += [f"   {n}" for n in sel] + [""]
    return out


def _module_section(modname: str, documented: set[int]) -> list[str]:
    """Docstring of a module and the names of its ``__all__`` not documented elsewhere.

    The module is not indexed: the subpackage may export a function of the same name.
    """
    mod = importlib.import_module(modname)
    title = f"Module ``{modname}``"
    out = [title, "-" * len(title), "", f".. automodule:: {modname}", "   :no-members:", "   :no-index:", ""]
    names = [n for n in _public_names(mod) if _object_kind(mod, n) == "data" or id(getattr(mod, n)) not in documented]
    if names:
        out += [f".. currentmodule:: {modname}", "", ".. autosummary::", "   :toctree: generated",
                "   :nosignatures:", ""]
        out += [f"   {n}" for n in names] + [""]
    return out


def _subpackages() -> list[str]:
    infos = pkgutil.iter_modules(fastpoly.__path__, "fastpoly.")
    return sorted(i.name for i in infos if i.ispkg and i.name not in API_SKIP)


def _write_api_pages() -> None:
    api = HERE / "api"
    api.mkdir(exist_ok=True)
    subpackages = _subpackages()
    pages: list[str] = []
    # The top level: everything in fastpoly.__all__ (lazy names are resolved here), documented under
    # the name users type (fastpoly.MLP), except a name that is also a subpackage's (the function
    # fastpoly.backends() is documented in the fastpoly.backends page) and the subpackages themselves.
    names = [n for n in _public_names(fastpoly) if n != "__version__"]
    kinds = {n: _object_kind(fastpoly, n) for n in names}
    top = [n for n in names if kinds[n] != "module" and f"fastpoly.{n}" not in subpackages]
    top_ids = {id(getattr(fastpoly, n)) for n in top if kinds[n] != "data"}
    lines = ["``fastpoly``", "============", "", ".. automodule:: fastpoly", "   :no-members:", ""]
    lines += _autosummary("fastpoly", top, kinds)
    other = [n for n in names if n not in top]
    if other:
        lines += ["Subpackages and names documented with their subpackage: "
                  + ", ".join(f"``fastpoly.{n}``" for n in other) + " (see the pages below).", ""]
    (api / "fastpoly.rst").write_text("\n".join(lines))
    pages.append("fastpoly")
    for name in subpackages:
        mod = importlib.import_module(name)
        title = f"``{name}``"
        lines = [title, "=" * len(title), "", f".. automodule:: {name}", "   :no-members:", ""]
        names = _public_names(mod)
        if names:
            kinds = {n: _object_kind(mod, n) for n in names}
            own = [n for n in names if kinds[n] != "module" and not (kinds[n] != "data" and id(getattr(mod, n)) in top_ids)]
            shared = [n for n in names if n not in own and kinds[n] != "module"]
            lines += _autosummary(name, own, kinds)
            if shared:
                lines += ["Also exported here (documented at the top level): "
                          + ", ".join(f":obj:`{n} <fastpoly.{n}>`" for n in shared) + ".", ""]
            documented = {id(getattr(mod, n)) for n in names if kinds[n] != "data"} | top_ids
            for short in API_MODULES.get(name, []):
                lines += _module_section(f"{name}.{short}", documented)
        else:
            # no __all__: the package docstring names its modules; document each public module
            subs = sorted(i.name.rsplit(".", 1)[1] for i in pkgutil.iter_modules(mod.__path__, name + ".")
                          if not i.ispkg and not i.name.rsplit(".", 1)[1].startswith("_"))
            lines += ["Modules", "-------", "", f".. currentmodule:: {name}", "",
                      ".. autosummary::", "   :toctree: generated", ""]
            lines += [f"   {s}" for s in subs] + [""]
        (api / f"{name}.rst").write_text("\n".join(lines))
        pages.append(name)
    index = ["API reference", "=============", "",
             "Generated from the public surface: ``fastpoly.__all__`` and each subpackage's ``__all__``",
             "(a subpackage without one is documented module by module).",
             "Names not listed here are internal and may change between releases.", "",
             ".. toctree::", "   :maxdepth: 1", ""]
    index += [f"   {p}" for p in pages] + [""]
    (api / "index.rst").write_text("\n".join(index))


_write_api_pages()
