# Helpers of the results page (report_page.smk): what it shows, and its captions.
from lffood.report.page import render_caption

P.report_page = f"{R}/report/index.html"
CAPTIONS = os.path.join(workflow.basedir, "workflow", "report")


def caption_html(name, wildcards, **params):
    """Caption file workflow/report/<name>.rst as HTML, with the params its figure's or table's rule
    passes (watermark, and the paper references of the AUROC bars and the sensitivity figure)."""
    source = os.path.join(CAPTIONS, f"{name}.rst")
    with open(source) as fh:
        rst = fh.read()
    try:
        return render_caption(rst, params={"watermark": config["watermark"], **params}, wildcards=wildcards,
                              config=config)
    except Exception as exc:  # a Jinja or docutils error: name the caption file
        raise WorkflowError(f"caption {source}: {exc}") from None


def comparison_md(b):
    """The benchmark's comparison with the CE control (Markdown), where it has one (compare_targets)."""
    return next((f for f in compare_targets(b) if f.endswith(".md")), None)


def page_bench(b):
    """One benchmark's part of the page: what ran, and the artifacts it shows (lffood.report.page.bench_section)."""
    spec = BENCHMARKS[b]
    models = ", ".join(variant(spec, v)["label"] for v in variant_names(spec))
    return {
        "bench": b,
        "heading": f"{b}: {spec.get('description', '')}".rstrip(": "),
        "summary": f"Seeds {', '.join(map(str, spec['seeds']))}; model {spec['model']['arch']}; "
                   f"OOD sets {', '.join(spec['dataset']['ood_sets'])}; methods {models}.",
        "results": path(P.table, bench=b, ext="md"),
        "verdicts": comparison_md(b),
        "figures": [f for f in figure_targets(b) if f.endswith(".png")],
        "tables": [path(P.scorer_table, bench=b, ext="md"),
                   *(path(P.bench_paper_table, bench=b, shape=s, ext="md") for s in ("table1", "table4"))],
    }


def page_paper_tables():
    return [f for f in paper_table_targets() if f.endswith(".md")]


def page_inputs(wildcards):
    files = []
    for b in config["run"]:
        part = page_bench(b)
        files += [part["results"], *([part["verdicts"]] if part["verdicts"] else []), *part["figures"], *part["tables"]]
    return files + page_paper_tables()


def page_captions(wildcards):
    """Artifact path -> caption HTML, for everything on the page (the rules' caption files, report.smk)."""
    captions = {}
    for b in config["run"]:
        part = page_bench(b)
        captions[part["results"]] = caption_html("table", {"bench": b, "ext": "md"})
        if part["verdicts"]:
            captions[part["verdicts"]] = caption_html("vs_control", {"bench": b, "ext": "md"})
        for png in part["figures"]:
            figure = os.path.basename(png)[len(b) + 1:-len(".png")]  # P.figure: <bench>_<figure>.png
            extra = ({"paper_table": bars_paper_table(b)} if figure == "auroc_bars" else
                     {"paper_reference": sensitivity_reference(b)} if figure == "sensitivity" else {})
            captions[png] = caption_html(figure, {"bench": b, "figure": figure, "ext": "png"}, **extra)
        captions[part["tables"][0]] = caption_html("scorer_table", {"bench": b, "ext": "md"})
        for shape, md in zip(("table1", "table4"), part["tables"][1:]):
            captions[md] = caption_html("bench_paper_table", {"bench": b, "shape": shape, "ext": "md"})
    for md in page_paper_tables():
        captions[md] = caption_html("paper_table", {"table": os.path.basename(md)[:-len(".md")], "ext": "md"})
    return captions


def report_page_targets():
    """What `all` adds: the results page."""
    return [P.report_page]
