# Sourced by the container scripts: installs podman and what building the base image needs when
# missing, and points podman at a configuration that works on these machines:
# - the containers' open-file limit within this machine's hard limit (podman's default asks for
#   more, and runc then fails with "setrlimit ... operation not permitted");
# - runc as the runtime (Debian's crun refuses the cgroups hybrid mode some hosts have).
# A CONTAINERS_CONF set by the caller wins.
podman_setup() {
  local missing=()
  command -v podman >/dev/null 2>&1 || missing+=(podman)
  command -v runc >/dev/null 2>&1 || missing+=(runc)
  command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
  command -v curl >/dev/null 2>&1 || missing+=(curl)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  command -v python3 >/dev/null 2>&1 || missing+=(python3)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]} ..." >&2
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  if [ -z "${CONTAINERS_CONF:-}" ]; then
    local nofile
    nofile=$(ulimit -Hn)
    [ "$nofile" = unlimited ] && nofile=1048576
    CONTAINERS_CONF="${TMPDIR:-/tmp}/authgate-containers-$(id -u).conf"
    cat > "$CONTAINERS_CONF" <<CONF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=32768:32768"]
[engine]
runtime = "runc"
CONF
    export CONTAINERS_CONF
  fi
}
