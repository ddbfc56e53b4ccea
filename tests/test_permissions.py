"""Who may do what: each DIRAC user acts in Rucio as their own account, picked per call from the proxy in use.

On the session's Rucio server (KM3NeT's permission policy, KM3DIRAC.RucioPolicy): two users, alice and bob, each a
plain Rucio account owning the scope of their DIRAC home (``user.<name>`` for ``/km3net/user/<i>/<name>``), and a
production manager whose production-group proxy acts as the production account ``km3prod``, owner of a production
scope. Each has a certificate of a test CA and a DIRAC proxy; DIRAC's Registry maps their DNs, Rucio's identities map
their credentials to their accounts. Every forbidden action is tried through FileCatalog(), DataManager, the
dirac-dms commands, the job wrapper's output step and rucio-clients itself, and must be refused, while the owners'
own actions succeed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from KM3DIRAC.core.checksums import adler32_of_file
from KM3DIRAC.core.lfn import user_home

pytestmark = pytest.mark.rucio

SE = "KM3-DISK-1"
OTHER_SE = "KM3-DISK-2"
PRODUCTION_ACCOUNT = "km3prod"
PRODUCTION_GROUP = "km3net_prod"
USER_GROUP = "km3net_user"


@dataclass(frozen=True)
class Person:
    user: str  # DIRAC user name
    group: str
    account: str  # Rucio account
    login: str
    password: str
    dn: str
    proxy: Path


@dataclass(frozen=True)
class World:
    people: dict[str, Person]
    production_scope: str
    cfg_file: Path  # the whole DIRAC configuration, for commands
    credentials: Path

    def home(self, user: str) -> str:
        return user_home("km3net", user)


def _identity_cfg(people: dict[str, Person], credentials: str, identity: str = "caller") -> str:
    users = "\n".join(f"    {p.user}\n    {{\n      DN = {p.dn}\n    }}" for p in people.values())
    members = ", ".join(["km3user", *(p.user for p in people.values() if p.group == USER_GROUP)])
    managers = ", ".join(p.user for p in people.values() if p.group == PRODUCTION_GROUP)
    return f"""Registry
{{
  Users
  {{
{users}
  }}
  Groups
  {{
    {USER_GROUP}
    {{
      Users = {members}
    }}
    {PRODUCTION_GROUP}
    {{
      Users = {managers}
      Properties = NormalUser, ProductionManagement
      VO = km3net
    }}
  }}
}}
Resources
{{
  FileCatalogs
  {{
    RucioFileCatalog
    {{
      Identity = {identity}
      GroupAccounts = {PRODUCTION_GROUP}:{PRODUCTION_ACCOUNT}
      UserpassCredentials = {credentials}
    }}
  }}
}}
"""


@pytest.fixture(scope="module")
def world(dirac_cs, rucio_client, rucio_server, tmp_path_factory) -> World:
    from DIRAC.ConfigurationSystem.Client.ConfigurationData import gConfigurationData
    from diraccfg import CFG

    from KM3DIRAC.sandbox.certificates import make_certificates, make_proxy, make_user_certificate, user_subject

    base = tmp_path_factory.mktemp("permissions")
    certs = make_certificates(base / "pki", "alice")
    credentials_dir = base / "rucio-credentials"
    credentials_dir.mkdir(mode=0o700)
    production_scope = f"prod{uuid.uuid4().hex[:8]}"
    people = {}
    for user, group, account in (("alice", USER_GROUP, "alice"), ("bob", USER_GROUP, "bob"),
                                 ("prodmgr", PRODUCTION_GROUP, PRODUCTION_ACCOUNT)):
        cert, key = (certs.user_cert, certs.user_key) if user == "alice" else make_user_certificate(certs, user)
        proxy = make_proxy(cert, key, base / f"proxy-{user}.pem", group)
        person = Person(user, group, account, f"{account}-login", f"pw-{uuid.uuid4().hex}", user_subject(user), proxy)
        people[user] = person
        rucio_client.add_account(account, "SERVICE" if account == PRODUCTION_ACCOUNT else "USER",
                                 f"{account}@example.org")
        rucio_client.add_identity(account, person.login, "USERPASS", f"{account}@example.org",
                                  password=person.password)
        rucio_client.add_identity(account, person.dn, "X509", f"{account}@example.org", default=True)
        for rse in (SE, OTHER_SE):
            rucio_client.set_local_account_limit(account, rse, -1)
        (credentials_dir / f"{account}.json").write_text(json.dumps({"username": person.login,
                                                                       "password": person.password}))
        (credentials_dir / f"{account}.json").chmod(0o600)
    rucio_client.add_scope("alice", "user.alice")
    rucio_client.add_scope("bob", "user.bob")
    rucio_client.add_scope(PRODUCTION_ACCOUNT, production_scope)
    pattern = str(credentials_dir / "{account}.json")
    extra = _identity_cfg(people, pattern)
    gConfigurationData.mergeWithLocal(CFG().loadFromBuffer(extra))
    cfg_file = base / "dirac.cfg"
    cfg_file.write_text(str(CFG().loadFromBuffer(dirac_cs).mergeWith(CFG().loadFromBuffer(extra))))
    cfg_file.chmod(0o600)
    yield World(people, production_scope, cfg_file, credentials_dir)
    # the rest of the session uses the service identity again
    gConfigurationData.mergeWithLocal(CFG().loadFromBuffer(_identity_cfg(people, pattern, identity="service")))


@pytest.fixture
def act_as(world, monkeypatch):
    """Switch the proxy in use (X509_USER_PROXY), as a user's shell, job or DIRAC agent does."""

    def switch(user: str) -> Person:
        person = world.people[user]
        monkeypatch.setenv("X509_USER_PROXY", str(person.proxy))
        return person

    return switch


