"""The series selectors of a dashboard's PromQL, found without a PromQL parser.

Enough PromQL for the repository's dashboards: string literals, range
brackets and label lists of ``by``/``on``/``group_left`` clauses are set
aside, and what remains that names a series (not a function, not a keyword)
is a selector.
"""

from __future__ import annotations

import re

from support.stack import panels

#: The matcher every dashboard selector carries (the ``detector`` template variable).
DETECTOR_MATCHER = 'detector=~"$detector"'
_KEPT = "\x00detector\x00"  # stands for the literal "$detector" while strings are blanked
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_RANGE = re.compile(r"\[[^\]]*\]")
_CLAUSE = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NAME = re.compile(r"(?<![\w:$.\x00])([a-zA-Z_:][\w:]*)(\s*\{[^}]*\})?")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "group_left", "group_right"}
_LABEL_VALUES = re.compile(r"label_values\((.*), *\w+\)", re.S)


def metric_selectors(expr: str) -> list[tuple[str, str]]:
    """(metric name, matchers in braces) of every series selector in ``expr``."""
    expr = expr.strip()
    if match := _LABEL_VALUES.fullmatch(expr):  # Grafana's variable query: the series part
        expr = match.group(1)
    text = _STRING.sub(lambda m: f'"{_KEPT}"' if m.group(0) == '"$detector"' else '""', expr)
    text = _CLAUSE.sub(" ", _RANGE.sub("", text))
    found = []
    for match in _NAME.finditer(text):
        name, braces = match.group(1), match.group(2) or ""
        if name in _KEYWORDS or (not braces and text[match.end():].lstrip().startswith("(")):
            continue
        found.append((name, braces.strip().replace(_KEPT, "$detector")))
    return found


def unfiltered_selectors(expr: str) -> list[str]:
    """Selectors of ``expr`` that do not carry the ``detector`` matcher."""
    return [name + braces for name, braces in metric_selectors(expr)
            if DETECTOR_MATCHER not in braces]


def prometheus_queries(dashboard: dict) -> list[tuple[str, str]]:
    """(where, PromQL) of every Prometheus target and query variable of a dashboard."""
    found = [(f"panel {panel['title']!r} {target.get('refId', '')}", target["expr"])
             for panel in panels(dashboard) for target in panel.get("targets", [])
             if target.get("datasource", panel.get("datasource", {})).get("type") == "prometheus"]
    found += [(f"variable {v['name']}", v["query"])
              for v in dashboard.get("templating", {}).get("list", [])
              if v["type"] == "query" and v["datasource"]["type"] == "prometheus"]
    return found
