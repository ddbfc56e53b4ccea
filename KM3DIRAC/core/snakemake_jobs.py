"""One snakemake job as one DIRAC job: what the DIRAC executor plugin (``snakemake_executor_plugin_dirac``) submits,
and how it reads DIRAC's answers. No snakemake and no DIRAC imports: the plugin gives plain values.

The DIRAC job runs ``dirac-km3-job-run`` (KM3DIRAC's wrapper), which downloads the rule's inputs from Rucio
(KM3InputData: LFNs), runs the job script from the input sandbox and uploads and registers the outputs with
provenance (KM3OutputData / KM3OutputPath). The job script links each downloaded input to the path the rule's command
names and runs the command (in a KM3NeT software version from CVMFS when one is given, ``km3-cvmfs-run``).
"""

from __future__ import annotations

import posixpath
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from KM3DIRAC.core.errors import ConfigurationError
from KM3DIRAC.core.jdl import render

JOB_SCRIPT = "snakemake-job.sh"
TEMPLATE = Path(__file__).resolve().parent.parent.parent / "jdl_templates" / "snakemake-job.jdl"
#: DIRAC job states after which nothing changes any more
FINAL_STATES = {"Done": True, "Failed": False, "Killed": False, "Deleted": False}


@dataclass(frozen=True)
class StagedFile:
    lfn: str  # where it lives (Rucio, KM3DIRAC LFN)
    local_path: str  # where the rule's command names it (relative to the job directory)


@dataclass
class SnakemakeJobSpec:
    name: str  # the DIRAC JobName
    rule: str
    command: str  # the rule's shell command, formatted by snakemake
    inputs: list[StagedFile] = field(default_factory=list)
    outputs: list[StagedFile] = field(default_factory=list)
    output_se: str = ""
    failover_ses: list[str] = field(default_factory=list)
    cpu_time: int = 3600
    processors: int = 1
    max_ram_mb: int | None = None
    site: str | None = None
    tags: list[str] = field(default_factory=list)
    software: str | None = None  # a KM3NeT software version on CVMFS (km3-cvmfs-run)
    job_group: str = "snakemake"
    metadata: dict[str, str] = field(default_factory=dict)


def output_directory(spec: SnakemakeJobSpec) -> str:
    """The one LFN directory (Rucio dataset) the job's outputs are registered into."""
    directories = sorted({posixpath.dirname(f.lfn) for f in spec.outputs})
    if len(directories) != 1:
        raise ConfigurationError(f"rule {spec.rule}: outputs in {len(directories)} directories {directories}: "
                                 "a DIRAC job registers its outputs into one directory; split the rule or move "
                                 "its outputs into one directory")
    return directories[0]


def spec_problems(spec: SnakemakeJobSpec) -> list[str]:
    """What makes the job unsubmittable, each problem named (empty: fine)."""
    problems = []
    if not spec.outputs:
        problems.append(f"rule {spec.rule}: no declared output: the DIRAC executor registers a job's outputs in "
                        "Rucio and snakemake checks them there; declare the files the command writes as output:")
    if not spec.command.strip():
        problems.append(f"rule {spec.rule}: no shell command: the DIRAC executor runs shell: rules "
                        "(run:, script:, wrapper: and notebook: rules need snakemake on the worker node)")
    names: dict[str, str] = {}
    for staged in [*spec.inputs, *spec.outputs]:
        base = posixpath.basename(staged.lfn)
        if names.setdefault(base, staged.lfn) != staged.lfn:
            problems.append(f"rule {spec.rule}: two files named {base} ({names[base]}, {staged.lfn}): the job "
                            "directory holds a job's files by name")
    if spec.outputs:
        try:
            output_directory(spec)
        except ConfigurationError as error:
            problems.append(str(error))
    return problems


