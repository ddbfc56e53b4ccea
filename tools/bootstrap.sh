#!/usr/bin/env bash
# Set up everything KM3DIRAC needs on a fresh Debian 12 machine, idempotently:
#   1. Debian packages, when missing (needs root or sudo): PostgreSQL server binaries, swig (M2Crypto build),
#      python3-gfal2 (the gfal2 binding DIRAC requires; PyPI's does not build against Debian 12's gfal2),
#      python3-venv, shellcheck, chromium + chromium-driver (the web portal tests drive a headless browser).
#   2. .venv: Debian's python3 + DIRAC, rucio-clients, diracx-client and KM3DIRAC (editable) with test tools;
#      the extra `diracx`: DiracX's server packages and moto (dirac-km3-sandbox up --diracx).
#   3. .venv-rucio-server: the Rucio server (it pins urllib3/requests versions that clash with rucio-clients).
#   4. .venv-snakemake: snakemake (tools/snakemake-requirements.txt) with this repository's snakemake plugins
#      (snakemake_executor_plugin_dirac, snakemake_storage_plugin_km3dirac) installed without dependencies, in
#      setuptools' "compat" editable mode: snakemake finds plugins by scanning sys.path for their package names,
#      which the default editable finder hook hides. snakemake downgrades packaging and SQLAlchemy, so not in .venv.
# A stamp per environment records the hash of the files that define it, so a warm run does nothing.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

APT_PACKAGES=(postgresql-15 mariadb-server-core mariadb-client-core libmariadb-dev pkg-config swig libssl-dev python3-venv python3-dev python3-gfal2 shellcheck chromium chromium-driver)
RUCIO_SERVER_REQUIREMENT='rucio[postgresql]==41.5.1'
GUNICORN_REQUIREMENT='gunicorn==27.0.1'
DEBIAN_PYTHON=/usr/bin/python3

log() { printf 'bootstrap: %s\n' "$*" >&2; }

mkdir -p .work
pip_log=.work/bootstrap-pip.log

# pip, quietly: its full output goes to .work/bootstrap-pip.log and is shown only when it fails
pip_in() {
  local venv=$1
  shift
  if ! "$venv/bin/python" -m pip install "$@" >>"$pip_log" 2>&1; then
    tail -n 60 "$pip_log" >&2
    log "pip install into $venv failed (full log: $pip_log)"
    return 1
  fi
}

install_debian_packages() {
  local missing=()
  local package
  for package in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
      missing+=("$package")
    fi
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    return 0
  fi
  log "installing Debian packages: ${missing[*]}"
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    sudo=(sudo)
  fi
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

stamp_of() {
  cat "$@" | sha256sum | cut -d' ' -f1
}

make_client_venv() {
  local stamp
  stamp=$(stamp_of setup.cfg pyproject.toml tools/bootstrap.sh tools/link_debian_gfal2.py)
  if [ -f .venv/.km3dirac-stamp ] && [ "$(cat .venv/.km3dirac-stamp)" = "$stamp" ]; then
    return 0
  fi
  if [ ! -x .venv/bin/python ]; then
    log "creating .venv (DIRAC, rucio-clients, KM3DIRAC)"
    "$DEBIAN_PYTHON" -m venv .venv
    pip_in .venv --upgrade 'pip>=24' 'setuptools>=68' wheel
    .venv/bin/python tools/link_debian_gfal2.py
  else
    log "updating .venv (the project's requirements changed)"
  fi
  pip_in .venv -e '.[testing,sandbox,diracx]'
  echo "$stamp" > .venv/.km3dirac-stamp
}

make_server_venv() {
  local stamp
  stamp=$(echo "$RUCIO_SERVER_REQUIREMENT $GUNICORN_REQUIREMENT" | sha256sum | cut -d' ' -f1)
  if [ -f .venv-rucio-server/.km3dirac-stamp ] && [ "$(cat .venv-rucio-server/.km3dirac-stamp)" = "$stamp" ]; then
    return 0
  fi
  log "creating .venv-rucio-server (Rucio server)"
  rm -rf .venv-rucio-server
  "$DEBIAN_PYTHON" -m venv .venv-rucio-server
  pip_in .venv-rucio-server "$RUCIO_SERVER_REQUIREMENT" "$GUNICORN_REQUIREMENT"
  echo "$stamp" > .venv-rucio-server/.km3dirac-stamp
}

make_snakemake_venv() {
  local stamp
  stamp=$(stamp_of tools/snakemake-requirements.txt setup.cfg pyproject.toml)
  if [ -f .venv-snakemake/.km3dirac-stamp ] && [ "$(cat .venv-snakemake/.km3dirac-stamp)" = "$stamp" ]; then
    return 0
  fi
  log "creating .venv-snakemake (snakemake and KM3DIRAC's snakemake plugins)"
  rm -rf .venv-snakemake
  "$DEBIAN_PYTHON" -m venv .venv-snakemake
  pip_in .venv-snakemake --upgrade 'pip>=24' 'setuptools>=68' wheel
  pip_in .venv-snakemake -r tools/snakemake-requirements.txt
  pip_in .venv-snakemake --no-deps --config-settings editable_mode=compat -e .
  echo "$stamp" > .venv-snakemake/.km3dirac-stamp
}

install_debian_packages
make_client_venv
make_server_venv
make_snakemake_venv
log "ready"
