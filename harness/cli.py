"""infrabench: hardware-aware benchmarking of neural-network inference (latency, throughput,
memory, energy, cost and fidelity in one table).

Exit codes: 0 ok; 1 cases failed or a significant regression; 2 bad input (including a store
or file that cannot be read or written), printed on one line; 130 interrupted.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import tempfile
from dataclasses import asdict, replace
from pathlib import Path
from typing import NoReturn

import numpy as np

from harness import __version__, runfile, strict_json
from harness.backend import availability, backend_class, backend_names
from harness.compare import (
    DEFAULT_ALPHA,
    DEFAULT_MIN_EFFECT,
    CaseComparison,
    allowed_case,
    check_common,
    uncovered,
)
from harness.environment import (
    describe_gpu,
    fingerprint,
    onnxruntime_providers,
    usable_cpus,
)
from harness.errors import ConfigError, HarnessError, StoreError
from harness.launch import InlineLauncher, Launcher, ProcessLauncher
from harness.launch.executors import EXECUTORS, ExecutorChoice, executor_launcher
from harness.launch.slurm import SlurmOptions
from harness.measure import noise
from harness.measure.energy import EnergySettings, choose_probe
from harness.models import SOURCES, get_model, model_names
from harness.optimize.artifacts import cache_root
from harness.optimize.variants import DESCRIPTIONS
from harness.plan import Plan, Selection, Sweeps, check_threads, plan
from harness.progress import ProgressReporter
from harness.recommend import Constraints
from harness.render import FORMATS, WIDE, parse_columns, render, render_comparison, terminal_width
from harness.runner import Runner
from harness.store import Store, interrupted_query, store_path
from harness.suite import MAX_INT, find_suite, load_suite, suite_names

DEFAULT_SUITE = "quick"


class _Reported(KeyboardInterrupt):
    """An interrupt whose message has been printed already."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting, so errors stay one line."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{self.prog}: {message}")


def _cmd_env(args: argparse.Namespace) -> int:
    fp = fingerprint()
    backends = {name: availability(name) for name in backend_names()}
    energy = {}
    for device in ("cpu", "cuda:0") if fp["gpus"] else ("cpu",):
        probe, note = choose_probe(EnergySettings(), device, fp["cpu_model"])
        energy[device] = {
            "source": probe.source if probe else None,
            "probe": probe.describe() if probe else None,
            "note": note.rstrip("; ") or None,
        }
    readings = noise.read_system()
    flags, advice = noise.system_flags(readings), noise.system_advice(readings)
    if args.json:
        usable = {n: {"usable": r is None, "reason": r} for n, r in backends.items()}
        check = {**asdict(readings), "flags": flags, "advice": advice}
        extra = {"onnxruntime_providers": onnxruntime_providers()}
        data = {**fp, "backends": usable, "energy": energy, "noise": check, **extra}
        print(strict_json.dumps(data, indent=2))
        return 0
    for key in ("cpu_model", "physical_cores", "logical_cpus", "usable_cpus", "memory_gb",
                "machine", "os", "python", "git_sha"):  # fmt: skip
        print(f"{key:16} {fp[key]}")
    print(f"{'isa_flags':16} {' '.join(fp['isa_flags']) or '(none of interest)'}")
    for index, gpu in enumerate(fp["gpus"]):
        print(f"{f'gpu {index}':16} {describe_gpu(gpu)}")
    if not fp["gpus"]:
        print(f"{'gpus':16} none (no NVML, no nvidia-smi)")
    providers = onnxruntime_providers()
    if providers is not None:
        print(f"{'onnxruntime EPs':16} {', '.join(providers)}")
    print("versions         " + ", ".join(f"{k} {v}" for k, v in fp["versions"].items()))
    print("backends")
    for name, reason in backends.items():
        print(f"  {name:14} {'usable' if reason is None else 'unusable: ' + reason}")
    print("energy")
    for device, e in energy.items():
        what = f"{e['source']}, {e['probe']}" if e["source"] else "not measured"
        print(f"  {device:14} {what}" + (f" ({e['note']})" if e["note"] else ""))
    print("noise check")
    for label, value in noise.describe(readings):
        print(f"  {label:16} {value}")
    for line in flags or ["quiet: no other busy processes, load or memory pressure"]:
        print(f"  {'noisy: ' if flags else ''}{line}")
    for line in advice:
        print(f"  drift: {line}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    if args.what == "backends":
        for name in backend_names():
            caps = backend_class(name).capabilities
            print(f"{name:14} consumes {caps.consumes:5} devices {','.join(caps.devices)}")
    elif args.what == "models":
        for name in model_names():
            print(f"{name:14} {get_model(name).description}")
        print("or a model on disk: " + ", ".join(SOURCES) + " (see README)")
    elif args.what == "variants":
        for name, description in DESCRIPTIONS.items():
            print(f"{name:26} {description}")
        print("compose with +, e.g. distilled-3l+int8-static (torch steps, int8-*, fp16/bf16)")
    else:
        for name, path in suite_names().items():
            print(f"{name:14} {path}")
    return 0


def _sizes(flag: str, text: str | None) -> tuple[int, ...]:
    """``"1,8,32"`` -> (1, 8, 32); ConfigError naming the flag otherwise."""
    if text is None:
        return ()
    parts = text.split(",")
    if not all(p.strip().isdigit() and 0 < int(p) <= MAX_INT for p in parts):
        raise ConfigError(
            f"command line: {flag} must be comma-separated positive integers (e.g. 1,8,32) "
            f"in 1..{MAX_INT}, got {text!r}"
        )
    return tuple(int(p) for p in parts)


def _dim_sweeps(items: list[str] | None) -> tuple[tuple[str, tuple[int, ...]], ...]:
    sweeps = []
    for item in items or ():
        name, sep, sizes = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"command line: --dim must be NAME=SIZE[,SIZE...], got {item!r}")
        sweeps.append((name.strip(), _sizes(f"--dim {name}", sizes)))
    return tuple(sweeps)


