"""The docstrings the API reference shows follow numpydoc: every argument of a public class or
function has its own entry in a ``Parameters`` section (``Attributes`` for the fields of a
dataclass or a pydantic config) with a description, and a type line that states the default where the argument has
one."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
import warnings
from pathlib import Path

import pytest
from numpydoc.docscrape import ClassDoc, FunctionDoc
from pydantic import BaseModel

ROOT = Path(__file__).resolve().parents[1]


def _site_modules() -> list[str]:
    """The modules the API reference renders (its ``::: module`` lines)."""
    pages = sorted((ROOT / "docs" / "pages" / "reference").glob("*.md"))
    return [m for page in pages for m in re.findall(r"^::: (\S+)", page.read_text(), re.M)]


def _public():
    """Every class and function the site shows: a package's ``__all__``, or a module's own
    public names."""
    for module in _site_modules():
        mod = importlib.import_module(module)
        names = getattr(mod, "__all__", None) or [
            n for n, v in vars(mod).items()
            if not n.startswith("_") and getattr(v, "__module__", None) == module
        ]  # fmt: skip
        for name in names:
            obj = getattr(mod, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                yield pytest.param(obj, id=f"{module}.{name}")


def test_the_site_renders_every_package_area():
    assert {"advlab.data", "advlab.models", "advlab.cluster", "advlab.metrics",
            "advlab.attacks.evasion", "advlab.attacks.poisoning", "advlab.defenses",
            "advlab.experiments", "advlab.cli.main"} <= set(_site_modules())  # fmt: skip


def issubclass_safe(obj, base) -> bool:
    return inspect.isclass(obj) and issubclass(obj, base)


def _arguments(obj):
    try:
        params = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):
        return []
    named = [p for p in params if p.name != "self"]
    if all(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in named):
        return []  # an abstract base or protocol: its subclasses document their arguments
    return named


@pytest.mark.parametrize("obj", list(_public()))
def test_every_argument_is_documented_with_its_default(obj):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        doc = ClassDoc(obj) if inspect.isclass(obj) else FunctionDoc(obj)
    fields_only = dataclasses.is_dataclass(obj) or issubclass_safe(obj, BaseModel)
    section = "Attributes" if fields_only else "Parameters"
    entries = {}
    # a dataclass documents its own fields; inherited ones are documented on the base
    bases = [b for b in getattr(obj, "__mro__", [obj]) if b is obj or dataclasses.is_dataclass(b)]
    for base in reversed(bases):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            base_doc = ClassDoc(base) if inspect.isclass(base) else doc
        for param in base_doc[section]:
            for key in param.name.split(","):
                entries[key.strip().lstrip("*")] = param
    for arg in _arguments(obj):
        assert arg.name in entries, f"{obj.__qualname__}: {arg.name!r} is not in {section}"
        entry = entries[arg.name]
        assert entry.desc, f"{obj.__qualname__}: {arg.name!r} has no description"
        if arg.default is not inspect.Parameter.empty and not fields_only:
            assert "default" in entry.type, f"{obj.__qualname__}: {arg.name!r} lacks its default"
