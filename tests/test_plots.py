"""Training logs and plots (issue 24, items 3 and 7): the training stages log with dvclive as they train; every
chart in dvc.yaml names its x and y; `dvc plots show` with the committed offline template renders in a real
headless browser with no network; `snakemake --report` shows the metrics, grids and training logs."""
import json
import re
import shutil
import subprocess

import pytest
import yaml

from pdd.build import dag
from conftest import REPO, report, sh

TEMPLATE = REPO / "workflow/plots/vega-offline.html"
IMAGE = (".png", ".jpg", ".jpeg", ".gif", ".svg")


def declared_plots(dvc_yaml: dict) -> list:
    """(id, definition) of every plot dvc.yaml declares: the stages' plot outputs and the top-level plots."""
    out = []
    for stage in dvc_yaml["stages"].values():
        for p in stage.get("plots", []):
            (path, props), = (p.items() if isinstance(p, dict) else [(p, {})])
            out.append((path, props or {}))
    for p in dvc_yaml.get("plots", []):
        (pid, props), = (p.items() if isinstance(p, dict) else [(p, {})])
        out.append((pid, props or {}))
    return out


def test_every_chart_names_x_and_y():
    """A TSV plotted without x/y gets its last column against the row number (lr, chance_r5, baseline SSIM)."""
    doc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    lives = {getattr(s, "live", "") for s in dag.PIPELINE} - {""}
    charts = 0
    for pid, props in declared_plots(doc):
        if pid.endswith(IMAGE) or pid.endswith("/plots/images"):
            continue   # images: no axes
        assert props.get("x") == "step" and isinstance(props.get("y"), dict) and props["y"], pid
        for path, column in props["y"].items():
            # dvclive writes metric NAME to LIVE/plots/metrics/NAME.tsv with the columns step and NAME's last part
            live = next(lv for lv in lives if path.startswith(lv + "/plots/metrics/"))
            assert path.endswith(f"/{column}.tsv") and live, path
        charts += 1
    assert charts >= 10
    ys = {col for _, props in declared_plots(doc) for col in (props.get("y") or {}).values()}
    assert {"loss", "lr", "i2t_r5", "val_psnr", "baseline_resize_psnr", "val_loss"} <= ys


def test_metrics_and_grids_are_marked_for_snakemake_report():
    for s in dag.PIPELINE:
        rule = (REPO / f"workflow/rules/{s.name}.smk").read_text()
        for path in [*s.metrics.values(), *s.plots.values()]:
            assert f"report({path!r}, category={s.name!r}" in rule, (s.name, path)
        if s.live:
            assert f"live=report(directory({s.live!r})" in rule and "patterns=" in rule


def test_the_offline_template_loads_nothing():
    text = TEMPLATE.read_text(encoding="utf-8")
    assert "{plot_divs}" in text and "{scripts}" not in text   # DVC fills {scripts} with its CDN links
    assert not re.search(r"<script[^>]+src=", text)
    for name in ("vega 5.20.2", "vega-lite 5.2.0", "vega-embed 6.18.2"):
        assert f"<script>/* {name} */" in text


def run_log(directory, steps, state=None, start=0, evals=(3, 6)):
    """A LiveLog over `steps` made-up training steps (an evaluation with a grid at each of `evals`), like the loop."""
    from PIL import Image

    from pdd.train.loop import LiveLog

    state = state or {"train": [], "val": []}
    live = LiveLog(directory, state, start)
    for s in steps:
        row = [s, 1.0 / s, 0.001 * min(s, 2) / 2]
        state["train"].append(row)
        live.train(*row)
        if s in evals:
            metrics = {"val_loss": 0.5 / s, "val_psnr": 10.0 + s}
            state["val"].append({"step": s, **metrics})
            live.val(s, metrics, Image.new("RGB", (8, 4), (s * 20, 0, 0)))
    return live, state


def files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_live_log_is_deterministic_and_a_resume_replays_it(tmp_path):
    """The dvclive log holds no timestamps (two runs, same bytes), and a run killed after step 5 that resumes
    from its step-4 checkpoint (history replayed, earlier grids kept) ends with the same bytes."""
    logs = []
    for name in ("a", "b"):
        live, _ = run_log(tmp_path / name, range(1, 7))
        live.end()
        logs.append(files(tmp_path / name))
    assert logs[0] == logs[1]
    assert logs[0]["plots/metrics/train/loss.tsv"].startswith(b"step\tloss\n1\t1.0\n")
    assert sorted(k for k in logs[0] if "images" in k) == ["plots/images/val/3.png", "plots/images/val/6.png"]
    assert json.loads(logs[0]["metrics.json"]) == {"train": {"loss": 1 / 6, "lr": 0.001}, "val": {"val_loss": 0.5 / 6,
                                                                                                 "val_psnr": 16.0},
                                                    "step": 6}
    # killed after step 5; resumed from the checkpoint of step 2 (before any evaluation) or 4 (grid 3 kept)
    for start in (2, 4):
        killed = tmp_path / f"killed-{start}"
        _, state = run_log(killed, range(1, 6))
        checkpoint = {"train": state["train"][:start], "val": [v for v in state["val"] if v["step"] <= start]}
        live, _ = run_log(killed, range(start + 1, 7), json.loads(json.dumps(checkpoint)), start=start)
        live.end()
        assert files(killed) == logs[0], start


def chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser")


def render(html, shot=None, timeout=120) -> str:
    """The DOM after a headless Chromium ran the page's scripts, with every network request refused."""
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>", "--host-resolver-rules=MAP * ~NOTFOUND",
           "--virtual-time-budget=20000", "--window-size=1400,2400"]
    dom = subprocess.run([*cmd, "--dump-dom", html.as_uri()], capture_output=True, text=True, timeout=timeout)
    if shot:
        subprocess.run([*cmd, f"--screenshot={shot}", html.as_uri()], capture_output=True, timeout=timeout)
    return dom.stdout


@pytest.mark.slow
def test_dvc_plots_render_offline_in_a_browser(tiny_chain_dvc, tmp_path):
    if not chromium():
        pytest.skip("chromium not installed (Debian: apt-get install chromium)")
    root, _ = tiny_chain_dvc
    # DVC's own view: each declared chart's data has its y column (not the file's last one by accident)
    shown = json.loads(sh(["dvc", "plots", "show", "--json"], root).stdout)["data"]
    charts = {k: v for k, v in shown.items() if not k.endswith(IMAGE) and "/plots/images" not in k}
    doc = yaml.safe_load((root / "dvc.yaml").read_text())
    want = {pid: props for pid, props in declared_plots(doc) if isinstance(props.get("y"), dict)}
    assert set(want) <= set(charts), sorted(set(want) - set(charts))
    for pid, props in want.items():
        spec = json.dumps(charts[pid])
        for column in props["y"].values():
            assert f'"{column}"' in spec, (pid, column)
    for stage in ("vae", "unet"):   # a val grid at each evaluation (eval_every 3 of 6 steps)
        grids = sorted(k for k in shown if f"metrics/live/{stage}/plots/images/val/" in k)
        assert [g.rsplit("/", 1)[-1] for g in grids] == ["3.png", "6.png"], sorted(shown)

    out = tmp_path / "offline"
    sh(["dvc", "plots", "show", "--html-template", str(TEMPLATE), "-o", str(out)], root)
    html = out / "index.html"
    assert "cdn.jsdelivr" not in html.read_text()
    shot = tmp_path / "plots.png"
    dom = render(html, shot)
    rendered = len(re.findall(r'class="marks"', dom))
    assert rendered >= len(want), f"{rendered} charts drawn of {len(want)}"
    assert shot.stat().st_size > 10_000
    report(f"dvc plots offline: {rendered} charts drawn in headless chromium; screenshot {shot} (pytest --basetemp keeps it)")

    # the control: DVC's default page (scripts from a CDN) draws nothing without the network
    cdn = tmp_path / "cdn"
    sh(["dvc", "plots", "show", "-o", str(cdn)], root)
    assert "cdn.jsdelivr" in (cdn / "index.html").read_text()
    assert 'class="marks"' not in render(cdn / "index.html")


@pytest.mark.slow
def test_snakemake_report_shows_metrics_grids_and_training_logs(tiny_chain_snakemake, tmp_path):
    root = tmp_path / "repo"
    shutil.copytree(tiny_chain_snakemake, root, symlinks=True)
    sh(["snakemake", "--report", "report.zip"], root, timeout=600)
    import zipfile

    with zipfile.ZipFile(root / "report.zip") as z:
        names = z.namelist()
    # the zip holds each result under data/raw/<id>/, a folder output's files by their path inside it
    for want in ("/vae.json", "/unet.json", "/clip.json", "/vae_grid.png", "/sample_grid.png", "/memorization_pairs.png",
                 "/plots/metrics/train/loss.tsv", "/plots/metrics/val/i2t_r5.tsv", "/plots/metrics/val/val_psnr.tsv"):
        assert any(n.endswith(want) for n in names), (want, names)
    for step in (3, 6):   # the VAE's and the U-Net's val grids of both evaluations
        assert sum(n.endswith(f"/plots/images/val/{step}.png") for n in names) == 2, names
