"""``summary``: the one table of every JSON file the suite wrote into a folder (printed, and kept as
``summary.json`` there). Runs without torch."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench.gpu.common import Row, write_json
from bench.gpu.profile import busy_text

COLUMNS = [
    ("device", "device"),
    ("case", "case"),
    ("fps", "fps"),
    ("tflops", "TFLOP/s"),
    ("errors", "precision errors (max / mean)"),
    ("note", "note"),
]


def load(folder: Path, name: str) -> Any:
    path = folder / name
    return json.loads(path.read_text()) if path.is_file() else None


def errors_text(row: Row) -> str:
    gen, u8 = row.get("generator_output"), row["uint8_frames"]
    text = f"gen {gen['max']:.1e} / {gen['mean']:.1e}, " if gen else ""
    return text + f"uint8 {u8['max']:.0f} / {u8['mean']:.3f} / {100 * u8['share_differing']:.1f} %"


def step_rows(steps: list[Row]) -> list[Row]:
    """One row per step of ``steps.json`` that did not run or failed."""
    return [{"case": s["step"], "note": f"{s['status']}: {s['detail']}"} for s in steps if s["status"] != "ok"]


def precision_rows(precision: Row | None) -> list[Row]:
    if precision is None:
        return []
    return [
        {
            "device": precision["device"],
            "case": f"precision {row['part']} {row['precision']}",
            "errors": errors_text(row),
            "note": f"vs {row['against']}, {precision['frames']} frames",
        }
        for row in precision["rows"]
    ]


def bench_rows(folder: Path) -> list[Row]:
    """One row per benchmark case and job of every ``bench_*.json``."""
    rows = []
    for path in sorted(folder.glob("bench_*.json")):
        bench = json.loads(path.read_text())
        for row in bench["rows"]:
            rows.append(
                {
                    "device": bench["device"],
                    "fps": row["fps"],
                    "tflops": row.get("render_tflops"),
                    "case": f"{path.stem} {row['size']} {row['preprocess']} {row['enhancer']}",
                    "note": f"render {bench['render_dtype']} b{bench['batch_size']}, enhancer "
                    f"{bench['enhancer_dtype']}, {row['frames']} frames, render fps "
                    f"{row['render_fps']}, peak GPU {row.get('peak_gpu_mb', '-')} MB",
                }
            )
    return rows


def profile_rows(profile: Row | None) -> list[Row]:
    rows = []
    for row in (profile or {}).get("rows", []):
        device = profile["device"] if profile else None
        if "skipped" in row:
            rows.append({"device": device, "case": f"profile {row['part']}", "note": row["skipped"]})
            continue
        top: Row = row["kernels"][0] if row["kernels"] else {"name": "-", "share": 0}
        rows.append(
            {
                "device": device,
                "case": f"profile {row['part']} {row['precision']} b{row['batch']}",
                "fps": row["per_second"],
                "tflops": row["tflops"],
                "note": f"{row['launches']} {row['unit']}s{busy_text(row)}, top {100 * top['share']:.0f} %: "
                f"{top['name'][:48]}",
            }
        )
    return rows


def reference_rows(ref: Row | None, device: str | None) -> list[Row]:
    if ref is None:
        return []
    if not ref["available"]:
        return [{"case": "reference", "note": ref["reason"]}]
    return [
        {
            "device": device,
            "case": row["part"],
            "fps": row.get("per_second"),
            "note": f"skipped: {row['skipped']}"
            if "skipped" in row
            else f"{row['precision']} b{row['batch']}, network calls only",
        }
        for row in ref["rows"]
    ]


def summary_rows(folder: Path) -> list[Row]:
    """One row per measurement in ``folder``'s JSON files, and one per step that did not run."""
    profile = load(folder, "profile.json")
    return (
        step_rows(load(folder, "steps.json") or [])
        + precision_rows(load(folder, "precision.json"))
        + bench_rows(folder)
        + profile_rows(profile)
        + reference_rows(load(folder, "reference.json"), (profile or {}).get("device"))
    )


def print_table(rows: list[Row]) -> None:
    cells = [[h for _, h in COLUMNS]] + [
        [str(r.get(k) if r.get(k) is not None else "-") for k, _ in COLUMNS] for r in rows
    ]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    lines = [" | ".join(c[i].ljust(widths[i]) for i in range(len(COLUMNS))).rstrip() for c in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    print("\n".join(lines))


def summary(folder: Path) -> dict[str, Any]:
    rows = summary_rows(folder)
    versions_report = load(folder, "versions.json") or {}
    report = {
        "device": versions_report.get("device"),
        "torch": versions_report.get("torch"),
        "steps": load(folder, "steps.json") or [],
        "rows": rows,
    }
    write_json(str(folder / "summary.json"), report)
    print_table(rows)
    return report


def run_summary(args: argparse.Namespace) -> int:
    summary(Path(args.folder))
    return 0


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    summ = commands.add_parser("summary", help="print the suite's table from the JSON files in FOLDER")
    summ.add_argument("folder")
    summ.set_defaults(run=run_summary)
