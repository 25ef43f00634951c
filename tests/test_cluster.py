"""Per-rule resources from params.yaml, checked before anything is submitted, and the multi-node launch
command (issue 14). Everything here is a Snakemake dry run or a printed command: no job runs."""
import copy
import re
from types import SimpleNamespace

import pytest
import yaml

from pdd import cli
from pdd.build import cluster, dag
from pdd.core import config
from pdd.core import params as params_mod
from pdd.core.errors import PddError
from conftest import REPO, deep_update, make_copy, sh

UNET_GPU = {"mem_mb": 7000, "runtime": 500, "gpus": 1, "partition": "gpu"}
MULTI_NODE = {"nodes": 2, "processes_per_node": 4, "gpus": 4}
# what `pdd launch --dry-run unet --nodes 2 --processes-per-node 4` prints with the repository's params
# (unet.train.threads = 2, so 8 CPUs per node; resources.launch.port = 29500)
MULTI_NODE_CMD = ("srun --nodes=2 --ntasks=2 --ntasks-per-node=1 --cpus-per-task=8 --kill-on-bad-exit=1 bash -c "
                  "'torchrun --nnodes=2 --nproc-per-node=4 --node-rank=$SLURM_NODEID "
                  "--master-addr=$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" | head -n 1) "
                  "--master-port=29500 -m stages.unet'")


def repo_params() -> dict:
    return params_mod.load(REPO / "params.yaml")


def rule_block(out: str, rule: str) -> str:
    """A rule's job in a Snakemake dry run, through its `Shell command:` line."""
    block = re.search(rf"^rule {rule}:\n.*?^Shell command: .*?$", out, re.M | re.S)
    assert block, out[-3000:]
    return block.group(0)


@pytest.fixture(scope="module")
def gpu_copy(tmp_path_factory):
    """A checkout whose params give unet a GPU, more memory and runtime, and a partition."""
    return make_copy(tmp_path_factory.mktemp("res") / "r", {"resources": {"rules": {"unet": UNET_GPU}}})


# ---- resources from params -------------------------------------------------------------------
def test_default_params_keep_one_process_and_the_registry_values():
    p = repo_params()
    for s in dag.PIPELINE:
        assert cluster.command(p, s.name) == s.cmd          # the dvc.yaml command: nothing to relaunch
        assert "nodes" not in cluster.resources(p, s.name) and "gpu" not in cluster.resources(p, s.name)
    assert cluster.resources(p, "unet") == {"mem_mb": 6000, "runtime": 480}
    assert cluster.resources(p, "audit") == {"mem_mb": 2000, "runtime": 30}
    assert cluster.threads(p, "clip") == p["clip"]["train"]["threads"]


def test_no_stage_reads_the_resources_section():
    """DVC tracks each stage's params sections; `resources` is none of them, so editing it reruns nothing."""
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    for name, stage in dvc["stages"].items():
        assert not any(str(p).startswith("resources") for p in stage["params"]), name


def test_dry_run_prints_the_resources_from_params(gpu_copy):
    out = sh(["snakemake", "-n", "-p", "--forceall", "-c2", "models/unet"], gpu_copy).stdout
    block = rule_block(out, "unet")
    resources = re.search(r"resources: (.*)$", block, re.M).group(1)
    for want in ("mem_mb=7000", "runtime=500", "gpu=1", "slurm_partition=gpu"):
        assert want in resources.split(", "), resources
    assert re.search(r"^\s+threads: 2$", block, re.M), block
    assert "Shell command: python -m stages.unet 2> logs/unet.log" in block


def test_a_profile_asking_for_more_memory_fails_before_submitting(gpu_copy, tmp_path):
    """The SLURM profile plus a site's set-resources beyond params: one line, before any sbatch."""
    prof = tmp_path / "site"
    prof.mkdir()
    slurm = yaml.safe_load((REPO / "workflow/profiles/slurm/config.yaml").read_text())
    slurm["set-resources"] = {"unet": {"mem_mb": 999999, "slurm_partition": "gpu"}}
    (prof / "config.yaml").write_text(yaml.safe_dump(slurm))
    out = sh(["timeout", "120", "snakemake", "--profile", str(prof), "models/unet"], gpu_copy, check=False, timeout=150)
    assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-2000:]
    assert out.stderr.strip().splitlines()[-1] == (
        "pdd: error: set-resources unet:mem_mb=999999 asks for more than params.yaml allows "
        "(resources.limits.mem_mb=128000)")
    assert "sbatch" not in out.stdout + out.stderr and "Submitted" not in out.stdout + out.stderr


