"""Stage `audit`: the snapshot must prove, row by row, that it may be compiled (pdd/rights/audit.py).

Fails the build, naming the rows, if any row lacks an accepted public-domain/CC0 licence decision, if
today's rules decide differently from the row's stored evidence, if the marks and likeness screen
(pdd/rights/screen.py, with data/rights_review.tsv) rejects it today, if an image's bytes do not match its
sha256, or if the snapshot was modified after pinning. Writes data/audit/report.json and metrics/audit.json.
"""
from pdd import snapshot
from pdd.core.hashing import write_json
from pdd.build.runner import Outcome, run
from pdd.rights.audit import audit_snapshot


def compute(ctx):
    path = snapshot.resolve(ctx.deps["snapshot"])
    report = audit_snapshot(path, list(ctx.cfgs["audit"].allowed_licences), ctx.deps["exclusions"], ctx.deps["rights_review"])
    write_json(ctx.outs["audit"] / "report.json", report)
    return Outcome(metrics={"rows": report["rows"], "licences": report["licences"]},
                   extra={"snapshot_content_hash": report["content_hash"]},
                   summary=f"audit: {report['rows']} rows of {path} passed ({report['licences']})")


if __name__ == "__main__":
    raise SystemExit(run("audit"))
