"""Cost vs context length, 1k..32k tokens: scorer time and peak memory against plain forwards and the reference.

Reuses the measurement pieces of :mod:`benchmarks.speed` (issue #2; same prompt built from SciFact
abstracts, same plain forwards, same RSS-sampling peak memory) and extends the lengths past the
embedded model's 8k window. Above the window the scorer works in windows of whole chunks (each with its
own null calibration) while ``plain@*`` run the whole sequence in one pass, as a user's plain forward would.
To fit a shared CPU, each method runs once per length by default (``--repeats``; with more, the fastest
run is kept), memory is sampled in the same call, the slow reference stops at ``--reference-max`` (it keeps
every layer's tokens x tokens attention) and the plain forwards at ``--plain-max``.

    .venv/bin/python -m benchmarks run cost --lengths 1024 2048 4096 8192 16384 32768
"""

from __future__ import annotations

import argparse
from typing import Any

from benchmarks import harness as H


def main(argv: list[str] | None = None) -> dict:
    p = H.common_parser(__doc__.splitlines()[0])
    p.add_argument("--lengths", type=int, nargs="+", default=[1024, 2048, 4096, 8192, 16384, 32768])
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--reference-max", type=int, default=2048)
    p.add_argument("--plain-max", type=int, default=32768)
    p.add_argument("--skip", nargs="*", default=["scorer(all heads)"], help="methods of benchmarks.speed to leave out")
    args = p.parse_args(argv)
    H.setup_torch(args.threads)
    from benchmarks import speed as S

    tag = H.model_tag(args.model)
    name = args.out or f"cost_{tag}"
    plot_tag = name.removeprefix("cost_")  # plots follow the result name, so a second run does not overwrite the first's
    sargs = argparse.Namespace(model=H.resolve_model(args.model), heads=args.heads, lengths=args.lengths, device="cpu",
                               dtype="auto", reference_max=args.reference_max, data_dir=H.resolve_data_dir(args.data_dir))
    scorer, all_heads, reference, deepest = S.build(sargs)
    lm = scorer.loaded
    rows: list[dict[str, Any]] = []
    def report(lengths: list[int]) -> dict:
        by = {(r["target"], r["method"]): r for r in rows}

        def sec(r: dict | None) -> float:
            return r["seconds"] if r else float("nan")

        def mib(r: dict | None) -> float:
            return r["peak_mib"] if r else float("nan")

        table_rows = []
        for length in lengths:
            s, pd, pa, ref = (by.get((length, m)) for m in ("scorer", "plain@deepest", "plain@all", "reference"))
            table_rows.append([s["tokens"] if s else length, sec(s), sec(pd), sec(pa), sec(ref),
                               sec(s) / sec(pd) if pd else float("nan"), mib(s), mib(pd), mib(ref)])
        hs = scorer.head_set
        table = (f"model {tag} ({lm.num_layers} layers, window {scorer.window_tokens} tokens), heads: "
                 f"{'all' if hs.is_all else str(len(hs.heads)) + ' heads'}, deepest layer {deepest}; CPU, "
                 f"{'one run' if args.repeats == 1 else f'fastest of {args.repeats} runs'} per cell\n\n"
                 + H.markdown_table(["tokens", "scorer s", "plain@deepest s", "plain@all s", "reference s",
                                     "scorer / plain@deepest", "scorer MiB", "plain@deepest MiB", "reference MiB"],
                                    table_rows, digits=2))
        xs = [r[0] for r in table_rows]
        H.line_plot(xs, {"scorer": [r[1] for r in table_rows], "plain forward to deepest head": [r[2] for r in table_rows],
                         "plain forward, all layers": [r[3] for r in table_rows], "slow reference": [r[4] for r in table_rows]},
                    f"{tag}: time vs context length (CPU)", H.IMG_DIR / f"cost_time_{plot_tag}.png", "prompt tokens", "seconds", logy=True)
        H.line_plot(xs, {"scorer": [r[6] for r in table_rows], "plain forward to deepest head": [r[7] for r in table_rows],
                         "slow reference": [r[8] for r in table_rows]},
                    f"{tag}: peak memory growth vs context length (CPU)", H.IMG_DIR / f"cost_memory_{plot_tag}.png",
                    "prompt tokens", "MiB", logy=True)
        payload = {"settings": vars(args) | {"data_dir": str(args.data_dir)}, "deepest_layer": deepest,
                   "window_tokens": scorer.window_tokens, "rows": rows,
                   "plots": [f"docs/img/cost_time_{plot_tag}.png", f"docs/img/cost_memory_{plot_tag}.png"]}
        H.write_results(name, payload, table)
        print(table)
        return payload

    warmed = False
    for length in H.progress(args.lengths, desc=f"cost {tag}", disable=args.no_progress):
        n_tokens, methods = S.methods_for(length, sargs, scorer, all_heads, reference, deepest)
        methods = {k: v for k, v in methods.items() if k not in args.skip}
        if length > args.plain_max:
            methods = {k: v for k, v in methods.items() if not k.startswith("plain")}
        if not warmed:  # one untimed call of each at the first length (lazy allocations, kernel selection)
            for m, fn in methods.items():
                if m != "reference":
                    fn()
            warmed = True
        for m, fn in methods.items():
            times, peaks = [], []
            for _ in range(args.repeats):
                sec, peak = S.timed(fn, lm.device)
                times.append(sec)
                peaks.append(peak / 2**20)
            rows.append({"target": length, "tokens": n_tokens, "method": m, "seconds": min(times), "all_seconds": times,
                         "peak_mib": max(peaks), "load_average": H.environment()["load_average"]})
            print(rows[-1], flush=True)
        report([x for x in args.lengths if x <= length])  # partial results survive an interrupted run

    return report(args.lengths)
