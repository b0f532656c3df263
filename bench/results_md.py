"""Build bench/RESULTS.md from bench/RESULTS.template.md and the JSON under bench/results/.

    python bench/results_md.py            # rewrite bench/RESULTS.md
    python bench/results_md.py --check    # exit 1 if bench/RESULTS.md differs from what it builds

No figure is typed into RESULTS.md: the template holds the prose, and placeholders pull every
number from a JSON file, either a benchmark's raw output (``bench/results/<date>/<name>.json``) or,
for runs whose raw output was not kept, figures transcribed once from the hand-written RESULTS.md
(files whose ``source`` says so). Placeholders:

- ``{{FILE#dotted.key|format}}``: one value of ``bench/results/FILE.json`` (list items by index);
  ``format`` is a Python format spec, or ``pct:SPEC`` for ``100 * value`` (e.g. ``pct:.2f``);
- ``{{ALIAS:key}}`` / ``{{table ALIAS:key}}``: ``figures.key`` / a table ``tables.key`` of the file
  named by a ``<!-- alias ALIAS = FILE -->`` line (alias lines are not copied to the output);
- ``{{ratio FILE#key / FILE#key|format}}``: the quotient of two such values (a speed-up measured
  side by side in one run, say);
- ``{{peakshare FILE MODEL SERVER LEVEL|format}}``: the share of the fp32 matmul peak that a
  serve_load.py server reached, with the peak measured in that same run (FLOPs per token = twice the
  non-embedding parameters);
- ``{{render NAME}}``: a renderer below over the newest raw JSON of a benchmark (the dated folder
  sorting last that holds it), e.g. the corrected serving comparison.

Standard library only (no torch): the unit suite runs ``--check`` in well under a second.
"""

from __future__ import annotations

import argparse
import difflib
import functools
import json
import re
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
TEMPLATE = BENCH / "RESULTS.template.md"
OUTPUT = BENCH / "RESULTS.md"
PLACEHOLDER = re.compile(r"\{\{(.+?)\}\}")
ALIAS = re.compile(r"<!-- alias (\w+) = (\S+) -->\n")
COMMENT = re.compile(r"<!--.*?-->\n", re.S)


# ----------------------------------------------------------------------------- data access
@functools.cache  # ~170 placeholders read a handful of files; parse each once (read-only)
def load(name: str) -> Any:
    return json.loads((RESULTS / f"{name}.json").read_text(encoding="utf-8"))


