"""The shipped Grafana dashboard plots every gauge the run publishes, by run."""

import json
import re
from pathlib import Path

from rlaif_ray.metrics import GAUGES

DASHBOARD = Path(__file__).resolve().parents[2] / "cluster" / "grafana" / "rlaif-ray.json"


def test_the_grafana_dashboard_has_a_panel_per_gauge_filtered_by_run():
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    plotted = {m for e in exprs for m in re.findall(r"ray_rlaif_(\w+)\{", e)}
    assert plotted == {name for name, _, _ in GAUGES}
    assert all('run=~"$run"' in e and "by (run, job" in e for e in exprs)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["run"]["definition"] == "label_values(ray_rlaif_iteration, run)"
    assert variables["datasource"]["query"] == "prometheus"
