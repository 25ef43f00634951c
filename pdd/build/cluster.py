"""What each Snakemake rule asks of a cluster, and how a training stage is launched on several
processes or nodes: all of it from params.yaml's `resources:` section, so a site changes params or its
profile, never the rules.

    resources.default        mem_mb, runtime (minutes), gpus (per node), partition ("": the profile's)
    resources.rules.<rule>   overrides per rule; the training rules (clip, vae, unet) also take nodes and
                             processes_per_node
    resources.limits         the most any rule may ask, from params or from a profile (set-resources,
                             set-threads, default-resources); more is a one-line error when the Snakefile
                             is parsed, before anything is submitted
    resources.launch.port    the rendezvous port of a multi-node launch
    resources.rules.export.slices
                             export as N cluster jobs (each writes whole shards), gathered by one more;
                             the result is byte-identical to one job (pdd/data/export.py)

Threads stay in each stage's own section (`<stage>.threads`, `<stage>.train.threads`), since the stage
itself uses them; a rule with several processes per node asks for threads x processes.

One process (the default): `python -m stages.<name>`, exactly the command in dvc.yaml. Several processes
on one node: `torchrun --standalone`. Several nodes: one `srun` task per node, each running torchrun
with its node rank from SLURM_NODEID and the first host of SLURM_JOB_NODELIST as the rendezvous; the
rule then carries Snakemake's `mpi` resource, so the SLURM executor runs the rule's shell once in the
batch allocation and the shell's own `srun` spreads it over the nodes. torchrun, not `accelerate launch`:
accelerate's launcher hands several processes to torch's launcher only with --multi_gpu (on CPU it
would start one process), and the training loop's Accelerator reads torchrun's environment itself.

Bookkeeping, not a build input: no stage imports this module (pdd/build/codedeps.py), and no stage
declares `resources` among its params, so changing it reruns nothing in DVC.
"""
from __future__ import annotations

import ast
import copy
import re
import shlex
import sys

from pdd.build import dag
from pdd.core import config
from pdd.core import params as params_mod
from pdd.core.errors import PddError

# set in params only: the launch command and the job's task layout are built from them
PARAMS_ONLY = ("nodes", "tasks", "tasks_per_node", "mpi")
_BARE = re.compile(r"[A-Za-z0-9_.:,-]+")


# ---- what a rule asks ----------------------------------------------------------------------
def settings(params: dict, rule: str) -> dict:
    """The rule's resources: resources.default overlaid with resources.rules.<rule>."""
    res = params["resources"]
    out = {"gpus": 0, "partition": "", "nodes": 1, "processes_per_node": 1}
    out.update(res["default"])
    out.update(res["rules"].get(rule, {}))
    return out


def processes(params: dict, rule: str) -> int:
    s = settings(params, rule)
    return s["nodes"] * s["processes_per_node"]


def _stage_threads(params: dict, rule: str) -> int:
    value = dag.stage(rule).threads
    return int(dag.resolve(value, params)) if isinstance(value, str) else int(value)


def threads(params: dict, rule: str) -> int:
    """Snakemake threads of the rule (per node): the stage's threads times its processes per node."""
    return _stage_threads(params, rule) * settings(params, rule)["processes_per_node"]


def resources(params: dict, rule: str) -> dict:
    """The rule's Snakemake resources, in the names snakemake-executor-plugin-slurm reads."""
    s = settings(params, rule)
    out = {"mem_mb": s["mem_mb"], "runtime": s["runtime"]}
    if s["partition"]:
        out["slurm_partition"] = s["partition"]
    if s["nodes"] > 1:
        # one task per node (the launch command's srun); mem_mb and threads are per node
        out.update(nodes=s["nodes"], tasks=s["nodes"], mpi="srun")
        if s["gpus"]:
            # gres is per node; tasks_per_gpu=0 keeps the plugin from turning `tasks` into --ntasks-per-gpu
            out.update(gres=f"gpu:{s['gpus']}", tasks_per_gpu=0)
    elif s["gpus"]:
        out["gpu"] = s["gpus"]
    return out


# ---- a stage scattered over jobs (export) -------------------------------------------------------
def slices(params: dict, rule: str) -> int:
    """How many jobs the rule's work is split over (resources.rules.<rule>.slices; export only)."""
    return int(params["resources"]["rules"].get(rule, {}).get("slices", 1))


def slice_dirs(params: dict, rule: str) -> list[str]:
    """The slice outputs the rule gathers (none when it runs as one job): <out>-slices/0 .. N-1."""
    n = slices(params, rule)
    out = dag.resolve(next(iter(dag.stage(rule).outs.values())), params)
    return [] if n == 1 else [f"{out}-slices/{i}" for i in range(n)]


