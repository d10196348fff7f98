"""The shift's dashboards as files: tile membership by join, drill-down variables, the quality
row, the candlesticks, and the per-pixel tables on the Infinity datasource."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
from support.stack import (
    INFINITY_DATASOURCE_FILE,
    INFINITY_TYPE,
    compose_service,
    dashboards,
    infinity_targets,
    panels,
    provisioning,
    targets,
    url_host_port,
)

from exporter import DEFAULT_PORT

DASHBOARDS = {d["title"]: d for d in dashboards().values()}
#: Per-tile sums join the tile label on; max by: every shard (--shard K/N) of a detector
#: exposes the io_channels it has seen, and the join needs one series per io_channel.
JOIN = re.compile(r"\* on \(io_group, io_channel\) group_left\(tile\) "
                  r"max by \(io_group, io_channel, tile\) \(larpix_io_channel_info\{")
#: The per-channel table's columns (DESIGN.md, /api/channels).
CHANNEL_COLUMNS = {"io_group", "io_channel", "tile", "chip_id", "channel_id", "count",
                   "rate_hz", "adc_mean", "adc_rms", "parity_errors", "fifo_half",
                   "fifo_full", "status"}
QUALITY_GRADES = {"-1": "not enough data", "0": "good", "1": "warning", "2": "bad"}


def exprs(dashboard: dict) -> list[str]:
    return [target["expr"] for _, target in targets(dashboard)]


def variables(dashboard: dict) -> dict[str, dict]:
    return {v["name"]: v for v in dashboard["templating"]["list"]}


def test_tiles_come_from_the_io_channel_join_not_label_replace() -> None:
    per_tile = 0
    for dashboard in DASHBOARDS.values():
        for expr in exprs(dashboard):
            assert not re.search(r'label_replace\([^"]*"tile"', expr), expr
            native = re.search(r"larpix_(quality|channels)\b", expr)  # carry their own tile
            if ("$tile" in expr or "by (tile)" in expr) and not native:
                assert JOIN.search(expr), f"{dashboard['title']}: {expr}"
                per_tile += 1
    assert per_tile >= 20


@pytest.mark.parametrize("title", ["Tile detail", "Chip detail"])
def test_drill_down_variables(title: str) -> None:
    found = variables(DASHBOARDS[title])
    assert found["io_group"]["query"] == \
        'label_values(larpix_io_channel_info{detector=~"$detector"}, io_group)'
    pattern = found["io_group"]["regex"].strip("/")
    assert re.fullmatch(pattern, "3") and not re.fullmatch(pattern, "0")
    assert found["tile"]["query"] == \
        'label_values(larpix_io_channel_info{detector=~"$detector", io_group="$io_group"}, tile)'
    assert found["file"]["type"] == "textbox"


def test_chip_page_shows_the_chip_beside_its_four_neighbours() -> None:
    dashboard = DASHBOARDS["Chip detail"]
    found = variables(dashboard)
    assert JOIN.search(found["chip"]["query"]) and "$tile" in found["chip"]["query"]
    neighbours = found["neighbours"]
    assert neighbours["hide"] == 2 and neighbours["includeAll"] and neighbours["multi"]
    offsets = re.findall(r"vector\(\$chip ([-+]) (\d+)\)", neighbours["query"])
    assert sorted(int(sign + "1") * int(n) for sign, n in offsets) == [-10, -1, 1, 10]
    # query_result lines look like `{n="-1"} 11 1700000000000`: the value is the chip_id.
    line = re.search(neighbours["regex"].strip("/"), '{n="+10"} 33 1700000000000')
    assert line and line.group(1) == "33"
    beside = [p["title"] for p in panels(dashboard)
              if any('chip_id=~"$chip|${neighbours:regex}"' in t.get("expr", "")
                     for t in p.get("targets", []))]
    assert len(beside) >= 3, beside


def quality_panels() -> list[dict]:
    return [panel for d in DASHBOARDS.values() for panel in panels(d)
            if any(re.search(r"larpix(:quality:|_quality\b)", t.get("expr", ""))
                   for t in panel.get("targets", []))]


def test_quality_panels_name_and_colour_every_grade() -> None:
    found = quality_panels()
    assert {p["title"] for p in found} >= {"Quality per io_group", "Quality per tile",
                                          "Tile quality"}
    for panel in found:
        (mapping,) = panel["fieldConfig"]["defaults"]["mappings"]
        options = mapping["options"]
        assert {value: option["text"] for value, option in options.items()} == \
            QUALITY_GRADES, panel["title"]
        assert [options[v]["color"] for v in ("0", "1", "2")] == ["green", "orange", "red"]
        steps = [s["value"] for s in panel["fieldConfig"]["defaults"]["thresholds"]["steps"]]
        assert steps == [None, 0, 1, 2], panel["title"]


def test_shifter_quality_row_uses_the_recording_rule() -> None:
    shifter = DASHBOARDS["Shifter"]
    assert 'larpix:quality:io_group{detector=~"$detector"}' in exprs(shifter)
    assert any(p["type"] == "row" and p["title"] == "Quality" for p in panels(shifter))


def test_candlesticks_map_their_four_queries() -> None:
    sticks = [p for p in panels(DASHBOARDS["Tile detail"]) if p["type"] == "candlestick"]
    assert {p["title"] for p in sticks} == {"Chip pedestals (ADC mean)", "Chip noise (ADC RMS)"}
    for panel in sticks:
        legends = {t["legendFormat"]: t["expr"] for t in panel["targets"]}
        fields = panel["options"]["fields"]
        assert set(fields.values()) == set(legends)
        metric = "larpix_chip_adc_mean" if "mean" in panel["title"] else "larpix_chip_adc_rms"
        assert legends[fields["low"]].startswith(f"min({metric}")
        assert legends[fields["open"]].startswith(f"quantile(0.25, {metric}")
        assert legends[fields["close"]].startswith(f"quantile(0.75, {metric}")
        assert legends[fields["high"]].startswith(f"max({metric}")
        assert {"id": "joinByField", "options": {"byField": "Time", "mode": "outer"}} in \
            panel["transformations"]


def channel_queries() -> list[tuple[str, dict]]:
    return [(panel["title"], target) for d in DASHBOARDS.values()
            for panel, target in infinity_targets(d)]


def test_pixel_tables_ask_for_the_top_100_of_each_column() -> None:
    queries = channel_queries()
    sorted_by = {}
    for title, target in queries:
        url = urlsplit(target["url"])
        assert url.path == "/api/channels", title
        query = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        assert query["file"] == "${file}" and query["order"] == "desc"
        assert {c["selector"] for c in target["columns"]} == CHANNEL_COLUMNS
        assert target["type"] == "json" and target["parser"] == "backend"
        assert target["root_selector"] == "rows"  # /api/channels: {"file": ..., "rows": [...]}
        if title.startswith("Top 100"):
            assert query["limit"] == "100", title
            sorted_by.setdefault(query["sort"], set()).add(title)
    assert set(sorted_by) == {"rate_hz", "adc_mean", "adc_rms", "parity_errors", "fifo_full"}
    assert all(len(titles) == 1 for titles in sorted_by.values())  # same title on both pages
    pages = {d["title"] for d in DASHBOARDS.values() if list(infinity_targets(d))}
    assert pages == {"Tile detail", "Chip detail", "Top pixels"}


def test_infinity_datasource_reaches_only_the_exporter() -> None:
    config, datasource = provisioning(INFINITY_DATASOURCE_FILE)
    assert config["apiVersion"] == 1
    assert datasource["type"] == INFINITY_TYPE and datasource["uid"] == "larpix-infinity"
    assert datasource["jsonData"]["allowedHosts"] == [datasource["url"]]
    host, port = url_host_port(datasource["url"])
    assert host == "exporter" and int(port) == DEFAULT_PORT
    assert f"--port {port}" in " ".join(compose_service(host)["command"])


def test_compose_preinstalls_a_pinned_infinity_plugin() -> None:
    grafana = compose_service("grafana")["environment"]
    plugin, version = grafana["GF_PLUGINS_PREINSTALL"].split("@")
    assert plugin == INFINITY_TYPE and re.fullmatch(r"\d+\.\d+\.\d+", version)
