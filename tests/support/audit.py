"""``make audit``: each pinned runtime dependency, its latest release and its known vulnerabilities.

Latest releases come from the package index through pip, vulnerabilities through pip-audit.
Whatever could not be asked is said so, with exit status 2: this never prints "no known
vulnerabilities" for a database it did not reach. Exit 1: a vulnerability is known.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = ROOT / "layers" / "csbs_trigger" / "requirements.txt"
_PIN = re.compile(r"([A-Za-z0-9_.\-]+)==(\S+)")


def pins(path: Path) -> dict[str, str]:
    return {
        match.group(1): match.group(2)
        for line in path.read_text().splitlines()
        if (match := _PIN.fullmatch(line.split("#")[0].strip()))
    }


def latest(name: str) -> str | None:
    """The newest release the index offers, or None when the index cannot be asked."""
    try:
        answer = subprocess.run(
            [sys.executable, "-m", "pip", "index", "versions", name, "--disable-pip-version-check"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return None
    match = re.match(rf"{re.escape(name)} \(([^)]+)\)", answer.stdout, re.IGNORECASE)
    return match.group(1) if match else None


def vulnerabilities(path: Path) -> dict[str, list[str]] | str:
    """Vulnerability ids per package, or why the database could not be asked."""
    command = [sys.executable, "-m", "pip_audit", "--requirement", str(path), "--no-deps",
               "--disable-pip", "--format", "json", "--progress-spinner", "off"]  # fmt: skip
    try:
        answer = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    except subprocess.TimeoutExpired:
        return "pip-audit did not answer within 5 minutes"
    try:
        report = json.loads(answer.stdout)
    except ValueError:
        last = (answer.stderr.strip().splitlines() or ["no output"])[-1]
        return f"pip-audit could not check ({last[:200]})"
    return {
        dependency["name"].lower(): [vuln["id"] for vuln in dependency.get("vulns", [])]
        for dependency in report.get("dependencies", [])
    }


def main() -> int:
    pinned = pins(REQUIREMENTS)
    found = vulnerabilities(REQUIREMENTS)
    unchecked = isinstance(found, str)
    rows = [("package", "pinned", "latest", "known vulnerabilities")]
    for name, version in pinned.items():
        newest = latest(name)
        unchecked = unchecked or newest is None
        if isinstance(found, str):
            vulns = "NOT CHECKED"
        else:
            ids = found.get(name.lower().replace("_", "-"), found.get(name.lower()))
            vulns = "NOT CHECKED" if ids is None else ", ".join(ids) or "none known"
            unchecked = unchecked or ids is None
        rows.append((name, version, newest or "index not reached", vulns))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    if isinstance(found, str):
        print(f"\nvulnerability database not reached: {found}")
    if not isinstance(found, str) and any(found.values()):
        return 1
    if unchecked:
        print("\naudit incomplete: what says NOT CHECKED or 'index not reached' was not checked")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
