"""deploy/monitoring: the Prometheus alert rules and the Grafana dashboard are well formed and
query only metrics the services export.

The rules are checked as promtool would check them (YAML structure, every expression parsed,
alert names unique, the templates' labels present in the result); the dashboard against a
JSON schema of what Grafana needs to load it, plus what a schema cannot say (unique ids,
panels inside the 24-column grid without overlap, defined variables). The metric names are
compared with the /metrics page of this code: the default registry the services serve
(tests/integration/test_deploy_metrics.py compares labels with a running service's page).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

import services.complaints.main
import services.ingest.main
import services.reporting.main
import services.scoring.main  # noqa: F401 (each service's metrics are registered on import)
from tests.unit.test_deploy_promql import VECTOR, Parsed, parse, parse_grafana

MONITORING = Path(__file__).resolve().parents[2] / "deploy" / "monitoring"
README = MONITORING.parent / "README.md"
RULES = MONITORING / "alerts.yaml"
DASHBOARD = MONITORING / "dashboard.json"

# Labels Prometheus attaches to every scraped series (job, instance) and the ones the
# documented Kubernetes scrape configuration adds (deploy/README.md, "Monitoring").
TARGET_LABELS = {"job", "instance", "namespace", "pod"}
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "unknown": ("",),
}

DURATION = r"^([0-9]+(ms|s|m|h|d|w|y))+$"
RULE_FILE_SCHEMA: dict[str, Any] = {
    # Prometheus' rule file format (promtool refuses unknown fields, so do we).
    "type": "object",
    "additionalProperties": False,
    "required": ["groups"],
    "properties": {
        "groups": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "rules"],
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "interval": {"type": "string", "pattern": DURATION},
                    "limit": {"type": "integer", "minimum": 0},
                    "rules": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/alert"}},
                },
            },
        }
    },
    "$defs": {
        "alert": {
            "type": "object",
            "additionalProperties": False,
            "required": ["alert", "expr", "labels", "annotations"],
            "properties": {
                "alert": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
                "expr": {"type": "string", "minLength": 1},
                "for": {"type": "string", "pattern": DURATION},
                "keep_firing_for": {"type": "string", "pattern": DURATION},
                "labels": {
                    "type": "object",
                    "required": ["severity"],
                    "properties": {"severity": {"enum": ["critical", "warning", "info"]}},
                    "propertyNames": {"pattern": "^[a-zA-Z_][a-zA-Z0-9_]*$"},
                    "additionalProperties": {"type": "string"},
                },
                "annotations": {
                    "type": "object",
                    "required": ["summary", "description"],
                    "additionalProperties": {"type": "string", "minLength": 1},
                },
            },
        }
    },
}

GRID = {
    "type": "object",
    "required": ["h", "w", "x", "y"],
    "properties": {
        "h": {"type": "integer", "minimum": 1},
        "w": {"type": "integer", "minimum": 1, "maximum": 24},
        "x": {"type": "integer", "minimum": 0, "maximum": 23},
        "y": {"type": "integer", "minimum": 0},
    },
}
PROMETHEUS_DATASOURCE = {
    "type": "object",
    "required": ["type", "uid"],
    "properties": {"type": {"const": "prometheus"}, "uid": {"const": "${datasource}"}},
}
DASHBOARD_SCHEMA: dict[str, Any] = {
    # What Grafana (10 and later) needs to import or provision the dashboard, and what makes
    # it portable: every query on the datasource chosen in the `datasource` variable.
    "type": "object",
    "required": ["uid", "title", "schemaVersion", "panels", "templating", "time"],
    "properties": {
        "id": {"type": "null"},  # a provisioned or imported dashboard must not carry one
        "uid": {"type": "string", "pattern": "^[a-zA-Z0-9_-]{1,40}$"},
        "title": {"type": "string", "minLength": 1},
        "schemaVersion": {"type": "integer", "minimum": 36},
        "time": {
            "type": "object",
            "required": ["from", "to"],
            "properties": {"from": {"type": "string"}, "to": {"type": "string"}},
        },
        "refresh": {"type": "string"},
        "templating": {
            "type": "object",
            "required": ["list"],
            "properties": {"list": {"type": "array", "items": {"$ref": "#/$defs/variable"}}},
        },
        "panels": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/panel"}},
    },
    "$defs": {
        "variable": {
            "type": "object",
            "required": ["name", "type"],
            "properties": {
                "name": {"type": "string", "pattern": "^[a-zA-Z_][a-zA-Z0-9_]*$"},
                "type": {"enum": ["datasource", "query", "custom", "constant", "interval"]},
            },
            "if": {"properties": {"type": {"const": "query"}}},
            "then": {
                "required": ["datasource", "query"],
                "properties": {
                    "datasource": PROMETHEUS_DATASOURCE,
                    "query": {"type": "string", "pattern": r"^label_values\(.+\)$"},
                },
            },
            "else": {
                "if": {"properties": {"type": {"const": "datasource"}}},
                "then": {"required": ["query"], "properties": {"query": {"const": "prometheus"}}},
            },
        },
        "panel": {
            "type": "object",
            "required": ["id", "type", "title", "gridPos"],
            "properties": {
                "id": {"type": "integer", "minimum": 1},
                "type": {"enum": ["row", "timeseries", "stat", "table", "gauge", "text"]},
                "title": {"type": "string", "minLength": 1},
                "gridPos": GRID,
            },
            "if": {"properties": {"type": {"const": "row"}}},
            "then": {
                "required": ["collapsed", "panels"],
                "properties": {"gridPos": {"properties": {"w": {"const": 24}, "h": {"const": 1}}}},
            },
            "else": {
                "required": ["datasource", "targets"],
                "properties": {
                    "datasource": PROMETHEUS_DATASOURCE,
                    "targets": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["refId", "expr", "datasource"],
                            "properties": {
                                "refId": {"type": "string", "pattern": "^[A-Z]$"},
                                "expr": {"type": "string", "minLength": 1},
                                "datasource": PROMETHEUS_DATASOURCE,
                                "legendFormat": {"type": "string"},
                            },
                        },
                    },
                },
            },
        },
    },
}


# ---------------------------------------------------------------------------- helpers


def exported_series() -> set[str]:
    """Every series name this code's /metrics page can carry (a labelled metric with no
    series yet still has its # TYPE line; its sample names follow from the type)."""
    names = set()
    for family in text_string_to_metric_families(generate_latest().decode()):
        names |= {family.name + suffix for suffix in SUFFIXES[family.type]}
        names |= {sample.name for sample in family.samples}
    return names


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])  # the panels of a collapsed row


