# shellcheck shell=bash
# KM3NeT software environment on a worker node, from CVMFS. Source it:  . km3net-env.sh <version>
#
# Configuration (environment variables, all optional):
#   KM3NET_CVMFS_REPO     the CVMFS repository            (default /cvmfs/km3net.in2p3.fr)
#   KM3NET_SOFTWARE_ROOT  where versions live in the repo  (default $KM3NET_CVMFS_REPO/sw/Jpp)
#   KM3NET_IMAGE_DIR      apptainer images in the repo     (default $KM3NET_CVMFS_REPO/singularity)
#   KM3NET_USE_CONTAINER  1: run in the version's image ($KM3NET_IMAGE_DIR/jpp_<version>.sif) with apptainer,
#                         0: source <root>/<version>/setenv.sh natively, auto (default): container if the image exists
# On success it exports KM3NET_SOFTWARE_VERSION and KM3NET_RUN_MODE (native|container) and, natively, what the
# version's setenv.sh sets; on failure it prints why on stderr and returns non-zero.

km3net_env_fail() {
  printf 'km3net-env: %s\n' "$*" >&2
  return 1
}

km3net_env_setup() {
  local version=${1:-}
  [ -n "$version" ] || { km3net_env_fail "usage: . km3net-env.sh <software version>"; return 1; }
  local repo=${KM3NET_CVMFS_REPO:-/cvmfs/km3net.in2p3.fr}
  local software_root=${KM3NET_SOFTWARE_ROOT:-$repo/sw/Jpp}
  local image_dir=${KM3NET_IMAGE_DIR:-$repo/singularity}
  local use_container=${KM3NET_USE_CONTAINER:-auto}

  if [ ! -d "$repo" ] || [ -z "$(ls -A "$repo" 2>/dev/null)" ]; then
    km3net_env_fail "CVMFS repository $repo is not mounted on this node (is cvmfs installed and $repo in CVMFS_REPOSITORIES?)"
    return 1
  fi
  local image="$image_dir/jpp_${version}.sif"
  if [ "$use_container" = auto ]; then
    if [ -f "$image" ]; then use_container=1; else use_container=0; fi
  fi
  export KM3NET_SOFTWARE_VERSION="$version"
  if [ "$use_container" = 1 ]; then
    [ -f "$image" ] || { km3net_env_fail "no apptainer image $image for version $version"; return 1; }
    command -v apptainer >/dev/null 2>&1 || { km3net_env_fail "apptainer is not installed, needed for $image"; return 1; }
    export KM3NET_RUN_MODE=container KM3NET_IMAGE="$image"
    return 0
  fi
  local setenv="$software_root/$version/setenv.sh"
  [ -f "$setenv" ] || { km3net_env_fail "software version $version not found: no $setenv"; return 1; }
  # shellcheck source=/dev/null
  . "$setenv" || { km3net_env_fail "$setenv failed"; return 1; }
  export KM3NET_RUN_MODE=native
}

km3net_env_setup "$@"
