"""Grafana files without a Grafana server: schema, layout, datasource, variables, provisioning.

The schemas are Grafana's own (tests/schemas/, generated from the npm packages
of the Grafana version docker-compose.yml pins); the other checks are the ones
Grafana would only report when a person opens the dashboard.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest
from support.promql import metric_selectors, prometheus_queries, unfiltered_selectors
from support.stack import (
    DASHBOARD_PROVIDER_FILE,
    DATASOURCE_FILE,
    GRAFANA_GLOBAL_VARIABLES,
    INFINITY_DATASOURCE_FILE,
    INFINITY_TYPE,
    PROMETHEUS_CONFIG,
    ROOT,
    alert_rules,
    compose_model,
    compose_service,
    dashboards,
    infinity_targets,
    load_yaml,
    panels,
    provisioning,
    targets,
    url_host_port,
    variables_used,
)

from exporter import DEFAULT_PORT

SCHEMAS = ROOT / "tests" / "schemas"
DASHBOARDS = dashboards()
NAMES = sorted(DASHBOARDS)
GRID_COLUMNS = 24
#: Dashboards whose panels watch what the alert rules watch (so some cite an alert).
CITE_ALERTS = {"overview.json", "io-group-detail.json", "shifter.json", "tile.json"}


def provisioned_datasource() -> dict:
    return provisioning(DATASOURCE_FILE)[1]


def provisioned_infinity() -> dict:
    return provisioning(INFINITY_DATASOURCE_FILE)[1]


def load_schema(path: Path) -> dict:
    return json.loads(path.read_text())


def schema_errors(dashboard: dict) -> list[str]:
    schema = load_schema(SCHEMAS / "grafana-dashboard.schema.json")
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in jsonschema.Draft7Validator(schema).iter_errors(dashboard)]


def panel_option_errors(dashboard: dict) -> list[str]:
    """Errors of each panel's options (and custom field config) against its panel type's schema."""
    errors = []
    for panel in panels(dashboard):
        if panel["type"] == "row":
            continue
        path = SCHEMAS / "grafana-panels" / f"{panel['type']}.schema.json"
        if not path.exists():
            errors.append(f"{panel['title']}: no schema for panel type {panel['type']}")
            continue
        definitions = load_schema(path)["definitions"]
        parts = [("options", "Options", panel.get("options", {}))]
        custom = panel.get("fieldConfig", {}).get("defaults", {}).get("custom")
        if custom is not None and "FieldConfig" in definitions:
            parts.append(("fieldConfig.defaults.custom", "FieldConfig", custom))
        for where, definition, value in parts:
            schema = {"$ref": f"#/definitions/{definition}", "definitions": definitions}
            errors += [f"{panel['title']}: {where}/{'/'.join(map(str, e.absolute_path))}: "
                       f"{e.message}"
                       for e in jsonschema.Draft7Validator(schema).iter_errors(value)]
    return errors


def duplicate_panel_ids(dashboard: dict) -> list[int]:
    ids = [panel["id"] for panel in panels(dashboard)]
    return sorted({i for i in ids if ids.count(i) > 1})


def overlapping_panels(dashboard: dict) -> list[tuple[str, str]]:
    """Pairs of panel titles whose grid rectangles intersect."""
    boxes = [(p["title"], p["gridPos"]) for p in panels(dashboard)]
    pairs = []
    for i, (title_a, a) in enumerate(boxes):
        for title_b, b in boxes[i + 1:]:
            if (a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"]
                    and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"]):
                pairs.append((title_a, title_b))
    return pairs


def datasource_refs(value: object) -> list[object]:
    """Every ``datasource`` value anywhere in the dashboard."""
    if isinstance(value, dict):
        found = [value["datasource"]] if "datasource" in value else []
        return found + [r for v in value.values() for r in datasource_refs(v)]
    if isinstance(value, list):
        return [r for v in value for r in datasource_refs(v)]
    return []


def foreign_datasources(dashboard: dict, uid: str, infinity_uid: str = "") -> list[object]:
    """Datasource references other than the provisioned Prometheus and Infinity datasources."""
    expected = [{"type": "prometheus", "uid": uid}, {"type": INFINITY_TYPE, "uid": infinity_uid}]
    return [ref for ref in datasource_refs(dashboard) if ref not in expected]


def undefined_variables(dashboard: dict) -> set[str]:
    defined = {v["name"] for v in dashboard.get("templating", {}).get("list", [])}
    return variables_used(dashboard) - defined - GRAFANA_GLOBAL_VARIABLES


def test_the_dashboards_are_provisioned() -> None:
    titles = {d["title"] for d in DASHBOARDS.values()}
    assert titles == {"LArPix overview", "IO group detail", "Plots", "Shifter", "Tile detail",
                      "Chip detail", "Top pixels"}
    uids = [d["uid"] for d in DASHBOARDS.values()]
    assert len(set(uids)) == len(uids)


@pytest.mark.parametrize("name", NAMES)
def test_dashboard_matches_grafana_schema(name: str) -> None:
    assert schema_errors(DASHBOARDS[name]) == []


@pytest.mark.parametrize("name", NAMES)
def test_panel_options_match_their_panel_type_schema(name: str) -> None:
    assert panel_option_errors(DASHBOARDS[name]) == []


@pytest.mark.parametrize("name", NAMES)
def test_panel_ids_are_unique(name: str) -> None:
    assert duplicate_panel_ids(DASHBOARDS[name]) == []


@pytest.mark.parametrize("name", NAMES)
def test_panels_do_not_overlap_and_fit_the_grid(name: str) -> None:
    dashboard = DASHBOARDS[name]
    assert overlapping_panels(dashboard) == []
    for panel in panels(dashboard):
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= GRID_COLUMNS, panel["title"]
        assert pos["w"] > 0 and pos["h"] > 0, panel["title"]


@pytest.mark.parametrize("name", NAMES)
def test_every_datasource_is_a_provisioned_one(name: str) -> None:
    dashboard = DASHBOARDS[name]
    assert foreign_datasources(dashboard, provisioned_datasource()["uid"],
                               provisioned_infinity()["uid"]) == []
    for panel, target in targets(dashboard):
        assert target["expr"].strip(), panel["title"]
    for panel, target in infinity_targets(dashboard):
        # Relative to the datasource's URL: the exporter as Grafana reaches it.
        assert target["source"] == "url" and target["url"].startswith("/api/"), panel["title"]
        assert panel["datasource"] == target["datasource"], panel["title"]
    assert "${DS_" not in json.dumps(dashboard), "import placeholder instead of the fixed uid"


@pytest.mark.parametrize("name", NAMES)
def test_every_template_variable_used_is_defined(name: str) -> None:
    assert undefined_variables(DASHBOARDS[name]) == set()


@pytest.mark.parametrize("name", NAMES)
def test_every_panel_has_description_unit_and_thresholds(name: str) -> None:
    units = set(load_schema(SCHEMAS / "grafana-units.json")["units"])
    for panel in panels(DASHBOARDS[name]):
        if panel["type"] == "row":
            continue
        assert panel.get("description", "").strip(), f"{panel['title']}: no description"
        if panel["type"] == "text":
            continue
        defaults = panel["fieldConfig"]["defaults"]
        unit = defaults.get("unit", "")
        assert unit in units or unit.startswith("suffix:"), f"{panel['title']}: unit {unit!r}"
        steps = defaults["thresholds"]["steps"]
        assert steps and steps[0]["value"] is None, f"{panel['title']}: no base threshold"
        values = [s["value"] for s in steps[1:]]
        assert values == sorted(values), f"{panel['title']}: thresholds out of order"


def alert_threshold(rule: dict) -> float:
    """The number an alert expression compares against last (`... > N`)."""
    match = re.search(r">\s*(-?[0-9.]+)\s*\)?\s*$", rule["expr"].strip())
    assert match, f"{rule['alert']}: no trailing threshold in {rule['expr']!r}"
    return float(match.group(1))


@pytest.mark.parametrize("name", NAMES)
def test_panels_that_cite_an_alert_show_its_threshold(name: str) -> None:
    """A panel whose description names an alert marks where that alert fires."""
    rules = {rule["alert"]: rule for rule in alert_rules()}
    cited = 0
    for panel in panels(DASHBOARDS[name]):
        for alert in set(re.findall(r"LArPix[A-Za-z]+", panel.get("description", ""))):
            assert alert in rules, f"{panel['title']} cites unknown alert {alert}"
            limit = alert_threshold(rules[alert])
            steps = [s["value"] for s in panel["fieldConfig"]["defaults"]["thresholds"]["steps"]]
            # "> N" on an integer count is first true at N + 1.
            assert limit in steps or (limit.is_integer() and limit + 1 in steps), \
                f"{panel['title']}: no threshold step at {alert}'s {limit:g} (steps {steps})"
            cited += 1
    assert cited > 0 or name not in CITE_ALERTS


@pytest.mark.parametrize("name", NAMES)
def test_refresh_time_range_and_links(name: str) -> None:
    dashboard = DASHBOARDS[name]
    assert dashboard["refresh"] == "10s"
    assert "10s" in dashboard["timepicker"]["refresh_intervals"]
    assert re.fullmatch(r"now-\d+[mh]", dashboard["time"]["from"])
    assert dashboard["time"]["to"] == "now"
    assert "larpix" in dashboard["tags"]
    assert any(link["type"] == "dashboards" and "larpix" in link["tags"]
               for link in dashboard["links"])
    assert dashboard["editable"] is False  # provisioned: edits belong in the files


def detector_variable(dashboard: dict) -> dict | None:
    found = [v for v in dashboard.get("templating", {}).get("list", []) if v["name"] == "detector"]
    return found[0] if found else None


def unfiltered_queries(dashboard: dict) -> list[str]:
    """Prometheus queries (but the detector variable's own) with a selector not on $detector."""
    return [f"{where}: {', '.join(unfiltered_selectors(expr))}"
            for where, expr in prometheus_queries(dashboard)
            if where != "variable detector" and unfiltered_selectors(expr)]


@pytest.mark.parametrize("name", NAMES)
def test_every_prometheus_query_is_filtered_by_the_detector_variable(name: str) -> None:
    """Several detectors share one Prometheus (docs/scaling.md): no panel adds them up."""
    dashboard = DASHBOARDS[name]
    queries = prometheus_queries(dashboard)
    variable = detector_variable(dashboard)
    if not queries:  # the exporter's JSON API only: one detector's exporter per datasource
        assert variable is None
        return
    assert dashboard["templating"]["list"][0] is variable, "detector is the first variable"
    assert re.fullmatch(r"label_values\(.+, detector\)", variable["query"])
    assert variable["datasource"] == {"type": "prometheus", "uid": provisioned_datasource()["uid"]}
    # One detector at a time: counter panels sum by io_group, which two detectors share.
    assert variable["multi"] is False and variable["includeAll"] is False
    assert unfiltered_queries(dashboard) == []
    for where, expr in queries:
        if where.startswith("panel"):
            assert metric_selectors(expr), f"{where}: no series selected in {expr!r}"


def test_io_group_detail_variables() -> None:
    (dashboard,) = [d for d in DASHBOARDS.values() if d["title"] == "IO group detail"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert set(variables) == {"detector", "io_group", "io_channel"}
    assert "$io_group" in variables["io_channel"]["query"]
    assert variables["io_channel"]["includeAll"] and variables["io_channel"]["allValue"] == ".*"
    exprs = [t["expr"] for _, t in targets(dashboard)]
    assert all('io_group="$io_group"' in e for e in exprs)
    assert any('io_channel=~"$io_channel"' in e for e in exprs)
    # io_group 0 holds only run start/end messages: not offered.
    pattern = variables["io_group"]["regex"].strip("/")
    assert re.fullmatch(pattern, "1") and re.fullmatch(pattern, "12")
    assert not re.fullmatch(pattern, "0")


def test_plots_dashboard_points_at_the_exporter() -> None:
    (dashboard,) = [d for d in DASHBOARDS.values() if d["title"] == "Plots"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["exporter_url"]["query"] == f"http://localhost:{DEFAULT_PORT}"
    html = " ".join(p["options"]["content"] for p in panels(dashboard) if p["type"] == "text")
    assert "${exporter_url}/plots/${file}/${plot}.png" in html
    assert '<iframe src="${exporter_url}/"' in html
    repeated = [p for p in panels(dashboard) if p.get("repeat")]
    assert [p["repeat"] for p in repeated] == ["plot"]
    # An iframe survives only with Grafana's HTML sanitizer off.
    grafana_env = compose_service("grafana")["environment"]
    assert grafana_env["GF_PANELS_DISABLE_SANITIZE_HTML"] == "true"


def test_schemas_are_those_of_the_pinned_grafana() -> None:
    image = compose_service("grafana")["image"]
    version = re.fullmatch(r"grafana/grafana:(\d+\.\d+\.\d+)", image).group(1)
    stamped = [SCHEMAS / "grafana-dashboard.schema.json", SCHEMAS / "grafana-units.json",
               *sorted((SCHEMAS / "grafana-panels").glob("*.json"))]
    for path in stamped:
        comment = load_schema(path)["$comment"]
        assert f"@{version}" in comment, f"{path.name} is not from Grafana {version}: {comment}"


def test_datasource_provisioning() -> None:
    config, datasource = provisioning(DATASOURCE_FILE)
    assert config["apiVersion"] == 1
    assert datasource["type"] == "prometheus" and datasource["access"] == "proxy"
    assert datasource["uid"] == "larpix-prometheus" and datasource["isDefault"] is True
    # Grafana's $__rate_interval assumes this is Prometheus's scrape interval.
    scrape = load_yaml(PROMETHEUS_CONFIG)["global"]["scrape_interval"]
    assert datasource["jsonData"]["timeInterval"] == scrape
    # The URL is the compose service and the port Prometheus listens on there.
    services = compose_model()["services"]
    host, port = url_host_port(datasource["url"])
    assert host in services
    assert any(p.endswith(f":{port}") for p in services[host]["ports"])


def test_dashboard_provisioning_reads_the_mounted_dashboards() -> None:
    config = load_yaml(DASHBOARD_PROVIDER_FILE)
    assert config["apiVersion"] == 1
    (provider,) = config["providers"]
    assert provider["type"] == "file" and provider["disableDeletion"] is True
    grafana = compose_service("grafana")
    mounts = dict(volume.split(":")[:2][::-1] for volume in grafana["volumes"])
    assert mounts[provider["options"]["path"]] == "./grafana/dashboards"
    assert mounts["/etc/grafana/provisioning"] == "./grafana/provisioning"
    home = Path(grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert str(home.parent) == provider["options"]["path"] and home.name in DASHBOARDS


# -- the checks above catch what they claim to ------------------------------------------


def test_checks_reject_broken_dashboards() -> None:
    original = DASHBOARDS["overview.json"]
    uid = provisioned_datasource()["uid"]

    def broken(change) -> dict:
        dashboard = copy.deepcopy(original)
        change(dashboard)
        return dashboard

    typo = broken(lambda d: d["panels"][0].update(gridpos={"x": 0}))
    assert any("gridpos" in e for e in schema_errors(typo))
    bad_option = broken(lambda d: d["panels"][5]["options"]["legend"].update(mode="list"))
    assert any("mode" in e for e in panel_option_errors(bad_option))
    twin = broken(lambda d: d["panels"][1].update(id=d["panels"][0]["id"]))
    assert duplicate_panel_ids(twin) == [original["panels"][0]["id"]]
    stacked = broken(lambda d: d["panels"][1]["gridPos"].update(x=d["panels"][0]["gridPos"]["x"]))
    assert (original["panels"][0]["title"], original["panels"][1]["title"]) \
        in overlapping_panels(stacked)
    other_source = broken(lambda d: d["panels"][2]["datasource"].update(uid="other"))
    assert foreign_datasources(other_source, uid) == [{"type": "prometheus", "uid": "other"}]
    unknown = broken(lambda d: d["panels"][2]["targets"][0].update(
        expr='larpix_active_channels{io_group="${nowhere}"}'))
    assert undefined_variables(unknown) == {"nowhere"}
    mixed = broken(lambda d: d["panels"][2]["targets"][0].update(
        expr='sum(larpix_active_channels{detector=~"$detector"}) / count(up{job="x"})'))
    assert unfiltered_queries(mixed) == [
        f"panel {original['panels'][2]['title']!r} A: up{{job=\"\"}}"]
    assert unfiltered_queries(broken(lambda d: d["templating"]["list"][0].update(
        query="label_values(up, detector)"))) == []  # the variable's own query may list all
