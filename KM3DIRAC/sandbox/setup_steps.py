"""Set-up steps of the local sandbox that need DIRAC or rucio-clients imported, each run in a process of its own
(``python -m KM3DIRAC.sandbox.setup_steps <step> <sandbox dir>``) with the sandbox's environment."""

from __future__ import annotations

import sys
from pathlib import Path

STORAGE_STATUS_TYPES = ("ReadAccess", "WriteAccess", "CheckAccess", "RemoveAccess")
#: states in which a job has a JobWrapper on the sandbox's pilot
ORPHANED_JOB_STATUSES = ("Matched", "Running", "Completing")


def make_rses(root: Path) -> None:
    from rucio.client import Client

    from KM3DIRAC.sandbox.local_sandbox import HASH_RSE_NAMES, RSE_NAMES, SHORE_RSE, TAPE_RSE_NAMES, SandboxPaths
    from KM3DIRAC.sandbox.rucio_setup import add_directory_rse, connect_rses

    client = Client()
    paths = SandboxPaths(root)
    for rse in RSE_NAMES:
        add_directory_rse(client, rse, paths.storage_dir(rse))
    for rse in HASH_RSE_NAMES:
        add_directory_rse(client, rse, paths.storage_dir(rse), lfn2pfn_algorithm=None)
    for rse in TAPE_RSE_NAMES:
        add_directory_rse(client, rse, paths.storage_dir(rse), rse_type="TAPE")
    # non-deterministic: the DAQ's files are registered at their own paths (dirac-km3-ingest gives each PFN)
    add_directory_rse(client, SHORE_RSE, paths.storage_dir(SHORE_RSE), deterministic=False)
    paths.daq_dir.mkdir(parents=True, exist_ok=True)
    connect_rses(client, [*RSE_NAMES, *HASH_RSE_NAMES, *TAPE_RSE_NAMES, SHORE_RSE])


def make_accounts(root: Path) -> None:
    """The Rucio accounts of the sandbox's people (KM3DIRAC.sandbox.accounts), made by Rucio's administrator."""
    from rucio.client import Client

    from KM3DIRAC.sandbox.accounts import PEOPLE, make_rucio_accounts
    from KM3DIRAC.sandbox.certificates import user_subject
    from KM3DIRAC.sandbox.local_sandbox import HASH_RSE_NAMES, RSE_NAMES, SandboxPaths

    make_rucio_accounts(Client(), PEOPLE, SandboxPaths(root).rucio_credentials_dir,
                        {someone.user: user_subject(someone.user) for someone in PEOPLE},
                        [*RSE_NAMES, *HASH_RSE_NAMES])


def make_user_proxy(root: Path) -> None:
    from DIRAC.Core.Base.Script import Script

    Script.parseCommandLine(ignoreErrors=True)
    from KM3DIRAC.sandbox.local_sandbox import IDENTITIES, PROXY_LIFETIME_SECONDS, SandboxPaths

    paths = SandboxPaths(root)
    for identity in IDENTITIES:  # one proxy per identity (DIRAC group) the sandbox offers
        chain = _user_chain(root, identity.user)
        _ok(chain.generateProxyToFile(str(paths.proxy(identity.name)), PROXY_LIFETIME_SECONDS,
                                      diracGroup=identity.group),
            f"write the proxy of {identity.name} ({identity.group})")


def upload_user_proxy(root: Path) -> None:
    """Store the user's proxy in the ProxyManager, as ``dirac-proxy-init`` does: agents then act as the user."""
    from DIRAC.Core.Base.Script import Script

    Script.parseCommandLine(ignoreErrors=True)
    from DIRAC.FrameworkSystem.Client.ProxyManagerClient import gProxyManager

    from KM3DIRAC.sandbox.local_sandbox import PROXY_LIFETIME_SECONDS, SandboxPaths

    # the ProxyManager takes only proxies without a DIRAC group: it adds the group when it hands one out
    plain_proxy = SandboxPaths(root).certificates.directory / "user-proxy-for-upload.pem"
    _ok(_user_chain(root).generateProxyToFile(str(plain_proxy), PROXY_LIFETIME_SECONDS), "write a plain proxy")
    try:
        _ok(gProxyManager.uploadProxy(str(plain_proxy)), "upload the user proxy")
    finally:
        plain_proxy.unlink()


def _user_chain(root: Path, user: str | None = None):
    """The certificate chain of ``user`` (default: the sandbox's user, ``certs/usercert.pem``; the other people's
    are ``certs/users/<name>/usercert.pem``)."""
    from DIRAC.Core.Security.X509Chain import X509Chain

    from KM3DIRAC.sandbox.dirac_components import USER_NAME
    from KM3DIRAC.sandbox.local_sandbox import SandboxPaths

    certificates = SandboxPaths(root).certificates
    if user is None or user == USER_NAME:
        cert, key = certificates.user_cert, certificates.user_key
    else:
        cert, key = certificates.certificate_of(user)
    chain = X509Chain()
    _ok(chain.loadChainFromFile(str(cert)), f"load the certificate of {user or USER_NAME}")
    _ok(chain.loadKeyFromFile(str(key)), f"load the key of {user or USER_NAME}")
    return chain


