"""A plug-in is one file: the registries import every module of their package (lffood.plugins)."""

from __future__ import annotations

import sys

from lffood import objectives, plugins, scorers


def test_import_all_imports_every_public_module_in_name_order(tmp_path, monkeypatch):
    pkg = tmp_path / "toypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "b_second.py").write_text("import toypkg\ntoypkg.seen = getattr(toypkg, 'seen', []) + ['b']\n")
    (pkg / "a_first.py").write_text("import toypkg\ntoypkg.seen = getattr(toypkg, 'seen', []) + ['a']\n")
    (pkg / "_private.py").write_text("raise RuntimeError('private modules are not plug-ins')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import toypkg

    try:
        assert plugins.import_all("toypkg", toypkg.__path__) == ["a_first", "b_second"]
        assert toypkg.seen == ["a", "b"]
    finally:
        for name in [m for m in sys.modules if m == "toypkg" or m.startswith("toypkg.")]:
            del sys.modules[name]


def test_every_module_of_the_registries_is_imported():
    """No import list to keep: each module file of the two packages is imported by the package."""
    from pathlib import Path

    for package, imported in ((scorers, scorers.SCORER_MODULES), (objectives, objectives.OBJECTIVE_MODULES)):
        files = sorted(p.stem for p in Path(package.__file__).parent.glob("*.py") if not p.stem.startswith("_"))
        assert imported == files
        assert all(f"{package.__name__}.{name}" in sys.modules for name in files)
