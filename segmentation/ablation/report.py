"""The report of an ablation, from its run folders alone: ``report.md``, ``results.csv`` and PNG plots.

Reads every ``ablation.json`` under the folder (what each run is), its ``result.json`` (final metrics), its
TensorBoard event files (training loss and validation curves) and its ``config.yaml`` (for the OM's dataflow
graph, drawn with the code of tools/om_graph.py). ``OUT/ablation.yaml`` adds the command and the reference variant.
"""
import csv
import glob
import logging
import os

import yaml

from .jobs import ABLATION_RECORD, RESULT_RECORD, read_json
from .spec import format_value
from .stats import difference_interval, mean_std, verdict

logger = logging.getLogger("segmentation")

SUMMARY_METRICS = ("PQ", "SQ", "RQ", "PQ_th", "PQ_st", "mIoU")


def collect_runs(folder):
    """One dict per run folder under ``folder``: its record, result (None if unfinished) and path, sorted by
    variant then seed."""
    runs = []
    for path in glob.glob(os.path.join(folder, "**", ABLATION_RECORD), recursive=True):
        run_dir = os.path.dirname(path)
        record = read_json(path)
        if record is None:
            continue
        runs.append({**record, "folder": run_dir, "result": read_json(os.path.join(run_dir, RESULT_RECORD)),
                     "run": read_json(os.path.join(run_dir, "run.json")) or {}})
    return sorted(runs, key=lambda r: (str(r["variant"]), r.get("seed", 0)))


def read_scalars(run_dir):
    """{tag: [(step, value), ...]} of the run's TensorBoard event files (a resumed run's repeated steps: the
    last value)."""
    tb = os.path.join(run_dir, "tensorboard")
    if not os.path.isdir(tb):
        return {}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(tb, size_guidance={"scalars": 0})
    acc.Reload()
    out = {}
    for tag in acc.Tags().get("scalars", []):
        steps = {}
        for event in acc.Scalars(tag):
            steps[event.step] = event.value
        out[tag] = sorted(steps.items())
    return out


def _variant_order(runs, reference):
    names = list(dict.fromkeys(r["variant"] for r in runs))
    return ([reference] if reference in names else []) + [n for n in names if n != reference]


def _overrides_text(overrides):
    if not overrides:
        return "(reference config)"
    return ", ".join(f"`{k} {format_value(v)}`" for k, v in overrides.items())


def write_csv(runs, path):
    metrics = sorted({k for r in runs if r["result"] for k in r["result"].get("metrics", {})},
                     key=lambda k: (k not in SUMMARY_METRICS, SUMMARY_METRICS.index(k) if k in SUMMARY_METRICS
                                    else 0, k))
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["variant", "seed", "status", "iteration", "overrides", "folder", *metrics])
        for r in runs:
            result = r["result"] or {}
            status = result.get("status") or r["run"].get("status") or "not started"
            values = result.get("metrics", {})
            writer.writerow([r["variant"], r.get("seed", 0), status, result.get("iteration", ""),
                             yaml.safe_dump(r.get("overrides") or {}, default_flow_style=True).strip(),
                             os.path.relpath(r["folder"], os.path.dirname(path)),
                             *[f"{values[m]:.4f}" if m in values else "" for m in metrics]])


def _plot_metric(variants, values, metric, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(variants) + 1.2))
    for i, name in enumerate(variants):
        vals = values.get(name, [])
        if not vals:
            continue
        mean, std = mean_std(vals)
        ax.errorbar(mean, i, xerr=std, fmt="o", color="C0", capsize=4)
        ax.scatter(vals, [i] * len(vals), color="C1", s=12, zorder=3)
    ax.set_yticks(range(len(variants)), variants)
    ax.invert_yaxis()
    ax.set_xlabel(f"{metric} (mean and std over seeds in blue, each seed in orange)")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _mean_curve(curves):
    """The mean over runs at the steps every run has."""
    if not curves:
        return [], []
    steps = sorted(set.intersection(*[set(s for s, _ in c) for c in curves]))
    tables = [dict(c) for c in curves]
    return steps, [sum(t[s] for t in tables) / len(tables) for s in steps]


def _plot_curves(variants, curves, ylabel, path, log_scale=False):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    drawn = False
    for i, name in enumerate(variants):
        steps, mean = _mean_curve(curves.get(name, []))
        if steps:
            ax.plot(steps, mean, label=name, color=f"C{i % 10}", linestyle="-" if i < 10 else "--",
                    marker="o" if len(steps) < 8 else None)
            drawn = True
    if not drawn:
        plt.close(fig)
        return False
    if log_scale:
        ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _graph_link(run, assets, report_dir):
    """Draw the OM dataflow graph of a run's resolved config (tools/om_graph.py's graph) into
    assets/graphs/<variant>.svg (.dot without Graphviz); a markdown link to it."""
    config = os.path.join(run["folder"], "config.yaml")
    if not os.path.isfile(config):
        return ""
    from ..config import load_config
    from ..model.output_math import build_output_math_class, static_graph
    cfg = load_config(config)
    if not cfg.OM.NAME:
        return "conventional"
    graph = static_graph(build_output_math_class(cfg))
    os.makedirs(os.path.join(assets, "graphs"), exist_ok=True)
    stem = os.path.join(assets, "graphs", run["variant"])
    with open(stem + ".dot", "w") as f:
        f.write(graph.to_dot())
    try:
        target = graph.render(stem, formats=("svg",))[0]
    except RuntimeError:  # no Graphviz: the DOT text
        target = stem + ".dot"
    return f"[graph]({os.path.relpath(target, report_dir)})"