def _fc():
    from DIRAC.Resources.Catalog.FileCatalog import FileCatalog

    return FileCatalog()


def _dm():
    from DIRAC.DataManagementSystem.Client.DataManager import DataManager

    return DataManager()


def _storage_path(session_paths, lfn: str, se: str = SE) -> Path:
    return session_paths.storage_dir(se) / lfn.lstrip("/")


def _put(lfn: str, source: Path) -> dict:
    return _dm().putAndRegister(lfn, str(source), SE)


def _refused(reason) -> bool:
    text = str(reason).lower()
    return "permission denied" in text or "not permitted" in text or "accessdenied" in text or \
        "access denied" in text or "can not" in text or "cannot" in text or "not allowed" in text


def test_user_homes_map_to_the_owners_scope():
    from KM3DIRAC.core.errors import InvalidLFNError
    from KM3DIRAC.core.lfn import LFNMapper

    mapper = LFNMapper()
    assert str(mapper.to_did("/km3net/user/a/alice/ana/f.h5")) == "user.alice:/km3net/user/a/alice/ana/f.h5"
    assert mapper.scope_of_directory("/km3net/user/a/alice") == "user.alice"
    assert mapper.ancestors("/km3net/user/a/alice/ana/x/f.h5") == ["/km3net/user/a/alice/ana",
                                                                  "/km3net/user/a/alice/ana/x"]
    assert str(mapper.to_did("/km3net/data/raw/f")) == "data:/km3net/data/raw/f"
    with pytest.raises(InvalidLFNError, match="first letter"):
        mapper.to_did("/km3net/user/b/alice/f.h5")


def test_each_call_acts_as_the_account_of_the_proxy_in_use(world, act_as):
    from KM3DIRAC.Resources.Catalog.RucioSettings import catalog_from_cs

    accounts = {}
    for user in ("alice", "bob", "prodmgr", "alice"):
        act_as(user)
        accounts.setdefault(user, set()).add(catalog_from_cs().client.whoami()["account"])
    assert accounts == {"alice": {"alice"}, "bob": {"bob"}, "prodmgr": {PRODUCTION_ACCOUNT}}


