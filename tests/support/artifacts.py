"""What `sam build` made: the artifact folders of template.yaml's functions and layer.

``python -m support.artifacts`` prints each one's size zipped as `sam package` uploads it, and
fails when the layer exceeds its budget.
"""

from __future__ import annotations

import io
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from support.local_aws import read_template

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / ".aws-sam" / "build"
LAYER_BUDGET_BYTES = 2_500_000


@dataclass(frozen=True)
class Artifact:
    logical_id: str
    kind: str  # "function" or "layer"
    folder: Path
    handler: str | None = None


def artifacts(build: Path = BUILD) -> list[Artifact]:
    found = []
    for logical_id, resource in read_template()["Resources"].items():
        kind = {"AWS::Serverless::Function": "function",
                "AWS::Serverless::LayerVersion": "layer"}.get(resource["Type"])  # fmt: skip
        if kind:
            handler = resource["Properties"].get("Handler")
            found.append(Artifact(logical_id, kind, build / logical_id, handler))
    return found


def zipped_size(folder: Path) -> int:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder))
    return buffer.tell()


def main() -> int:
    over = False
    for artifact in artifacts():
        if not artifact.folder.is_dir():
            print(f"{artifact.logical_id}: not built (run make package)")
            return 1
        size = zipped_size(artifact.folder)
        files = sum(1 for path in artifact.folder.rglob("*") if path.is_file())
        budget = f" (budget {LAYER_BUDGET_BYTES / 1e6:.1f} MB)" if artifact.kind == "layer" else ""
        print(f"{artifact.kind:8} {artifact.logical_id:24} {size / 1e3:8.1f} kB zipped, "
              f"{files} files{budget}")  # fmt: skip
        over = over or (artifact.kind == "layer" and size > LAYER_BUDGET_BYTES)
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
