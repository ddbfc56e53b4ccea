"""Processing trains in DIRAC: one transformation per step, chained by input metadata queries.

``create`` makes each step's transformation (name ``<train>.<step>``; an existing one is kept, so creating the
same train twice creates nothing new), with the step's plugin and parameters, a job body built from the step's
JDL template, and the input meta query of :meth:`KM3DIRAC.core.trains.Train.input_query`: the InputDataAgent then
feeds step N+1 with step N's registered outputs. ``plan`` is a dry run over the current catalog contents with the
plugins' own chunking; ``status`` sums up files, tasks and jobs per step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from DIRAC.Core.Utilities.ClassAd.ClassAdLight import ClassAd
from DIRAC.Interfaces.API.Job import Job
from DIRAC.TransformationSystem.Client.Transformation import Transformation
from DIRAC.TransformationSystem.Client.TransformationClient import TransformationClient

from KM3DIRAC.core.catalog import PATH_KEY
from KM3DIRAC.core.errors import KM3DiracError
from KM3DIRAC.core.jdl import placeholders, render
from KM3DIRAC.core.job_run import output_directory
from KM3DIRAC.core.run_chunking import PLUGIN_LIMITS, parameters_from, plan_chunks
from KM3DIRAC.core.run_metadata import fetch_run_metadata
from KM3DIRAC.core.runs import RunInfoError, build_file_records, complete_runs, run_of
from KM3DIRAC.core.trains import Step, Train, load_train_text

TRANSFORMATION_TYPE = "DataReconstruction"
#: Transformation parameter keeping the train's YAML, where the TrainAgent finds the train.
TRAIN_DEFINITION_PARAMETER = "KM3TrainDefinition"
#: Transformation parameter: the step's processing pass (1, plus one per ``dirac-km3-train reprocess``).
TRAIN_PASS_PARAMETER = "KM3TrainPass"
#: Steps in these statuses make a train the TrainAgent works on (Stopped trains are left alone).
RUNNING_STATUSES = ("Active", "Flush", "Completing")
#: What a production manager sets a train to (stop, start, flush).
MANAGER_STATUSES = ("Stopped", "Active", "Flush")
#: Task (job) statuses whose files are retried.
FAILED_TASK_STATUSES = ("Failed", "Killed")
DEFAULT_MAX_RETRIES = 3
#: JDL attributes of a template the train sets itself from the step definition.
TRAIN_OWNED = ("KM3InputData", "KM3OutputData", "KM3OutputPath", "KM3OutputSE", "KM3FailoverSEs",
               "KM3OutputMetadata", "KM3Replicate", "InputData", "JobName", "JobGroup")


class TrainOperationError(KM3DiracError):
    """A DIRAC call made for a train failed; the message names the step and the call."""


def _value(result: dict, what: str) -> Any:
    if not result["OK"]:
        raise TrainOperationError(f"{what}: {result['Message']}")
    return result["Value"]


def _jdl_list(values: list[str] | tuple[str, ...]) -> str:
    return ";".join(values)  # DIRAC's Job turns ';'-separated JDL parameters into JDL lists


def step_job(train: Train, step: Step, templates: Path, processing_pass: int = 1) -> Job:
    """The job of one task of ``step``: the template's executable, arguments, CPU time and sandboxes, plus the
    train's data parameters (the task's input files come from the TransformationSystem as InputData)."""
    template = templates / step.jdl_template
    template_text = template.read_text()
    defaults = yaml.safe_load((templates / "defaults.yaml").read_text()) if (templates / "defaults.yaml").exists() \
        else {}
    parameters: dict[str, Any] = {**(defaults or {}), "Run": "0", "InputData": "", "OutputSE": step.output.se,
                                  "FailoverSEs": "", **step.jdl_parameters}
    for name in placeholders(template_text):
        parameters.setdefault(name, "0")  # per-task values a train does not know (e.g. Run): template lines only
    class_ad = ClassAd(render(template_text, parameters, template.name))
    executable, arguments = class_ad.getAttributeString("Executable"), class_ad.getAttributeString("Arguments")
    if Path(executable).name == "dirac-km3-job-run":
        # in a production the JobExecutionCoordinator moves the data: run the payload itself
        executable, _, arguments = arguments.partition("--")[2].strip().partition(" ")
    job = Job()
    job.setName(train.transformation_name(step))
    job.setJobGroup(train.name)
    job.setExecutable(executable, arguments=arguments)
    job.setCPUTime(class_ad.getAttributeInt("CPUTime") or 86400)
    sandbox = class_ad.getListFromExpression("OutputSandbox")
    if sandbox:
        job.setOutputSandbox(sandbox)
    data_parameters = {
        "KM3OutputData": _jdl_list(step.output.patterns),
        "KM3OutputPath": train.output_path(step, processing_pass),
        "KM3OutputSE": step.output.se,
        "KM3FailoverSEs": _jdl_list(step.output.failover_ses),
        "KM3OutputMetadata": _jdl_list([f"{k}={v}" for k, v in train.output_metadata(step).items()]),
    }
    if step.output.replicate:
        data_parameters["KM3Replicate"] = step.output.replicate
    if step.calibration:
        data_parameters["KM3Calibration"] = _jdl_list(step.calibration)
    for name, value in data_parameters.items():
        if value:
            job._addParameter(job.workflow, name, "JDL", value, "KM3DIRAC train data parameter")
    for name in class_ad.getAttributes():
        if name.startswith("KM3") and name not in TRAIN_OWNED and name not in data_parameters:
            job._addParameter(job.workflow, name, "JDL", class_ad.getAttributeString(name), "KM3DIRAC parameter")
    return job


@dataclass
class StepState:
    step: str
    transformation_id: int | None
    created: bool = False
    status: str = ""
    files: dict[str, int] = field(default_factory=dict)
    tasks: dict[str, int] = field(default_factory=dict)
    problematic: dict[str, int] = field(default_factory=dict)  # lfn -> times it failed


@dataclass
class RunStepState:
    """One run in one step: its files by status and the tasks (jobs) they are in, by status."""

    run: int | None
    step: str
    files: dict[str, int] = field(default_factory=dict)
    tasks: dict[str, int] = field(default_factory=dict)


@dataclass
class CycleReport:
    """What one cycle of the TrainAgent (or ``dirac-km3-train advance``) did to a train."""

    closed: list[str] = field(default_factory=list)  # output datasets closed: their run is done in their step
    retried: dict[str, list[str]] = field(default_factory=dict)  # step -> files of failed tasks made Unused again
    problematic: dict[str, list[str]] = field(default_factory=dict)  # step -> files that failed too often
    flushed: list[str] = field(default_factory=list)  # steps in Flush with nothing left to flush, set Active


@dataclass
class ReprocessReport:
    processing_pass: int
    files: dict[str, int] = field(default_factory=dict)  # step -> files made Unused again
    output_paths: dict[str, str] = field(default_factory=dict)  # step -> where the new pass's outputs go


class TrainManager:
    def __init__(self, train: Train, templates: Path | None = None, client: TransformationClient | None = None,
                 transformation_type: str = TRANSFORMATION_TYPE) -> None:
        self.train = train
        self.templates = templates
        self.client = client or TransformationClient()
        self.transformation_type = transformation_type

    def existing_id(self, step: Step) -> int | None:
        result = self.client.getTransformation(self.train.transformation_name(step))
        return int(result["Value"]["TransformationID"]) if result["OK"] else None

    def _ids(self) -> dict[str, int | None]:
        return {step.name: self.existing_id(step) for step in self.train.steps}

    def _created_ids(self) -> dict[str, int]:
        ids = self._ids()
        missing = [name for name, transformation_id in ids.items() if transformation_id is None]
        if missing:
            raise TrainOperationError(f"train {self.train.name}: steps {missing} have no transformation yet "
                                      f"(dirac-km3-train create {self.train.source})")
        return ids  # type: ignore[return-value]

    def _templates(self) -> Path:
        if self.templates is None:
            raise TrainOperationError(f"train {self.train.name}: no JDL template directory given")
        return self.templates

    def create(self) -> list[StepState]:
        states = []
        for step in self.train.steps:
            existing = self.existing_id(step)
            if existing is not None:
                self._keep_definition(existing, step)
                states.append(StepState(step.name, existing, created=False))
                continue
            states.append(StepState(step.name, self._create_step(step), created=True))
        return states

    def _keep_definition(self, transformation_id: int, step: Step) -> None:
        """The train's YAML kept with each step's transformation, where the TrainAgent finds it (a transformation
        created before KM3DIRAC kept it gets it now; one that has it keeps its own)."""
        if not self.train.definition:
            return
        kept = self.client.getTransformationParameters(transformation_id, TRAIN_DEFINITION_PARAMETER)
        if not kept["OK"]:
            _value(self.client.setTransformationParameter(transformation_id, TRAIN_DEFINITION_PARAMETER,
                                                          self.train.definition),
                   f"{step.name}: {TRAIN_DEFINITION_PARAMETER}")

    def _create_step(self, step: Step) -> int:
        name = self.train.transformation_name(step)
        query, path = self.train.input_query(step)
        transformation = Transformation()
        _value(transformation.setTransformationName(name), f"{name}: setTransformationName")
        transformation.setType(self.transformation_type)
        transformation.setDescription(f"train {self.train.name}, step {step.name}")
        transformation.setLongDescription(f"KM3DIRAC processing train {self.train.name} ({self.train.source}), "
                                          f"step {step.name}: {step.plugin} on {query} below {path}")
        transformation.setTransformationGroup(self.train.name)
        transformation.setPlugin(step.plugin)
        transformation.setGroupSize(int(step.plugin_parameters.get("GroupSize", 1)))
        transformation.setBody(step_job(self.train, step, self._templates()).workflow.toXML())
        transformation.setInputMetaQuery({**query, **({} if path == "/" else {PATH_KEY: path})})
        _value(transformation.addTransformation(addFiles=True), f"{name}: addTransformation")
        transformation_id = int(_value(transformation.getTransformationID(), f"{name}: getTransformationID"))
        for key, value in step.plugin_parameters.items():
            _value(self.client.setTransformationParameter(transformation_id, key, value), f"{name}: {key}")
        self._keep_definition(transformation_id, step)
        _value(transformation.setStatus("Active"), f"{name}: setStatus")
        _value(transformation.setAgentType("Automatic"), f"{name}: setAgentType")
        return transformation_id

    # ------------------------------------------------------------------------------------------ one cycle
    def cycle(self, catalog: Any, max_retries: int = DEFAULT_MAX_RETRIES) -> CycleReport:
        """What the TrainAgent does for the train at each cycle: task status from the jobs, files of Done tasks
        Processed, files of Failed tasks retried (or Problematic past ``max_retries`` failures), and each run's
        output dataset of a step closed once the run is done there (:meth:`advance`)."""
        report = CycleReport()
        ids = self._ids()
        for step in self.train.steps:
            transformation_id = ids[step.name]
            if transformation_id is None:
                continue
            self.refresh_tasks(transformation_id)
            retried, problematic = self.retry_failed(transformation_id, step, max_retries)
            if retried:
                report.retried[step.name] = retried
            if problematic:
                report.problematic[step.name] = problematic
            if self._end_empty_flush(transformation_id, step):
                report.flushed.append(step.name)
        report.closed = self._close_done_runs(catalog, ids)
        return report

    def _end_empty_flush(self, transformation_id: int, step: Step) -> bool:
        """A step in Flush with no Unused file back to Active: DIRAC's TransformationAgent ends a Flush only where it
        made tasks, and DIRAC's InputDataAgent feeds only Active transformations, so such a step would wait
        forever for its input. Returns whether it was set Active."""
        info = _value(self.client.getTransformation(transformation_id), f"{step.name}: getTransformation")
        if info.get("Status") != "Flush" or self._transformation_files(transformation_id, step, Status="Unused"):
            return False
        _value(self.client.setTransformationParameter(transformation_id, "Status", "Active"),
               f"{step.name}: setStatus Active")
        return True

    def retry_failed(self, transformation_id: int, step: Step, max_retries: int) -> tuple[list[str], list[str]]:
        """Files of the step's Failed (or Killed) tasks back to Unused, for the TransformationAgent to put in new
        tasks; a file that has failed more than ``max_retries`` times is Problematic instead (TransformationDB
        counts a file's failures in ErrorCount: Assigned and then not Processed, and never lowers it: a file given
        back by ``reprocess`` after it was Problematic gets one more try). Returns (retried, problematic)."""
        if max_retries < 0:
            raise TrainOperationError(f"MaxRetries = {max_retries}: must be 0 (no retry) or more")
        failed_tasks = _value(self.client.getTransformationTasks({"TransformationID": transformation_id,
                                                                  "ExternalStatus": list(FAILED_TASK_STATUSES)}),
                              f"{step.name}: getTransformationTasks")
        task_ids = [task["TaskID"] for task in failed_tasks]
        assigned = self._transformation_files(transformation_id, step, Status="Assigned", TaskID=task_ids) \
            if task_ids else []
        retried = sorted(f["LFN"] for f in assigned if int(f.get("ErrorCount") or 0) < max_retries)
        problematic = sorted(f["LFN"] for f in assigned if int(f.get("ErrorCount") or 0) >= max_retries)
        for status, lfns in (("Unused", retried), ("Problematic", problematic)):
            if lfns:
                _value(self.client.setFileStatusForTransformation(transformation_id, status, lfns),
                       f"{step.name}: files {status}")
        return retried, problematic

    def advance(self, catalog: Any) -> list[str]:
        """Close the per-run output datasets of every step whose runs are fully processed, so that the next step's
        run-aware plugin sees those runs complete (its last, smaller task is made). Returns the datasets closed.

        A step's output path with ``<run_number>`` (e.g. ``.../run<run_number>``) keeps each run in its own dataset;
        a run is done in a step when every one of its files in the step's transformation is Processed and every
        output in the run's dataset has reached the next step's transformation (the InputDataAgent adds them)."""
        ids = self._ids()
        for transformation_id in ids.values():
            if transformation_id is not None:
                self.refresh_tasks(transformation_id)
        return self._close_done_runs(catalog, ids)

    def _close_done_runs(self, catalog: Any, ids: dict[str, int | None]) -> list[str]:
        closed = []
        for step in self.train.steps[:-1]:
            transformation_id = ids[step.name]
            if "<run_number>" not in step.output.path or transformation_id is None:
                continue
            files = self._transformation_files(transformation_id, step)
            runs = _runs_of(catalog, [f["LFN"] for f in files])
            pending = {runs.get(f["LFN"]) for f in files if f["Status"] != "Processed"}
            fed = {f["LFN"] for later in self.train.steps if later.input_step == step.name and ids[later.name]
                   for f in self._transformation_files(ids[later.name], later)}
            passes = range(1, self.processing_pass(transformation_id) + 1)
            for run in sorted({r for r in runs.values() if r is not None} - pending):
                metadata = {**self.train.output_metadata(step), "run_number": run}
                if self.train.detector is not None:
                    metadata.setdefault("DetectorID", self.train.detector)
                datasets = [output_directory(self.train.output_path(step, number), metadata) for number in passes]
                for dataset, is_open in catalog.directory_open_states(datasets).items():
                    if not is_open:
                        continue  # absent, or closed already
                    outputs = set(catalog.dataset_files({dataset: True}).successful.get(dataset, []))
                    if outputs - fed:
                        continue  # the InputDataAgent has not handed all of them to the next step yet
                    catalog.set_dataset_open({dataset: True}, is_open=False)
                    closed.append(dataset)
        return closed

    def _transformation_files(self, transformation_id: int, step: Step, **conditions: Any) -> list[dict]:
        query = {"TransformationID": transformation_id, **conditions}
        return _value(self.client.getTransformationFiles(query), f"{step.name}: getTransformationFiles")

    def processing_pass(self, transformation_id: int) -> int:
        """The step's current processing pass: 1, plus one per ``reprocess``."""
        kept = self.client.getTransformationParameters(transformation_id, TRAIN_PASS_PARAMETER)
        return int(kept["Value"]) if kept["OK"] else 1

    def refresh_tasks(self, transformation_id: int) -> None:
        """Task status from its job, and files of Done tasks Processed: what the WorkflowTaskAgent's MonitorTasks and
        MonitorFiles do, but at once (DIRAC 9.1 only looks at tasks untouched for 10 minutes)."""
        from DIRAC.WorkloadManagementSystem.Client.JobMonitoringClient import JobMonitoringClient

        tasks = _value(self.client.getTransformationTasks({"TransformationID": transformation_id}),
                       "getTransformationTasks")
        open_tasks = [t for t in tasks if int(t.get("ExternalID") or 0) > 0
                      and t["ExternalStatus"] not in ("Done", *FAILED_TASK_STATUSES)]
        if not open_tasks:
            return
        jobs = _value(JobMonitoringClient().getJobsStatus([int(t["ExternalID"]) for t in open_tasks]),
                      "getJobsStatus")
        for task in open_tasks:
            status = jobs.get(int(task["ExternalID"]), {}).get("Status")
            if not status or status == task["ExternalStatus"]:
                continue
            _value(self.client.setTaskStatus(transformation_id, task["TaskID"], status), "setTaskStatus")
            if status == "Done":
                files = _value(self.client.getTransformationFiles({"TransformationID": transformation_id,
                                                                    "TaskID": task["TaskID"]}),
                               "getTransformationFiles")
                lfns = [f["LFN"] for f in files]
                if lfns:
                    _value(self.client.setFileStatusForTransformation(transformation_id, "Processed", lfns),
                           "setFileStatusForTransformation")

    # ------------------------------------------------------------------------------------------ production manager
    def set_status(self, status: str) -> list[StepState]:
        """Every step's transformation to ``status``: Stopped (the TransformationAgent makes no new task, the
        InputDataAgent adds no file, the TrainAgent leaves the train alone; running jobs finish), Active (go on),
        Flush (DIRAC's: the plugins make tasks of incomplete groups, open runs included, then DIRAC sets the step
        Active again; the TrainAgent does so for a step that had nothing to flush)."""
        if status not in MANAGER_STATUSES:
            raise TrainOperationError(f"status {status}: a train can be set {', '.join(MANAGER_STATUSES)}")
        states = []
        for step_name, transformation_id in self._created_ids().items():
            _value(self.client.setTransformationParameter(transformation_id, "Status", status),
                   f"{step_name}: setStatus {status}")
            states.append(StepState(step_name, transformation_id, status=status))
        return states

    def reprocess(self, catalog: Any, runs: list[int]) -> ReprocessReport:
        """The given runs' files go back through the steps, as a new processing pass with versioned outputs.

        Every step's jobs from now on write below ``pass<N>`` (:meth:`KM3DIRAC.core.trains.Train.output_path`);
        the first steps' files of the runs are made Unused again (their earlier outputs stay, as pass N-1's); each
        later step is fed the new outputs by the InputDataAgent as before, and the TrainAgent closes the runs' new
        output datasets as they are done. A run with no file in a first step, or with files still being processed
        (Assigned), is refused, naming it, before anything is changed."""
        if not runs:
            raise TrainOperationError(f"train {self.train.name}: reprocess needs the runs to reprocess")
        ids = self._created_ids()
        first_steps = [step for step in self.train.steps if step.input_step is None]
        selected: dict[str, list[str]] = {}
        problems = []
        for step in first_steps:
            files = self._transformation_files(ids[step.name], step)
            run_of_file = _runs_of(catalog, [f["LFN"] for f in files])
            in_runs = [f for f in files if run_of_file.get(f["LFN"]) in runs]
            for run in runs:
                of_run = [f for f in in_runs if run_of_file.get(f["LFN"]) == run]
                if not of_run:
                    problems.append(f"run {run} has no file in step {step.name}")
                elif busy := [f["LFN"] for f in of_run if f["Status"] == "Assigned"]:
                    problems.append(f"run {run} has {len(busy)} files still being processed in step {step.name} "
                                    f"(Assigned, e.g. {busy[0]}): wait for their jobs, then reprocess")
            selected[step.name] = [f["LFN"] for f in in_runs]
        if problems:
            raise TrainOperationError(f"train {self.train.name}: nothing reprocessed: {'; '.join(problems)}")
        new_pass = max(self.processing_pass(transformation_id) for transformation_id in ids.values()) + 1
        report = ReprocessReport(new_pass)
        for step in self.train.steps:  # new jobs write the new pass before any file is given back
            body = step_job(self.train, step, self._templates(), new_pass).workflow.toXML()
            _value(self.client.setTransformationParameter(ids[step.name], "Body", body), f"{step.name}: Body")
            _value(self.client.setTransformationParameter(ids[step.name], TRAIN_PASS_PARAMETER, new_pass),
                   f"{step.name}: {TRAIN_PASS_PARAMETER}")
            report.output_paths[step.name] = self.train.output_path(step, new_pass)
        for step_name, lfns in selected.items():
            _value(self.client.setFileStatusForTransformation(ids[step_name], "Unused", lfns, force=True),
                   f"{step_name}: files Unused")
            report.files[step_name] = len(lfns)
        return report

    # ------------------------------------------------------------------------------------------ status
    def status(self) -> list[StepState]:
        states = []
        for step in self.train.steps:
            transformation_id = self.existing_id(step)
            state = StepState(step.name, transformation_id)
            if transformation_id is not None:
                info = _value(self.client.getTransformation(transformation_id), f"{step.name}: getTransformation")
                state.status = info.get("Status", "")
                state.files = _value(self.client.getTransformationStats(transformation_id), f"{step.name}: stats")
                state.tasks = _value(self.client.getTransformationTaskStats(transformation_id),
                                     f"{step.name}: task stats")
                if state.files.get("Problematic"):
                    state.problematic = {f["LFN"]: int(f.get("ErrorCount") or 0) for f in self._transformation_files(
                        transformation_id, step, Status="Problematic")}
            states.append(state)
        return states

    def run_view(self, catalog: Any) -> list[RunStepState]:
        """Per run, per step: the run's files by status and every task (job) made of them, retries included, by
        status (run order, then step order)."""
        rows: dict[tuple[Any, int], RunStepState] = {}
        for index, step in enumerate(self.train.steps):
            transformation_id = self.existing_id(step)
            if transformation_id is None:
                continue
            files = self._transformation_files(transformation_id, step)
            tasks = _value(self.client.getTransformationTasks({"TransformationID": transformation_id},
                                                              inputVector=True), f"{step.name}: getTransformationTasks")
            runs = _runs_of(catalog, [f["LFN"] for f in files])
            for f in files:
                row = rows.setdefault((runs.get(f["LFN"]), index), RunStepState(runs.get(f["LFN"]), step.name))
                row.files[f["Status"]] = row.files.get(f["Status"], 0) + 1
            for task in tasks:
                lfns = [lfn for lfn in str(task.get("InputVector") or "").split(";") if lfn]
                for run in {runs.get(lfn) for lfn in lfns if lfn in runs}:
                    row = rows.setdefault((run, index), RunStepState(run, step.name))
                    row.tasks[task["ExternalStatus"]] = row.tasks.get(task["ExternalStatus"], 0) + 1
        return [rows[key] for key in sorted(rows, key=lambda key: (key[0] is None, key[0] or 0, key[1]))]