def _with_data(models: list[str] | None, kind: str, option: str, path: str | None) -> list[str]:
    """Attach ``--inputs``/``--text`` to the ``kind:`` models given with --model."""
    if path is None:
        return models or []
    chosen = [m for m in models or () if m.startswith(f"{kind}:")]
    if not chosen:
        flag = "--inputs" if option == "inputs" else "--text"
        raise ConfigError(f"command line: {flag} needs a --model {kind}:PATH to apply to")
    return [f"{m}#{option}={path}" if m in chosen else m for m in models or ()]


def _plan(args: argparse.Namespace) -> Plan:
    """The suite named on the command line with its selections applied, expanded into cases;
    every bad input is refused here, before anything runs."""
    sweeps = Sweeps(
        batch_sizes=_sizes("--batch", args.batch),
        seq_lens=_sizes("--seq", args.seq),
        prompt_lens=_sizes("--prompt-len", args.prompt_len),
        gen_lens=_sizes("--gen-len", args.gen_len),
        threads=_sizes("--threads", args.threads),
        image_sizes=_sizes("--image-size", args.image_size),
        dims=_dim_sweeps(args.dim),
        shapes=tuple(args.shape or ()),
    )
    models = _with_data(args.model, "onnx", "inputs", args.inputs)
    models = _with_data(models, "hf", "text", args.text)
    selection = Selection(
        backends=tuple(args.backend or ()),
        variants=tuple(args.variant or ()),
        models=tuple(models),
        prices_file=args.prices,
        region=args.region,
        watts_per_core=args.watts_per_core,
        sweeps=sweeps,
        hardware=tuple(args.hardware or ()),
        retries=args.retries,
        scenarios=tuple(args.scenario or ()),
        target=args.target,
    )
    suite = load_suite(find_suite(args.suite))
    probe = InlineLauncher() if args.inline else ProcessLauncher()
    planned = plan(suite, selection, usable_cpus(), probe, args.cache)
    check_threads(planned, usable_cpus())
    return planned


def _run_suite(
    planned: Plan, store: Store, args: argparse.Namespace, quiet: bool, chosen: Launcher
) -> str:
    """Run with a progress line on stderr; return the run id. On an interrupt (Ctrl-C,
    SIGTERM, SIGHUP) say what was saved and how to resume or show it, then re-raise."""
    resume = getattr(args, "resume", None)
    with ProgressReporter(quiet) as reporter:
        runner = Runner(store, cache_root(args.cache), chosen, reporter)
        try:
            return runner.run(planned, resume, resume is not None)
        except KeyboardInterrupt:
            if runner.run_id is not None:
                where = f" --store {args.store}" if args.store else ""
                print(
                    f"infrabench: interrupted: {runner.stored} finished case(s) of run "
                    f"{runner.run_id} are saved in {store.path}; show them with `infrabench "
                    f"show {runner.run_id}{where}`, finish the run with the same command and "
                    f"--resume {runner.run_id}",
                    file=sys.stderr,
                )
            raise _Reported() from None