def test_user_cannot_touch_another_users_files_through_filecatalog_and_datamanager(
        world, act_as, local_file, session_paths, rucio_client):
    home = world.home("alice")
    lfn = f"{home}/perm-{uuid.uuid4().hex[:8]}/owned.dat"
    source = local_file(size=2048)
    act_as("alice")
    put = _put(lfn, source)
    assert put["OK"] and lfn in put["Value"]["Successful"], put
    stored = _storage_path(session_paths, lfn)
    original = stored.read_bytes()

    act_as("bob")
    # bob writes a new file into alice's home: refused before any byte reaches the storage
    intruder = f"{home}/intruder-{uuid.uuid4().hex[:6]}.dat"
    refused = _put(intruder, local_file(size=100))
    assert not refused["OK"] and "not permitted" in refused["Message"], refused
    assert not _storage_path(session_paths, intruder).exists()
    # bob overwrites alice's file (catalog entry with other bytes), adds a replica to it, removes it
    fc = _fc()
    overwrite = fc.addFile({lfn: {"PFN": "", "Size": 100, "SE": SE, "GUID": str(uuid.uuid4()),
                                  "Checksum": "0badf00d"}})
    assert overwrite["OK"] and "already registered" in overwrite["Value"]["Failed"][lfn]["RucioFileCatalog"]
    same = fc.addFile({lfn: {"PFN": "", "Size": 2048, "SE": OTHER_SE, "GUID": str(uuid.uuid4()),
                             "Checksum": adler32_of_file(source)}})
    assert same["OK"] and lfn in same["Value"]["Failed"] and _refused(same["Value"]["Failed"][lfn]), same
    assert fc.exists(lfn)["Value"]["Successful"][lfn], "bob's refused overwrite left alice's file intact"
    attach = fc.addReplica({lfn: {"SE": OTHER_SE, "PFN": ""}})
    assert attach["OK"] and lfn in attach["Value"]["Failed"] and _refused(attach["Value"]["Failed"][lfn]), attach
    removed = fc.removeFile(lfn)
    assert removed["OK"] and lfn in removed["Value"]["Failed"] and _refused(removed["Value"]["Failed"][lfn]), removed
    dm_removed = _dm().removeFile(lfn)
    assert not dm_removed["OK"] or lfn in dm_removed["Value"]["Failed"], dm_removed
    # nothing of alice's changed: catalog entry, replicas, bytes
    act_as("alice")
    fc = _fc()
    assert fc.exists(lfn)["Value"]["Successful"][lfn]
    replicas = fc.getReplicas(lfn)["Value"]["Successful"][lfn]
    assert list(replicas) == [SE], replicas
    assert fc.getFileMetadata(lfn)["Value"]["Successful"][lfn]["Checksum"].lower() == adler32_of_file(source).lower()
    assert stored.read_bytes() == original
    # the owner removes her own file
    gone = _dm().removeFile(lfn)
    assert gone["OK"] and lfn in gone["Value"]["Successful"], gone
    assert not fc.exists(lfn)["Value"]["Successful"][lfn]