def trains_in_dirac(client: TransformationClient | None = None,
                    statuses: tuple[str, ...] = RUNNING_STATUSES) -> tuple[list[Train], dict[str, str]]:
    """The trains with a step in one of ``statuses``, read from the YAML copy their transformations keep; and the
    trains that cannot be read (train -> why). A train is its transformations of one TransformationGroup named
    ``<group>.<step>``."""
    client = client or TransformationClient()
    transformations = _value(client.getTransformations({"Status": list(statuses)}), "getTransformations")
    first_id: dict[str, int] = {}
    for transformation in transformations:
        group = transformation.get("TransformationGroup") or ""
        if group and str(transformation.get("TransformationName", "")).startswith(f"{group}."):
            first_id.setdefault(group, int(transformation["TransformationID"]))
    trains, problems = [], {}
    for group, transformation_id in sorted(first_id.items()):
        kept = client.getTransformationParameters(transformation_id, TRAIN_DEFINITION_PARAMETER)
        if not kept["OK"]:
            continue  # a transformation group that is not a KM3DIRAC train
        try:
            trains.append(load_train_text(str(kept["Value"]), f"train {group} (transformation {transformation_id})"))
        except KM3DiracError as error:
            problems[group] = str(error)
    return trains, problems


def _runs_of(catalog: Any, lfns: list[str]) -> dict[str, int | None]:
    """Each file's run: its ``run_number`` metadata, else its KM3NeT file name (``dirac-km3-ingest
    --file-metadata=none`` leaves the run to the run dataset); None when neither says."""
    if not lfns:
        return {}
    metadata = catalog.did_metadata(catalog.mapper.to_did(lfn) for lfn in lfns)
    runs: dict[str, int | None] = {}
    for did, meta in metadata.items():
        lfn = catalog.mapper.to_lfn(did)
        try:
            runs[lfn] = run_of(lfn, meta).run
        except RunInfoError:
            runs[lfn] = None
    return runs


