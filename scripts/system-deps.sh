#!/usr/bin/env bash
# Install the system services parcelhook needs when they are missing (Debian/Ubuntu, root or sudo).
#   scripts/system-deps.sh python           # the virtualenv (python3 + venv/ensurepip)
#   scripts/system-deps.sh redis            # make run
#   scripts/system-deps.sh redis postgres rabbitmq chromium ss   # make test (ss, from iproute2: the several-hosts test)
#   scripts/system-deps.sh redis wrk        # make bench (wrk drives the receiver benchmark)
set -euo pipefail

need=()
for what in "$@"; do
  case "$what" in
    python)   { command -v python3 >/dev/null && python3 -c "import venv, ensurepip" 2>/dev/null; } || need+=(python3 python3-venv) ;;
    redis)    command -v redis-server >/dev/null || need+=(redis-server) ;;
    postgres) { command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } || need+=(postgresql) ;;
    rabbitmq) { command -v rabbitmq-server >/dev/null || [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]; } || need+=(rabbitmq-server) ;;
    chromium) command -v chromium >/dev/null || need+=(chromium) ;;
    wrk)      command -v wrk >/dev/null || need+=(wrk) ;;
    ss)       command -v ss >/dev/null || need+=(iproute2) ;;
    *) echo "unknown dependency $what" >&2; exit 2 ;;
  esac
done
[ ${#need[@]} -eq 0 ] && exit 0

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then sudo="sudo"; else
    echo "parcelhook needs: ${need[*]} — install them (apt-get install ${need[*]}) or run as root" >&2; exit 1
  fi
fi
echo "installing ${need[*]} with apt-get…"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian starts a system redis/postgres/rabbitmq on install; parcelhook runs its own private ones.
for pkg in "${need[@]}"; do
  case "$pkg" in
    redis-server) svc=redis-server ;;
    postgresql)   svc=postgresql ;;
    rabbitmq-server) svc=rabbitmq-server ;;
    *) continue ;;
  esac
  ($sudo service "$svc" stop || true) >/dev/null 2>&1
done
