"""Offline check of template.yaml: expand the SAM transform, then cfn-lint the result.

cfn-lint on the raw SAM file misses wrong Ref/GetAtt names inside environment variables,
dead-letter targets and Outputs; on the expanded template it sees every resource SAM creates.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from samtranslator.model.exceptions import InvalidDocumentException
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

# Where operations teams near Open Telekom Cloud deploy, plus the default region.
REGIONS = ["eu-central-1", "eu-west-1", "eu-north-1", "us-east-1"]


class _NoManagedPolicies:
    """The translator asks IAM for managed policy ARNs; offline there are none to look up."""

    def load(self) -> dict[str, str]:
        return {}


def expand(template_path: Path) -> dict[str, Any]:
    template = yaml_parse(template_path.read_text())
    for resource in template["Resources"].values():
        properties = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if isinstance(properties.get(key), str):  # local paths become what `sam package` makes
                properties[key] = f"s3://csbs-trigger-artifacts/{properties[key]}.zip"
    os.environ.setdefault("AWS_DEFAULT_REGION", "eu-central-1")
    expanded: dict[str, Any] = transform(template, {}, _NoManagedPolicies())
    return expanded


def main(argv: list[str]) -> int:
    # Only the check itself lints: the tests that expand the template (each pytest worker
    # imports this module) are spared cfn-lint's import, half a second each.
    from cfnlint.api import lint

    template_path = Path(argv[1] if len(argv) > 1 else "template.yaml")
    try:
        expanded = expand(template_path)
    except InvalidDocumentException as exc:
        for cause in exc.causes:
            print(f"SAM transform: {cause.message}")
        return 1
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(expanded, handle, indent=1)
    try:
        # SAM wraps the integration of a conditional function in a Fn::If on that condition
        # inside an API that already has it: W1028 on the expanded template is SAM's, not ours.
        expanded_matches = [
            match
            for match in lint(Path(handle.name).read_text(), regions=REGIONS)
            if match.rule.id != "W1028"
        ]
        matches = expanded_matches + lint(template_path.read_text(), regions=REGIONS)
    finally:
        os.unlink(handle.name)
    # Errors and warnings fail the check; informational rules are advice, except I4010,
    # which asks for AI-oriented "Context" metadata on every resource.
    findings = [match for match in matches if match.rule.id != "I4010"]
    for match in findings:
        print(f"{match.rule.id} {match.message} (line {match.linenumber})")
    failures = [match for match in findings if match.rule.id[0] in "EW"]
    types = ", ".join(sorted({res["Type"] for res in expanded["Resources"].values()}))
    print(
        f"template check: {len(expanded['Resources'])} resources after the SAM transform ({types})"
    )
    print(f"template check: {len(failures)} cfn-lint errors or warnings")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
