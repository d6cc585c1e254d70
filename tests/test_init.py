from __future__ import annotations

import importlib.metadata
import types

import pytest

import nodemetrics


class TestPublicAPI:
    def test_all_is_sorted(self):
        """__all__ is kept in sorted order."""
        assert sorted(nodemetrics.__all__) == nodemetrics.__all__

    def test_all_is_complete(self):
        """Every public name the package defines is in __all__, and all exist."""
        public = {
            name
            for name, value in vars(nodemetrics).items()
            if not name.startswith("_")
            and name != "annotations"
            and not isinstance(value, types.ModuleType)  # subpackages, once imported
        }
        assert public == set(nodemetrics.__all__)
        for name in nodemetrics.__all__:
            assert getattr(nodemetrics, name) is not None

    def test_version(self):
        """__version__ is the installed distribution's version."""
        assert importlib.metadata.version("nodemetrics") == nodemetrics.__version__

    def test_unknown_attribute(self):
        """Unknown attributes raise AttributeError naming them."""
        with pytest.raises(AttributeError, match="no_such_thing"):
            _ = nodemetrics.no_such_thing  # type: ignore[attr-defined]
