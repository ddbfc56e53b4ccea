"""Processing trains: chained processing steps described in one YAML file.

    name: reco-2026a                    # letters, digits, - _ .
    detector: 133                       # optional: restricts the first step to this detector ...
    runs: [12345, 12346]                # ... and runs (or run_list: km3smk "<det:8> <run:8>" lines)
    steps:
      - name: reco
        input:
          query: {datatype: raw, DetectorID: 133}   # a metadata query (DIRAC operators allowed) ...
          path: /km3net/data/raw                    # ... below this directory
        plugin: ByRunSize                           # a TransformationSystem plugin (letters only)
        plugin_parameters: {GroupSize: 5}
        jdl_template: reconstruction.jdl            # from jdl_templates/
        jdl_parameters: {SoftwareVersion: v19, Campaign: 2026a}
        calibration: [orientations:1.0.0, detx:campaign-2026a]   # optional: kind:version, kind:tag or kind
        output:
          path: /km3net/data/reco/133/2026a         # outputs are registered below it
          se: KM3-DISK-1
          failover_ses: [KM3-DISK-2]
          metadata: {datatype: reco}
          replicate: "KM3-DISK-2"                   # optional extra replication rule
      - name: merge
        input: {step: reco}                         # the previous step's registered outputs
        ...

Every output of a step carries ``TrainName`` and ``TrainStep``: step N+1's input query is step N's output
metadata, so DIRAC's InputDataAgent feeds it with step N's registered outputs and no one in between.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from KM3DIRAC.core.calibration import CalibrationError, parse_requirements
from KM3DIRAC.core.errors import KM3DiracError
from KM3DIRAC.core.metadata_query import MAX_OR_GROUPS
from KM3DIRAC.core.run_chunking import PLUGIN_LIMITS, ChunkingError, parameters_from

RUN_LIST_LINE = re.compile(r"^(\d{8})\s+(\d{8})$")
DIRAC_PLUGINS = ("Standard", "BySize", "Broadcast", "ByShare")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
PLUGIN = re.compile(r"^[A-Za-z]+$")
STEP_KEYS = {"name", "input", "plugin", "plugin_parameters", "jdl_template", "jdl_parameters", "output",
             "description", "calibration"}
OUTPUT_KEYS = {"path", "se", "failover_ses", "metadata", "replicate", "patterns"}


class TrainDefinitionError(KM3DiracError, ValueError):
    """A train file that cannot be used; the message names the file, the step and the field."""


@dataclass(frozen=True)
class StepOutput:
    path: str
    se: str
    failover_ses: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    replicate: str | None = None
    patterns: tuple[str, ...] = ("*.root",)


@dataclass(frozen=True)
class Step:
    name: str
    plugin: str
    jdl_template: str
    output: StepOutput
    input_query: dict[str, Any] = field(default_factory=dict)
    input_path: str = "/"
    input_step: str | None = None
    plugin_parameters: dict[str, Any] = field(default_factory=dict)
    jdl_parameters: dict[str, Any] = field(default_factory=dict)
    calibration: tuple[str, ...] = ()  # KM3Calibration of its jobs (KM3DIRAC.core.calibration requirements)


@dataclass(frozen=True)
class Train:
    name: str
    steps: tuple[Step, ...]
    source: str = "<train>"
    detector: int | None = None
    runs: tuple[int, ...] = ()
    definition: str = field(default="", compare=False, repr=False)  # the YAML text it was read from

    def step(self, name: str) -> Step:
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(name)

    def transformation_name(self, step: Step) -> str:
        return f"{self.name}.{step.name}"

    def output_metadata(self, step: Step) -> dict[str, Any]:
        """Metadata every output of ``step`` is registered with (what the next step queries)."""
        return {**step.output.metadata, "TrainName": self.name, "TrainStep": step.name}

    def output_path(self, step: Step, processing_pass: int = 1) -> str:
        """Where ``step``'s outputs of a processing pass go: pass 1 (the first processing) at the step's output path,
        a later pass (``dirac-km3-train reprocess``) in a ``pass<N>`` directory just below the path's fixed part
        (``/a/b/run<run_number>`` -> ``/a/b/pass2/run<run_number>``): Rucio never reuses a file's name, so the
        outputs of a reprocessing are new files next to the old ones, not replacements."""
        path = step.output.path
        if processing_pass < 1:
            raise TrainDefinitionError(f"{self.source}: processing pass {processing_pass}: must be 1 or more")
        if processing_pass == 1:
            return path
        fixed = static_directory(path)
        return f"{fixed.rstrip('/')}/pass{processing_pass}{path[len(fixed):]}"

    def input_query(self, step: Step) -> tuple[dict[str, Any], str]:
        """(metadata query, path) feeding ``step``: its own query, or the outputs of its input step."""
        if step.input_step is None:
            query = dict(step.input_query)
            if self.detector is not None:
                query["DetectorID"] = self.detector
            if self.runs:
                query["run_number"] = run_condition(self.runs)
            return query, step.input_path
        previous = self.step(step.input_step)
        return {"TrainName": self.name, "TrainStep": previous.name}, static_directory(previous.output.path)


def parse_run_list(text: str, detector: int | None = None, source: str = "run list") -> list[int]:
    """Runs of a km3smk run list: ``<detector:8 digits> <run:8 digits>`` per line; blank and ``#`` lines ignored."""
    runs = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = RUN_LIST_LINE.match(line)
        if match is None:
            raise _fail(source, f"run_list line {number}", f"{line!r} is not '<detector:8 digits> <run:8 digits>'")
        if detector is not None and int(match.group(1)) != detector:
            raise _fail(source, f"run_list line {number}", f"detector {int(match.group(1))}, the train's is {detector}")
        runs.append(int(match.group(2)))
    return runs


