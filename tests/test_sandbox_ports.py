"""Ports and listeners of the local services: ports reserved machine-wide so that processes choosing at the same
moment never get the same one, and the loopback launcher that keeps DISET's wildcard binds on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from KM3DIRAC.sandbox.loopback import loopback_command
from KM3DIRAC.sandbox.processes import reserve_port
from KM3DIRAC.sandbox.sockets import is_loopback

RESERVER = """
import json, socket, sys, time
from KM3DIRAC.sandbox.processes import reserve_port
sys.stdin.readline()  # start together
ports = [reserve_port() for _ in range(int(sys.argv[1]))]
time.sleep(0.5)  # bind late, as a service does, after the others chose theirs
for port in ports:
    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    sock.listen()
print(json.dumps(ports))
"""


def test_processes_reserving_ports_at_the_same_moment_never_share_one(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("KM3DIRAC_PORT_REGISTRY", str(tmp_path / "ports"))
    processes = [subprocess.Popen([sys.executable, "-c", RESERVER, "15"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(6)]
    for process in processes:
        process.stdin.write("go\n")
        process.stdin.flush()
    ports = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err  # an EADDRINUSE in the late bind would fail here
        ports += json.loads(out)
    assert len(ports) == 90 and len(set(ports)) == 90
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    assert all(port < low for port in ports), "ports must come from below the kernel's ephemeral range"


def test_a_port_reserved_by_a_live_process_is_not_handed_out_but_a_stale_reservation_is_ignored(
        tmp_path: Path, monkeypatch):
    monkeypatch.setenv("KM3DIRAC_PORT_REGISTRY", str(tmp_path / "ports"))
    holder = subprocess.run([sys.executable, "-c", "from KM3DIRAC.sandbox.processes import reserve_port;"
                             "print(reserve_port())"], capture_output=True, text=True, check=True)
    stale = int(holder.stdout)  # its process has exited: the reservation lapsed
    assert reserve_port(preferred=stale) == stale
    mine = reserve_port()
    child = subprocess.run([sys.executable, "-c", f"from KM3DIRAC.sandbox.processes import reserve_port;"
                            f"print(reserve_port(preferred={mine}))"], capture_output=True, text=True, check=True)
    assert int(child.stdout) != mine  # reserved by this (live) process


LISTENER = """
import json, socket
v6 = socket.socket(socket.AF_INET6); v6.bind(("", 0)); v6.listen()
v4 = socket.socket(socket.AF_INET); v4.bind(("0.0.0.0", 0)); v4.listen()
only6 = socket.socket(socket.AF_INET6); only6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
only6.bind(("::", 0)); only6.listen()
print(json.dumps([v6.getsockname()[0], v4.getsockname()[0], only6.getsockname()[0]]))
"""


def test_loopback_launcher_turns_wildcard_binds_into_loopback(tmp_path: Path):
    script = tmp_path / "listener.py"
    script.write_text(LISTENER)
    result = subprocess.run(loopback_command([str(script)]), capture_output=True, text=True, check=False,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    addresses = json.loads(result.stdout)
    assert addresses == ["::ffff:127.0.0.1", "127.0.0.1", "::1"]
    assert all(is_loopback(address) for address in addresses)
    # and without the launcher the same program listens everywhere
    plain = json.loads(subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                                      check=True).stdout)
    assert not any(is_loopback(address) for address in plain)
    with socket.socket() as sock:  # the port registry's ports are usable by a plain bind too
        sock.bind(("127.0.0.1", reserve_port()))
