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