def test_rucio_itself_refuses_what_the_adapter_refuses(world, act_as, local_file):
    """The guarantee is the server's permission check, not KM3DIRAC's client-side one: bob's own rucio Client,
    asked directly, cannot attach into, detach from, write replicas in or re-open alice's collections."""
    from rucio.common.exception import AccessDenied

    from KM3DIRAC.Resources.Catalog.RucioSettings import catalog_from_cs

    directory = f"{world.home('alice')}/direct-{uuid.uuid4().hex[:8]}"
    lfn = f"{directory}/f.dat"
    act_as("alice")
    assert _put(lfn, local_file(size=500))["OK"]
    act_as("bob")
    bob = catalog_from_cs().client
    mine = f"{world.home('bob')}/mine-{uuid.uuid4().hex[:8]}.dat"
    assert _put(mine, local_file(size=300))["OK"]
    attempts = {
        "attach bob's file into alice's dataset": lambda: bob.attach_dids("user.alice", directory,
                                                                          [{"scope": "user.bob", "name": mine}]),
        "detach alice's file": lambda: bob.detach_dids("user.alice", directory, [{"scope": "user.alice",
                                                                                   "name": lfn}]),
        "add a replica in alice's scope": lambda: bob.add_replicas(OTHER_SE, [{"scope": "user.alice", "name": lfn,
                                                                               "bytes": 500, "adler32": "00000001"}]),
        "mark alice's replica unavailable": lambda: bob.update_replicas_states(
            SE, [{"scope": "user.alice", "name": lfn, "state": "U"}]),
        "expire alice's file": lambda: bob.set_metadata("user.alice", lfn, "lifetime", 1),
        "create a file in alice's scope": lambda: bob.add_replicas(SE, [{"scope": "user.alice",
                                                                         "name": f"{directory}/new.dat",
                                                                         "bytes": 1, "adler32": "00000001"}]),
    }
    allowed = []
    for what, attempt in attempts.items():
        try:
            attempt()
            allowed.append(what)
        except AccessDenied:
            pass
    assert allowed == [], f"Rucio let bob {allowed}"
    rules = [r for r in bob.list_did_rules("user.alice", directory)]
    for rule in rules:
        with pytest.raises(AccessDenied):
            bob.delete_replication_rule(rule["id"])


def test_production_scope_is_the_production_accounts(world, act_as, local_file, session_paths):
    lfn = f"/km3net/{world.production_scope}/mc/run1/p-{uuid.uuid4().hex[:8]}.root"
    act_as("prodmgr")
    put = _put(lfn, local_file(size=1000))
    assert put["OK"] and lfn in put["Value"]["Successful"], put
    act_as("alice")
    written = _put(f"/km3net/{world.production_scope}/mc/run1/alice.root", local_file(size=10))
    assert not written["OK"] and "not permitted" in written["Message"], written
    removed = _fc().removeFile(lfn)
    assert lfn in removed["Value"]["Failed"] and _refused(removed["Value"]["Failed"][lfn]), removed
    act_as("prodmgr")
    assert _fc().exists(lfn)["Value"]["Successful"][lfn]


# The harness has no ResourceStatus service: the command's own entry point runs with the StorageElements' status
# answered in its process, as for the in-process tests (KM3DIRAC.sandbox.dirac_inprocess).
COMMAND_LAUNCHER = """
import importlib, sys
from KM3DIRAC.sandbox.dirac_inprocess import answer_resource_status_in_process
answer_resource_status_in_process(["KM3-DISK-1", "KM3-DISK-2"])
command = sys.argv[1]
sys.argv = [command, *sys.argv[2:]]
sys.exit(importlib.import_module("DIRAC.DataManagementSystem.scripts." + command.replace("-", "_")).main())
"""


def _command(world, person: Person, *args: str) -> subprocess.CompletedProcess:
    """A dirac-dms command as ``person`` (their proxy), configured from the CS alone (no rucio.cfg)."""
    env = {key: value for key, value in os.environ.items() if key not in ("RUCIO_CONFIG", "RUCIO_HOME")}
    env["X509_USER_PROXY"] = str(person.proxy)
    return subprocess.run([sys.executable, "-c", COMMAND_LAUNCHER, args[0], "--cfg", str(world.cfg_file), *args[1:]],
                          capture_output=True, text=True, timeout=180, check=False, env=env)


