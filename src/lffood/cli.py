"""``lffood``: command-line helpers around the library (the workflow itself runs with snakemake).

Examples::

    lffood check-config config.yaml          # validate a config, print resolved values
    lffood scorers                           # list registered scorers and their defaults
    lffood inspect results/embedded/seed0/features/lff.h5   # also score and statistics files
    lffood generate-embedded /tmp/emb        # write the embedded benchmark's splits
    lffood benchmarks                        # run time and memory per rule of the last run
    lffood smoke --arch resnet34             # images/s of every training objective and extraction (GPU check)
    lffood bench                             # ratios: data pipeline vs torchvision, objectives vs CE, scorers
    lffood objectives                        # list training objectives and their parameters
    lffood results --write README.md         # regenerate the README's results from results/ (commit, machine)
    lffood download --list                   # paper datasets: URL, checksum, where to place by hand
    lffood download lsun_crop dtd            # download (or verify) archives outside Snakemake
    lffood verify                            # check every split file under data_dir against its checksum
    lffood rehearse                          # every rule of the paper benchmarks on tiny upstream-format data
    lffood project                           # projected wall time of the paper benchmarks per stage (one H100)
    lffood evaluate results/embedded/seed0/features/ce.h5   # OOD metrics of every scorer on a feature file or .npz arrays
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from .errors import LffoodError
from .evaluate_cli import add_parser as _add_evaluate
from .resources import CONFIG_SCHEMA

#: The config schema, package data (lffood.resources): an installed lffood validates configs without the repository.
SCHEMA = str(CONFIG_SCHEMA)


def _check_config(args) -> int:
    from .config import load_config

    cfg = load_config(args.config, args.schema)
    seeds = "; ".join(f"{b} seeds {cfg['benchmarks'][b]['seeds']}" for b in cfg["run"])
    print(f"{args.config}: valid. Benchmarks run by `all`: {cfg['run']}; {seeds}; device {cfg['device']}")
    if args.show:
        print(json.dumps(cfg, indent=2, sort_keys=True))
    return 0


def _scorers(args) -> int:
    from .scorers import registered_scorers

    for name, cls in sorted(registered_scorers().items()):
        doc = " ".join((cls.__doc__ or "").split("\n\n")[0].split())
        print(f"{name:10s} defaults {json.dumps(cls.defaults)}  {doc}")
        for key, spec in cls.params_spec.items():  # the domains the config check enforces
            print(f"{'':10s}   {key}: {spec.describe()}" + (f" ({spec.why})" if spec.why else ""))
    return 0


def _results(args) -> int:
    """Print (or write into the README) the results block of one benchmark, from its metrics and its
    comparison with the CE control (both verified against their integrity manifests)."""
    import pandas as pd

    from .config import load_config
    from .integrity import rebuild_hint, verify
    from .metrics import check_complete
    from .report import compare, summary
    from .runtime import provenance
    from .variants import variant, variant_names, variant_scorers

    cfg = load_config(args.config, args.schema)
    bench = args.bench or cfg["run"][0]
    b = cfg["benchmarks"][bench]
    path = Path(cfg["results_dir"]) / bench / "metrics_all.csv"
    vs_control = Path(cfg["results_dir"]) / compare.RELATIVE.format(bench=bench, ext="csv")
    for p in (path, vs_control):
        if not p.exists():
            print(f"error: {p} not found: build it first (snakemake {p})", file=sys.stderr)
            return 1
    methods = {v: (variant(b, v)["label"], variant(b, v)["scorer"]) for v in variant_names(b)}
    verify(path)  # its bytes, and the metrics files it was made from unchanged since
    tidy = pd.read_csv(path)
    check_complete(tidy, str(path), benchmark=bench, seeds=b["seeds"],
                   scorers={v: variant_scorers(b, v) for v in variant_names(b)}, ood_sets=b["dataset"]["ood_sets"],
                   hint=rebuild_hint(path))
    comparison = compare.read_comparison(str(vs_control))  # verified: its bytes and the score files behind it
    summary.check_comparison(comparison, methods, cfg["tables"]["control"], b["seeds"], str(vs_control))
    command = "lffood results" + (f" --bench {bench}" if args.bench else "") + (f" --write {args.write}" if args.write else "")
    block = summary.results_block(tidy, comparison, bench=bench, methods=methods, ood_sets=b["dataset"]["ood_sets"],
                                  origin=provenance(Path.cwd()), command=command, level=cfg["stats"]["level"],
                                  comparison_path=str(vs_control))
    if args.write:
        target = Path(args.write)
        text = summary.replace_block(target.read_text(), block, str(target))
        target.write_text(text)
        print(f"{target}: results block rewritten from {path} and {vs_control}")
        figure = Path(cfg["results_dir"]) / "figures" / f"{bench}_auroc_bars.png"
        for shown in summary.figure_copies(text, target, figure.name):  # the bars the page shows: the same run's
            if figure.exists():
                shown.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(figure, shown)
                print(f"{shown}: copied from {figure}")
            else:
                print(f"warning: {shown} not refreshed: {figure} not found (snakemake {figure})", file=sys.stderr)
    else:
        print(block)
    return 0


def _objectives(args) -> int:
    from .objectives import registered_objectives

    for name, cls in registered_objectives().items():
        doc = " ".join((cls.__doc__ or "").split())
        flags = ", ".join(f for f, on in (("two views", cls.two_views), (f"provides {list(cls.provides)}", cls.provides))
                          if on)
        print(f"{name:10s} {cls.label}: {doc}{f' ({flags})' if flags else ''}")
        for key, spec in cls.params_schema.items():
            print(f"    {name}.{key} = {json.dumps(spec['default'])}: {spec.get('description', '')}")
    return 0


def _print_attrs(attrs) -> None:
    for k in sorted(attrs):
        v = str(attrs[k])
        print(f"{k:18s} {v if len(v) < 100 else v[:97] + '...'}")


def _inspect(args) -> int:
    """Summarise any kind of lffood HDF5 file: its root attributes, then per kind what it holds
    (shapes are read from the metadata, so large feature files are not loaded)."""
    from . import h5schema, integrity

    try:
        kind = h5schema.file_kind(args.file)
    except LffoodError:
        if integrity.manifest_path(args.file).exists():
            integrity.verify(args.file)  # a damaged lffood file: say what differs from what was written
        raise
    try:
        integrity.verify(args.file)
        damaged = None
    except LffoodError as exc:  # shown anyway, for a diagnosis; the workflow's readers refuse it
        damaged = exc
        print(f"error: {exc}", file=sys.stderr)
    with integrity.unchecked():
        _inspect_contents(args, kind)
    return 1 if damaged else 0


def _inspect_contents(args, kind: str) -> None:
    import numpy as np

    from . import h5schema

    _print_attrs(h5schema.read_attrs(args.file, kind))
    if kind == "features":
        for name, role in h5schema.list_splits(args.file).items():
            info = h5schema.describe_datasets(args.file, kind, f"splits/{name}")
            shapes = ", ".join(f"{k} {v['shape']}" for k, v in info.items())
            print(f"split {name:14s} {role:9s} {shapes}")
    elif kind == "scores":
        scores, _ = h5schema.read_scores(args.file)
        for name, s in scores.items():
            finite = s[np.isfinite(s)]
            line = f"split {name:14s} n {len(s):<8d}"
            if finite.size:
                line += f" min {finite.min():.6g}  mean {finite.mean():.6g}  max {finite.max():.6g}"
            if finite.size < s.size:
                line += f"  non-finite {s.size - finite.size}"
            print(line.rstrip())
    else:  # stats
        version = h5schema.read_attrs(args.file, kind).get("stats_version")
        if version != h5schema.STATS_VERSION:
            print(f"note: statistics layout version {version}, this lffood reads {h5schema.STATS_VERSION}: "
                  "scoring will refuse it; rebuild it with snakemake")
        for name, info in h5schema.describe_datasets(args.file, kind, "stats").items():
            value = f" = {info['value']}" if "value" in info else ""
            print(f"stat {name:24s} {str(info['dtype']):8s} {info['shape']}{value}")


def _benchmarks(args) -> int:
    """Summarise Snakemake's per-job benchmark files (benchmark: directive) by rule: each job's file is
    ``<dir>/<rule>/<job>.tsv`` (workflow/rules/common.smk, ``benchmark_file``), so the rule is the first
    folder under ``dir``."""
    import pandas as pd

    root = Path(args.dir)
    files = sorted(f for f in root.rglob("*.tsv") if len(f.relative_to(root).parts) > 1)
    if not files:
        print(f"no benchmark files under {args.dir} (<rule>/<job>.tsv): run the workflow first", file=sys.stderr)
        return 1
    rows = []
    for f in files:
        t = pd.read_csv(f, sep="\t")
        rule = f.relative_to(root).parts[0]
        rows.append({"rule": rule, "s": float(t["s"].iloc[-1]), "max_rss_mb": float(t["max_rss"].iloc[-1])})
    df = pd.DataFrame(rows)
    summary = df.groupby("rule").agg(jobs=("s", "size"), total_s=("s", "sum"), max_s=("s", "max"),
                                     max_rss_mb=("max_rss_mb", "max")).sort_values("total_s", ascending=False)
    print(summary.round(1).to_string())
    print(f"all jobs: {len(df)} jobs, {df['s'].sum():.1f} s of job time (sum over jobs; wall time is lower when "
          f"jobs run in parallel), peak RSS {df['max_rss_mb'].max():.0f} MB")
    return 0


def _generate(args) -> int:
    from .data.arrays import save_split
    from .data.embedded import generate

    params = json.loads(args.params) if args.params else {}
    for name, split in generate(params, seed=args.seed).items():
        path = Path(args.out) / f"{name}.npz"
        save_split(path, split)
        print(f"{path}: {len(split)} images {split.images.shape[1:]}")
    return 0


def _smoke(args) -> int:
    from .runtime import setup_logging
    from .throughput import smoke

    setup_logging()
    results = smoke(arch=args.arch, size=args.size, crop=args.crop, classes=args.classes, n=args.n, batch=args.batch,
                    epochs=args.epochs, device_name=args.device, amp=not args.no_amp,
                    objectives=None if args.objectives is None else {o: {} for o in args.objectives})
    ce = next((r for r in results if r.stage == "train (ce)"), None)
    print(f"{'stage':18s} {'images':>8s} {'seconds':>8s} {'img/s':>8s} {'time/CE step':>13s}")
    for r in results:
        ratio = f"{r.seconds / r.images * ce.images / ce.seconds:13.2f}" if ce and r.stage.startswith("train") else ""
        print(f"{r.stage:18s} {r.images:8d} {r.seconds:8.2f} {r.images_per_s:8.0f} {ratio}")
    return 0


def _bench(args) -> int:
    from .bench import format_figures, run_bench
    from .runtime import setup_logging

    setup_logging()
    arch = {} if args.arch == "embedded" else {"arch": args.arch}  # run_bench's default: the embedded model
    t0 = time.perf_counter()
    figures = run_bench(**arch, size=args.size, classes=args.classes, n=args.n, batch=args.batch,
                        device_name=args.device, amp=not args.no_amp, workers=args.workers)
    print(format_figures(figures))
    print(f"(ratios: time per image against the group's reference; {time.perf_counter() - t0:.0f} s)")
    return 0


def _download(args) -> int:
    from .config import load_config
    from .data import download, sources

    cfg = load_config(args.config, args.schema)
    if args.list or not args.keys:
        print(download.describe_sources(cfg))
        return 0
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for key in args.keys:
        if key not in sources.ARCHIVES:
            print(f"error: unknown archive {key!r}; known: {', '.join(sources.ARCHIVES)}", file=sys.stderr)
            return 1
        print(download.fetch_archive(cfg, key))
    return 0


def _split_files(args) -> list[Path]:
    """The split files to verify: the paths given (folders searched recursively), else every ``*.npz``
    under the config's ``data_dir``. Hidden files (unfinished atomic writes) are skipped."""
    if args.paths:
        roots = [Path(p) for p in args.paths]
    else:
        from .config import load_config

        data_dir = Path(load_config(args.config, args.schema)["data_dir"])
        roots = [data_dir] if data_dir.is_dir() else []
    files = []
    for r in roots:
        if r.is_dir():
            files += sorted(p for p in r.rglob("*.npz") if not p.name.startswith("."))
        else:
            files.append(r)  # a missing file is reported by verify_split
    return files


