#!/usr/bin/env python
"""Render a KM3DIRAC JDL template and check it with DIRAC's own JDL parser and job description model.

Templates come from jdl_templates/ (or --templates DIR); parameters from defaults.yaml there and -p Name=value.
The result is printed, or written with --output. The input sandbox must stay under 10 MiB: bigger files go to Rucio and
are named in KM3InputData. --submit-diracx submits the rendered JDL through DiracX (diracx-client, with the DiracX
token of the proxy from dirac-proxy-init), its local InputSandbox files uploaded to DiracX's sandbox store first, and
prints "JobID = N" for each job, as dirac-wms-job-submit does.

Example:
  $ dirac-km3-jdl-render reconstruction.jdl -p Detector=133 -p Run=12345 -p Campaign=2026a \\
      -p InputData=/km3net/data/raw/KM3NeT_00000133/12345 -p OutputSE=CC-IN2P3-DISK -p SoftwareVersion=v19 \\
      --output=r.jdl
"""

import os
import sys
from pathlib import Path

from DIRAC.Core.Base.Script import Script

import KM3DIRAC

DEFAULT_TEMPLATES = Path(os.environ.get("KM3DIRAC_JDL_TEMPLATES",
                                        Path(KM3DIRAC.__file__).resolve().parent.parent / "jdl_templates"))


def validate_with_dirac(jdl: str, name: str) -> None:
    """What the JobManager would check: the ClassAd parses and the job description model accepts it."""
    from DIRAC.Core.Utilities.ClassAd.ClassAdLight import ClassAd
    from DIRAC.Core.Utilities.JDL import jdlToBaseJobDescriptionModel

    from KM3DIRAC.core.jdl import JDLTemplateError

    class_ad = ClassAd(jdl)
    if not class_ad.isOK():
        raise JDLTemplateError(f"{name}: DIRAC's JDL parser rejects the rendered JDL")
    model = jdlToBaseJobDescriptionModel(class_ad)
    if not model["OK"]:
        raise JDLTemplateError(f"{name}: DIRAC's job description model rejects it: {model['Message']}")


def render_template(template_path: Path, overrides: dict, base_dir: Path) -> str:
    import yaml
    from DIRAC.Core.Utilities.ClassAd.ClassAdLight import ClassAd

    from KM3DIRAC.core.jdl import JDLTemplateError, check_input_sandbox, render

    if not template_path.is_file():
        raise JDLTemplateError(f"no template {template_path}")
    defaults_file = template_path.parent / "defaults.yaml"
    parameters = yaml.safe_load(defaults_file.read_text()) if defaults_file.exists() else {}
    parameters = {**(parameters or {}), **overrides}
    jdl = render(template_path.read_text(), parameters, template_path.name)
    validate_with_dirac(jdl, template_path.name)
    check_input_sandbox(ClassAd(jdl).getListFromExpression("InputSandbox"), base_dir,
                        template_name=template_path.name)
    return jdl


def with_uploaded_sandbox(jdl: str, base_dir: Path) -> str:
    """The JDL with its local InputSandbox files uploaded to DiracX's sandbox store as one sandbox, named by its PFN
    (LFN: and SB: entries are kept as they are)."""
    from DIRAC.Core.Utilities.ClassAd.ClassAdLight import ClassAd

    from KM3DIRAC.WorkloadManagementSystem.Client.DiracXJobs import upload_input_sandbox

    class_ad = ClassAd(jdl)
    entries = class_ad.getListFromExpression("InputSandbox")
    local = [entry for entry in entries if not entry.startswith(("LFN:", "SB:"))]
    if not local:
        return jdl
    pfn = upload_input_sandbox([base_dir / entry for entry in local])
    class_ad.insertAttributeVectorString("InputSandbox", [pfn, *(e for e in entries if e not in local)])
    return class_ad.asJDL()


@Script()
def main():
    overrides = {}
    output = []
    templates = [DEFAULT_TEMPLATES]

    def add_parameter(value):
        name, sep, text = value.partition("=")
        if not sep:
            return {"OK": False, "Message": f"-p needs Name=value, not {value!r}"}
        overrides[name.strip()] = text
        return {"OK": True, "Value": None}

    def set_output(value):
        output.append(Path(value))
        return {"OK": True, "Value": None}

    submit = []

    def set_submit(_value):
        submit.append(True)
        return {"OK": True, "Value": None}

    def set_templates(value):
        templates[0] = Path(value)
        return {"OK": True, "Value": None}

    Script.registerSwitch("p:", "parameter=", "template parameter Name=value (repeatable)", add_parameter)
    Script.registerSwitch("", "output=", "write the JDL to this file", set_output)
    Script.registerSwitch("", "submit-diracx", "submit the rendered JDL through DiracX", set_submit)
    Script.registerSwitch("", "templates=", f"template directory (default {DEFAULT_TEMPLATES})", set_templates)
    Script.registerArgument("Template: template file name or path")
    Script.parseCommandLine(ignoreErrors=False)
    (template,) = Script.getPositionalArgs()

    from DIRAC import gLogger

    from KM3DIRAC.core.errors import KM3DiracError

    template_path = Path(template)
    if not template_path.exists():
        template_path = templates[0] / template
    try:
        jdl = render_template(template_path, overrides, Path.cwd())
    except KM3DiracError as error:
        gLogger.error(str(error))
        sys.exit(1)
    if output:
        output[0].write_text(jdl)
        gLogger.notice(f"{output[0]}: valid JDL from {template_path.name}")
    elif not submit:
        print(jdl)
    if submit:
        from KM3DIRAC.WorkloadManagementSystem.Client.DiracXJobs import submit_jdl

        try:
            job_ids = submit_jdl(with_uploaded_sandbox(jdl, Path.cwd()))
        except KM3DiracError as error:
            gLogger.error(str(error))
            sys.exit(1)
        for job_id in job_ids:
            print(f"JobID = {job_id}")
    sys.exit(0)


if __name__ == "__main__":
    main()
