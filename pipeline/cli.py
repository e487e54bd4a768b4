"""`leadcal <stage>`: one sub-command per pipeline stage, called by dvc.yaml.

The CLI only parses arguments, loads params and calls the stage; every user-facing
problem arrives as a LeadcalError and leaves as one clear line on stderr (exit 2),
never as a traceback.

`leadcal run` runs the stages in order and stops at the first that fails; with
`--keep-going` it runs every stage that does not need the failed one (a stage needs those that
write what it reads: pipeline.stages.registry, which dvc.yaml is checked against), prints each
failure as one line, then what failed and what was skipped because of it, and exits 2.

Exit codes (pipeline.staging): 0 done; 2 a problem the user can fix (LeadcalError: bad input or
params, too little data, a full disk, a read-only or forbidden folder); 64 a mistyped command
line (an unknown option or stage, a value of the wrong type); 3 anything else, a bug:
one line on stderr naming a log file with the full traceback; 75 another leadcal run is writing
(or reading) the same output folder, try again when it ends; 130 interrupted (Ctrl-C).
A stage's outputs change together or not at all, and each output folder has one writer at a
time (pipeline.staging).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

# NumPy asks the kernel for transparent huge pages on every array of 4 MB or more (madvise). Where
# the kernel then compacts memory on the fault (defrag "madvise", the common default) that cost
# leadcal's stages up to half their time in the kernel: at 1M leads the features stage took 5.1 s of
# system time with it and 2.5 s without. NumPy reads this variable once, on import, so it is set
# here, before anything imports NumPy; a value the user set wins.
os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")

from threadpoolctl import threadpool_limits  # imported after the variable above

from pipeline import staging
from pipeline.errors import LeadcalError
from pipeline.params import Params, load_params
from pipeline.stages import registry
from pipeline.stages.registry import upstream

log = logging.getLogger("leadcal")

# What the numerical libraries read, once, when they load: OpenBLAS (numpy's and SciPy's own
# copies), OpenMP (scikit-learn), MKL, Accelerate, numexpr.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
                    "NUMEXPR_NUM_THREADS")


def limit_threads(threads: int) -> None:
    """Every numerical library of this process uses `threads` threads, whatever the shell says.

    A thread count changes the order of floating-point sums, so fits round differently in
    the last bits: `threads` is part of the determinism promise. threadpoolctl only limits
    the libraries already loaded, and leadcal loads SciPy and scikit-learn lazily (their
    OpenBLAS and OpenMP read the variables above when they load), so both are set here,
    before any of them is imported.
    """
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    threadpool_limits(threads)


def use_jemalloc_for_arrow() -> None:
    """Arrow's buffers (Parquet reads and writes, DuckDB results) from jemalloc, not the wheel's
    default mimalloc, unless ARROW_DEFAULT_MEMORY_POOL says otherwise.

    On a 30M-event run mimalloc handed pages back to the kernel and faulted them in again
    between batches: the close-rates stage spent more CPU in the kernel than in Python
    (14.4 s of CPU, 8.8 s of it system); with jemalloc it took 9.8 s and the features stage
    11 % less (medians of runs paired one against the other). The allocator changes no result.
    Where pyarrow is built without jemalloc (Windows), its default stays.
    """
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return
    import pyarrow as pa

    try:
        pa.set_memory_pool(pa.jemalloc_memory_pool())
    except NotImplementedError:
        pass


def for_stage(name: str, params: Params) -> Params:
    """params as stage `name` reads them: after extract, adjusted for a snapshot export (pipeline.design)."""
    if name in ("generate", "extract"):
        return params
    from pipeline.stages.mode import effective_params

    return effective_params(params)


# Each stage's command, summary and function, declared once in pipeline.stages.registry (with the
# params it reads and the artifacts it reads and writes, which dvc.yaml must match).
STAGES: dict[str, tuple[Callable[[Params], object], str]] = {
    stage.name: (stage.run, stage.summary) for stage in registry.STAGES}


def run_keep_going(names: list[str], params: Params, command: str = "run") -> int:
    """Every stage of `names` in order, past failures: a stage runs unless a stage it needs
    (pipeline.stages.registry.upstream, transitively) failed or was skipped. Each failure is one line on stderr, then a
    summary of what failed and what was skipped because of it. 0 if nothing failed, else 2 (as
    for any data error). Only LeadcalErrors are failures: anything else is a bug and stops the run."""
    failed: dict[str, str] = {}
    skipped: dict[str, list[str]] = {}  # stage: the stages it needs that failed or were skipped
    for name in names:
        needs = upstream(name, params.paths)
        missing = [up for up in needs if up in failed or up in skipped]
        if missing:
            skipped[name] = missing
            log.info("%s skipped: it needs %s", name, ", ".join(missing))
            continue
        started = time.perf_counter()
        try:
            with staging.stage_outputs(name, params.paths, needs):
                STAGES[name][0](for_stage(name, params))
        except LeadcalError as exc:
            failed[name] = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())  # one line each
            print(f"leadcal {command}: error: {name}: {failed[name]}", file=sys.stderr)
            continue
        log.info("%s done in %.1f s", name, time.perf_counter() - started)
    if not failed:
        return 0
    print(f"leadcal {command}: failed: {', '.join(failed)}", file=sys.stderr)
    if skipped:
        print(f"leadcal {command}: skipped, they need what failed: "
              + ", ".join(f"{name} (needs {', '.join(needs)})" for name, needs in skipped.items()), file=sys.stderr)
    ran = [name for name in names if name not in failed and name not in skipped]
    print(f"leadcal {command}: ran: {', '.join(ran) or 'nothing'}", file=sys.stderr)
    return 2


def _version() -> str:
    """The installed package's version (pyproject.toml), for bug reports and run logs."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("leadcal")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