def gather_command(params: dict, rule: str) -> str:
    """One job: the stage's own command (as in dvc.yaml); N slices: the same command gathering them."""
    n = slices(params, rule)
    return dag.stage(rule).cmd + ("" if n == 1 else f" --gather {n}")


# ---- how it is launched --------------------------------------------------------------------
def launch_command(module: str, nodes: int = 1, processes_per_node: int = 1, *, port: int = 29500,
                   cpus_per_node: int = 1, gpus_per_node: int = 0, args: str = "") -> str:
    """The shell command that runs `python -m MODULE ARGS` on nodes x processes_per_node processes."""
    if nodes < 1 or processes_per_node < 1:
        raise PddError(f"nodes={nodes}, processes_per_node={processes_per_node}: both must be at least 1")
    target = f"-m {module}" + (f" {args}" if args else "")
    if nodes == 1 and processes_per_node == 1:
        return f"python {target}"
    if nodes == 1:
        return f"torchrun --standalone --nnodes=1 --nproc-per-node={processes_per_node} {target}"
    per_node = (f"torchrun --nnodes={nodes} --nproc-per-node={processes_per_node} --node-rank=$SLURM_NODEID "
                f'--master-addr=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1) '
                f"--master-port={port} {target}")
    gres = f" --gres=gpu:{gpus_per_node}" if gpus_per_node else ""
    return (f"srun --nodes={nodes} --ntasks={nodes} --ntasks-per-node=1 --cpus-per-task={cpus_per_node}{gres} "
            f"--kill-on-bad-exit=1 bash -c {shlex.quote(per_node)}")


def command(params: dict, rule: str, args: str = "") -> str:
    """The launch command of a rule, from params (what its Snakemake rule runs, before the log redirect)."""
    s = settings(params, rule)
    return launch_command(dag.stage(rule).module, s["nodes"], s["processes_per_node"],
                          port=params["resources"]["launch"]["port"], cpus_per_node=threads(params, rule),
                          gpus_per_node=s["gpus"], args=args)


def with_layout(params: dict, rule: str, nodes: int | None = None, processes_per_node: int | None = None) -> dict:
    """A copy of params with resources.rules.<rule>.nodes / processes_per_node replaced (`pdd launch`)."""
    out = copy.deepcopy(params)
    entry = out["resources"]["rules"].setdefault(rule, {})
    for key, value in (("nodes", nodes), ("processes_per_node", processes_per_node)):
        if value is not None:
            if not dag.stage(rule).distributed and value != 1:
                raise PddError(f"{rule} runs as one process (only the training stages clip, vae and unet take "
                               f"several): {key}={value} does not apply")
            entry[key] = value
    return out


# ---- checks ------------------------------------------------------------------------------------
def check_params(params: dict, source: str = "params.yaml") -> None:
    """Every rule of `resources:` (the schema bounds each number): those of params alone (each rule within
    the limits, GPUs enough for the processes: config.check_resources) and the one that needs the registry,
    each rule's threads within resources.limits.threads. Raises PddError naming the key."""
    config.check_resources(params, source)
    limit = params["resources"]["limits"]["threads"]
    for stage in dag.PIPELINE:
        asked = threads(params, stage.name)
        if asked > limit:
            ppn = settings(params, stage.name)["processes_per_node"]
            where = str(stage.threads).strip("${}") + (f" x resources.rules.{stage.name}.processes_per_node"
                                                       if ppn > 1 else "")
            raise PddError(f"{source}: {where}: {asked} is more than resources.limits.threads={limit}")


def _plain(value):
    """A Snakemake Resource (or a plain value) as its value. Values from the command line or a profile are
    Python expressions to Snakemake; a literal (999999, "gpu:2") or a bare word (gpu:a100:2, 64G) is read
    as Snakemake reads it, and an expression computed per job (2 * attempt) is None: not checked here."""
    if not hasattr(value, "is_evaluable"):
        return value
    if not value.is_evaluable():
        return value.value
    raw = value.raw
    if not isinstance(raw, str):
        return None
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return raw if _BARE.fullmatch(raw) else None


