"""The core imports and works with none of the optional dependencies installed."""

from __future__ import annotations

import textwrap


BLOCKED = ["prometheus_client", "opentelemetry", "langgraph", "langchain_core", "stamina"]

SCRIPT = textwrap.dedent(
    f"""
    import importlib.abc, sys

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {BLOCKED!r}:
                raise ImportError(f"{{name}} is blocked")

    sys.meta_path.insert(0, Block())
    import nodemetrics, nodemetrics.exporters, nodemetrics.integrations
    c = nodemetrics.NodeMetricsCollector()
    c.record_success("n", 1.0)
    print(nodemetrics.format_table(c).splitlines()[2].split()[0])
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in {BLOCKED!r})
    print(loaded)
    try:
        import nodemetrics.exporters.prometheus
    except ImportError as e:
        print("prometheus:", e)
    try:
        import nodemetrics.integrations.langgraph
    except ImportError as e:
        print("langgraph:", e)
    """
)


def test_core_without_optional_dependencies(fresh_python):
    """With the optional libraries unimportable, the core imports, records and reads."""
    result = fresh_python(SCRIPT)
    assert 0 == result.returncode, result.stderr
    assert [
        "n",
        "[]",
        "prometheus: prometheus_client is blocked",
        "langgraph: langchain_core is blocked",
    ] == result.stdout.splitlines()