def test_dirac_dms_commands_refuse_another_users_files(world, local_file, act_as):
    alice, bob = world.people["alice"], world.people["bob"]
    lfn = f"{world.home('alice')}/cmd-{uuid.uuid4().hex[:8]}/f.dat"
    source = local_file(size=700)
    added = _command(world, alice, "dirac-dms-add-file", lfn, str(source), SE)
    assert added.returncode == 0, added.stdout + added.stderr
    intruder = _command(world, bob, "dirac-dms-add-file", f"{lfn}.bob", str(source), SE)
    assert intruder.returncode != 0 or "Successfully uploaded" not in intruder.stdout, intruder.stdout
    assert "not permitted" in intruder.stdout + intruder.stderr, intruder.stdout + intruder.stderr
    removal = _command(world, bob, "dirac-dms-remove-files", lfn)
    output = removal.stdout + removal.stderr
    assert "permission denied" in output.lower() or "not permitted" in output.lower(), output
    act_as("alice")
    assert _fc().exists(lfn)["Value"]["Successful"][lfn]
    own = _command(world, alice, "dirac-dms-remove-files", lfn)
    assert own.returncode == 0, own.stdout + own.stderr
    assert not _fc().exists(lfn)["Value"]["Successful"][lfn]
    for result in (added, intruder, removal, own):  # no credential in what the commands print
        printed = result.stdout + result.stderr
        for person in world.people.values():
            assert person.password not in printed
            assert _proxy_secret(person) not in printed


def _proxy_secret(person: Person) -> str:
    """A line of the proxy's private key (what must never be printed)."""
    text = person.proxy.read_text()
    key = text[text.index("PRIVATE KEY-----"):].splitlines()
    return key[1]


def test_job_wrapper_outputs_go_only_where_the_jobs_account_may_write(world, act_as, tmp_path, session_paths):
    from KM3DIRAC.core.errors import KM3DiracError
    from KM3DIRAC.core.job_outputs import OutputSpec, register_outputs, registration_entries, store_outputs
    from KM3DIRAC.Resources.Catalog.RucioSettings import catalog_from_cs

    out = tmp_path / "out.h5"
    out.write_bytes(os.urandom(3000))
    alice_dir = f"{world.home('alice')}/job-{uuid.uuid4().hex[:8]}"
    act_as("alice")
    catalog = catalog_from_cs()
    stored = store_outputs(catalog.client, [out], OutputSpec(alice_dir, SE))
    assert register_outputs(catalog, registration_entries(stored, OutputSpec(alice_dir, SE))) == [f"{alice_dir}/out.h5"]
    alices_bytes = _storage_path(session_paths, f"{alice_dir}/out.h5").read_bytes()

    act_as("bob")  # bob's job with alice's directory as its output path: refused before the upload
    other = tmp_path / "other" / "out.h5"
    other.parent.mkdir()
    other.write_bytes(os.urandom(3000))
    with pytest.raises(KM3DiracError, match="permission denied"):
        store_outputs(catalog_from_cs().client, [other], OutputSpec(alice_dir, SE))
    assert _storage_path(session_paths, f"{alice_dir}/out.h5").read_bytes() == alices_bytes
    with pytest.raises(KM3DiracError, match="refused"):  # and the registration alone is refused by Rucio
        register_outputs(catalog_from_cs(), {f"{alice_dir}/new.h5": {"Size": 3000, "Checksum": "00000001",
                                                                      "ChecksumType": "AD", "SE": SE}})

    production_dir = f"/km3net/{world.production_scope}/reco/run7"
    act_as("alice")  # a user job cannot write in a production scope
    with pytest.raises(KM3DiracError, match="permission denied"):
        store_outputs(catalog_from_cs().client, [other], OutputSpec(production_dir, SE))
    act_as("prodmgr")  # a production job (the production manager's proxy) acts as the production account
    catalog = catalog_from_cs()
    assert catalog.client.whoami()["account"] == PRODUCTION_ACCOUNT
    stored = store_outputs(catalog.client, [other], OutputSpec(production_dir, SE))
    assert register_outputs(catalog, registration_entries(stored, OutputSpec(production_dir, SE))) == \
        [f"{production_dir}/out.h5"]


def test_no_credential_in_logs(world, rucio_server, act_as):
    """After every test above, the Rucio server's log and the DIRAC configuration the commands read hold no
    password of a user and no proxy key (the CS names only the credentials file)."""
    logs = rucio_server.log_file.read_text(errors="replace")
    cfg = world.cfg_file.read_text()
    for person in world.people.values():
        for text in (logs, cfg):
            assert person.password not in text
            assert _proxy_secret(person) not in text
