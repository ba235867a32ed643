"""Mutation testing of the core modules: do the tests fail when the code is wrong?

mutmut (pinned in requirements-dev.txt) wants the code under ``src/`` and reruns pytest in its
own process. Each module gets a workspace of its own in ``build/mutation/<module>``: the
package as ``src/csbs_trigger``, the tests and what they read (functions, events, the template),
and a pyproject whose ``[tool.mutmut]`` mutates that one module against the tests that matter
for it (mutmut then runs, per mutant, only those of them that reach the mutated function).

Every survivor must be listed in ``tests/mutation-survivors.txt`` with a one-line reason
(an equivalent mutant, a log text only). The table printed at the end gives killed and survived
per module; the goal is at least 90 % killed per module, and no survivor left unreviewed.

    make mutation                      # every module (about an hour on two cores)
    make mutation ARGS="errors runner" # some of them
    make mutation ARGS=--report        # the last run's table, against the reviewed list now
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "layers" / "csbs_trigger" / "csbs_trigger"
WORKSPACES = ROOT / "build" / "mutation"
REVIEWED = ROOT / "tests" / "mutation-survivors.txt"
GOAL = 0.90

# Each module and the tests that check it (mutmut narrows these per function it mutates).
MODULES: dict[str, list[str]] = {
    "errors": ["test_parsing", "test_error_categories", "test_fault_matrix",
               "test_pinned_behaviour"],
    "cloud/csbs": ["test_fault_matrix", "test_pinned_behaviour", "test_checkpoint_items",
                   "test_credential_lifecycle", "test_log_lines", "test_resolution",
                   "test_expiry"],
    "aws/idempotency": ["test_exactly_once", "test_pinned_behaviour", "test_hostile_input"],
    "triggers/webhook_auth": ["test_webhook_auth", "test_webhooks", "test_pinned_behaviour"],
    "cloud/signing": ["test_signing", "test_auth"],
    "runner": ["test_scheduled_backup", "test_exactly_once", "test_hostile_input",
               "test_completion_tracking", "test_webhooks", "test_log_lines",
               "test_pinned_behaviour", "test_expiry", "test_scale_out", "test_cbr",
               "test_digest", "test_resolution"],
    "triggers/events": ["test_events", "test_scheduled_backup"],
    "cloud/transport": ["test_transport", "test_fault_matrix", "test_pinned_behaviour"],
    "tracker": ["test_completion_tracking", "test_operational_trouble", "test_log_lines",
                "test_scale_out"],
    "completion": ["test_completion", "test_completion_tracking"],
    "aws/tracking": ["test_completion_tracking"],
    "cloud/checkpoint_items": ["test_checkpoint_items"],
    "cloud/api": ["test_fault_matrix", "test_pinned_behaviour", "test_credential_lifecycle",
                  "test_auth", "test_log_lines", "test_cbr"],
    "cloud/cbr": ["test_cbr", "test_cbr_drift", "test_fault_matrix", "test_bounds",
                  "test_standin_wire", "test_audited_promises", "test_resolution", "test_expiry"],
    "digest": ["test_digest"],
    "history": ["test_digest", "test_expiry"],
    "triggers/queued": ["test_scale_out", "test_audited_promises", "test_plan_worker",
                        "test_resolution"],
    "aws/login_refusals": ["test_lockout", "test_operational_trouble"],
    "writeback": ["test_ticket_writeback"],
    "tickets/note": ["test_ticket_note"],
    "tickets/clients": ["test_ticket_clients"],
    "tickets/systems": ["test_ticket_systems"],
    "expiry": ["test_expiry"],
    "aws/expiry_register": ["test_expiry"],
    "aws/ticket_ledger": ["test_ticket_writeback"],
    "resolution": ["test_resolution_steps", "test_resolution"],
    "cloud/ecs": ["test_resolution", "test_standin_wire"],
    "values": ["test_values"],
    "text": ["test_audited_promises", "test_operational_trouble", "test_bounds",
             "test_hostile_input", "test_checkpoint_items", "test_events", "test_digest"],
}  # fmt: skip
# What the tests read besides the package and themselves.
ALSO_COPY = ["functions", "events", "template.yaml", "README.md"]
KILLED = {1, 3}
SURVIVED = {0}


def workspace(module: str) -> Path:
    """A fresh copy of what the module's tests need, the package under src/. Nothing of an
    earlier run is kept: mutmut would reuse its verdicts even where the tests have changed."""
    folder = WORKSPACES / module.replace("/", ".")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", ".hypothesis")
    shutil.copytree(PACKAGE, folder / "src" / "csbs_trigger", ignore=ignore)
    shutil.copytree(ROOT / "tests", folder / "tests", ignore=ignore)
    for name in ALSO_COPY:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, folder / name, ignore=ignore)
        else:
            shutil.copy2(source, folder / name)
    tests = [f"tests/{name}.py" for name in MODULES[module]]
    functions = [f"functions/{path.name}" for path in sorted((ROOT / "functions").iterdir())]
    (folder / "pyproject.toml").write_text(
        "[tool.mutmut]\n"
        'source_paths = ["src"]\n'
        f'only_mutate = ["src/csbs_trigger/{module}.py"]\n'
        f"also_copy = {json.dumps(ALSO_COPY)}\n"
        f"pytest_add_cli_args_test_selection = {json.dumps(tests)}\n"
        # One order, one process: a mutant's verdict must not depend on luck.
        'pytest_add_cli_args = ["-p", "no:randomly", "-p", "no:xdist", "-p", "no:cacheprovider"]\n'
        "\n[tool.pytest.ini_options]\n"
        f"pythonpath = {json.dumps([*functions, 'tests'])}\n"
        'testpaths = ["tests"]\n'
        'addopts = "--strict-markers"\n'
        "xfail_strict = true\n"
    )
    return folder


def results(folder: Path, module: str) -> dict[str, int | None]:
    """Every mutant of the module and the exit code its tests ended with."""
    meta = folder / "mutants" / "src" / "csbs_trigger" / f"{module}.py.meta"
    exit_codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
    return exit_codes


def reviewed() -> dict[str, str]:
    """Survivors someone looked at: ``<mutant name>  <reason>`` per line, # for comments."""
    listed = {}
    for line in REVIEWED.read_text().splitlines() if REVIEWED.exists() else []:
        if line.strip() and not line.startswith("#"):
            name, _, reason = line.partition(" ")
            listed[name] = reason.strip()
    return listed


