"""Where suite files are found by name: ``$INFRABENCH_SUITES``, ./suites, the source tree."""

from __future__ import annotations

import os
from pathlib import Path

from harness.errors import ConfigError

SUITES_ENV = "INFRABENCH_SUITES"


def suite_dirs() -> list[Path]:
    """Where suite names are looked up: $INFRABENCH_SUITES, ./suites, the source tree's suites."""
    dirs = [Path(p) for p in os.environ.get(SUITES_ENV, "").split(os.pathsep) if p]
    dirs += [Path.cwd() / "suites", Path(__file__).resolve().parent.parent / "suites"]
    unique: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in [u.resolve() for u in unique]:
            unique.append(d)
    return unique


def suite_names() -> dict[str, Path]:
    """Every suite findable by name; earlier directories win."""
    found: dict[str, Path] = {}
    for directory in suite_dirs():
        for path in sorted(directory.glob("*.toml")):
            found.setdefault(path.stem, path)
    return found


def find_suite(name_or_path: str) -> Path:
    """A suite by file path or by name; ConfigError listing the known names otherwise."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or candidate.is_file():
        if not candidate.is_file():
            raise ConfigError(f"{candidate}: suite file not found")
        return candidate
    names = suite_names()
    if name_or_path not in names:
        raise ConfigError(
            f"unknown suite {name_or_path!r}; allowed: {', '.join(names) or '(none found)'} "
            "or a path to a .toml file"
        )
    return names[name_or_path]
