"""docs/metrics.md is generated from the code's metric definitions; this fails when the two drift apart."""

from pathlib import Path

from databricks_exporter import docs, metrics

DOC = Path(__file__).resolve().parent.parent / "docs" / "metrics.md"


def test_metrics_doc_is_current():
    assert DOC.read_text() == docs.render(), \
        "docs/metrics.md is stale: run `python -m databricks_exporter.docs > docs/metrics.md`"


def test_every_metric_is_documented_with_type_and_labels():
    text = DOC.read_text()
    for metric in metrics.REGISTRY.values():
        assert f"| `{metric.name}` | {metric.type}" in text


def test_no_metric_constant_is_defined_twice():
    """Two `NAME = define(...)` with the same NAME silently rebind it, and a collector then emits the wrong metric."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(metrics))
    names = [target.id for node in tree.body if isinstance(node, ast.Assign) for target in node.targets
             if isinstance(target, ast.Name)]
    assert sorted({n for n in names if names.count(n) > 1}) == []