def write_report(folder, report_path=None):
    """Write ``report_path`` (default FOLDER/report.md), results.csv and the PNGs into a folder beside it named
    after it (``report/``); return the report's path."""
    spec = {}
    if os.path.isfile(os.path.join(folder, "ablation.yaml")):
        with open(os.path.join(folder, "ablation.yaml")) as f:
            spec = yaml.safe_load(f) or {}
    runs = collect_runs(folder)
    if not runs:
        raise FileNotFoundError(f"No runs under {folder} (no {ABLATION_RECORD}); run tools/ablate.py first.")
    report_path = report_path or os.path.join(folder, "report.md")
    report_dir = os.path.dirname(os.path.abspath(report_path))
    assets = os.path.join(report_dir, os.path.splitext(os.path.basename(report_path))[0])
    os.makedirs(assets, exist_ok=True)
    metric = spec.get("metric") or next((r["result"]["metric"] for r in runs if r["result"]), "PQ")
    reference = spec.get("reference") or runs[0].get("reference") or runs[0]["variant"]
    variants = _variant_order(runs, reference)
    by_variant = {name: [r for r in runs if r["variant"] == name] for name in variants}
    done = {name: [r for r in rs if r["result"] and r["result"].get("status") == "finished"]
            for name, rs in by_variant.items()}
    values = {name: [r["result"]["metrics"][metric] for r in rs if metric in r["result"]["metrics"]]
              for name, rs in done.items()}
    write_csv(runs, os.path.join(assets, "results.csv"))
    rel = os.path.relpath(assets, report_dir)
    lines = [f"# Ablation: {os.path.basename(os.path.abspath(folder))}", ""]
    if spec.get("command"):
        lines += ["Produced by", "", "```bash", spec["command"], "```", ""]
    lines += [f"Base config `{spec.get('base', runs[0].get('base', '?'))}`; overrides of every run: "
              f"{_overrides_text(spec.get('opts') or runs[0].get('opts'))}. {len(runs)} runs "
              f"({sum(len(v) for v in done.values())} finished). Metric: **{metric}** on the validation split after "
              f"the last iteration. Regenerate with `python tools/ablate.py --report {folder}`.", ""]
    if spec.get("mode") == "optuna":
        lines += _optuna_section(spec, by_variant, metric, assets, rel)
    lines += [f"## {metric} per variant", "",
              f"Mean ± standard deviation over seeds; the difference to `{reference}` with its 95 % confidence "
              f"interval (paired over seeds when both ran the same seeds, Welch's otherwise).", "",
              f"| variant | overrides | seeds | {metric} | min – max | Δ vs {reference} (95 % CI) | verdict | "
              + " | ".join(m for m in SUMMARY_METRICS if m != metric) + " | OM graph |",
              "|---|---|---|---|---|---|---|" + "---|" * (len(SUMMARY_METRICS) - (metric in SUMMARY_METRICS)) + "---|"]
    ref_runs = {r["seed"]: r["result"]["metrics"].get(metric) for r in done.get(reference, [])}
    for name in variants:
        rs, vals = done[name], values[name]
        overrides = _overrides_text(by_variant[name][0].get("overrides"))
        if not vals:
            status = sorted({(r["result"] or {}).get("status") or r["run"].get("status") or "not started"
                             for r in by_variant[name]})
            lines.append(f"| {name} | {overrides} | 0 | – | – | – | {', '.join(status)} | "
                         + " | ".join("–" for m in SUMMARY_METRICS if m != metric) + " | |")
            continue
        mean, std = mean_std(vals)
        if name == reference or not ref_runs:
            delta, judged = "–", "reference" if name == reference else "–"
        else:
            seeds = [r["seed"] for r in rs]
            paired = sorted(seeds) == sorted(ref_runs) and None not in ref_runs.values()
            ref_vals = [ref_runs[s] for s in seeds] if paired else [v for v in ref_runs.values() if v is not None]
            diff, half, _ = difference_interval(vals, ref_vals, paired)
            delta = f"{diff:+.2f}" + (f" ± {half:.2f}" if half is not None else "")
            judged = verdict(diff, half)
        others = []
        for m in SUMMARY_METRICS:
            if m != metric:
                ms = [r["result"]["metrics"][m] for r in rs if m in r["result"]["metrics"]]
                others.append(f"{mean_std(ms)[0]:.1f}" if ms else "–")
        lines.append(f"| {name} | {overrides} | {len(vals)} | {mean:.2f} ± {std:.2f} | {min(vals):.1f} – "
                     f"{max(vals):.1f} | {delta} | {judged} | " + " | ".join(others) + f" | "
                     f"{_graph_link(by_variant[name][0], assets, report_dir)} |")
    _plot_metric(variants, values, metric, os.path.join(assets, "metric.png"))
    lines += ["", f"![{metric} per variant]({rel}/metric.png)", ""]
    scalars = {name: [read_scalars(r["folder"]) for r in rs] for name, rs in by_variant.items()}
    loss = {name: [s["train/loss"] for s in ss if s.get("train/loss")] for name, ss in scalars.items()}
    val = {name: [s[f"val/{metric}"] for s in ss if s.get(f"val/{metric}")] for name, ss in scalars.items()}
    curves = []
    if _plot_curves(variants, loss, "training loss (mean over seeds)", os.path.join(assets, "train_loss.png"),
                    log_scale=True):
        curves.append(f"![training loss]({rel}/train_loss.png)")
    if _plot_curves(variants, val, f"validation {metric} (mean over seeds)", os.path.join(assets, "val.png")):
        curves.append(f"![validation {metric}]({rel}/val.png)")
    if curves:
        lines += ["## Curves", "", "Read from each run's TensorBoard event files, averaged over seeds at the "
                  "iterations every seed logged. Loss scales differ between formulations that change a loss.", "",
                  *curves, ""]
    unfinished = [r for r in runs if not (r["result"] and r["result"].get("status") == "finished")]
    if unfinished:
        lines += ["## Runs without a result", "", "| run | status | reason | log |", "|---|---|---|---|"]
        for r in unfinished:
            status = (r["result"] or {}).get("status") or r["run"].get("status") or "not started"
            lines.append(f"| {r['variant']}/seed{r.get('seed', 0)} | {status} | {r['run'].get('reason', '')} | "
                         f"{os.path.relpath(os.path.join(r['folder'], 'log.txt'), report_dir)} |")
        lines.append("")
    lines += _formulations_section(runs)
    lines += [f"Every run: [{rel}/results.csv]({rel}/results.csv).", ""]
    with open(report_path, "w") as f:
        f.write("\n".join(lines))
    return report_path


