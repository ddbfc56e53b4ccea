"""Every JDL template renders to a JDL that DIRAC's own parser and job model accept; bad input names the problem."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from KM3DIRAC.core.jdl import JDLTemplateError, check_input_sandbox, render
from KM3DIRAC.core.job_run import plan_from_parameters, read_job_info

TEMPLATES = Path(__file__).resolve().parent.parent / "jdl_templates"
COMMAND = Path(sys.executable).parent / "dirac-km3-jdl-render"
PARAMETERS = {
    "detector-simulation.jdl": ["Generator=gSeaGen", "Detector=133", "Run=1", "Campaign=2026a",
                                "SoftwareVersion=v19", "OutputSE=KM3-DISK-1", "FailoverSEs=KM3-DISK-2"],
    "calibration.jdl": ["Detector=133", "FirstRun=17397", "LastRun=17496", "CalibrationVersion=1.0.0",
                        "InputData=/km3net/data/raw/KM3NeT_00000133", "SoftwareVersion=v19", "OutputSE=KM3-DISK-1"],
    "reconstruction.jdl": ["Detector=133", "Run=12345", "Campaign=2026a", "SoftwareVersion=v19",
                           "InputData=/km3net/data/raw/KM3NeT_00000133/12345", "OutputSE=KM3-DISK-1"],
    "user-analysis.jdl": ["Name=myana", "Command=python ana.py", "InputData=/km3net/user/a.root,/km3net/user/b.root",
                          "OutputPatterns=*.h5", "OutputPath=/km3net/user/j/jdoe/ana", "OutputSE=KM3-DISK-1"],
    # what snakemake's DIRAC executor renders (KM3DIRAC.core.snakemake_jobs)
    "snakemake-job.jdl": ["JobName=smk-reco-133-1", "JobGroup=snakemake", "JobScript=snakemake-job.sh",
                          "ScriptName=snakemake-job.sh", "CPUTime=600", "InputData=/km3net/user/j/jdoe/wf/raw/a.root",
                          "OutputPatterns=reco/a.reco.root", "OutputPath=/km3net/user/j/jdoe/wf/reco",
                          "OutputSE=KM3-DISK-1", "FailoverSEs=", "Metadata=Step=reco"],
}


def _render(template: str, parameters: list[str], cwd: Path) -> subprocess.CompletedProcess:
    args = [str(COMMAND), template, *[f"--parameter={p}" for p in parameters], "--output=job.jdl"]
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("template", sorted(PARAMETERS))
def test_every_template_renders_to_a_jdl_dirac_accepts(template, tmp_path):
    assert sorted(p.name for p in TEMPLATES.glob("*.jdl")) == sorted(PARAMETERS)
    (tmp_path / "snakemake-job.sh").write_text("true\n")  # the snakemake template's input sandbox
    result = _render(template, PARAMETERS[template], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    from DIRAC.Core.Utilities.ClassAd.ClassAdLight import ClassAd

    jdl = ClassAd((tmp_path / "job.jdl").read_text())
    assert jdl.getAttributeString("Executable") == "dirac-km3-job-run"
    # what dirac-km3-job-run makes of the job's parameters
    parameters = {name: (jdl.getListFromExpression(name) if jdl.isAttributeList(name)
                         else jdl.getAttributeString(name)) for name in jdl.getAttributes() if name.startswith("KM3")}
    plan = plan_from_parameters(parameters, tmp_path, job_id=1)
    assert plan.output is not None and plan.output.rse == "KM3-DISK-1"
    assert plan.output.metadata["Step"]


def test_missing_parameter_is_named(tmp_path):
    result = _render("reconstruction.jdl", ["Detector=133"], tmp_path)
    assert result.returncode != 0
    assert "reconstruction.jdl" in result.stdout + result.stderr and "Run" in result.stdout + result.stderr


def test_input_sandbox_over_the_limit_is_refused_with_advice(tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(b"\0" * (11 * 1024 * 1024))
    with pytest.raises(JDLTemplateError, match="KM3InputData"):
        check_input_sandbox(["big.bin"], tmp_path)
    parameters = [*PARAMETERS["user-analysis.jdl"], "InputSandbox=big.bin"]
    result = _render("user-analysis.jdl", parameters, tmp_path)
    assert result.returncode != 0 and "rucio upload" in result.stdout + result.stderr


def test_render_rejects_quotes_and_lists_expand():
    assert render('A = {@{X}};', {"X": "a, b"}) == 'A = {"a", "b"};'
    with pytest.raises(JDLTemplateError, match="double quote"):
        render('A = "${X}";', {"X": 'a"b'})


def test_job_info_written_by_the_job_wrapper_is_read(tmp_path):
    (tmp_path / "job.info").write_text("/Job/JobID = 12\n/KM3InputData = /km3net/a/x, /km3net/a/y\n"
                                       "/KM3OutputMetadata = run_number=5, Step=reco\n/JobName = x\n")
    info = read_job_info(tmp_path / "job.info")
    assert info["JobID"] == "12"
    plan = plan_from_parameters({**info, "KM3OutputData": "*.root", "KM3OutputPath": "/km3net/a/o",
                                 "KM3OutputSE": "S"}, tmp_path, job_id=12)
    assert plan.inputs == ["/km3net/a/x", "/km3net/a/y"]
    assert plan.output.metadata == {"run_number": 5, "Step": "reco"}
    assert plan.output.provenance["JobID"] == 12