def _verify(args) -> int:
    from .data.arrays import verify_split

    files = _split_files(args)
    if not files:
        where = ", ".join(args.paths) if args.paths else f"data_dir of {args.config}"
        print(f"error: no split files (*.npz) under {where}: nothing verified", file=sys.stderr)
        return 1
    failed = 0
    for f in files:
        try:
            print(f"OK    {f}  {verify_split(f)}", flush=True)
        except LffoodError as exc:
            failed += 1
            print(f"FAIL  {f}  {exc}", flush=True)
    print(f"{len(files) - failed} of {len(files)} split files verified" + (f", {failed} FAILED" if failed else ""))
    return 1 if failed else 0


def _rehearse(args) -> int:
    from .rehearsal import rehearse

    extra = args.snakemake_args[1:] if args.snakemake_args[:1] == ["--"] else args.snakemake_args
    return rehearse(args.dir, benchmarks=args.benchmarks, cores=args.cores, device=args.device,
                    snakemake_args=extra, report=not args.no_report, repo=args.repo)


def _gpu_check(args) -> int:
    from .gpucheck import run_check
    from .runtime import setup_logging

    setup_logging()
    words = list(sys.argv[1:] if args.argv is None else args.argv)  # recorded in the JSON file
    argv = words[words.index("gpu-check") + 1:] if "gpu-check" in words else words
    return run_check(args.out, device_name=args.device, tiny=args.tiny, rehearsal=not args.no_rehearsal,
                     rehearsal_benchmarks=args.rehearsal_benchmarks, workdir=args.workdir, budget_s=args.budget_s,
                     ddp=not args.no_ddp, config=args.config, schema=args.schema, repo=args.repo, argv=argv)