@dataclass
class StepPlan:
    step: str
    files: int
    tasks: int
    waiting_runs: int
    note: str = ""


def plan_train(train: Train, catalog: Any) -> list[StepPlan]:
    """What each step would make of the catalog's current contents (no transformation is touched). ``catalog``
    is KM3DIRAC's core RucioCatalog. Steps fed by an earlier step count what that step has registered so far."""
    plans = []
    for step in train.steps:
        query, path = train.input_query(step)
        lfns = catalog.find_files(query, path)
        note = "" if step.input_step is None else f"fed by step {step.input_step} (registered so far)"
        if step.plugin not in PLUGIN_LIMITS:
            plans.append(StepPlan(step.name, len(lfns), 0, 0, f"{step.plugin}: planned by DIRAC, not here"))
            continue
        limits = PLUGIN_LIMITS[step.plugin](parameters_from(step.plugin_parameters))
        replicas = catalog.replicas(dict.fromkeys(lfns)).successful
        metadata = fetch_run_metadata(catalog, lfns)
        records, _problems = build_file_records({lfn: list(replicas.get(lfn, {})) for lfn in lfns}, metadata.files,
                                                need_events=limits.needs_events)
        chunks = plan_chunks(records, limits, complete_runs(records, metadata.closed_datasets), flush=False)
        plans.append(StepPlan(step.name, len(lfns), len(chunks.chunks), len(chunks.waiting_runs), note))
    return plans
