"""Every artifact of a run, hashed: to show that a change of code changes no output.

A refactor (issue 18) or a speed-up must leave every artifact byte-identical. Run the
pipeline, record the hashes, change the code, run it again, compare:

    leadcal run && python scripts/output_hashes.py --out /tmp/before.json
    ... change the code ...
    leadcal run && python scripts/output_hashes.py --compare /tmp/before.json

    # the Olist example (its outputs live beside its params file)
    python scripts/output_hashes.py --config examples/olist/params.yaml --out /tmp/olist.json

Hashed: every file under the params' paths.sample (the generated data), paths.extracted,
paths.features and paths.models
(the run's logs and the previous publication kept in models/published/ included: they are
outputs too; lock files, which hold a process id, are not). Exit 1 when --compare finds a file added, missing or changed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from pipeline.params import load_params


def _bookkeeping(path: Path) -> bool:
    """A lock file (it holds the process id of the run that made it), not an artifact."""
    return path.name.endswith("leadcal-lock")


def hashes(config: Path) -> dict[str, str]:
    """path (relative to the params file's folder) -> sha256 of every output file."""
    params = load_params(config)
    base = config.resolve().parent
    found = {}
    for folder in (params.paths.sample, params.paths.extracted, params.paths.features, params.paths.models):
        root = Path(folder)
        for path in sorted(p for p in root.rglob("*") if p.is_file() and not _bookkeeping(p)):
            name = path.resolve().relative_to(base).as_posix() if path.resolve().is_relative_to(base) else path.as_posix()
            found[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def differences(now: dict[str, str], before: dict[str, str]) -> list[str]:
    lines = [f"+ {name}" for name in sorted(set(now) - set(before))]
    lines += [f"- {name}" for name in sorted(set(before) - set(now))]
    lines += [f"~ {name}" for name in sorted(set(now) & set(before)) if now[name] != before[name]]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("params.yaml"))
    parser.add_argument("--out", type=Path, default=None, help="write the hashes here (JSON)")
    parser.add_argument("--compare", type=Path, default=None, help="hashes written before; exit 1 if any differs")
    args = parser.parse_args()
    now = hashes(args.config)
    if args.out:
        args.out.write_text(json.dumps(now, indent=1, sort_keys=True) + "\n")
    if args.compare:
        lines = differences(now, json.loads(args.compare.read_text()))
        print("\n".join(lines) if lines else f"{len(now)} files, all byte-identical")
        return 1 if lines else 0
    print(f"{len(now)} files hashed" + (f" into {args.out}" if args.out else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