def dashboard_queries(board: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) of every query: the panels' targets and the variables' selectors."""
    for panel in panels(board):
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r} {target['refId']}", target["expr"]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            selector = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", variable["query"])
            assert selector, f"variable {variable['name']}: {variable['query']}"
            yield f"variable {variable['name']}", selector.group(1)


def unknown_metrics(parsed: Parsed, exported: set[str]) -> set[str]:
    return {s.metric for s in parsed.selectors if s.metric and s.metric not in exported}


TEMPLATE = re.compile(r"{{(.*?)}}", re.DOTALL)
TEMPLATE_BODY = re.compile(
    r"\s*\$(labels\.(?P<label>[a-zA-Z_]\w*)|value)"
    r"(\s*\|\s*(humanize|humanize1024|humanizeDuration|humanizePercentage))?\s*"
)


def template_labels(text: str) -> set[str]:
    """The labels an annotation's template reads; fails on what it does not understand."""
    if text.count("{{") != text.count("}}"):
        raise ValueError(f"unbalanced template: {text!r}")
    labels = set()
    for body in TEMPLATE.findall(text):
        found = TEMPLATE_BODY.fullmatch(body)
        if found is None:
            raise ValueError(f"template {{{{{body}}}}} is not $labels.NAME or $value")
        if found.group("label"):
            labels.add(found.group("label"))
    return labels


# ---------------------------------------------------------------------------- the rules


def test_rule_file_has_the_structure_prometheus_loads() -> None:
    document = yaml.safe_load(RULES.read_text())
    errors = [
        e.message for e in jsonschema_rs.validator_for(RULE_FILE_SCHEMA).iter_errors(document)
    ]
    assert errors == []
    names = [rule["alert"] for rule in rules()]
    assert len(names) == len(set(names)), "alert names repeat"
    groups = [group["name"] for group in document["groups"]]
    assert len(groups) == len(set(groups)), "group names repeat"


def test_the_issue_s_alerts_are_all_there() -> None:
    """Consumer lag, dead letters, stuck batch, outbox backlog, SLA sweep late, 5xx rate."""
    queried = {rule["alert"]: {s.metric for s in parse(rule["expr"]).selectors} for rule in rules()}
    wanted = {
        "crm_consumer_lag",
        "crm_events_deadlettered_total",
        "crm_consumer_consecutive_failures",
        "crm_outbox_pending",
        "crm_task_last_success_timestamp_seconds",
        "crm_http_request_seconds_count",
    }
    assert wanted <= set().union(*queried.values())


def test_rules_wrapped_for_the_prometheus_operator_keep_their_groups() -> None:
    """deploy/README.md wraps the file in a PrometheusRule with `sed 's/^/  /'` under spec:."""
    text = RULES.read_text()
    wrapped = "spec:\n" + "".join("  " + line for line in text.splitlines(keepends=True))
    assert yaml.safe_load(wrapped)["spec"] == yaml.safe_load(text)