def set_resource_status(root: Path) -> None:
    """Active status for the site and every StorageElement: DIRAC 9.1 schedules nothing without them."""
    from DIRAC.Core.Base.Script import Script

    sys.argv += ["-o", "/DIRAC/Security/UseServerCertificate=yes"]  # as the host, like the services
    Script.parseCommandLine(ignoreErrors=True)
    from DIRAC import gConfig
    from DIRAC.ResourceStatusSystem.Client.ResourceStatusClient import ResourceStatusClient

    from KM3DIRAC.sandbox.dirac_components import SITE

    client = ResourceStatusClient()
    common = {"status": "Active", "reason": "KM3DIRAC sandbox", "tokenOwner": "rs_svc"}
    _ok(client.addOrModifyStatusElement("Site", "Status", name=SITE, statusType="all", elementType="Site", **common),
        f"set the status of site {SITE}")
    storage_elements = gConfig.getSections("/Resources/StorageElements").get("Value", [])
    for storage_element in storage_elements:
        for status_type in STORAGE_STATUS_TYPES:
            _ok(client.addOrModifyStatusElement("Resource", "Status", name=storage_element, statusType=status_type,
                                                elementType="StorageElement", **common),
                f"set {status_type} of {storage_element}")


def reschedule_orphaned_jobs(root: Path) -> None:
    """Jobs the sandbox's pilot was running when the sandbox went down have no JobWrapper any more: reschedule
    them (what DIRAC's StalledJobAgent leads to, hours later), so that every job reaches a final state."""
    from DIRAC.Core.Base.Script import Script

    sys.argv += ["-o", "/DIRAC/Security/UseServerCertificate=yes"]  # as the host (JobAdministrator)
    Script.parseCommandLine(ignoreErrors=True)
    from DIRAC.WorkloadManagementSystem.Client.JobManagerClient import JobManagerClient
    from DIRAC.WorkloadManagementSystem.Client.JobMonitoringClient import JobMonitoringClient

    from KM3DIRAC.sandbox.dirac_components import SITE

    result = JobMonitoringClient().getJobs({"Status": list(ORPHANED_JOB_STATUSES), "Site": SITE})
    _ok(result, "list the jobs left running")
    job_ids = [int(job_id) for job_id in result["Value"]]
    if job_ids:
        _ok(JobManagerClient().rescheduleJob(job_ids), f"reschedule jobs {job_ids}")
        print(f"rescheduled jobs left running at the last down: {job_ids}")


def add_diracx_tokens(root: Path) -> None:
    """What ``dirac-proxy-init`` does when DiracX is configured: DIRAC's ``addTokenToPEM`` exchanges each identity's
    proxy for a DiracX token (ProxyManager -> DiracX legacy exchange) and appends it to the proxy; the token is also
    written as diracx-cli's credentials file (``DIRACX_CREDENTIALS_PATH``)."""
    import json

    from DIRAC.Core.Base.Script import Script

    Script.parseCommandLine(ignoreErrors=True)
    from DIRAC.Core.Security.DiracX import addTokenToPEM, diracxTokenFromPEM

    from KM3DIRAC.sandbox.local_sandbox import IDENTITIES, SandboxPaths

    paths = SandboxPaths(root)
    for identity in IDENTITIES:
        proxy = paths.proxy(identity.name)
        _ok(addTokenToPEM(str(proxy), identity.group), f"add a DiracX token to the proxy of {identity.name}")
        token = diracxTokenFromPEM(str(proxy))
        if token is None:
            raise SystemExit(f"no DiracX token in {proxy} after addTokenToPEM (is /DiracX/DisabledVOs set?)")
        credentials = paths.diracx_credentials(identity.name)
        credentials.touch(mode=0o600)
        credentials.write_text(json.dumps(token))


def _ok(result: dict, what: str) -> None:
    if not result["OK"]:
        raise SystemExit(f"could not {what}: {result['Message']}")


STEPS = {
    "make-rses": make_rses,
    "make-accounts": make_accounts,
    "make-user-proxy": make_user_proxy,
    "upload-user-proxy": upload_user_proxy,
    "set-resource-status": set_resource_status,
    "reschedule-orphaned-jobs": reschedule_orphaned_jobs,
    "add-diracx-tokens": add_diracx_tokens,
}

if __name__ == "__main__":
    step, directory = sys.argv[1], Path(sys.argv[2])
    sys.argv = sys.argv[:1]
    STEPS[step](directory)