def run_condition(runs: tuple[int, ...]) -> Any:
    """The ``run_number`` condition of a query: a range when the runs are contiguous, else ``in``."""
    if len(runs) > 1 and max(runs) - min(runs) + 1 == len(set(runs)):
        return {">=": min(runs), "<=": max(runs)}
    return {"in": list(runs)} if len(runs) > 1 else runs[0]


def _parse_runs(source: str, data: dict[str, Any], detector: int | None) -> tuple[int, ...]:
    runs, run_list = data.get("runs"), data.get("run_list")
    if runs is not None and run_list is not None:
        raise _fail(source, "runs", "give runs or run_list, not both")
    if run_list is not None:
        runs = parse_run_list(str(run_list), detector, source)
    if runs is None:
        return ()
    if not isinstance(runs, list) or not runs or not all(isinstance(r, int) and r > 0 for r in runs):
        raise _fail(source, "runs", f"must be a non-empty list of positive run numbers, not {runs!r}")
    unique = tuple(sorted(set(runs)))
    if len(unique) != len(runs):
        raise _fail(source, "runs", "a run is listed twice")
    if len(unique) > MAX_OR_GROUPS and max(unique) - min(unique) + 1 != len(unique):
        raise _fail(source, "runs", f"{len(unique)} runs that are not one range: a query takes at most "
                                    f"{MAX_OR_GROUPS}; split the train")
    return unique


def static_directory(path: str) -> str:
    """The fixed part of an output path that has per-output parts (``/a/b/run<run_number>`` -> ``/a/b``)."""
    if "<" not in path:
        return path
    return path.split("<", 1)[0].rsplit("/", 1)[0] or "/"


def _fail(source: str, where: str, message: str) -> TrainDefinitionError:
    return TrainDefinitionError(f"{source}: {where}: {message}")


