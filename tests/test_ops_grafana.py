"""The Grafana dashboard and its provisioning: structure, variables, and every panel's query.

:func:`panel_queries` and :func:`variable_queries` extract the PromQL of the dashboard, and
:func:`substitute` replaces Grafana's variables, so that tests/test_ops_prometheus.py can run
every query against a real Prometheus scraping a real pantau.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
GRAFANA = ROOT / "config" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "pantau.json"
PROVISION_DASHBOARDS = GRAFANA / "provisioning" / "dashboards" / "pantau.yaml"
PROVISION_DATASOURCES = GRAFANA / "provisioning" / "datasources" / "pantau.yaml"
OPERATIONS = ROOT / "docs" / "operations.md"

#: The dashboard's own variables, and what the end-to-end test substitutes for each.
FILTERS = {"agency": ".*", "group": ".*", "platform": ".*"}
#: Grafana's built-in interval variables, with values that suit a 1 s scrape interval.
BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h"}
DATASOURCE_REF = {"type": "prometheus", "uid": "${datasource}"}
_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")


@dataclass(frozen=True)
class PanelQuery:
    """One target of one panel."""

    panel: str
    ref_id: str
    expr: str


@dataclass(frozen=True)
class VariableQuery:
    """A query variable: the PromQL inside ``label_values(...)`` / ``query_result(...)``."""

    name: str
    expr: str
    label: str | None  # label_values' label: it must occur in the result


def load_dashboard(path: Path = DASHBOARD) -> dict[str, Any]:
    """The dashboard JSON as a dict."""
    return json.loads(path.read_text(encoding="utf-8"))


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    out: list[dict[str, Any]] = []
    for panel in dashboard.get("panels", []):
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def panel_queries(dashboard: dict[str, Any] | None = None) -> list[PanelQuery]:
    """Every PromQL expression of every panel, with the panel's title and refId."""
    dashboard = dashboard if dashboard is not None else load_dashboard()
    return [
        PanelQuery(panel["title"], target["refId"], target.get("expr", ""))
        for panel in _panels(dashboard)
        for target in panel.get("targets", [])
    ]


def variable_queries(dashboard: dict[str, Any] | None = None) -> list[VariableQuery]:
    """The PromQL behind every query variable (``label_values`` / ``query_result``)."""
    dashboard = dashboard if dashboard is not None else load_dashboard()
    out = []
    for var in dashboard["templating"]["list"]:
        if var["type"] != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        if match := re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\)\s*", query, re.S):
            out.append(VariableQuery(var["name"], match[1], match[2]))
        elif match := re.fullmatch(r"\s*query_result\((.*)\)\s*", query, re.S):
            out.append(VariableQuery(var["name"], match[1], None))
        else:
            raise AssertionError(f"variable {var['name']}: unsupported query {query!r}")
    return out


def substitute(expr: str, values: dict[str, str] | None = None) -> str:
    """``expr`` with Grafana's variables replaced (filters by ``.*``, intervals by ``1m``...)."""
    table = {**FILTERS, **BUILTINS, **(values or {})}

    def replace(match: re.Match[str]) -> str:
        name = match[1] or match[2]
        if name not in table:
            raise KeyError(f"unknown Grafana variable ${name} in {expr!r}")
        return table[name]

    return _VARIABLE.sub(replace, expr)


def _variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {var["name"]: var for var in dashboard["templating"]["list"]}


# -- tests -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return load_dashboard()


def test_dashboard_is_provisionable(dashboard):
    """The JSON has a stable uid, a title, a schema version and no instance-bound id."""
    assert dashboard["uid"] == "pantau-agencies"
    assert dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
    assert dashboard.get("id") is None  # a provisioned dashboard must not carry a database id


def test_variables_exist_and_use_the_datasource_variable(dashboard):
    """$datasource picks a Prometheus; group, agency and platform query through it, All = .*."""
    variables = _variables(dashboard)
    assert set(variables) >= {"datasource", "group", "agency", "platform"}
    source = variables["datasource"]
    assert source["type"] == "datasource" and source["query"] == "prometheus"
    for name in ("group", "agency", "platform"):
        var = variables[name]
        assert var["type"] == "query", name
        assert var["datasource"] == DATASOURCE_REF, name
        assert var["includeAll"] is True and var["allValue"] == ".*", name
    names = list(variables)  # a variable may only use variables defined before it
    for var in dashboard["templating"]["list"]:
        query = json.dumps(var.get("query", ""))
        for match in _VARIABLE.finditer(query):
            used = match[1] or match[2]
            assert used in names[: names.index(var["name"])], (var["name"], used)


