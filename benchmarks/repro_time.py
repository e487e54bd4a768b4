"""How long the default `dvc repro` takes, from nothing, on this machine.

Not a test: prints figures and writes benchmarks/results/repro_time.json. The run is
done in a fresh copy of the tracked files (no DVC cache), three ways:

- baseline: `leadcal run` (every stage in one process, no DVC);
- `dvc repro` from nothing (what an analyst's first run costs);
- `dvc repro` again with nothing changed (should be near zero).

Figures are wall-clock seconds, peak memory of the child processes, and ratios against
the baseline measured in the same run. Target (issue 2): the first `dvc repro` < 120 s.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def copy_project(target: Path) -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for name in tracked:
        if (REPO / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, target / name)
    for command in (["git", "init", "-q"], ["git", "add", "-A"],
                    ["git", "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "copy"]):
        subprocess.run(command, cwd=target, check=True)


def timed(args: list[str], cwd: Path) -> float:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    started = time.perf_counter()
    subprocess.run(args, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        baseline_dir, dvc_dir = root / "baseline", root / "dvc"
        for folder in (baseline_dir, dvc_dir):
            folder.mkdir()
            copy_project(folder)
        baseline = timed([str(BIN / "leadcal"), "-q", "run"], baseline_dir)
        first = timed([str(BIN / "dvc"), "repro"], dvc_dir)
        again = timed([str(BIN / "dvc"), "repro"], dvc_dir)
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    results = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "baseline_leadcal_run_s": round(baseline, 2),
        "dvc_repro_first_s": round(first, 2),
        "dvc_repro_unchanged_s": round(again, 2),
        "dvc_overhead_ratio": round(first / baseline, 2),
        "unchanged_vs_baseline_ratio": round(again / baseline, 3),
        "peak_child_memory_mib": round(peak_mib, 1),
        "target_first_run_s": 120,
        "meets_target": first < 120,
    }
    out = REPO / "benchmarks" / "results" / "repro_time.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    for key, value in results.items():
        print(f"{key:32} {value}")
    print(f"written to {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
