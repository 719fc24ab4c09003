"""`facegen evaluate`, above the library: load a model, its judge and held-out data, run the measures, record them.

`registry` names the metrics and the kinds each applies to; `report` writes
and reads the JSON-line records and prints the table; `run` does the rest.
"""

from facegen.evaluation.registry import METRICS, select_metrics
from facegen.evaluation.run import evaluate

__all__ = ["METRICS", "evaluate", "select_metrics"]
