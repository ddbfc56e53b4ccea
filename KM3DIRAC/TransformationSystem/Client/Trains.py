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
from KM3DIRAC.core.runs import build_file_records, complete_runs
from KM3DIRAC.core.trains import Step, Train

TRANSFORMATION_TYPE = "DataReconstruction"
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


def step_job(train: Train, step: Step, templates: Path) -> Job:
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
        "KM3OutputPath": step.output.path,
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


class TrainManager:
    def __init__(self, train: Train, templates: Path, client: TransformationClient | None = None,
                 transformation_type: str = TRANSFORMATION_TYPE) -> None:
        self.train = train
        self.templates = templates
        self.client = client or TransformationClient()
        self.transformation_type = transformation_type

    def existing_id(self, step: Step) -> int | None:
        result = self.client.getTransformation(self.train.transformation_name(step))
        return int(result["Value"]["TransformationID"]) if result["OK"] else None

    def create(self) -> list[StepState]:
        states = []
        for step in self.train.steps:
            existing = self.existing_id(step)
            if existing is not None:
                states.append(StepState(step.name, existing, created=False))
                continue
            states.append(StepState(step.name, self._create_step(step), created=True))
        return states

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
        transformation.setBody(step_job(self.train, step, self.templates).workflow.toXML())
        transformation.setInputMetaQuery({**query, **({} if path == "/" else {PATH_KEY: path})})
        _value(transformation.addTransformation(addFiles=True), f"{name}: addTransformation")
        transformation_id = int(_value(transformation.getTransformationID(), f"{name}: getTransformationID"))
        for key, value in step.plugin_parameters.items():
            _value(self.client.setTransformationParameter(transformation_id, key, value), f"{name}: {key}")
        _value(transformation.setStatus("Active"), f"{name}: setStatus")
        _value(transformation.setAgentType("Automatic"), f"{name}: setAgentType")
        return transformation_id

    def advance(self, catalog: Any) -> list[str]:
        """Close the per-run output datasets of every step whose runs are fully processed, so that the next step's
        run-aware plugin sees those runs complete (its last, smaller task is made). Returns the datasets closed.

        A step's output path with ``<run_number>`` (e.g. ``.../run<run_number>``) keeps each run in its own dataset;
        a run is done in a step when every one of its files in the step's transformation is Processed and every
        output in the run's dataset has reached the next step's transformation (the InputDataAgent adds them)."""
        closed = []
        ids = {step.name: self.existing_id(step) for step in self.train.steps}
        for transformation_id in ids.values():
            if transformation_id is not None:
                self.refresh_tasks(transformation_id)
        for step in self.train.steps[:-1]:
            transformation_id = ids[step.name]
            if "<run_number>" not in step.output.path or transformation_id is None:
                continue
            files = self._transformation_files(transformation_id, step)
            runs = _runs_of(catalog, [f["LFN"] for f in files])
            pending = {runs.get(f["LFN"]) for f in files if f["Status"] != "Processed"}
            fed = {f["LFN"] for later in self.train.steps if later.input_step == step.name and ids[later.name]
                   for f in self._transformation_files(ids[later.name], later)}
            for run in sorted({r for r in runs.values() if r is not None} - pending):
                metadata = {**self.train.output_metadata(step), "run_number": run}
                if self.train.detector is not None:
                    metadata.setdefault("DetectorID", self.train.detector)
                dataset = output_directory(step.output.path, metadata)
                if not catalog.directory_open_states([dataset]).get(dataset):
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

    def refresh_tasks(self, transformation_id: int) -> None:
        """Task status from its job, and files of Done tasks Processed: what the WorkflowTaskAgent's MonitorTasks and
        MonitorFiles do, but at once (DIRAC 9.1 only looks at tasks untouched for 10 minutes)."""
        from DIRAC.WorkloadManagementSystem.Client.JobMonitoringClient import JobMonitoringClient

        tasks = _value(self.client.getTransformationTasks({"TransformationID": transformation_id}),
                       "getTransformationTasks")
        open_tasks = [t for t in tasks if int(t.get("ExternalID") or 0) > 0
                      and t["ExternalStatus"] not in ("Done", "Failed", "Killed")]
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
            states.append(state)
        return states


def _runs_of(catalog: Any, lfns: list[str]) -> dict[str, int | None]:
    metadata = catalog.did_metadata(catalog.mapper.to_did(lfn) for lfn in lfns)
    return {catalog.mapper.to_lfn(did): meta.get("run_number") for did, meta in metadata.items()}


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