@pytest.mark.parametrize("args, message", [
    (["--set-resources", "unet:gres=gpu:a100:16"],
     "set-resources unet:gres=gpu:a100:16 asks for more than params.yaml allows (resources.limits.gpus=8)"),
    (["--set-resources", "clip:gpu=9"],
     "set-resources clip:gpu=9 asks for more than params.yaml allows (resources.limits.gpus=8)"),
    (["--set-resources", "vae:mem=200G"],
     "set-resources vae:mem_mb=200000 asks for more than params.yaml allows (resources.limits.mem_mb=128000)"),
    (["--set-threads", "export=100"],
     "set-threads export=100 asks for more than params.yaml allows (resources.limits.threads=64)"),
    (["--set-resources", "unett:mem_mb=100"],
     "set-resources names rule 'unett', which this workflow does not have (rules: audit, curate, export, tokenizer, "
     "clip, judge, vae, latents, unet, sample, quality, memorization, pipeline)"),
    (["--set-resources", "unet:gres=gpu:2"],
     "set-resources unet:gres=gpu:2: params.yaml already gives unet GPUs (resources.rules.unet.gpus=1); "
     "set them in one place"),
    (["--set-resources", "unet:nodes=2"],
     "set-resources unet:nodes=2: set resources.rules.unet.nodes / processes_per_node in params.yaml instead "
     "(the launch command and the job's tasks are built from them)"),
])
def test_command_line_asks_beyond_params_fail_at_parse_time(gpu_copy, args, message):
    out = sh(["snakemake", "models/unet", "-n", "-c2", *args], gpu_copy, check=False)
    assert out.returncode == 2
    assert out.stderr.strip() == f"pdd: error: {message}", out.stderr[-2000:]


def test_asks_within_the_limits_pass(gpu_copy):
    out = sh(["snakemake", "models/unet", "-n", "-p", "-c2", "--set-resources", "unet:mem_mb=64000", "unet:gpu=8",
              "clip:gres=gpu:2", "--set-threads", "export=16"], gpu_copy)
    resources = re.search(r"resources: (.*)$", rule_block(out.stdout, "unet"), re.M).group(1).split(", ")
    assert "mem_mb=64000" in resources and "gpu=8" in resources


@pytest.mark.parametrize("change, message", [
    ({"rules": {"unet": {"gpu": 1}}}, "params.yaml: resources.rules.unet.gpu: unknown key"),
    ({"rules": {"audit": {"nodes": 2}}}, "params.yaml: resources.rules.audit.nodes: unknown key"),
    ({"rules": {"unet": {"mem_mb": -5}}}, "params.yaml: resources.rules.unet.mem_mb: -5 is less than the minimum of 1"),
    ({"default": {"runtime": "1h"}}, "params.yaml: resources.default.runtime: '1h' is not of type 'integer'"),
    ({"rules": {"unet": {"mem_mb": 200000}}},
     "params.yaml: resources.rules.unet.mem_mb: 200000 is more than resources.limits.mem_mb=128000"),
    ({"rules": {"unet": {"gpus": 2, "processes_per_node": 4}}},
     "params.yaml: resources.rules.unet.processes_per_node: 4 processes per node but 2 GPUs per node "
     "(one process per GPU)"),
])
def test_a_bad_resources_param_is_one_line(tmp_path, change, message):
    p = repo_params()
    deep_update(p["resources"], copy.deepcopy(change))
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(p, sort_keys=False))
    with pytest.raises(PddError) as err:
        config.check(params_mod.load(path))
    msg = str(err.value).replace(str(path), "params.yaml")
    assert msg.startswith(message) and "\n" not in msg, msg