def test_every_panel_uses_the_datasource_variable(dashboard):
    """Every panel and every target names ${datasource}: no hard-wired datasource uid."""
    panels = _panels(dashboard)
    assert panels
    for panel in panels:
        assert panel.get("datasource") == DATASOURCE_REF, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target.get("datasource") == DATASOURCE_REF, (panel["title"], target["refId"])


def test_every_target_has_an_expression_and_a_unique_ref_id(dashboard):
    """Each target has non-empty PromQL; refIds are unique within a panel."""
    for panel in _panels(dashboard):
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target.get("expr", "").strip(), (panel["title"], target["refId"])


def test_expressions_use_only_known_variables(dashboard):
    """Every $variable in a query is a dashboard variable or a Grafana built-in."""
    known = set(_variables(dashboard)) | set(BUILTINS)
    for query in panel_queries(dashboard):
        for match in _VARIABLE.finditer(query.expr):
            assert (match[1] or match[2]) in known, (query.panel, match[0])
        assert "$" not in substitute(query.expr)


def test_agency_panels_honour_the_filters(dashboard):
    """Panels over per-account metrics filter by $agency, $group and $platform."""
    per_account = ("pantau_last_post", "pantau_check_success", "pantau_account_missing",
                   "pantau_silence_threshold", "pantau_posts")
    for query in panel_queries(dashboard):
        if any(name in query.expr for name in per_account):
            for var in ("$agency", "$group", "$platform"):
                assert var in query.expr, (query.panel, query.ref_id, var)


def test_dashboard_shows_what_operations_needs(dashboard):
    """Freshness table, silent count, missing accounts, success, error reasons, durations."""
    by_title = {p["title"]: p for p in _panels(dashboard)}
    freshness = next(p for t, p in by_title.items() if t.startswith("Freshness"))
    assert freshness["type"] == "table"
    exprs = " ".join(t["expr"] for t in freshness["targets"])
    assert "pantau_last_post_timestamp_seconds" in exprs
    assert "pantau_silence_threshold_seconds" in exprs
    colour = [o for o in freshness["fieldConfig"]["overrides"]
              if o["matcher"]["options"] == "Share of threshold"]
    steps = next(p["value"]["steps"] for p in colour[0]["properties"] if p["id"] == "thresholds")
    assert [s["value"] for s in steps] == [None, 0.75, 1]  # red from 100% of the threshold
    assert by_title["Silent agencies"]["type"] == "stat"
    assert "pantau_account_missing" in by_title["Accounts missing"]["targets"][0]["expr"]
    assert "pantau_check_success" in by_title["Check success per platform"]["targets"][0]["expr"]
    errors = by_title["Check errors by reason"]["targets"][0]["expr"]
    assert "pantau_check_errors_total" in errors and "reason" in errors
    assert "pantau_check_duration_seconds_bucket" in (
        by_title["Check durations"]["targets"][0]["expr"]
    )


def test_panels_fit_the_grid_without_overlap(dashboard):
    """Panels have unique ids and titles, sit inside the 24-column grid and do not overlap."""
    panels = _panels(dashboard)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    titles = [p["title"] for p in panels]
    assert len(titles) == len(set(titles))
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, (panel["title"], cells.get((x, y)))
                cells[(x, y)] = panel["title"]


def test_variable_queries_are_extracted(dashboard):
    """Each query variable yields the PromQL inside its label_values()/query_result()."""
    queries = {q.name: q for q in variable_queries(dashboard)}
    assert set(queries) == {"group", "agency", "platform"}
    assert queries["group"].expr == "pantau_agency_info" and queries["group"].label == "group"
    assert substitute(queries["agency"].expr) == 'pantau_agency_info{group=~".*"}'


def test_substitute_rejects_unknown_variables():
    """A typo in a variable name is caught, not sent to Prometheus."""
    assert substitute('rate(x{a=~"$agency"}[$__rate_interval])') == 'rate(x{a=~".*"}[1m])'
    assert substitute('x{a=~"${platform}"}') == 'x{a=~".*"}'
    with pytest.raises(KeyError, match="agnecy"):
        substitute('x{a=~"$agnecy"}')


def test_provisioning_points_at_the_documented_paths():
    """The dashboard provider loads the path the docs copy the JSON to; the datasource is valid."""
    provider = yaml.safe_load(PROVISION_DASHBOARDS.read_text())
    assert provider["apiVersion"] == 1
    [entry] = provider["providers"]
    assert entry["type"] == "file"
    path = entry["options"]["path"]
    docs = OPERATIONS.read_text(encoding="utf-8")
    assert path in docs, "docs/operations.md must say where the dashboard JSON goes"
    sources = yaml.safe_load(PROVISION_DATASOURCES.read_text())
    assert sources["apiVersion"] == 1
    [source] = sources["datasources"]
    assert source["type"] == "prometheus" and source["url"].startswith("http")
    assert source["jsonData"]["timeInterval"]  # $__rate_interval depends on it