class _OneLineParser(argparse.ArgumentParser):
    """argparse's usage errors as one line, like every other leadcal error (argparse prints the
    whole usage first), pointing to --help; exit 64 (EX_USAGE), not argparse's 2, which leadcal
    keeps for problems in the data or params, so a script can tell the two apart."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(staging.EXIT_USAGE, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="leadcal", description="Lead-scoring calibration pipeline.")
    parser.add_argument("--version", action="version", version=f"leadcal {_version()}")
    parser.add_argument("--params", "--config", dest="params", default="params.yaml",
                        help="params file (default: params.yaml)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    # the same option after the sub-command too: `leadcal run --config examples/olist/params.yaml`
    common = _OneLineParser(add_help=False)
    common.add_argument("--params", "--config", dest="params", default=argparse.SUPPRESS,
                        help="params file (default: params.yaml)")
    sub = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")
    for add in (_add_stages, _add_score, _add_plan, _add_push, _add_init):
        add(sub, common)
    return parser


def _add_stages(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """One sub-command per stage, and `run` (every stage in order)."""
    for name, (_, help_text) in STAGES.items():
        stage_parser = sub.add_parser(name, help=help_text, parents=[common])
        if name == "generate":
            stage_parser.add_argument(
                "--one-row-per-lead", type=Path, default=None, metavar="PATH",
                help="instead of the contract tables, write the same simulated history as a CRM's lead list: one CSV "
                     "row per matured lead, no dates, a Converted column (pipeline/data/sample_export.py), to the file PATH")
            stage_parser.add_argument(
                "--leads", type=int, default=None, metavar="N",
                help="with --one-row-per-lead: leads to simulate (default 10000, not generate.n_leads; about 86 %% "
                     "of them are matured and written)")
    runner = sub.add_parser("run", parents=[common],
                            help="every stage in order, without DVC (prefer `dvc repro`); generate only for the sample data")
    runner.add_argument("--keep-going", action="store_true",
                        help="after a failing stage, still run every stage that does not need it; list what failed and "
                             "what was skipped, exit 2")


def _add_score(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """`leadcal score`: new leads scored with the published model and points table."""
    scorer = sub.add_parser("score", parents=[common], help="score new leads with the published model and points table")
    scorer.add_argument("input", type=Path, help="folder with leads and activities (and optionally stages), CSV or Parquet")
    scorer.add_argument("--out", type=Path, required=True, help="output file, .csv or .parquet")
    scorer.add_argument("--as-of", type=datetime.fromisoformat, default=None,
                        help="score as of this date or moment, e.g. 2025-06-30 or 2025-06-30T14:00 (default: the latest "
                             "timestamp in the input)")
    scorer.add_argument("--batch-size", type=int, default=50_000, help="leads per batch (default 50000)")
    scorer.add_argument("--models", type=Path, default=None, help="published artifacts (default: params paths.models)")
    scorer.add_argument("--keep", type=lambda text: [name.strip() for name in text.split(",") if name.strip()],
                        default=None, metavar="COLUMNS",
                        help="input lead columns to copy beside lead_id, comma-separated (e.g. email,hs_object_id), "
                             "to write the scores back to the CRM")


def _add_plan(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """`leadcal plan`: the leads needed to win a number of customers or a revenue."""
    planner = sub.add_parser("plan", parents=[common], help="leads (and MQLs, SQLs) needed to win a number of customers or a revenue")
    target = planner.add_mutually_exclusive_group(required=True)
    target.add_argument("--customers", type=int, help="customers to win")
    target.add_argument("--revenue", type=float, help="revenue to win (with the average deal size)")
    planner.add_argument("--average-deal", type=float, default=None,
                         help="average deal size for --revenue (default: mean amount of the customers in the data)")
    planner.add_argument("--out", type=Path, default=None, help="also write the plan as JSON")


def _add_push(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """`leadcal push`: the published points into a CRM through its API."""
    pusher = sub.add_parser("push", parents=[common],
                            help="put the published points into a CRM through its API (HubSpot, Mautic), a dry run first")
    pusher.add_argument("crm", choices=["hubspot", "mautic"],
                        help="the CRM (credentials from HUBSPOT_ACCESS_TOKEN, or MAUTIC_URL, MAUTIC_USERNAME, MAUTIC_PASSWORD)")
    mode = pusher.add_mutually_exclusive_group(required=True)
    mode.add_argument("--dry-run", action="store_true", help="print what would change; send nothing but reads")
    mode.add_argument("--apply", action="store_true", help="create and update what differs (HubSpot: as a draft)")
    pusher.add_argument("--include-unmapped", action="store_true",
                        help="also push rules still in leadcal's names (Mautic: point actions without ids count ANY)")
    pusher.add_argument("--publish", action="store_true",
                        help="HubSpot: publish the draft after saving it (HubSpot then re-evaluates every contact)")
    pusher.add_argument("--contacts", type=Path, default=None, metavar="SCORES",
                        help="HubSpot: also write probability, grade and MQL flag to contacts from this `leadcal score` "
                             "output (scored with --keep hs_object_id or --keep email)")


def _add_init(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """`leadcal init`: a starter params file for an export."""
    starter = sub.add_parser("init", help="profile an export and write a commented starter params file for it")
    starter.add_argument("export", type=Path, metavar="EXPORT",
                         help="a CSV or Parquet file (one row per lead), or a folder of them")
    starter.add_argument("--out", type=Path, default=Path("params.init.yaml"),
                         help="params file to write (default: params.init.yaml)")
    starter.add_argument("--force", action="store_true", help="overwrite --out if it exists")


def main(argv: list[str] | None = None) -> int:
    """`leadcal ...`; no traceback ever reaches the user: an unexpected error is one line naming a
    log file with the traceback (exit 3), Ctrl-C one line (exit 130)."""
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if a in STAGES or a in ("run", "score", "plan", "init", "push")), "")
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print(f"leadcal {command}: interrupted; run it again (paths.extracted and paths.features keep their "
              "previous outputs; in models/ the stage stays marked unfinished until it is run again)", file=sys.stderr)
        return staging.EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - the last resort: one line and a log file, not a traceback
        return staging.report_crash(exc, command, argv)


def _main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.stage == "push" and args.crm == "mautic" and (args.publish or args.contacts):
        parser.error("--publish and --contacts are for `leadcal push hubspot`")
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr,
    )
    if args.stage == "init":  # writes a params file, so it reads none
        return _init(args)
    try:
        params = load_params(args.params)
        limit_threads(params.threads)  # for the whole process: every fit and prediction
        use_jemalloc_for_arrow()
        command = {"score": _score, "push": _push, "plan": _plan}.get(args.stage)
        if command is not None:
            return command(args, params)
        if args.stage == "generate" and (args.one_row_per_lead is not None or args.leads is not None):
            return _one_row_per_lead(args, params)
        return _run_stages(args, params)
    except LeadcalError as exc:
        print(f"leadcal {args.stage}: error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", staging.EXIT_USER_ERROR)


def _init(args: argparse.Namespace) -> int:
    from pipeline.commands.init import init

    try:
        result = init(args.export, args.out, args.force)
    except LeadcalError as exc:
        print(f"leadcal init: error: {exc}", file=sys.stderr)
        return 2
    print(result.summary)
    for warning in result.profile.warnings:
        print(f"leadcal init: warning: {warning}", file=sys.stderr)
    return 0


def _one_row_per_lead(args: argparse.Namespace, params: Params) -> int:
    if args.one_row_per_lead is None:
        raise LeadcalError("--leads goes with --one-row-per-lead PATH (the contract tables take generate.n_leads)")
    from pipeline.data.sample_export import write_one_row_per_lead

    write_one_row_per_lead(params, args.one_row_per_lead, args.leads)
    return 0


def _score(args: argparse.Namespace, params: Params) -> int:
    from pipeline.commands.score import score

    models = Path(args.models or params.paths.models)
    with staging.reading(models):  # no stage may rewrite the model while it scores
        staging.refuse_interrupted(("weights", "train", "thresholds"), models, "leadcal score")
        score(args.input, args.out, params, args.as_of, args.batch_size, models, args.keep)
    return 0


def _push(args: argparse.Namespace, params: Params) -> int:
    from pipeline.exports.push_hubspot import push_hubspot
    from pipeline.exports.push_mautic import push_mautic

    models = Path(params.paths.models)
    with staging.reading(models):  # the exports stage may not rewrite the file while it is pushed
        staging.refuse_interrupted(("exports",), models, "leadcal push")
        if args.crm == "hubspot":
            push_hubspot(models / "exports" / "hubspot_score_configuration.json", args.apply, args.publish,
                         args.include_unmapped, args.contacts)
        else:
            push_mautic(models / "exports" / "mautic_point_actions.json", args.apply, args.include_unmapped)
    return 0


def _plan(args: argparse.Namespace, params: Params) -> int:
    from pipeline.commands.planner import format_plan, plan

    result = plan(for_stage("plan", params), customers=args.customers, revenue=args.revenue, average_deal=args.average_deal)
    print(format_plan(result))
    if args.out:
        from pipeline import io

        io.write_json(args.out, result)
    return 0


def _run_stages(args: argparse.Namespace, params: Params) -> int:
    """`leadcal <stage>` or `leadcal run`: each stage under its output locks and manifest."""
    names = list(STAGES) if args.stage == "run" else [args.stage]
    if args.stage == "run" and (params.source.leads is not None or params.paths.raw != params.paths.sample):
        names.remove("generate")  # a real export: nothing to generate
    with staging.locked_outputs(names, params.paths):  # one leadcal run per output folder
        if args.stage == "run" and args.keep_going:
            return run_keep_going(names, params)
        for name in names:
            started = time.perf_counter()
            with staging.stage_outputs(name, params.paths, upstream(name, params.paths)):
                STAGES[name][0](for_stage(name, params))
            log.info("%s done in %.1f s", name, time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