def test_threads_beyond_the_limit_name_the_stage_key_and_the_file_given(tmp_path):
    """The one resources rule that needs the registry (each stage's threads) stays in cluster.check_params,
    which runs config's rules of resources too; both name the file they were given."""
    p = repo_params()
    p["resources"]["rules"]["unet"].update(processes_per_node=40, gpus=0)
    with pytest.raises(PddError) as err:
        cluster.check_params(p, "other.yaml")
    assert str(err.value) == ("other.yaml: unet.train.threads x resources.rules.unet.processes_per_node: 80 is more "
                              "than resources.limits.threads=64")
    p["resources"]["rules"]["unet"]["gpus"] = 4
    with pytest.raises(PddError, match=r"^other\.yaml: resources\.rules\.unet\.processes_per_node: 40 processes "):
        cluster.check_params(p, "other.yaml")


def test_a_bad_resources_param_stops_snakemake_with_one_line(tmp_path):
    root = make_copy(tmp_path / "r", {"resources": {"rules": {"unet": {"gpu": 1}}}})
    out = sh(["snakemake", "-n", "-c1"], root, check=False)
    assert out.returncode == 2
    assert out.stderr.strip() == ("pdd: error: params.yaml: resources.rules.unet.gpu: unknown key (check its spelling; "
                                  "see workflow/schemas/params.schema.yaml)")


# ---- multi-node launch ------------------------------------------------------------------------
def test_launch_dry_run_prints_the_exact_command(capsys):
    assert cli.main(["launch", "--dry-run", "unet", "--nodes", "2", "--processes-per-node", "4"]) == 0
    assert capsys.readouterr().out == MULTI_NODE_CMD + "\n"
    assert cli.main(["launch", "-n", "clip"]) == 0
    assert capsys.readouterr().out == "python -m stages.clip\n"
    assert cli.main(["launch", "-n", "vae", "--processes-per-node", "2"]) == 0
    assert capsys.readouterr().out == "torchrun --standalone --nnodes=1 --nproc-per-node=2 -m stages.vae\n"
    assert cli.main(["launch", "-n", "unet", "--nodes", "9"]) == 2
    assert "resources.rules.unet.nodes: 9 is more than resources.limits.nodes=8" in capsys.readouterr().err


def test_snakemake_dry_run_with_two_nodes_runs_the_launch_command(tmp_path):
    root = make_copy(tmp_path / "r", {"resources": {"rules": {"unet": MULTI_NODE}}})
    out = sh(["snakemake", "-n", "-p", "--forceall", "-c2", "models/unet"], root).stdout
    block = rule_block(out, "unet")
    resources = re.search(r"resources: (.*)$", block, re.M).group(1).split(", ")
    for want in ("nodes=2", "tasks=2", "mpi=srun", "gres=gpu:4", "mem_mb=6000"):
        assert want in resources, resources
    gpu_cmd = MULTI_NODE_CMD.replace("--cpus-per-task=8 ", "--cpus-per-task=8 --gres=gpu:4 ")
    assert f"Shell command: {gpu_cmd} 2> logs/unet.log" in block, block
    # the same command as `pdd launch --dry-run` prints for these params
    launched = sh(["python", "-m", "pdd.cli", "launch", "--dry-run", "unet"], root).stdout.strip()
    assert launched == gpu_cmd
    # clip and vae kept their defaults: one process, the dvc.yaml command
    assert "Shell command: python -m stages.clip 2> logs/clip.log" in rule_block(out, "clip")


def test_the_slurm_executor_asks_one_task_per_node():
    """What snakemake-executor-plugin-slurm (pinned) makes of a 2-node rule: the sbatch flags."""
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    class Res(dict):
        __getattr__ = dict.__getitem__

    p = repo_params()
    p["resources"]["rules"]["unet"].update(MULTI_NODE)
    job = SimpleNamespace(resources=Res(cluster.resources(p, "unet")), threads=cluster.threads(p, "unet"))
    call = get_submit_command(job, {"run_uuid": "u", "slurm_logfile": "l", "comment_str": "c", "account": "",
                                    "partition": "", "workdir": ""}) + set_gres_string(job)
    flags = call.split()
    for want in ("--nodes=2", "--ntasks=2", "--cpus-per-task=8", "--gres=gpu:4"):
        assert want in flags, call
    assert "--mem" in flags and flags[flags.index("--mem") + 1] == "6000"
    assert not any(f.startswith("--ntasks-per-gpu") for f in flags), call
    # the job-step plugin runs an `mpi` rule's shell itself (no srun of its own): the rule's srun spreads it
    assert "mpi" in job.resources