def run_mutmut(folder: Path, max_children: str) -> str | None:
    """Run mutmut in a workspace; what went wrong, or None."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["HYPOTHESIS_PROFILE"] = "mutation"  # the same examples for every mutant (conftest)
    mutmut = Path(sys.executable).with_name("mutmut")
    run = subprocess.run(
        [str(mutmut), "run", "--max-children", max_children],
        cwd=folder, env=env, check=False, capture_output=True, text=True,
    )  # fmt: skip
    if run.returncode == 0:
        return None
    return f"mutmut failed (exit {run.returncode}):\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("modules", nargs="*", help=f"default: all ({', '.join(MODULES)})")
    parser.add_argument("--max-children", default=str(os.cpu_count() or 2))
    parser.add_argument(
        "--report", action="store_true", help="no run: the last run's table, reviewed list now"
    )
    args = parser.parse_args(argv)
    modules = args.modules or list(MODULES)
    rows, unreviewed, ok = [], [], True
    known = reviewed()
    for module in modules:
        began = time.monotonic()
        print(f"\n=== {module}", flush=True)
        if args.report:
            folder, failure = WORKSPACES / module.replace("/", "."), None
        else:
            folder = workspace(module)
            failure = run_mutmut(folder, args.max_children)
        codes = results(folder, module) if (folder / "mutants").is_dir() else {}
        if failure or all(code is None for code in codes.values()):
            print(failure or "no results")
            return 2
        killed = sum(code in KILLED for code in codes.values())
        survivors = sorted(name for name, code in codes.items() if code in SURVIVED)
        other = len(codes) - killed - len(survivors)
        share = killed / (killed + len(survivors)) if killed + len(survivors) else 1.0
        unreviewed += [name for name in survivors if name not in known]
        ok = ok and share >= GOAL
        minutes = "-" if args.report else f"{(time.monotonic() - began) / 60:.1f}"
        rows.append((module, len(codes), killed, len(survivors), other, share, minutes))
        print(
            f"{killed} killed, {len(survivors)} survived, {other} other, {minutes} min",
            flush=True,
        )

    print("\n| module | mutants | killed | survived | other | killed % | minutes |")
    print("|---|---|---|---|---|---|---|")
    for module, total, killed, survived, other, share, minutes in rows:
        print(f"| {module} | {total} | {killed} | {survived} | {other} | {share:.1%} "
              f"| {minutes} |")  # fmt: skip
    print("\n(other: no test reaches it, or a timeout; killed % is of killed + survived)")
    if unreviewed:
        print(f"\n{len(unreviewed)} survivors not in {REVIEWED.relative_to(ROOT)}:")
        for name in unreviewed:
            print(f"  {name}")
        print("(mutmut show <name>, in its build/mutation/<module> folder, shows each)")
    goal_met = ok and not unreviewed
    print(f"\ngoal {GOAL:.0%} killed per module, every survivor reviewed: "
          f"{'met' if goal_met else 'NOT MET'}")  # fmt: skip
    return 0 if goal_met else 1


if __name__ == "__main__":
    raise SystemExit(main())
