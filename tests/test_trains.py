"""Processing train files: a valid train chains its steps by metadata; every mistake names file, step and field."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from KM3DIRAC.core.trains import TrainDefinitionError, load_train, parse_train

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "trains" / "reco-and-merge.yaml"
TEMPLATES = ROOT / "jdl_templates"


def test_the_example_train_chains_step_two_to_step_one_outputs():
    train = load_train(EXAMPLE, TEMPLATES)
    reco, merge = train.steps
    assert train.transformation_name(reco) == "km3-reco-2026a.reco"
    assert train.input_query(reco) == ({"datatype": "raw", "DetectorID": 133}, "/km3net/data/raw")
    outputs_of_reco = train.output_metadata(reco)
    assert outputs_of_reco["TrainName"] == "km3-reco-2026a" and outputs_of_reco["TrainStep"] == "reco"
    query, path = train.input_query(merge)
    assert path == reco.output.path
    assert all(outputs_of_reco[key] == value for key, value in query.items())


def _broken(tmp_path, mutate) -> str:
    data = yaml.safe_load(EXAMPLE.read_text())
    mutate(data)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(TrainDefinitionError) as error:
        load_train(path, TEMPLATES)
    assert str(path) in str(error.value)
    return str(error.value)


@pytest.mark.parametrize(("mutate", "expected"), [
    (lambda d: d["steps"][0].update(plugin="By_Run"), "step 'reco'.plugin"),
    (lambda d: d["steps"][1]["input"].update(step="later"), "step 'merge'.input.step"),
    (lambda d: d["steps"][0]["output"].pop("se"), "step 'reco'.output.se"),
    (lambda d: d["steps"][0].update(jdl_template="nope.jdl"), "step 'reco'.jdl_template"),
    (lambda d: d["steps"][0]["output"].update(path="/km3net/../etc"), "step 'reco'.output.path"),
    (lambda d: d["steps"][1].update(name="reco"), "is used by an earlier step"),
    (lambda d: d["steps"][0].update(colour="blue"), "unknown fields ['colour']"),
    (lambda d: d["steps"][0]["input"].pop("query"), "step 'reco'.input"),
    (lambda d: d.update(name="no spaces allowed"), "name"),
])
def test_mistakes_name_file_step_and_field(tmp_path, mutate, expected):
    assert expected in _broken(tmp_path, mutate)


def test_not_yaml_and_empty_steps(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(TrainDefinitionError, match="not valid YAML"):
        load_train(bad)
    with pytest.raises(TrainDefinitionError, match="steps: must be a non-empty list"):
        parse_train({"name": "x", "steps": []}, "inline")


def test_detector_and_run_list_restrict_the_first_step():
    data = yaml.safe_load(EXAMPLE.read_text())
    data.update(detector=133, run_list="# runs of 2026a\n00000133 00012345\n00000133 00012346\n")
    train = parse_train(data, "inline", TEMPLATES)
    query, _ = train.input_query(train.steps[0])
    assert query == {"datatype": "raw", "DetectorID": 133, "run_number": {">=": 12345, "<=": 12346}}
    data.update(run_list="00000049 00012345\n")
    with pytest.raises(TrainDefinitionError, match="run_list line 1: detector 49, the train's is 133"):
        parse_train(data, "inline")
    data.pop("run_list")
    data.update(runs=[5, 9])
    assert parse_train(data, "inline").input_query(train.steps[0])[0]["run_number"] == {"in": [5, 9]}


def test_plugin_parameters_are_checked_with_the_plugins_own_rules(tmp_path):
    message = _broken(tmp_path, lambda d: d["steps"][0]["plugin_parameters"].update(GroupSize=-1))
    assert "step 'reco'.plugin_parameters" in message and "GroupSize" in message
    assert "unknown plugin ByLuck" in _broken(tmp_path, lambda d: d["steps"][0].update(plugin="ByLuck"))


def test_validate_command_names_the_problem(tmp_path):
    import subprocess
    import sys

    command = Path(sys.executable).parent / "dirac-km3-train"
    ok = subprocess.run([str(command), "validate", str(EXAMPLE)], capture_output=True, text=True, timeout=120,
                        check=False)
    assert ok.returncode == 0 and "reco (ByRunSize) -> merge (ByRun)" in ok.stdout, ok.stdout + ok.stderr
    data = yaml.safe_load(EXAMPLE.read_text())
    data["steps"][1]["input"]["step"] = "nowhere"
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(data))
    bad = subprocess.run([str(command), "validate", str(broken)], capture_output=True, text=True, timeout=120,
                         check=False)
    assert bad.returncode == 1 and "step 'merge'.input.step" in bad.stdout + bad.stderr


def test_step_job_carries_the_train_data_parameters(dirac_cs):
    from KM3DIRAC.TransformationSystem.Client.Trains import step_job

    train = load_train(EXAMPLE, TEMPLATES)
    job = step_job(train, train.steps[1], TEMPLATES)
    # the payload itself runs (the JobExecutionCoordinator moves the data in productions)
    assert "km3-cvmfs-run" in job.workflow.toXML() and "dirac-km3-job-run" not in job.workflow.toXML()
    jdl = job._toJDL()
    assert "/km3net/data/merged/133/2026a" in jdl
    assert "TrainStep=merge" in jdl and "TrainName=km3-reco-2026a" in jdl


def test_a_reprocessing_pass_writes_below_pass_n_next_to_the_first_outputs(dirac_cs):
    from KM3DIRAC.TransformationSystem.Client.Trains import step_job

    train = load_train(EXAMPLE, TEMPLATES)
    assert train.definition == EXAMPLE.read_text()  # what create keeps with the transformations for the TrainAgent
    reco, merge = train.steps
    per_run = replace(reco, output=replace(reco.output, path="/km3net/data/reco/run<run_number>"))
    assert train.output_path(reco) == train.output_path(reco, 1) == "/km3net/data/reco/133/2026a"
    assert train.output_path(reco, 2) == "/km3net/data/reco/133/2026a/pass2"
    assert train.output_path(per_run, 3) == "/km3net/data/reco/pass3/run<run_number>"
    _query, path = train.input_query(merge)
    assert train.output_path(reco, 2).startswith(path + "/")  # the next step's input still finds every pass
    assert "/km3net/data/merged/133/2026a/pass2" in step_job(train, merge, TEMPLATES, 2)._toJDL()
    with pytest.raises(TrainDefinitionError, match="processing pass 0: must be 1 or more"):
        train.output_path(reco, 0)


def test_config_template_documents_the_train_agent():
    from diraccfg import CFG

    import KM3DIRAC

    template = CFG().loadFromBuffer((Path(KM3DIRAC.__file__).parent / "ConfigTemplate.cfg").read_text())
    agent = template["Systems"]["Transformation"]["Agents"]["TrainAgent"]
    assert int(agent["MaxRetries"]) == 3 and int(agent["PollingTime"]) > 0


@pytest.mark.rucio
def test_plan_counts_tasks_from_the_catalog_as_the_plugins_would(dirac_cs, rucio_client, scope_factory):
    from DIRAC.Resources.Catalog.FileCatalog import FileCatalog

    from KM3DIRAC.core.catalog import RucioCatalog
    from KM3DIRAC.TransformationSystem.Client.Trains import plan_train

    fc = FileCatalog()
    scope = scope_factory()
    files = {}
    for run, count in ((101, 4), (102, 3)):
        for part in range(count):
            lfn = f"/km3net/{scope}/raw/{run}/KM3NeT_00000133_{run:08d}.{part}.root"
            files[lfn] = {"Size": 2 * 10**9, "SE": "KM3-DISK-1", "Checksum": "00000001",
                          "Meta": {"datatype": "raw", "DetectorID": 133, "run_number": run}}
    added = fc.addFile(files)
    assert added["OK"] and not added["Value"]["Failed"], added
    rucio_client.close(scope, f"/km3net/{scope}/raw/101")  # run 101 complete, run 102 still open
    data = yaml.safe_load(EXAMPLE.read_text())
    data["steps"][0]["input"]["path"] = f"/km3net/{scope}/raw"
    train = parse_train(data, "inline", TEMPLATES)
    reco, merge = plan_train(train, RucioCatalog(rucio_client))
    # ByRunSize with GroupSize 5 GB: run 101 (4 x 2 GB) -> 2 full chunks, its last one made as the run is closed;
    # run 102 (3 x 2 GB) -> 1 full chunk, its remainder waits for the run to be closed
    assert (reco.files, reco.tasks, reco.waiting_runs) == (7, 3, 1)
    assert (merge.files, merge.tasks) == (0, 0) and "fed by step reco" in merge.note