def _formulations_section(runs):
    """For every OM mixin of the runs: its module's description (source, what it changes) and the variables it
    adds or overrides (the mixin table of tools/om_graph.py)."""
    import inspect

    from ..model.output_math import OM_REGISTRY, compose, static_graph
    mixins = {}
    for r in runs:
        config = os.path.join(r["folder"], "config.yaml")
        if os.path.isfile(config):
            with open(config) as f:
                om = (yaml.safe_load(f) or {}).get("OM", {})
            for name in om.get("MIXINS") or ():
                mixins.setdefault(name, om.get("NAME"))
    if not mixins:
        return []
    lines = ["## The formulations", ""]
    for name, base in mixins.items():
        doc = inspect.getmodule(OM_REGISTRY.get(name)).__doc__ or ""
        lines += [f"### `{name}`", "", " ".join(doc.strip().split()), "",
                  static_graph(compose(base, (name,))).mixins_table(), ""]
    return lines


def _optuna_section(spec, by_variant, metric, assets, rel):
    """The search's trials by value, and its history plot."""
    rows = []
    for name, rs in by_variant.items():
        result = rs[0]["result"] or {}
        rows.append((rs[0].get("trial", -1), name, result.get("status") or rs[0]["run"].get("status", "running"),
                     result.get("value"), rs[0].get("overrides") or {}))
    rows.sort(key=lambda r: r[0])
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 3.5))
    xs = [r[0] for r in rows if r[3] is not None]
    ys = [r[3] for r in rows if r[3] is not None]
    best = [max(ys[: i + 1]) for i in range(len(ys))]
    ax.plot(xs, ys, "o", label=f"trial's {metric}")
    ax.step(xs, best, where="post", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(assets, "history.png"), dpi=110)
    plt.close(fig)
    ranked = sorted(rows, key=lambda r: -(r[3] if r[3] is not None else float("-inf")))
    lines = [f"## Optuna search: {spec.get('trials', len(rows))} trials, study `{spec.get('study', '')}` in "
             f"`{spec.get('storage', '')}`", "", f"| trial | status | {metric} | parameters |", "|---|---|---|---|"]
    for number, _, status, value, overrides in ranked:
        shown = f"{value:.2f}" if value is not None else "–"
        lines.append(f"| {number} | {status} | {shown} | {_overrides_text(overrides)} |")
    return lines + ["", f"![search history]({rel}/history.png)", ""]