def _project(args) -> int:
    """Print (or write into a docs page) the projected wall time of the paper benchmarks per stage:
    at the FLOP limit of one H100, or from the rates of a ``lffood gpu-check`` JSON file."""
    import dataclasses

    from . import projection as pj
    from .config import load_config
    from .io import replace_marked, write_text_atomic

    cfg = load_config(args.config, args.schema)
    names = args.bench or list(cfg["suites"]["paper"])
    unknown = [b for b in names if b not in cfg["benchmarks"]]
    if unknown:
        raise LffoodError(f"unknown benchmark(s) {unknown} in {args.config}; known: {sorted(cfg['benchmarks'])}")
    if args.gpu_check and args.write:
        raise LffoodError("--write takes the FLOP-limit projection only; measured rates belong in the notes "
                          "with the machine that measured them")
    if args.gpu_check:
        try:
            result = json.loads(Path(args.gpu_check).read_text())
        except (OSError, ValueError) as exc:
            raise LffoodError(f"{args.gpu_check}: cannot read a gpu-check result ({exc}); "
                              "write one with `lffood gpu-check --out FILE` on a GPU machine") from exc
        cores = args.cores or result.get("projection", {}).get("cores") or 16
        projections = pj.measured(cfg, names, result, cores)
        device = result.get("device", {}).get("name") or "the GPU of the check"
        print(pj.text(projections, f"projected on {device} and {cores} CPU cores from the rates in {args.gpu_check}"))
        return 0
    machine = dataclasses.replace(pj.H100, cores=args.cores) if args.cores else pj.H100
    projections = pj.paper_projection(cfg, names, machine)
    print(pj.text(projections, f"FLOP limit on {machine.label} (a floor; `lffood gpu-check` measures)"))
    if args.write:
        target = Path(args.write)
        command = "lffood project --write " + args.write + (f" --cores {args.cores}" if args.cores else "")
        block = pj.block(projections, cfg, machine, command, args.config)
        try:
            text = replace_marked(target.read_text(), block, pj.START, pj.END, args.write, "the projection")
            write_text_atomic(target, text)
        except (OSError, ValueError) as exc:
            raise LffoodError(f"{args.write}: {exc}") from exc
        print(f"wrote the projection block of {args.write}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="lffood", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check-config", help="validate a workflow config against the schema")
    c.add_argument("config", nargs="?", default="config.yaml",
                   help="the config file (default: config.yaml in the current directory)")
    c.add_argument("--schema", default=SCHEMA, help="schema file (default: the one lffood ships)")
    c.add_argument("--show", action="store_true", help="print the config with defaults filled in")
    c.set_defaults(fn=_check_config)
    s = sub.add_parser("scorers", help="list registered OOD scorers")
    s.set_defaults(fn=_scorers)
    i = sub.add_parser("inspect", help="summarise an lffood HDF5 file: features, scores or statistics")
    i.add_argument("file")
    i.set_defaults(fn=_inspect)
    b = sub.add_parser("benchmarks", help="summarise per-rule run time and memory from Snakemake benchmark files")
    b.add_argument("dir", nargs="?", default="benchmarks")
    b.set_defaults(fn=_benchmarks)
    g = sub.add_parser("generate-embedded", help="write the embedded benchmark's splits to a folder")
    g.add_argument("out")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--params", help='generator parameters as JSON, e.g. \'{"image_size": 16}\'')
    g.set_defaults(fn=_generate)
    r = sub.add_parser("results", help="the README's results block of a benchmark, from its metrics (with provenance)")
    r.add_argument("--bench", default=None, help="benchmark (default: the first of `run`)")
    r.add_argument("--write", metavar="README", help="replace the block between the file's results markers")
    r.add_argument("--config", default="config.yaml")
    r.add_argument("--schema", default=SCHEMA)
    r.set_defaults(fn=_results)
    bn = sub.add_parser("bench", help="data pipeline, objectives' steps, extraction and scorers, side by side (ratios)")
    bn.add_argument("--arch", default="embedded", help="'embedded' (the default benchmark's model) or a model.arch")
    bn.add_argument("--size", type=int, default=16)
    bn.add_argument("--classes", type=int, default=8)
    bn.add_argument("--n", type=int, default=1024, help="number of random images")
    bn.add_argument("--batch", type=int, default=128)
    bn.add_argument("--workers", type=int, default=2, help="DataLoader workers of the torchvision pipeline")
    bn.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    bn.add_argument("--no-amp", action="store_true")
    bn.set_defaults(fn=_bench)
    o = sub.add_parser("objectives", help="list registered training objectives and their parameters")
    o.set_defaults(fn=_objectives)
    m = sub.add_parser("smoke", help="images/s of every training objective and extraction on random data")
    m.add_argument("--arch", default="resnet34", help="model.arch (resnet34, wrn28_10, resnet50, ...)")
    m.add_argument("--size", type=int, default=32, help="stored image size")
    m.add_argument("--crop", type=int, default=None, help="random-resized-crop / centre-crop size (ImageNet: 224)")
    m.add_argument("--classes", type=int, default=10)
    m.add_argument("--n", type=int, default=1024, help="number of random images")
    m.add_argument("--batch", type=int, default=128)
    m.add_argument("--epochs", type=int, default=1)
    m.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    m.add_argument("--no-amp", action="store_true", help="disable mixed precision on CUDA")
    m.add_argument("--objectives", nargs="*", default=None, help="objectives to time (default: all registered)")
    m.set_defaults(fn=_smoke)
    d = sub.add_parser("download", help="list, download or verify the paper datasets' archives")
    d.add_argument("keys", nargs="*", help="archive keys (default with no keys: --list)")
    d.add_argument("--list", action="store_true", help="print every archive: URL, checksum, manual placement path")
    d.add_argument("--config", default="config.yaml", help="config file (downloads.* and data_dir)")
    d.add_argument("--schema", default=SCHEMA)
    d.set_defaults(fn=_download)
    v = sub.add_parser("verify", help="check split files (.npz) against their checksums; exit 1 on any failure")
    v.add_argument("paths", nargs="*", help="split files or folders (default: every *.npz under the config's data_dir)")
    v.add_argument("--config", default="config.yaml", help="config whose data_dir is searched when no path is given")
    v.add_argument("--schema", default=SCHEMA)
    v.set_defaults(fn=_verify)
    rh = sub.add_parser("rehearse", help="run every rule of the paper benchmarks on tiny upstream-format data "
                                         "(proves the paper path runs; its numbers mean nothing)")
    rh.add_argument("--dir", default="rehearsal", help="working folder; everything the rehearsal writes stays there")
    rh.add_argument("--benchmarks", nargs="*", default=None, help="paper benchmarks (default: the suite 'paper')")
    rh.add_argument("--cores", type=int, default=2)
    rh.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    rh.add_argument("--no-report", action="store_true", help="skip snakemake --report")
    rh.add_argument("--repo", default=None,
                    help="the clone of the workflow whose Snakefile runs (default: the one at or above this folder)")
    rh.add_argument("snakemake_args", nargs=argparse.REMAINDER, help="after --: more Snakemake arguments")
    rh.set_defaults(fn=_rehearse)
    gc = sub.add_parser("gpu-check", help="one prepared check of a GPU machine (sized for 8 minutes on one H100): "
                                          "rehearsal, training steps, extraction, scorers, projected run times")
    gc.add_argument("--out", default="gpu_check.json", help="the JSON file written")
    gc.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    gc.add_argument("--tiny", action="store_true", help="the embedded model at 16x16 and a few images (the CPU test)")
    gc.add_argument("--no-rehearsal", action="store_true", help="skip the rehearsal of the paper benchmarks")
    gc.add_argument("--rehearsal-benchmarks", nargs="*", default=None,
                    help="paper benchmarks to rehearse (default: the suite 'paper')")
    gc.add_argument("--no-ddp", action="store_true", help="skip the one-process torchrun training")
    gc.add_argument("--workdir", default=None,
                    help="where the DDP run and the rehearsal write (default: a temporary folder, kept on failure)")
    gc.add_argument("--budget-s", type=float, default=480.0,
                    help="time budget: measurements that would start after it are skipped (default 480)")
    gc.add_argument("--config", default=None,
                    help="config with the paper benchmarks (default: the clone's config.yaml)")
    gc.add_argument("--repo", default=None,
                    help="the clone of the workflow whose Snakefile the rehearsal runs (default: the one at or above "
                         "this folder)")
    gc.add_argument("--schema", default=SCHEMA)
    gc.set_defaults(fn=_gpu_check, argv=argv)
    pr = sub.add_parser("project", help="projected wall time of the paper benchmarks per stage on one H100 and its "
                                        "CPU cores (FLOP limit, or the rates of a gpu-check file)")
    pr.add_argument("--bench", nargs="*", default=None, help="benchmarks (default: the suite 'paper')")
    pr.add_argument("--cores", type=int, default=None, help="CPU cores for the CPU scorers (default: 16)")
    pr.add_argument("--gpu-check", metavar="JSON", default=None,
                    help="project from the rates measured by `lffood gpu-check` instead of the FLOP limit")
    pr.add_argument("--write", metavar="PAGE", help="replace the block between the page's projection markers")
    pr.add_argument("--config", default="config.yaml")
    pr.add_argument("--schema", default=SCHEMA)
    pr.set_defaults(fn=_project)
    _add_evaluate(sub)
    args = p.parse_args(argv)
    try:
        return args.fn(args)
    except LffoodError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader left early (`lffood benchmarks | head`): not an error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the interpreter's final flush does not raise again
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