@pytest.mark.parametrize("rule", rules(), ids=lambda rule: rule["alert"])
def test_rule_expression_is_valid_promql_on_exported_metrics(rule: dict[str, Any]) -> None:
    parsed = parse(rule["expr"])
    assert parsed.type == VECTOR, "an alert's expression must be an instant vector"
    assert unknown_metrics(parsed, exported_series()) == set()


@pytest.mark.parametrize("rule", rules(), ids=lambda rule: rule["alert"])
def test_rule_templates_read_labels_the_alert_carries(rule: dict[str, Any]) -> None:
    """Where the result's labels are known (an aggregation by ...), the templates may read
    only those; tests/integration/test_deploy_metrics.py checks the others against the
    labels of a running service's series."""
    parsed = parse(rule["expr"])
    for text in rule["annotations"].values():
        read = template_labels(text)
        if parsed.labels is not None:
            assert read <= parsed.labels, text
        assert not read & parsed.dropped, text


def test_checks_catch_a_misspelt_metric_and_a_wrong_template_label() -> None:
    exported = exported_series()
    assert unknown_metrics(parse("rate(crm_event_applied_total[5m])"), exported) == {
        "crm_event_applied_total"
    }
    assert unknown_metrics(parse("rate(crm_events_applied_total[5m])"), exported) == set()
    assert template_labels("{{ $labels.topic }} at {{ $value | humanize }}") == {"topic"}
    with pytest.raises(ValueError, match="is not"):
        template_labels("{{ .Labels.topic }}")
    assert not template_labels("{{ $labels.topic }}") <= parse("sum by (consumer) (x)").labels
    assert template_labels("{{ $labels.route }}") & parse("sum without (route) (x)").dropped


# ---------------------------------------------------------------------------- the dashboard


def test_dashboard_matches_what_grafana_needs() -> None:
    board = dashboard()
    errors = [e.message for e in jsonschema_rs.validator_for(DASHBOARD_SCHEMA).iter_errors(board)]
    assert errors == []


def test_dashboard_panels_have_unique_ids_and_fit_the_grid_without_overlap() -> None:
    board = dashboard()
    ids = [panel["id"] for panel in panels(board)]
    assert len(ids) == len(set(ids))
    taken: dict[tuple[int, int], str] = {}
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in taken, f"{panel['title']} overlaps {taken[(x, y)]}"
                taken[(x, y)] = panel["title"]
    for panel in panels(board):
        refs = [target["refId"] for target in panel.get("targets", [])]
        assert len(refs) == len(set(refs)), panel["title"]


def test_dashboard_uses_only_defined_variables() -> None:
    board = dashboard()
    defined = {variable["name"] for variable in board["templating"]["list"]}
    text = DASHBOARD.read_text()
    used = set(re.findall(r"\$\{?([a-zA-Z_]\w*)", text)) - {"__rate_interval", "__interval"}
    assert used <= defined
    assert "datasource" in defined


def test_dashboard_queries_are_valid_promql_on_exported_metrics() -> None:
    exported = exported_series()
    queries = list(dashboard_queries(dashboard()))
    assert queries
    for where, query in queries:
        parsed = parse_grafana(query)
        assert parsed.type == VECTOR, where
        assert unknown_metrics(parsed, exported) == set(), where


def test_dashboard_schema_refuses_a_panel_grafana_cannot_place() -> None:
    board = dashboard()
    broken = json.loads(json.dumps(board))
    del broken["panels"][1]["gridPos"]
    broken["panels"][2]["targets"][0]["datasource"] = {"type": "loki", "uid": "x"}
    validator = jsonschema_rs.validator_for(DASHBOARD_SCHEMA)
    assert len(list(validator.iter_errors(broken))) >= 2


# ---------------------------------------------------------------------------- the documentation


def test_readme_lists_every_metric_and_every_alert() -> None:
    """deploy/README.md's tables of metrics and alerts are those of the code and the rules."""
    readme = README.read_text()
    listed_metrics = set(
        re.findall(r"^\| `(crm_\w+)` \| (?:gauge|counter|histogram)", readme, re.M)
    )
    families = text_string_to_metric_families(generate_latest().decode())
    exported = {
        family.name + ("_total" if family.type == "counter" else "")
        for family in families
        if family.name.startswith("crm_") and not family.name.endswith("_created")
    }
    assert listed_metrics == exported
    listed_alerts = set(re.findall(r"^\| `(Crm\w+)` \| (?:critical|warning|info) \|", readme, re.M))
    assert listed_alerts == {rule["alert"] for rule in rules()}
