"""Which checks run, with which limits: the default set, or a YAML file (``--checks``).

The file maps check names to their limits; a check left out keeps its
defaults, ``enabled: false`` turns one off::

    dead_channels:
      warning: 0.01
      bad: 0.05
    sync_missing:
      enabled: false

Unknown checks and unknown or non-numeric limits are one-line errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml

from exporter.quality.checks import Check


class ChecksConfigError(Exception):
    """A checks file that cannot be used; ``str()`` is one line naming the file."""


def build_checks(catalog: Sequence[type[Check]], path: str | Path | None = None) -> list[Check]:
    """The configured checks, in catalog order."""
    settings = _read(path) if path is not None else {}
    by_name = {cls.name: cls for cls in catalog}
    unknown = sorted(set(settings) - set(by_name))
    if unknown:
        raise ChecksConfigError(f"{path}: unknown check(s) {', '.join(unknown)} "
                                f"(known: {', '.join(by_name)})")
    checks = []
    for cls in catalog:
        limits = dict(settings.get(cls.name) or {})
        if not limits.pop("enabled", True):
            continue
        bad = sorted(set(limits) - set(cls.defaults))
        if bad:
            raise ChecksConfigError(f"{path}: {cls.name}: unknown limit(s) {', '.join(bad)} "
                                    f"(known: {', '.join(cls.defaults)}, enabled)")
        for name, value in limits.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ChecksConfigError(f"{path}: {cls.name}.{name} must be a number")
        check = cls(limits)
        if check.limits.get("warning", 0) > check.limits.get("bad", 0):
            raise ChecksConfigError(f"{path}: {cls.name}: warning must not be above bad")
        checks.append(check)
    return checks


def _read(path: str | Path) -> dict:
    path = Path(path)
    try:
        settings = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ChecksConfigError(f"{path}: no such checks file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ChecksConfigError(f"{path}: cannot read the checks file ({error})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ChecksConfigError(f"{path}: not valid YAML{where}") from None
    if settings is None:
        return {}
    if not isinstance(settings, dict) or not all(
            isinstance(v, dict | None) for v in settings.values()):
        raise ChecksConfigError(f"{path}: expected a mapping of check name -> limits")
    return settings


def describe_checks(checks: Sequence[Check]) -> str:
    """What ``larpix-monitor checks`` prints: one block per check with its limits."""
    lines = []
    for check in checks:
        needs = " (needs --reference)" if check.needs_reference else ""
        lines.append(f"{check.name}{needs}: {check.description}")
        lines.append("    " + ", ".join(f"{k}={v:g}" for k, v in check.limits.items()))
    return "\n".join(lines)
