"""Benchmark `pdd diff` on two synthetic 1,000,000-row metadata-only snapshots beside DuckDB's bare
anti-join + EXCEPT queries on the same files, in one run.

    python bench/diff.py [--rows 1000000] [--dir /tmp/pdd-bench-diff] [--repeat 3]

B differs from A in 1% changed rows (spread over the field groups), 0.5% removed and 0.5% added.
Each measurement runs in its own child process (so peak memory is that process's own maximum RSS);
times are taken inside the child from just before the work (interpreter start and imports excluded
for both). Prints both, the ratio (goal <= 1.5x) and the peak memory (goal < 2 GB); best of N.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# one changed field per changed row, rotating over the groups
CHANGES = [
    ("title", "title || ' (edited)'"),
    ("licence_kind", "CASE WHEN licence_kind = 'pd' THEN 'cc0' ELSE 'pd' END"),
    ("sha256", "md5(sha256) || md5(sha256)"),
    ("width", "width + 1"),
    ("source_url", "source_url || '?v=2'"),
    ("provenance", "replace(provenance, '}', ',\"note\":\"x\"}')"),
]


def base_select(lo: str, hi: str) -> str:
    """SELECT of synthetic snapshot rows for i in range(lo, hi) (every snapshot column; image NULL)."""
    return f"""
      SELECT printf('s:%09d', i) AS file_id, 1::INTEGER AS rev_no, 's' AS source_id, printf('%09d', i) AS external_id,
             'Painting number ' || i AS title, sha256(i::VARCHAR) AS sha256, md5(i::VARCHAR) AS source_sha1,
             (10000 + i % 90000)::BIGINT AS size, 'image/jpeg' AS mime,
             (200 + i % 56)::INTEGER AS width, (180 + i % 76)::INTEGER AS height,
             'https://example.org/object/' || i AS source_url, 'accepted' AS licence_status,
             CASE WHEN i % 3 = 0 THEN 'pd' ELSE 'cc0' END AS licence_kind, 'accepted: CC0 text' AS licence_reason,
             '{{"field":"license","license":"CC0 1.0 (museum open access)","matched":"cc0","id":"' || md5('e' || i) || '"}}' AS licence_evidence,
             '{{"creator":"Painter ' || (i % 5000) || ' (1801-1870)","date":"18' || (i % 100) || '","iiif":"https://example.org/iiif/' || md5('p' || i) || '/full/843,/0/default.jpg","source_url":"https://example.org/object/' || i || '"}}' AS provenance,
             '[{{"field":"creator","lang":null,"licence":"cc0","source":"csv:creator","text":"Painter ' || (i % 5000) || '"}},{{"field":"title","lang":null,"licence":"cc0","source":"csv:title","text":"Painting number ' || i || '"}}]' AS labels,
             NULL::BLOB AS image
      FROM range({lo}, {hi}) t(i)"""


def make(dir_: Path, n: int) -> tuple[Path, Path]:
    import duckdb

    a, b = dir_ / "a.parquet", dir_ / "b.parquet"
    if a.exists() and b.exists():
        return a, b
    dir_.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    cols = "file_id, rev_no, source_id, external_id, title, sha256, source_sha1, size, mime, width, height, source_url, " \
           "licence_status, licence_kind, licence_reason, licence_evidence, provenance, labels, image"

    def copy(sql: str, path: Path, name: str) -> None:
        con.execute(f"COPY ({sql} ORDER BY file_id) TO '{path}' (FORMAT parquet, COMPRESSION zstd, "
                    f"KV_METADATA {{'pdd.format': 'pdd-snapshot/1', 'pdd.snapshot': '{name}', 'pdd.content_hash': 'synthetic-{name}'}})")

    copy(f"SELECT {cols} FROM ({base_select('0', str(n))})", a, "bench-a")
    select = []
    for c in cols.split(", "):
        exprs = [f"WHEN i % 100 = 0 AND (i // 100) % {len(CHANGES)} = {k} THEN {e}" for k, (col, e) in enumerate(CHANGES) if col == c]
        select.append(f"CASE {' '.join(exprs)} ELSE {c} END AS {c}" if exprs else c)
    kept = f"SELECT {', '.join(select)} FROM (SELECT *, CAST(external_id AS BIGINT) AS i FROM ({base_select('0', str(n))}) WHERE CAST(external_id AS BIGINT) % 200 <> 1)"
    added = f"SELECT {cols} FROM ({base_select(str(n), str(n + n // 200))})"
    copy(f"SELECT * FROM ({kept} UNION ALL {added})", b, "bench-b")
    return a, b


CHILD_PDD = """
import resource, sys, time
from pdd.cli import main
t0 = time.perf_counter()
rc = main(["diff", sys.argv[1], sys.argv[2], "--stat"])
t = time.perf_counter() - t0
print("RESULT", t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, rc, file=sys.stderr)
"""

CHILD_EXCEPT = """
import resource, sys, time
from pathlib import Path
from pdd import diff
t0 = time.perf_counter()
d = diff.diff_paths_except(Path(sys.argv[1]), Path(sys.argv[2]))
t = time.perf_counter() - t0
print("RESULT", t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, len(d["added"]), len(d["removed"]), len(d["changed"]), file=sys.stderr)
"""

CHILD_BARE = """
import resource, sys, time
import duckdb
a, b = sys.argv[1], sys.argv[2]
cols = "file_id, rev_no, source_id, external_id, title, sha256, source_sha1, size, mime, width, height, source_url, licence_status, licence_kind, licence_reason, licence_evidence, provenance, labels"
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
t0 = time.perf_counter()
added = con.execute(f"SELECT file_id FROM read_parquet('{b}') nb ANTI JOIN read_parquet('{a}') oa USING (file_id)").fetchall()
removed = con.execute(f"SELECT file_id FROM read_parquet('{a}') oa ANTI JOIN read_parquet('{b}') nb USING (file_id)").fetchall()
con.execute(f"CREATE TEMP TABLE d AS SELECT {cols} FROM read_parquet('{b}') EXCEPT SELECT {cols} FROM read_parquet('{a}')")
n = con.execute("SELECT count(*) FROM d").fetchone()[0]
t = time.perf_counter() - t0
print("RESULT", t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, len(added), len(removed), n, file=sys.stderr)
"""


def measure(code: str, a: Path, b: Path) -> tuple[float, float, str]:
    proc = subprocess.run([sys.executable, "-c", code, str(a), str(b)], cwd=REPO, capture_output=True, text=True)
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith("RESULT")]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("pdd: error")]
    if errors:
        raise SystemExit(errors[0])
    if not line:
        raise SystemExit(f"benchmark child failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    parts = line[-1].split()
    return float(parts[1]), int(parts[2]) / 1024, " ".join(parts[3:]) + ("\n" + proc.stdout if proc.stdout else "")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dir", default="/tmp/pdd-bench-diff")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    t0 = time.perf_counter()
    a, b = make(Path(args.dir) / str(args.rows), args.rows)
    print(f"snapshots: {a} ({a.stat().st_size / 1e6:.1f} MB), {b} ({b.stat().st_size / 1e6:.1f} MB); "
          f"made/found in {time.perf_counter() - t0:.1f}s")
    bare, pdd, exc = [], [], []
    for _ in range(args.repeat):
        bare.append(measure(CHILD_BARE, a, b))
        pdd.append(measure(CHILD_PDD, a, b))
        exc.append(measure(CHILD_EXCEPT, a, b))
    tb, mb = min(x[0] for x in bare), max(x[1] for x in bare)
    tp, mp = min(x[0] for x in pdd), max(x[1] for x in pdd)
    print(f"bare DuckDB anti-joins + EXCEPT: {tb:.2f}s, peak {mb:.0f} MiB  (added, removed, EXCEPT rows: {bare[0][2].strip()})")
    print(f"pdd diff --stat:                 {tp:.2f}s, peak {mp:.0f} MiB  (exit {pdd[0][2].splitlines()[0]})")
    te, me = min(x[0] for x in exc), max(x[1] for x in exc)
    print(f"(variant: two EXCEPTs + anti-joins, diff_paths_except: {te:.2f}s, peak {me:.0f} MiB, {te / tb:.2f}x)")
    print("pdd diff output:\n  " + "\n  ".join(pdd[0][2].splitlines()[1:]))
    ratio = tp / tb
    print(json.dumps({"rows": args.rows, "bare_s": round(tb, 3), "pdd_s": round(tp, 3), "ratio": round(ratio, 2),
                      "bare_peak_mib": round(mb), "pdd_peak_mib": round(mp),
                      "except_variant_s": round(te, 3), "except_variant_ratio": round(te / tb, 2),
                      "goal_ratio_met": ratio <= 1.5, "goal_memory_met": mp < 2048}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