def _executor(args: argparse.Namespace) -> ExecutorChoice:
    slurm = None
    if args.executor == "slurm":
        folder = args.slurm_folder or str(Path.cwd() / "infrabench-slurm")
        slurm = SlurmOptions(folder, args.slurm_partition, args.slurm_account,
                             args.slurm_cluster)  # fmt: skip
    elif args.slurm_partition or args.slurm_account or args.slurm_folder:
        raise ConfigError("command line: --slurm-* options are for --executor slurm")
    return ExecutorChoice(args.executor, args.inline, args.address, slurm)


def _write_k8s(planned: Plan, args: argparse.Namespace) -> int:
    """Write one Job manifest per case and print the command that submits them."""
    from harness.launch.k8s import write_manifests

    if args.executor != "local":
        raise ConfigError("command line: --k8s-manifests writes Jobs; it runs no --executor")
    directory = Path(args.k8s_manifests)
    paths = write_manifests(planned, directory, args.k8s_image or K8S_IMAGE,
                            args.k8s_claim or K8S_CLAIM)  # fmt: skip
    print(f"wrote {len(paths)} Job manifests to {directory}; no cluster was contacted.")
    print(f"submit them with: kubectl apply -f {directory}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    if not args.k8s_manifests and (args.k8s_image or args.k8s_claim):
        raise ConfigError("command line: --k8s-image and --k8s-claim go with --k8s-manifests DIR")
    planned = _plan(args)
    if args.k8s_manifests:
        return _write_k8s(planned, args)
    chosen = executor_launcher(_executor(args), planned.cases)  # refused before the store opens
    with Store(store_path(args.store)) as store:
        run_id = _run_suite(planned, store, args, quiet=args.json, chosen=chosen)
        results = store.cases(run_id)
    fmt = "json" if args.json else "table"
    title = f"run {run_id} (suite {planned.suite.name})"
    print(render(results, fmt, title, *_view(args)), end="")
    return 1 if any(r.status == "failed" for r in results) else 0


def _view(args: argparse.Namespace) -> tuple[tuple[str, ...] | None, int | None, bool]:
    """Columns, width and colour of the terminal table from --columns / --wide and stdout."""
    if args.wide and args.columns:
        raise ConfigError("command line: --wide and --columns exclude each other")
    if args.wide:
        return WIDE, None, sys.stdout.isatty()
    keys = parse_columns(args.columns) if args.columns else None
    return keys, terminal_width(), sys.stdout.isatty()


def _cmd_ci(args: argparse.Namespace) -> int:
    """Run the suite, compare with the baseline file, write summaries; 1 on a regression."""
    if args.k8s_manifests or args.k8s_image or args.k8s_claim:
        raise ConfigError("command line: ci runs the suite here; --k8s-manifests (and its "
                          "--k8s-image, --k8s-claim) go with `infrabench run`")  # fmt: skip
    planned = _plan(args)
    suite = planned.suite
    chosen = executor_launcher(_executor(args), planned.cases)
    path = Path(args.baseline)
    if args.repeat < 1 or (args.repeat > 1 and not args.update_baseline):
        raise ConfigError(
            f"command line: --repeat {args.repeat}: a positive count, and only with "
            "--update-baseline (it records how far repeated runs drift)"
        )
    if path.is_dir():
        raise ConfigError(f"{path}: --baseline names a directory; give a run file (JSON)")
    if not path.exists() and not args.update_baseline:
        raise ConfigError(f"{path}: no baseline here; create it with --update-baseline")
    baseline = runfile.read(path) if path.exists() else None  # bad file: exit 2 before running
    # Every output is checked before the suite runs, not found unwritable after it.
    _writable(Path(args.report), "--report", REPORT_SUFFIXES)
    if args.update_baseline or baseline is not None:
        _writable(path, "--baseline")
    summary_file = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary_file:
        _writable(Path(summary_file), "$GITHUB_STEP_SUMMARY")
    with Store(store_path(args.store)) as store:
        run_id = _run_suite(planned, store, args, quiet=False, chosen=chosen)
        current = runfile.export_run(store, run_id)
    allow = tuple(args.allow_missing or ())
    failed = any(c.status == "failed" and not allowed_case(c, allow) for c in current.cases)
    regression = False
    missing: list[str] = []
    if baseline is not None:
        rows = runfile.compare(baseline, current, args.alpha, args.min_effect)
        check_common(rows, f"baseline {path}", f"run {run_id}")
        regression = any(r.regression for r in rows)
        missing = uncovered(rows, baseline.cases, allow)
        _write_report(Path(args.report), [baseline, current], rows)
        title = f"{suite.name}: {run_id} vs baseline {baseline.run_id}"
        coverage = "".join(f"\nnot covered: {line}" for line in missing) + (
            f"\n{len(missing)} baseline case(s) not covered: the gate fails" if missing else ""
        )
        print(render_comparison(rows, "table", title, terminal_width()), end="")
        if coverage:
            print(coverage.lstrip("\n"))
        summary = os.environ.get("GITHUB_STEP_SUMMARY")
        if summary:
            with open(summary, "a", encoding="utf-8") as fh:
                fh.write(render_comparison(rows, "markdown", title))
                if missing:
                    fh.write("\n**Baseline cases not covered (the gate fails):**\n\n")
                    fh.write("".join(f"- {line}\n" for line in missing) + "\n")
                fh.write(render(current.cases, "markdown", title=f"run {run_id}"))
    else:
        print(render(current.cases, "table", title=f"run {run_id} (suite {suite.name})"), end="")
        _write_report(Path(args.report), [current], None)
    if args.update_baseline:
        history = baseline.history if baseline and runfile.same_machine(baseline, current) else {}
        new = replace(current, history=history)
        for _ in range(args.repeat - 1):  # more runs of the same tree: how far runs drift here
            with Store(store_path(args.store)) as store:
                again = runfile.export_run(store, _run_suite(planned, store, args, False, chosen))
            new = runfile.with_history(new, again)
        runfile.write(new, path)
        print(f"baseline written: {path} (+{args.repeat - 1} runs of history)")
    elif (
        baseline is not None
        and not (regression or failed or missing)
        and all(c.status == "ok" for c in current.cases)
    ):
        # A complete, passing run on the same machine teaches the gate how much runs drift.
        updated = runfile.with_history(baseline, current)
        if updated is not baseline:
            runfile.write(updated, path)
            runs = max((len(v) for v in updated.history.values()), default=0)
            print(f"baseline history: {runs} earlier runs per case ({path})")
    return 1 if regression or failed or missing else 0


def _cmd_import(args: argparse.Namespace) -> int:
    from harness.importer import read_pytest_benchmark, store_import

    read = read_pytest_benchmark(Path(args.file))  # a bad file: no store is created or opened
    with Store(store_path(args.store)) as store:
        run_id, count = store_import(Path(args.file), store, read)
    print(f"{args.file}: {count} cases stored as run {run_id}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    _writable(Path(args.output), "-o")
    with Store(store_path(args.store), read_only=True) as store:
        run_id = store.resolve_run(args.run)
        runfile.write(runfile.export_run(store, run_id), Path(args.output))
    print(f"{run_id} -> {args.output}")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    if args.output:
        _writable(Path(args.output), "-o")
    with Store(store_path(args.store), read_only=True) as store:
        run_id = store.resolve_run(args.run)
        run = store.run(run_id)
        results = store.cases(run_id)
    if args.format == "parquet":
        from harness.api import write_parquet

        if not args.output:
            raise ConfigError("command line: --format parquet writes a file: give -o FILE")
        samples = write_parquet(store_path(args.store), run_id, Path(args.output))
        print(f"{run_id}: {len(results)} rows -> {args.output}, raw samples -> {samples}")
        return 0
    title = f"run {run_id} (suite {run['suite']}){_unfinished(run)}"
    text = render(results, args.format, title, *_view(args))
    if args.output:
        _write_text(Path(args.output), text)
        print(f"{run_id}: {len(results)} rows -> {args.output}")
    else:
        print(text, end="")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    with Store(store_path(args.store), read_only=True) as store:
        base = runfile.export_run(store, store.resolve_run(args.base))
        cand = runfile.export_run(store, store.resolve_run(args.candidate))
    rows = runfile.compare(base, cand, args.alpha, args.min_effect)
    check_common(rows, f"run {base.run_id}", f"run {cand.run_id}")
    title = (
        f"{cand.run_id} vs {base.run_id} (alpha {args.alpha:g}, min effect {args.min_effect:.0%})"
    )
    print(render_comparison(rows, args.format, title, terminal_width()), end="")
    return 1 if any(r.regression for r in rows) else 0


def _cmd_report(args: argparse.Namespace) -> int:
    if len(args.runs) > 2:
        raise ConfigError(f"report: at most 2 runs (a base and a candidate), got {len(args.runs)}")
    _writable(Path(args.output), "-o", REPORT_SUFFIXES)
    with Store(store_path(args.store), read_only=True) as store:
        runs = [runfile.export_run(store, store.resolve_run(ref)) for ref in args.runs]
    comparison = runfile.compare(runs[0], runs[1]) if len(runs) == 2 else None
    _write_report(Path(args.output), runs, comparison)
    return 0


def _cmd_recommend(args: argparse.Namespace) -> int:
    """The best configuration under the constraints; 1 when none meets them."""
    from harness.recommend import recommend
    from harness.recommend_render import render_recommendation

    limits = Constraints(args.max_p99_ms, args.max_ttft_ms, args.max_tpot_ms, args.min_fidelity,
                         args.max_memory_mb, tuple(args.hardware or ()))  # fmt: skip
    if args.html:  # before anything is read or measured
        _writable(Path(args.html), "--html", REPORT_SUFFIXES[:2])
    if args.run and (args.html or args.what_if):
        raise ConfigError(
            "recommend: --html and --what-if read stored runs; after the --run search, give its "
            "run ids: infrabench recommend RUN... --html FILE --what-if"
        )
    if args.first_budget is not None and not args.run:
        raise ConfigError("recommend: --first-budget applies to a --run SUITE search")
    if args.run:
        return _recommend_search(args, limits)
    with Store(store_path(args.store), read_only=True) as store:
        run_ids = list(dict.fromkeys(store.resolve_run(ref) for ref in args.runs))
        known = suite_names()
        suites = {}
        for run_id in run_ids:  # the reproducing command names a suite `run` can find
            run = store.run(run_id)
            name, path = str(run["suite"]), run.get("suite_path")
            suites[run_id] = name if name in known or not path else str(path)
        rows = [row for run_id in run_ids for row in store.cases(run_id)]
        exported = [runfile.export_run(store, run_id) for run_id in run_ids] if args.html else []
    if args.model:
        rows = [r for r in rows if r.model == args.model]
    if not rows:
        what = f"no rows of model {args.model!r}" if args.model else "no rows"
        raise ConfigError(f"recommend: {what} in run(s) {', '.join(run_ids)}")
    rec = recommend(rows, args.objective, limits, args.energy_source)
    predictions = None
    if args.what_if:
        from harness.roofline import load_hardware, row_costs, what_if

        root = cache_root(args.cache)
        predictions = what_if(rows, lambda row: row_costs(row, root), load_hardware())
    print(render_recommendation(rec, args.format, suites, predictions), end="")
    if args.html:
        from harness.recommend import command
        from harness.report.html import ReportRun, html_report

        cmd = command(rec.winner.row, suites.get(rec.winner.row.run_id)) if rec.winner else None
        runs = [ReportRun(r.run, r.cases, {k: np.asarray(v) for k, v in r.samples.items()})
                for r in exported]  # fmt: skip
        _write_text(Path(args.html), html_report(runs, None, (rec, cmd)))
        print(f"report written: {args.html}", file=sys.stderr)
    return 0 if rec.winner is not None else 1


def _recommend_search(args: argparse.Namespace, limits: Constraints) -> int:
    """``recommend --run SUITE``: short measurements of every case, then longer ones only of
    the cases that can still win; the pruned ones and why are in the output."""
    from harness.recommend_render import render_recommendation
    from harness.recommend_run import search_suite

    planned = plan(load_suite(find_suite(args.run)), None, usable_cpus(), cache=args.cache)
    check_threads(planned, usable_cpus())
    if args.runs != ["latest"]:
        raise ConfigError("recommend: give stored runs or --run SUITE, not both")
    full = planned.suite.timing.budget_s
    first = args.first_budget or full / 9
    if first > full:
        raise ConfigError(f"--first-budget {first:g} s is above the suite's budget_s ({full:g} s); "
                          "the screening round must be the shorter one")  # fmt: skip
    with Store(store_path(args.store)) as store, ProgressReporter() as reporter:
        runner = Runner(store, cache_root(args.cache), ProcessLauncher(), reporter)
        try:
            result, run_ids = search_suite(
                planned, runner, args.objective, limits, first, args.energy_source
            )
        except KeyboardInterrupt:
            if runner.run_id is not None:
                where = f" --store {args.store}" if args.store else ""
                kept = len(store.cases(runner.run_id))
                hint = (f"`infrabench show {runner.run_id}{where}` shows them"
                        if kept else "no case of that round finished")  # fmt: skip
                print(
                    f"infrabench: interrupted: the search's rounds so far are stored in "
                    f"{store.path}, the last one ({kept} finished case(s)) as run "
                    f"{runner.run_id} ({hint}); a search does not resume, run it again to finish",
                    file=sys.stderr,
                )
            raise _Reported() from None
    suites = dict.fromkeys(run_ids, args.run)  # the reproducing command names the same suite
    print(render_recommendation(result.recommendation, args.format, suites), end="")
    print(
        f"search: {len(result.rounds)} rounds (runs {', '.join(run_ids)}), "
        f"{result.planned_s:.0f} of the full grid's {result.full_grid_s:.0f} budget-seconds, "
        f"{len(result.pruned)} of {len(planned.cases)} cases pruned",
        file=sys.stderr,
    )
    return 0 if result.recommendation.winner is not None else 1


def _write_report(
    output: Path, runs: list[runfile.RunFile], comparison: list[CaseComparison] | None
) -> None:
    """Markdown when ``output`` ends in .md, else the self-contained HTML report."""
    if output.suffix.lower() == ".md":
        parts = [render_comparison(comparison, "markdown", "comparison")] if comparison else []
        parts += [render(r.cases, "markdown", f"run {r.run_id}{_unfinished(r.run)}") for r in runs]
        text = "\n".join(parts)
    else:
        from harness.report.html import ReportRun, html_report

        report_runs = [
            ReportRun(r.run, r.cases, {k: np.asarray(v) for k, v in r.samples.items()})
            for r in runs
        ]
        text = html_report(report_runs, comparison)
    _writable(output, "report")
    _write_text(output, text)
    print(f"report written: {output}")


def _unfinished(run: dict[str, object]) -> str:
    """The mark of a run that has no end recorded: interrupted, or still being written."""
    return " [UNFINISHED: interrupted or still running]" if run.get("finished_at") is None else ""


K8S_IMAGE, K8S_CLAIM = "infrabench:latest", "infrabench-work"  # --k8s-manifests' defaults
REPORT_SUFFIXES = (".html", ".htm", ".md")  # what _write_report writes: HTML, or Markdown


def _writable(output: Path, flag: str, suffixes: tuple[str, ...] = ()) -> None:
    """Refuse, in one line and before any work, an output that cannot be written: a
    directory, a missing or read-only folder that cannot be made, a full file system, or (when
    ``suffixes`` are given) a file name whose suffix promises a format that is not written."""
    if suffixes and output.suffix.lower() not in suffixes:
        raise ConfigError(
            f"{output}: {flag} writes {' or '.join(s.lstrip('.') for s in suffixes)}; "
            f"name the file with one of: {', '.join(suffixes)}"
        )
    if output.is_dir():
        raise ConfigError(f"{output}: {flag} names a directory; give a file name")
    folder = output.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{output.name}.", suffix=".tmp"):
            pass
    except OSError as exc:
        raise ConfigError(f"{output}: {flag}: cannot write here: {exc.strerror or exc}") from None
    if output.exists() and not os.access(output, os.W_OK):
        raise ConfigError(f"{output}: {flag}: the file is read-only")


def _write_text(output: Path, text: str) -> None:
    """Write ``text`` to ``output`` atomically (a temporary file beside it, then a rename):
    a full disk or an interrupt leaves the old file or none, never half a file. HarnessError
    (exit 1) naming the file when the write fails."""
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, output)
    except OSError as exc:
        raise HarnessError(f"{output}: not written: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must lie in (0, 1), got {text}")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number in (0, inf), got {text}")
    return value


def _ratio_bound(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must lie in (0, 1], got {text}")
    return value


def _run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("suite", nargs="?", default=DEFAULT_SUITE, help="suite name or .toml path")
    add = parser.add_argument
    add("--backend", action="append", metavar="B", help="replace the suite's backends")
    add("--variant", action="append", metavar="V", help="replace the suite's variants")
    add(
        "--model",
        action="append",
        metavar="M",
        help="replace the suite's models: a zoo name, onnx:PATH, hf:DIR or torch:MODULE:FACTORY",
    )
    add("--batch", metavar="N[,N...]", help="batch sizes to sweep, e.g. 1,8,32")
    add("--seq", metavar="N[,N...]", help="sequence lengths to sweep (text models)")
    add("--prompt-len", metavar="N[,N...]", help="prompt lengths in tokens to sweep (decoders)")
    add("--gen-len", metavar="N[,N...]", help="tokens to generate per prompt (decoders)")
    add("--threads", metavar="N[,N...]", help="thread counts to sweep")
    add("--image-size", metavar="N[,N...]", help="square image sizes to sweep (height = width)")
    add(
        "--dim",
        action="append",
        metavar="NAME=N[,N...]",
        help="bind (and sweep) a named dynamic axis of an ONNX model, e.g. height=320,640",
    )
    add(
        "--shape",
        action="append",
        metavar="INPUT=DxD...",
        help="the whole shape of one ONNX input, e.g. images=1x3x640x640",
    )
    add(
        "--scenario",
        action="append",
        metavar="S",
        help="replace the suite's scenarios: single-stream, multi-stream, offline, server, "
        "llm-server",
    )
    add(
        "--target",
        metavar="URL",
        help="measure a running server at http://HOST:PORT (KServe v2, OpenAI embeddings, or "
        "OpenAI completions for llm-server)",
    )
    add("--inputs", metavar="FILE.npz", help="sample inputs for the onnx: model (arrays by name)")
    add("--text", metavar="FILE", help="sentences for the hf: model, one per line")
    add("--prices", metavar="FILE", help="prices file replacing the shipped one")
    add("--region", help="electricity price and grid carbon region (e.g. us, eu)")
    add("--watts-per-core", type=_positive, metavar="W",
        help="CPU power for the energy estimate, replacing the CPU table")  # fmt: skip
    add("--inline", action="store_true", help="run cases in this process (debug)")
    _fleet_options(parser)
    _store_option(parser)
    add("--cache", help="artifact cache (default $INFRABENCH_CACHE or ~/.cache)")


def _fleet_options(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add(
        "--executor",
        choices=EXECUTORS,
        default="local",
        help="where cases run: here, on a Ray cluster, or as Slurm jobs (one case per node)",
    )
    add("--address", help="Ray cluster address (auto, ray://HOST:10001); default: RAY_ADDRESS")
    add(
        "--hardware",
        action="append",
        metavar="CLASS",
        help="run every case on nodes of this hardware class (repeat for several)",
    )
    add("--retries", type=int, metavar="N", help="re-run a case whose node was lost N times")
    add("--slurm-partition", metavar="P", help="Slurm partition of the jobs")
    add("--slurm-account", metavar="A", help="Slurm account of the jobs")
    add(
        "--slurm-folder",
        metavar="DIR",
        help="shared directory for submitit's job files (default ./infrabench-slurm)",
    )
    add(
        "--slurm-cluster", choices=["slurm", "local", "debug"], default=None, help=argparse.SUPPRESS
    )  # submitit's local executors, for tests
    add(
        "--k8s-manifests",
        metavar="DIR",
        help="write one Kubernetes Job per case to DIR and print the kubectl command; runs nothing",
    )
    add("--k8s-image", default=None, help=f"container image of the Jobs (default {K8S_IMAGE})")
    add("--k8s-claim", default=None,
        help=f"ReadWriteMany claim mounted at /work (default {K8S_CLAIM})")  # fmt: skip


def _view_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--columns", metavar="A,B,...",
                        help=f"table columns: {', '.join(WIDE)} or any result field")  # fmt: skip
    parser.add_argument("--wide", action="store_true",
                        help="every table column at full width (pipe into less -S)")  # fmt: skip


def _store_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", help="results store (default $INFRABENCH_STORE or results/)")


def _compare_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--alpha", type=_fraction, default=DEFAULT_ALPHA,
                        help="family-wise false-alarm rate across cases (Holm)")  # fmt: skip
    parser.add_argument("--min-effect", type=_fraction, default=DEFAULT_MIN_EFFECT,
                        help="smallest slowdown worth reporting (0.05 = 5%%)")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="infrabench", description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--version", action="version", version=f"infrabench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    env = sub.add_parser("env", help="hardware fingerprint and which backends are usable here")
    env.add_argument("--json", action="store_true")
    env.set_defaults(func=_cmd_env)

    lst = sub.add_parser("list", help="list backends, models, variants or suites")
    lst.add_argument("what", choices=("backends", "models", "variants", "suites"))
    lst.set_defaults(func=_cmd_list)

    run = sub.add_parser("run", help="run a suite and store the results")
    _run_options(run)
    run.add_argument("--json", action="store_true", help="print the rows as JSON")
    run.add_argument(
        "--resume", metavar="RUN", help="finish an interrupted run: keep its cases, run the rest"
    )
    _view_options(run)
    run.set_defaults(func=_cmd_run)

    ci = sub.add_parser("ci", help="run a suite, compare with a baseline file, gate (exit 1)")
    _run_options(ci)
    ci.add_argument("--baseline", required=True, metavar="FILE", help="baseline run file (JSON)")
    ci.add_argument("--update-baseline", action="store_true", help="store this run as baseline")
    ci.add_argument("--allow-missing", action="append", metavar="CASE_ID",
                    help="a baseline case (model/variant/backend/shape/scenario or a case id; "
                         "wildcards allowed) the run may miss, skip or fail without failing "
                         "the gate")  # fmt: skip
    ci.add_argument("--repeat", type=int, default=1, metavar="N",
                    help="with --update-baseline: N runs; 2..N seed the drift history")  # fmt: skip
    ci.add_argument("--report", default="results/ci-report.html", metavar="FILE",
                    help="HTML report of run and comparison (default: %(default)s)")  # fmt: skip
    _compare_options(ci)
    ci.set_defaults(func=_cmd_ci)

    export = sub.add_parser("export", help="write a stored run to a JSON run file")
    export.add_argument("run", nargs="?", default="latest", help="run id, its prefix, or latest")
    export.add_argument("-o", "--output", required=True, metavar="FILE")
    _store_option(export)
    export.set_defaults(func=_cmd_export)

    imp = sub.add_parser("import", help="store the cases of a pytest-benchmark JSON file")
    imp.add_argument("file", help="pytest --benchmark-json output of infrabench_case tests")
    _store_option(imp)
    imp.set_defaults(func=_cmd_import)

    show = sub.add_parser("show", help="show the results of a stored run")
    show.add_argument("run", nargs="?", default="latest", help="run id, its prefix, or latest")
    show.add_argument("--format", choices=FORMATS, default="table")
    show.add_argument("-o", "--output", metavar="FILE", help="write to FILE (parquet: required)")
    _view_options(show)
    _store_option(show)
    show.set_defaults(func=_cmd_show)

    report = sub.add_parser("report", help="HTML (or .md) report of one run, or two compared")
    report.add_argument("runs", nargs="*", default=["latest"], help="1 or 2 runs (base first)")
    report.add_argument("-o", "--output", required=True, metavar="FILE", help="report.html or .md")
    _store_option(report)
    report.set_defaults(func=_cmd_report)

    cmp = sub.add_parser("compare", help="compare two runs; exit 1 on a significant regression")
    cmp.add_argument("base", help="baseline run id, its prefix, or latest")
    cmp.add_argument("candidate", help="candidate run id, its prefix, or latest")
    cmp.add_argument("--format", choices=("table", "markdown", "json"), default="table")
    _compare_options(cmp)
    _store_option(cmp)
    cmp.set_defaults(func=_cmd_compare)

    rec = sub.add_parser("recommend", help="the best configuration under an SLO, explained")
    rec.add_argument("runs", nargs="*", default=["latest"], help="runs to combine (default latest)")
    add = rec.add_argument
    add("--objective", required=True, choices=("cost", "energy", "co2", "latency", "throughput"))
    add("--max-p99-ms", type=_positive, metavar="MS", help="p99 bound, met at its upper CI end")
    add("--max-ttft-ms", type=_positive, metavar="MS", help="TTFT p99 bound (generative rows)")
    add("--max-tpot-ms", type=_positive, metavar="MS", help="TPOT p99 bound (generative rows)")
    add("--min-fidelity", type=_ratio_bound, metavar="R", help="least fidelity ratio to fp32")
    add("--max-memory-mb", type=_positive, metavar="MB", help="peak host or device memory")
    add("--hardware", action="append", metavar="CLASS", help="allowed hardware classes")
    add(
        "--energy-source",
        choices=("measured", "simulated", "estimated", "any"),
        help="cost/energy/co2: the energy source to rank within (default: measured first)",
    )
    add("--model", metavar="M", help="the model, when the runs hold several")
    add("--format", choices=("table", "markdown", "json"), default="table")
    add("--html", metavar="FILE", help="also write an HTML report with a Recommendation section")
    add("--what-if", action="store_true", help="add roofline predictions for every hardware class")
    add("--cache", help="artifact cache (default $INFRABENCH_CACHE or ~/.cache)")
    add("--run", metavar="SUITE", help="measure SUITE, searching (successive halving)")
    add("--first-budget", type=_positive, metavar="S",
        help="--run: seconds per case in round 1 (default: the suite's budget / 9)")  # fmt: skip
    _store_option(rec)
    rec.set_defaults(func=_cmd_recommend)
    return parser


INTERRUPTED = "infrabench: interrupted; every finished case is already stored"


def main(argv: list[str] | None = None) -> int:
    """Run one command; return the process exit code."""
    try:
        args = build_parser().parse_args(argv)
        code: int = args.func(args)
        return code
    except (ConfigError, StoreError) as exc:  # bad input: the store named is unusable too
        print(f"infrabench: error: {_printable(str(exc))}", file=sys.stderr)
        return 2
    except HarnessError as exc:
        print(f"infrabench: error: {_printable(str(exc))}", file=sys.stderr)
        return 1
    except _Reported:
        return 130
    except Exception as exc:
        if not interrupted_query(exc):  # an interrupt during a store read (DuckDB's own error)
            raise
        print(INTERRUPTED, file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return 130


def _printable(text: str) -> str:
    """``text`` on one line: line breaks and other control characters (from file names or
    arguments the user typed) shown escaped, as Python writes them."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def entry() -> None:
    """The console script: SIGTERM and SIGHUP end a run as Ctrl-C does (workers stopped,
    finished cases kept, a message saying so). A signal this process was started with
    ignored stays ignored (``nohup``; a script's background job ignores SIGINT)."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, _interrupt)
    sys.exit(main())


if __name__ == "__main__":
    entry()