def job_script(spec: SnakemakeJobSpec) -> str:
    """The payload ``dirac-km3-job-run`` runs in the job directory, where the inputs were downloaded by name."""
    lines = ["#!/bin/bash", "# written by snakemake's DIRAC executor (KM3DIRAC): one snakemake job",
             "set -euo pipefail"]
    for staged in spec.inputs:
        here = posixpath.basename(staged.lfn)
        if staged.local_path != here:
            lines.append(f"mkdir -p {shlex.quote(posixpath.dirname(staged.local_path) or '.')}")
            lines.append(f"ln -sf \"$PWD\"/{shlex.quote(here)} {shlex.quote(staged.local_path)}")
    for directory in sorted({posixpath.dirname(f.local_path) for f in spec.outputs} - {""}):
        lines.append(f"mkdir -p {shlex.quote(directory)}")
    command = ["bash", "-c", f"set -euo pipefail; {spec.command}"]
    if spec.software:
        command = ["km3-cvmfs-run", spec.software, *command]
    lines.append(" ".join(shlex.quote(part) for part in command))
    return "\n".join(lines) + "\n"


def job_jdl(spec: SnakemakeJobSpec, script_path: Path, template: Path = TEMPLATE) -> str:
    jdl = render(template.read_text(), {
        "JobName": spec.name,
        "JobGroup": spec.job_group,
        "JobScript": str(script_path),
        "ScriptName": JOB_SCRIPT,
        "CPUTime": int(spec.cpu_time),
        "InputData": [f.lfn for f in spec.inputs],
        "OutputPatterns": [glob_escape(f.local_path) for f in spec.outputs],
        "OutputPath": output_directory(spec),
        "OutputSE": spec.output_se,
        "FailoverSEs": spec.failover_ses,
        "Metadata": [f"{key}={value}" for key, value in {"Step": spec.rule, **spec.metadata}.items()],
    }, template.name)
    extra = []
    if spec.processors > 1:
        extra.append(f"NumberOfProcessors = {int(spec.processors)};")
    if spec.max_ram_mb:
        extra.append(f"MaxRAM = {int(spec.max_ram_mb)};")
    if spec.site:
        extra.append(f'Site = "{_jdl_text(spec.site)}";')
    if spec.tags:
        extra.append("Tags = {" + ", ".join(f'"{_jdl_text(tag)}"' for tag in spec.tags) + "};")
    closing = jdl.rstrip().rfind("]")
    return jdl[:closing] + "".join(f"  {line}\n" for line in extra) + "]\n"


def glob_escape(path: str) -> str:
    """An exact path as a glob pattern (KM3OutputData patterns are globs)."""
    return re.sub(r"([*?\[])", r"[\1]", path)


def _jdl_text(value: str) -> str:
    if '"' in value:
        raise ConfigurationError(f"{value!r}: double quotes cannot go into a JDL string")
    return value


SUBMITTED = re.compile(r"^JobID = (\d+)\s*$", re.MULTILINE)
SUBMIT_ERROR = re.compile(r"^ERROR (\S+): (.*)$", re.MULTILINE)


def parse_submitted(output: str, jdl_paths: list[str]) -> tuple[dict[str, int], dict[str, str]]:
    """``dirac-wms-job-submit J1 J2 ...`` prints ``JobID = N`` per accepted JDL, in order, and ``ERROR J: why`` for
    the others: the job id of each accepted JDL and the reason of each refused one."""
    refused = dict(SUBMIT_ERROR.findall(output))
    accepted_paths = [path for path in jdl_paths if path not in refused]
    ids = [int(value) for value in SUBMITTED.findall(output)]
    if len(ids) != len(accepted_paths):
        raise ConfigurationError(f"dirac-wms-job-submit answered {len(ids)} job ids for {len(accepted_paths)} "
                                 f"accepted JDLs: {output.strip()[-500:]}")
    return dict(zip(accepted_paths, ids, strict=True)), refused


STATUS_LINE = re.compile(r"^JobID=(\d+)\s+(.*)$")


def parse_status(output: str) -> dict[int, dict[str, str]]:
    """``dirac-wms-job-status ID ...``: ``JobID=N Status=Done; MinorStatus=...; Site=...;`` per job."""
    states: dict[int, dict[str, str]] = {}
    for line in output.splitlines():
        match = STATUS_LINE.match(line.strip())
        if not match:
            continue
        fields = {}
        for item in match.group(2).split(";"):
            key, sep, value = item.strip().partition("=")
            if sep:
                fields[key.strip()] = value.strip()
        states[int(match.group(1))] = fields
    return states


def log_tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])