def _asked(key: str, value) -> tuple[str, int] | None:
    """(limit name, amount) that a profile's resource KEY=VALUE asks for, or None if not limited."""
    value = _plain(value)
    if value is None:
        return None
    if key in ("mem_mb", "mem", "runtime") and isinstance(value, str):
        # lazy: 75 ms (python -X importtime), needed only for a profile's string ask while the Snakefile is
        # parsed (snakemake loaded already); `pdd launch` and `pdd --help` go without it
        from snakemake.resources import Resource

        value = Resource("mem" if key != "runtime" else "runtime", value).value
    if key in ("mem_mb", "mem"):
        return "mem_mb", int(value)
    if key == "runtime":
        return "runtime", int(value)
    if key in ("gpu", "gpus", "nvidia_gpu"):
        return "gpus", int(value)
    if key == "gres":   # "gpu", "gpu:2", "gpu:a100:2", possibly among other comma-separated GRES
        for part in str(value).strip("'\"").split(","):
            fields = part.strip().split(":")
            if fields[0] == "gpu":
                return "gpus", int(fields[-1]) if len(fields) > 1 and fields[-1].isdigit() else 1
        return None
    if key == "cpus_per_task":
        return "threads", int(value)
    return None


def profile_problems(params: dict, resource_settings) -> list[str]:
    """What a profile or the command line asks beyond params (Snakemake's workflow.resource_settings:
    set-resources, set-threads, default-resources), as one-line messages naming rule, key and values."""
    limits = params["resources"]["limits"]
    rules = [s.name for s in dag.PIPELINE] + ["all"]
    own = {s.name: resources(params, s.name) for s in dag.PIPELINE}
    problems = []

    def over(origin: str, key: str, value, rule: str | None = None):
        name = f"{rule}:{key}" if rule else key
        if key in PARAMS_ONLY:
            where = f"resources.rules.{rule or '<rule>'}.nodes / processes_per_node"
            problems.append(f"{origin} {name}={_plain(value)}: set {where} in params.yaml instead "
                            "(the launch command and the job's tasks are built from them)")
            return
        asked = _asked(key, value)
        if asked and asked[1] > limits[asked[0]]:
            problems.append(f"{origin} {name}={_plain(value)} asks for more than params.yaml allows "
                            f"(resources.limits.{asked[0]}={limits[asked[0]]})")
        elif asked and asked[0] == "gpus" and rule in own and key not in own[rule] \
                and any(k in own[rule] for k in ("gpu", "gres")):
            # the SLURM executor takes GPUs as `gpu` or as `gres`, never both
            problems.append(f"{origin} {name}={_plain(value)}: params.yaml already gives {rule} GPUs "
                            f"(resources.rules.{rule}.gpus={settings(params, rule)['gpus']}); set them in one place")

    for rule, mapping in dict(resource_settings.overwrite_resources or {}).items():
        if rule not in rules:
            problems.append(f"set-resources names rule {rule!r}, which this workflow does not have "
                            f"(rules: {', '.join(rules[:-1])})")
            continue
        for key, value in dict(mapping).items():
            over("set-resources", key, value, rule)
    for rule, value in dict(resource_settings.overwrite_threads or {}).items():
        if rule not in rules:
            problems.append(f"set-threads names rule {rule!r}, which this workflow does not have "
                            f"(rules: {', '.join(rules[:-1])})")
            continue
        n = _plain(value)
        if n is not None and int(n) > limits["threads"]:
            problems.append(f"set-threads {rule}={n} asks for more than params.yaml allows "
                            f"(resources.limits.threads={limits['threads']})")
        elif n is not None and rule != "all" and processes(params, rule) > 1 and int(n) != threads(params, rule):
            problems.append(f"set-threads {rule}={n}: {rule} runs {processes(params, rule)} processes, so its "
                            f"threads come from params.yaml (the stage's threads x processes_per_node = "
                            f"{threads(params, rule)})")
    defaults = resource_settings.default_resources
    for key, value in (dict(defaults.items()) if defaults is not None and hasattr(defaults, "items") else {}).items():
        over("default-resources", key, value)
    return problems


def read_params_or_exit(path: str = "params.yaml") -> dict:
    """For the Snakefile: params.yaml's data read as pdd reads it (YAML 1.2); a problem is one line, exit 2."""
    try:
        return params_mod.read(path) or {}
    except PddError as exc:
        print(f"pdd: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def check_or_exit(config: dict, resource_settings, source: str = "params.yaml") -> None:
    """For the Snakefile, while it is parsed: params (schema and resources) and the profile's asks.
    The first problem is one line on stderr and exit status 2, before any job is submitted."""
    try:
        params_mod.validate(config, source)
        check_params(config, source)
        problems = profile_problems(config, resource_settings)
        if problems:
            raise PddError(problems[0])
    except PddError as exc:
        print(f"pdd: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