def lookup(data: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data


def fmt(value: Any, spec: str) -> str:
    if not spec:
        return str(value)
    if spec.startswith("pct:"):
        return format(100 * value, spec[4:])
    return format(value, spec)


def newest(name: str) -> tuple[str, Any] | None:
    """(date folder, data) of the newest ``bench/results/<date>/<name>.json``, or None."""
    hits = sorted(RESULTS.glob(f"[0-9]*/{name}.json"))
    return (hits[-1].parent.name, json.loads(hits[-1].read_text("utf-8"))) if hits else None


def md_table(columns: list[str], rows: list[list[Any]], align: str | None = None) -> str:
    lines = ["| " + " | ".join(columns) + " |", align or "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render_table(t: dict[str, Any]) -> str:
    if "lines" in t:
        lines = t["lines"]
    else:
        lines = md_table(t["columns"], t["rows"], t["align"]).split("\n")
    return "\n".join(t.get("indent", "") + line for line in lines)


def matmul_peak(results: dict[str, Any]) -> tuple[dict[str, float], float]:
    """serve_load.py's fp32 matmul peak per library (best of start and end) and the overall best."""
    runs = results["matmul_peak_gflops"]
    by_lib = {lib: max(r[lib] for r in runs) for lib in runs[0]}
    return by_lib, max(by_lib.values())


def serve_peak_share(results: dict[str, Any], model: str, server: str, level: str) -> float:
    """Useful GFLOP/s of ``server`` at concurrency ``level`` over the same run's matmul peak."""
    m = results["models"][model]
    tokens_per_s = m["servers"][server][level]["tokens_per_s"]
    return 2 * m["non_emb_params"] * tokens_per_s / 1e9 / matmul_peak(results)[1]


# ----------------------------------------------------------------------------- renderers
def render_serve_load(results: dict[str, Any]) -> str:
    """serve_load.py's tables: per server and level, then ratios with each baseline's own rate.

    Every ratio cell is followed by the baseline's req/s at that level and at c=1, so a reader can
    tell a gain from a baseline that degrades under concurrency.
    """
    by_lib, peak = matmul_peak(results)
    lines = [
        "fp32 matmul peak (2048², best of start and end): "
        + ", ".join(f"{lib} {v:.1f}" for lib, v in by_lib.items())
        + f" GFLOP/s; shares of peak below are of {peak:.1f}.",
        "",
    ]
    kinds = ("intentkit", "intentkit-int8", "intentkit-torch", "reference", "pipeline")
    for name, m in results["models"].items():
        srv = m["servers"]
        levels = list(next(iter(srv.values())))
        rows = [
            [kind, lv, f"{r['rps']:.1f}", f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}", r["errors"]]
            for kind in kinds
            if kind in srv
            for lv, r in srv[kind].items()
        ]
        lines += [f"**{name}**", ""]
        lines += [md_table(["server", "c", "req/s", "p50 ms", "p99 ms", "errors"], rows), ""]
        ours = [k for k in ("intentkit", "intentkit-int8", "intentkit-torch") if k in srv]
        bases = [k for k in ("reference", "pipeline") if k in srv]
        if ours and bases:
            cols = ["c"] + [f"{o} / {b}" for o in ours for b in bases] + ["% of fp32 peak"]
            ratio_rows = []
            for lv in levels:
                row: list[Any] = [lv]
                for o in ours:
                    for b in bases:
                        rb, rb1 = srv[b][lv]["rps"], srv[b][levels[0]]["rps"]
                        row.append(
                            f"{srv[o][lv]['rps'] / rb:.2f}× ({b} {rb:.1f} req/s; "
                            f"c={levels[0]}: {rb1:.1f})"
                        )
                share = serve_peak_share(results, name, ours[0], lv)
                row.append(f"{100 * share:.1f} %")
                ratio_rows.append(row)
            lines += [md_table(cols, ratio_rows), ""]
        hi, lo = levels[-1], levels[0]
        tails = [
            f"{k} {srv[k][hi]['p99_ms'] / srv[k][lo]['p50_ms']:.1f}×" for k in ours if k in srv
        ]
        lines += [f"p99 at c={hi} / p50 at c={lo}: " + ", ".join(tails) + ".", ""]
    return "\n".join(lines).rstrip("\n")


def render_predictor(results: dict[str, Any]) -> str:
    """predictor_throughput.py's table: texts/s per mode and the ratio to the reference."""
    ref = results["reference"]

    def span(r: dict[str, Any]) -> str:
        return f"{r['texts_per_s']:,.1f} ({r['texts_per_s_min']:,.1f}–{r['texts_per_s_max']:,.1f})"

    ref_mode = "reference: one text per forward, pad to 64"
    rows = [[ref_mode, results["reference_dtype"], span(ref), "1.00×"]]
    for bs, r in results["predictor"].items():
        ratio = r["texts_per_s"] / ref["texts_per_s"]
        rows.append([f"`Predictor.logits`, batch {bs}", results["dtype"], span(r), f"{ratio:.2f}×"])
    cols = ["mode", "dtype", "texts/s median (min–max)", "× reference"]
    note = (
        f"Device {results['device']}, {results['threads']} threads, mean "
        f"{results['mean_tokens']:.1f} tokens/text, {results['warmup_texts']} warm-up texts "
        "(one forward) for both sides."
    )
    return md_table(cols, rows) + "\n\n" + note


def render_quality(results: dict[str, Any]) -> str:
    """quality.py's rows: one operating point per row, every figure from that point."""
    rows = []
    for point in results["operating_points"]:
        cells = []
        for t in point["targets"]:
            v = t["value"]
            if v is None:
                shown = "n/a"
            else:
                shown = f"{v:.4f}" if "ece" in t["metric"] else f"{100 * v:.2f} %"
            cells.append(f"{t['metric']} {shown} ({t['op']} {t['target']}: {t['status']})")
        rows.append([point["operating_point"], "; ".join(cells)])
    wall = results["wall_s"]["end_to_end"] / 60
    threads = results.get("omp_num_threads") or "default"
    return md_table(["operating point", "measured (target: status)"], rows) + (
        f"\n\n{results['dataset']} with `{results['preset']}`: {wall:.1f} min end to end "
        f"(OMP threads {threads}, load average {results['machine']['load_avg_at_end'][1]:.1f} "
        "at the end)."
    )


def supcon_runs(anchor: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(label, source file, results) of the plain run of ``anchor``'s day, then every
    ``quality_DATASET_supconW`` weight measured (its newest file), by weight."""
    dataset = anchor["dataset"]
    plain_name = f"{anchor['created'][:10]}/quality_{dataset}"
    newest_per_weight: dict[float, tuple[str, dict[str, Any]]] = {}
    for path in sorted(RESULTS.glob(f"[0-9]*/quality_{dataset}_supcon*.json")):  # oldest first
        name = f"{path.parent.name}/{path.stem}"
        data = load(name)
        newest_per_weight[data["supcon_weight"]] = (name, data)
    runs = [("plain", plain_name, load(plain_name))]
    runs += [(f"W={w:g}", name, data) for w, (name, data) in sorted(newest_per_weight.items())]
    return runs


def render_supcon_sweep(anchor: dict[str, Any]) -> str:
    """#21 item 6: ``quality.py --supcon-weight W`` for each W measured, beside the plain run of
    the first sweep's day (same preset, seed and budget): per scorer, separation of out-of-scope
    from in-scope test rows and the best out-of-scope recall that keeps 95 % in-scope accuracy;
    then each run's served point."""
    runs = supcon_runs(anchor)
    labels = " / ".join(label for label, _, _ in runs)

    def point(r: dict[str, Any], which: int) -> dict[str, Any]:
        return r["operating_points"][which]["scores"]

    rows = []
    for scorer in point(runs[0][2], 0)["oos_separation"]:
        sep = [point(r, 0)["oos_separation"][scorer] for _, _, r in runs]
        recall = [r["oos_curve"]["oos_recall_at_test_in_scope_accuracy"][scorer]["95"]
                  for _, _, r in runs]  # fmt: skip
        rows.append([scorer, " / ".join(f"{s['auroc']:.4f}" for s in sep),
                     " / ".join(f"{s['fpr_at_95_tpr']:.3f}" for s in sep),
                     " / ".join(f"{100 * x:.1f} %" for x in recall)])  # fmt: skip
    cols = ["scorer", f"AUROC ({labels})", f"FPR95 ({labels})"]
    cols += [f"oos recall @ 95 % in scope ({labels})"]
    served = []
    for label, name, r in runs:
        on, off = point(r, 0), point(r, 1)
        served.append([label, r["calibration"]["oos_scorer"],
                       f"{100 * on['in_scope_accuracy']:.3f} %", f"{100 * on['oos_recall']:.1f} %",
                       f"{on['ece_all']:.4f}", f"{100 * off['in_scope_accuracy']:.3f} %",
                       f"{r['wall_s']['train'] / 60:.1f} min (OMP threads "
                       f"{r['omp_num_threads'] or 'default'})", f"`{name}.json`"])  # fmt: skip
    scols = ["run", "served scorer", "in-scope acc. (rejection on)", "oos recall", "ECE all rows"]
    scols += ["in-scope acc. (rejection off)", "train wall", "source"]
    return (md_table(cols, rows) + "\n\nThe served operating point (threshold from validation):\n\n"
            + md_table(scols, served))  # fmt: skip


def render_oos_without_oos(results: dict[str, Any]) -> str:
    """oos_without_oos.py's table: per dataset, each candidate rule's rejected shares of
    CLINC150's other-domain and out-of-scope test rows beside its own test accuracy."""
    rows = []
    for name, d in results["datasets"].items():
        for r in d["rules"].values():
            rows.append(
                [
                    f"{name} ({d['labels']} intents)",
                    f"{r['scorer']} {r['rule']}",
                    f"{100 * r['other_domain_rejected']:.1f} %",
                    f"{100 * r['oos_test_rejected']:.1f} %",
                    f"{r['own_test_accuracy']:.3f}",
                    f"{d['accuracy_no_rejection']:.3f}",
                    f"{100 * r['own_test_rejected']:.1f} %",
                ]
            )
    columns = ["dataset", "scorer, threshold rule", "(a) other-domain rejected"]
    columns += ["(b) CLINC150 oos rejected", "own test accuracy", "no rejection"]
    columns += ["own test rows rejected"]
    return md_table(columns, rows)


def render_train_throughput(results: dict[str, Any]) -> str:
    """train_throughput.py's settings side by side: what each of intentkit's changes gives.

    With ``--ablate`` the reference also runs with one change at a time, so the ratio splits
    into dynamic padding, SDPA and no gradient checkpointing; the matmul peak is this run's.
    """
    settings = results["settings"]
    ref = settings["reference"]["samples_per_s"]["median"]

    def onoff(s: dict[str, Any]) -> str:
        return ", ".join(
            [
                "dynamic padding" if s["dynamic_padding"] else "pad to 64",
                s["attention"],
                "checkpointing" if s["gradient_checkpointing"] else "no checkpointing",
            ]
        )

    rows = []
    for name, s in settings.items():
        sps = s["samples_per_s"]
        rows.append(
            [
                name,
                onoff(s),
                f"{sps['median']:.2f} ({sps['min']:.2f}–{sps['max']:.2f})",
                f"{sps['median'] / ref:.2f}×",
                f"{100 * s['peak_share']:.1f} %",
            ]
        )
    cols = ["setting", "what it changes", "samples/s median (min–max)", "× reference", "% of peak"]
    peak = ", ".join(
        f"{lib} {v:.1f}" for lib, v in results["matmul_peak_gflops_by_library"].items()
    )
    note = (
        f"{results['model']}; {results['precision']}, batch {results['batch_size']}, "
        f"{results['torch_threads']} threads, {results['repeats']} interleaved repeats × "
        f"{results['steps_per_repeat']} steps; fp32 matmul peak measured in the same run: {peak} "
        "GFLOP/s (shares are of the higher)."
    )
    return md_table(cols, rows) + "\n\n" + note


def render_fewshot(results: dict[str, Any]) -> str:
    """fewshot.py's learning curves: per dataset and K, ce and contrastive (mean ± sd over
    seeds, official test sets, rejection off), the difference, and the published numbers."""
    by: dict[tuple[str, int], dict[str, Any]] = {}
    for c in results["curves"]:
        by.setdefault((c["dataset"], c["k"]), {})[c["objective"]] = c

    def cell(c: dict[str, Any] | None) -> str:
        if c is None:
            return "–"
        sd = f" ± {c['spread']:.1f}" if c["spread"] is not None else ""
        n = len(c["seeds"])
        return f"{c['mean']:.1f}{sd} ({n} seed{'s' * (n > 1)}, {c['train_wall_s_mean']:.0f} s)"

    def delta(a: dict[str, Any] | None, b: dict[str, Any] | None) -> str:
        return f"{a['mean'] - b['mean']:+.1f}" if a and b else "–"

    rows = []
    for (dataset, k), objs in sorted(by.items()):
        ce, con, floor = objs.get("ce"), objs.get("contrastive"), objs.get("floor")
        pub = next(iter(objs.values()))["published"]
        rows.append([dataset, k, cell(ce), cell(con), delta(con, ce), cell(floor),
                     delta(con, floor),
                     ", ".join(f"{n} {v}" for n, v in pub.items()) or "–"])  # fmt: skip
    cols = ["dataset", "K", "ce % (train wall)", "contrastive % (train wall)", "Δ vs ce"]
    cols += ["floor % (fit wall)", "Δ vs floor", "published"]
    complete = "" if results.get("complete") else " The grid was cut short: only these cells ran."
    sources: dict[str, set[str]] = {}
    for r in results["runs"]:
        if r.get("reused_from"):
            sources.setdefault(r["objective"], set()).add(f"`{r['reused_from']}`")
    reused = "".join(
        f" {objective} runs from {', '.join(sorted(files))} (`--reuse`)."
        for objective, files in sorted(sources.items())
    )
    if results["matmul_fp32_gflops"] is not None:
        rate = f"fp32 matmul {results['matmul_fp32_gflops']:.0f} GFLOP/s at the start of the run"
    else:  # a --no-train merge: each cell's wall is from its own file, timed with its own rate
        files = sorted({r["reused_from"] for r in results["runs"]})
        gflops = {f: load(f.removesuffix(".json"))["matmul_fp32_gflops"] for f in files}
        each = ", ".join(f"`{f}` {g:.0f} GFLOP/s" for f, g in gflops.items())
        rate = f"fp32 matmul at the start of each source run: {each}"
    model = results["settings"].get("model", "minilm")  # files before --model: MiniLM
    encoder = "all-MiniLM-L6-v2" if model == "minilm" else Path(model).name
    note = (
        f"{encoder}, `--epochs {results['settings']['epochs']:g}` for ce (the dataset's "
        f"preset otherwise), contrastive with its defaults; floor = the frozen encoder, "
        f"mean-pooled, with a logistic regression (C picked on the same val rows), on the same "
        f"samples; accuracy = argmax on the official test set; train wall = the `intentkit "
        f"train` process; {rate}.{reused}{complete}"
    )
    return md_table(cols, rows) + "\n\n" + note


def render_head_rule(results: dict[str, Any]) -> str:
    """head_rule.py: each rule's mean accuracy on the held-out dev rows (what decides), then the
    test accuracy per dataset and K of the old rule (R0, as run) and of the rule that ships."""
    rules = results["rules"]
    cols = ["rule", "mean dev accuracy %", "cells better than R0", "cells worse"]
    rows = [[f"{name}: {r['description']}", f"{100 * r['dev_mean']:.2f}", r["better_than_R0"],
             r["worse_than_R0"]] for name, r in rules.items()]  # fmt: skip
    per_k = [[r["dataset"], r["k"], r["seeds"], f"{100 * r['test_R0']:.2f}",
              f"{100 * r['test_R1']:.2f}", r["picks_changed"]]
             for r in results["per_k"]]  # fmt: skip
    per_k_cols = ["dataset", "K", "seeds", "test % R0 (as run)", "test % R1", "picks changed"]
    return (
        md_table(cols, rows) + f"\n\nDev: up to {results['dev_rows']} pool rows per sample, "
        "in neither its train nor its val split.\n\n" + md_table(per_k_cols, per_k)
    )


RENDERERS = {
    "head_rule": ("head_rule", render_head_rule),
    "fewshot": ("fewshot", render_fewshot),
    "fewshot_mpnet": ("fewshot_mpnet", render_fewshot),
    "train_throughput_cpu": ("train_throughput_cpu", render_train_throughput),
    "serve_load": ("serve_load", render_serve_load),
    "predictor_throughput": ("predictor_throughput", render_predictor),
    "predictor_throughput_cuda": ("predictor_throughput_cuda", render_predictor),
    "quality_clinc150": ("quality_clinc150", render_quality),
    "quality_banking77": ("quality_banking77", render_quality),
    "oos_without_oos": ("oos_without_oos", render_oos_without_oos),
    "supcon_clinc150": ("quality_clinc150_supcon0.5", render_supcon_sweep),
}


def render_newest(name: str) -> str:
    file_name, renderer = RENDERERS[name]
    found = newest(file_name)
    if found is None:
        where = f"bench/results/<date>/{file_name}.json"
        return f"_Not measured yet: no `{where}` (see bench/remeasure.sh)._"
    date, data = found
    return f"From `bench/results/{date}/{file_name}.json`:\n\n{renderer(data)}"


# ----------------------------------------------------------------------------- build
def build(template: str | None = None) -> str:
    text = TEMPLATE.read_text(encoding="utf-8") if template is None else template
    aliases = dict(ALIAS.findall(text))
    text = COMMENT.sub("", text)

    def value(ref: str) -> Any:
        file_name, _, dotted = ref.strip().partition("#")
        return lookup(load(file_name), dotted)

    def resolve(m: re.Match[str]) -> str:
        expr = m.group(1).strip()
        if expr.startswith("render "):
            return render_newest(expr.split()[1])
        if expr.startswith("peakshare "):
            args, _, spec = expr.removeprefix("peakshare ").partition("|")
            file_name, model, server, level = args.split()
            return fmt(serve_peak_share(load(file_name), model, server, level), spec)
        if expr.startswith("ratio "):
            refs, _, spec = expr.removeprefix("ratio ").partition("|")
            top, bottom = refs.split(" / ")
            return fmt(value(top) / value(bottom), spec)
        is_table = expr.startswith("table ")
        expr = expr.removeprefix("table ").strip()
        if ":" in expr.split("#")[0].split("|")[0]:  # ALIAS:key
            alias, key = expr.split(":", 1)
            data = load(aliases[alias])
            if is_table:  # a transcribed table may cite newer raw results in its cells
                return PLACEHOLDER.sub(resolve, render_table(data["tables"][key]))
            return str(data["figures"][key])
        ref, _, spec = expr.partition("|")
        found = value(ref)
        return render_table(found) if is_table else fmt(found, spec)

    return PLACEHOLDER.sub(resolve, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if RESULTS.md differs")
    args = parser.parse_args(argv)
    text = build()
    if args.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.is_file() else ""
        if current == text:
            return 0
        diff = difflib.unified_diff(
            current.splitlines(), text.splitlines(), "RESULTS.md", "generated", lineterm="", n=1
        )
        print("\n".join(list(diff)[:40]), file=sys.stderr)
        print("bench/RESULTS.md is stale: run `python bench/results_md.py`", file=sys.stderr)
        return 1
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