def _mapping(source: str, where: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _fail(source, where, f"must be a mapping, not {type(value).__name__}")
    return dict(value)


def _lfn_dir(source: str, where: str, value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("/") or ".." in value.split("/") or "//" in value:
        raise _fail(source, where, f"must be an absolute LFN directory, not {value!r}")
    return value.rstrip("/") or "/"


def _parse_output(source: str, where: str, raw: Any) -> StepOutput:
    output = _mapping(source, where, raw)
    unknown = sorted(set(output) - OUTPUT_KEYS)
    if unknown:
        raise _fail(source, where, f"unknown fields {unknown} (allowed: {sorted(OUTPUT_KEYS)})")
    for required in ("path", "se"):
        if not output.get(required):
            raise _fail(source, f"{where}.{required}", "is required")
    failover = output.get("failover_ses") or []
    patterns = output.get("patterns") or ["*.root"]
    if not isinstance(failover, list) or not isinstance(patterns, list):
        raise _fail(source, where, "failover_ses and patterns must be lists")
    return StepOutput(path=_lfn_dir(source, f"{where}.path", output["path"]), se=str(output["se"]),
                      failover_ses=tuple(str(s) for s in failover),
                      metadata=_mapping(source, f"{where}.metadata", output.get("metadata")),
                      replicate=output.get("replicate") or None, patterns=tuple(str(p) for p in patterns))


def _parse_step(source: str, index: int, raw: Any, earlier: list[str], templates: Path | None) -> Step:
    if not isinstance(raw, dict):
        raise _fail(source, f"steps[{index}]", "must be a mapping")
    name = raw.get("name")
    where = f"step {name!r}" if isinstance(name, str) else f"steps[{index}]"
    if not isinstance(name, str) or not NAME.match(name):
        raise _fail(source, f"{where}.name", "must be 1-64 of letters, digits, '-', '_', '.'")
    if name in earlier:
        raise _fail(source, f"{where}.name", "is used by an earlier step")
    unknown = sorted(set(raw) - STEP_KEYS)
    if unknown:
        raise _fail(source, where, f"unknown fields {unknown} (allowed: {sorted(STEP_KEYS)})")
    plugin = raw.get("plugin")
    if not isinstance(plugin, str) or not PLUGIN.match(plugin):
        raise _fail(source, f"{where}.plugin", f"must be a plugin name of letters only, not {plugin!r}")
    if plugin not in PLUGIN_LIMITS and plugin not in DIRAC_PLUGINS:
        raise _fail(source, f"{where}.plugin", f"unknown plugin {plugin} (KM3DIRAC: {', '.join(PLUGIN_LIMITS)}; "
                                              f"DIRAC: {', '.join(DIRAC_PLUGINS)})")
    plugin_parameters = _mapping(source, f"{where}.plugin_parameters", raw.get("plugin_parameters"))
    if plugin in PLUGIN_LIMITS:
        try:
            PLUGIN_LIMITS[plugin](parameters_from(plugin_parameters))
        except ChunkingError as error:
            raise _fail(source, f"{where}.plugin_parameters", str(error)) from error
    template = raw.get("jdl_template")
    if not isinstance(template, str) or not template:
        raise _fail(source, f"{where}.jdl_template", "is required")
    if templates is not None and not (templates / template).is_file():
        raise _fail(source, f"{where}.jdl_template", f"no template {template} in {templates}")
    source_input = _mapping(source, f"{where}.input", raw.get("input"))
    input_step = source_input.get("step")
    if input_step is not None:
        if input_step not in earlier:
            raise _fail(source, f"{where}.input.step", f"{input_step!r} is not an earlier step ({earlier})")
        if set(source_input) - {"step"}:
            raise _fail(source, f"{where}.input", "'step' cannot be combined with 'query' or 'path'")
    elif not source_input.get("query"):
        raise _fail(source, f"{where}.input", "needs a 'query' (with an optional 'path') or the 'step' it follows")
    return Step(
        name=name, plugin=plugin, jdl_template=template,
        output=_parse_output(source, f"{where}.output", raw.get("output")),
        input_query=_mapping(source, f"{where}.input.query", source_input.get("query")),
        input_path=_lfn_dir(source, f"{where}.input.path", source_input.get("path", "/")),
        input_step=input_step,
        plugin_parameters=plugin_parameters,
        jdl_parameters=_mapping(source, f"{where}.jdl_parameters", raw.get("jdl_parameters")),
        calibration=_parse_calibration(source, f"{where}.calibration", raw.get("calibration")),
    )


def _parse_calibration(source: str, where: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise _fail(source, where, f"must be a list of kind:version, kind:tag or kind, not {value!r}")
    try:
        return tuple(str(requirement) for requirement in parse_requirements(items))
    except CalibrationError as error:
        raise _fail(source, where, str(error)) from error


def parse_train(data: Any, source: str = "<train>", templates: Path | None = None) -> Train:
    if not isinstance(data, dict):
        raise _fail(source, "top level", "must be a mapping with 'name' and 'steps'")
    name = data.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise _fail(source, "name", "must be 1-64 of letters, digits, '-', '_', '.'")
    unknown = sorted(set(data) - {"name", "steps", "description", "detector", "runs", "run_list"})
    if unknown:
        raise _fail(source, "top level", f"unknown fields {unknown}")
    raw_steps = data.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise _fail(source, "steps", "must be a non-empty list")
    detector = data.get("detector")
    if detector is not None and (isinstance(detector, bool) or not isinstance(detector, int) or detector <= 0):
        raise _fail(source, "detector", f"must be a positive detector id (e.g. 133), not {detector!r}")
    runs = _parse_runs(source, data, detector)
    steps: list[Step] = []
    for index, raw in enumerate(raw_steps):
        steps.append(_parse_step(source, index, raw, [s.name for s in steps], templates))
    return Train(name=name, steps=tuple(steps), source=source, detector=detector, runs=runs)


def load_train(path: Path, templates: Path | None = None) -> Train:
    try:
        text = path.read_text()
    except OSError as error:
        raise TrainDefinitionError(f"{path}: cannot be read: {error}") from error
    return load_train_text(text, str(path), templates)


def load_train_text(text: str, source: str, templates: Path | None = None) -> Train:
    """A train from its YAML text (a file's, or the copy DIRAC keeps with the train's transformations)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise TrainDefinitionError(f"{source}: not valid YAML: {error}") from error
    train = parse_train(data, source, templates)
    return dataclasses.replace(train, definition=text)
