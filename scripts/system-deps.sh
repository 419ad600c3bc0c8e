#!/usr/bin/env bash
# The Debian/Ubuntu packages the test suite uses for real, in one list, and what `make test` does
# about them before it runs pytest.
#
#   scripts/system-deps.sh [--stamp FILE] [ensure]   install what is missing when it can (root, or
#                                                    passwordless `sudo -n`, with apt-get); otherwise
#                                                    say what is missing and which tests will skip
#   scripts/system-deps.sh [--stamp FILE] check      only say what is missing (exit 1 if anything is)
#   scripts/system-deps.sh list                      the package names, one a line
#                                                    (e.g. apt-get install $(scripts/system-deps.sh list))
#
# Environment: TINYLARGE_REQUIRE_ALL=1 (CI) makes a package that is still missing an error here,
# before the suite starts; TINYLARGE_INSTALL_SYSTEM_DEPS=0 never installs, only reports.
#
# The stamp (make passes .venv/.system-deps) records the list as it was when every package was last
# found installed. While it matches the list below and every command in the list is on PATH, the
# script does nothing else (a few milliseconds); otherwise it asks dpkg and installs what is missing.
set -euo pipefail

# One line per package: append a line to add one (e.g. `chromium  chromium  browser  -`).
#   package                   command that proves it       tests that skip      packaged service the
#                             is there (- for a library)   without it (marker)  install starts (stopped)
PACKAGES='
gcc                           gcc                          firmware             -
libc6-dev                     -                            firmware             -
gcc-arm-none-eabi             arm-none-eabi-gcc            firmware             -
libnewlib-arm-none-eabi       -                            firmware             -
qemu-system-arm               qemu-system-arm              firmware             -
clang                         clang                        firmware             -
libclang-rt-14-dev            -                            firmware             -
mosquitto                     mosquitto                    broker               mosquitto
victoria-metrics              victoria-metrics             influx               victoria-metrics
chromium                      chromium                     browser              -
chromium-driver               chromedriver                 browser              -
openocd                       openocd                      firmware             -
nats-server                   nats-server                  cluster              nats-server
postgresql                    psql                         postgres             postgresql
'
# Whenever the script checks in full (no valid stamp: a fresh clone, as in CI, or a changed list) and
# may change the system, it stops those packaged services if they run (apt starts them on install, and
# some machines at boot): the suite's fixtures start their own Mosquitto and VictoriaMetrics on free
# loopback ports, and the packaged ones must not hold 1883 / 8428 (or the machine's attention).

root=$(cd "$(dirname "$0")/.." && pwd)
stamp=""
mode=ensure
while [ $# -gt 0 ]; do
  case "$1" in
    --stamp) stamp=$2; shift 2 ;;
    ensure|check|list) mode=$1; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "system-deps: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done

say() { echo "system-deps: $*"; }

# the table, without blank lines and with single spaces: the stamp's content
table=$(awk 'NF == 4 { print $1, $2, $3, $4 }' <<<"$PACKAGES")
pkgs=(); cmds=(); markers=(); services=()
while read -r p c m s; do pkgs+=("$p"); cmds+=("$c"); markers+=("$m"); services+=("$s"); done <<<"$table"

if [ "$mode" = list ]; then printf '%s\n' "${pkgs[@]}"; exit 0; fi

# fast path: the stamp matches this list and every listed command is still on PATH
if [ -n "$stamp" ] && [ -f "$stamp" ] && [ "$(<"$stamp")" = "$table" ]; then
  ok=1
  for c in "${cmds[@]}"; do
    [ "$c" = - ] || command -v "$c" >/dev/null 2>&1 || { ok=0; break; }
  done
  [ "$ok" = 1 ] && exit 0
  rm -f "$stamp"
fi

# which are missing: dpkg knows; without dpkg (not Debian) only the commands can be checked
missing_now() {
  local i installed=""
  if command -v dpkg-query >/dev/null 2>&1; then
    installed=$(dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' "${pkgs[@]}" 2>/dev/null \
                | awk '$1 == "ii" { print $2 }' | sed 's/:.*//') || true
    for i in "${!pkgs[@]}"; do
      grep -qxF "${pkgs[$i]}" <<<"$installed" || echo "$i"
    done
  else
    for i in "${!pkgs[@]}"; do
      [ "${cmds[$i]}" = - ] || command -v "${cmds[$i]}" >/dev/null 2>&1 || echo "$i"
    done
  fi
}
names() { local i out=""; for i in "$@"; do out="$out${out:+ }${pkgs[$i]}"; done; echo "$out"; }
markers_of() {  # "firmware (gcc-arm-none-eabi qemu-system-arm), broker (mosquitto)": marker (its packages)
  local i m out="" seen=" "
  for i in "$@"; do
    m=${markers[$i]}
    case "$seen" in *" $m "*) continue ;; esac
    seen="$seen$m "
    local ps="" j
    for j in "$@"; do [ "${markers[$j]}" = "$m" ] && ps="$ps ${pkgs[$j]}"; done
    out="$out${out:+, }$m (${ps# })"
  done
  echo "$out"
}

mapfile -t missing < <(missing_now)

# may this script change the system? (root, or passwordless sudo, with apt-get)
sudo_=()
can=""
if ! command -v apt-get >/dev/null 2>&1; then
  why_cannot="no apt-get (not a Debian/Ubuntu system)"
elif [ "$(id -u)" = 0 ]; then
  can=1
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  can=1; sudo_=(sudo -n)
else
  why_cannot="not root and no passwordless sudo"
fi
[ "$mode" = ensure ] || can=""
if [ -n "$can" ] && [ "${TINYLARGE_INSTALL_SYSTEM_DEPS:-1}" = 0 ]; then can=""; why_cannot="TINYLARGE_INSTALL_SYSTEM_DEPS=0"; fi

if [ ${#missing[@]} -gt 0 ] && [ -n "$can" ]; then
  mkdir -p "$root/build"
  log="$root/build/system-deps.log"
  want=$(names "${missing[@]}")
  printf 'system-deps: installing %s (for the %s tests) with apt-get, log in build/system-deps.log ... ' \
    "$want" "$(markers_of "${missing[@]}" | sed 's/ ([^)]*)//g')"
  t0=$(date +%s)
  apt=("${sudo_[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -y -q)
  "${apt[@]}" update >"$log" 2>&1 || true
  # a package this release does not have would make apt-get refuse the others too: leave it out
  known=()
  for p in $want; do
    if apt-cache show "$p" >/dev/null 2>&1; then known+=("$p"); else echo "no package $p here" >>"$log"; fi
  done
  if [ ${#known[@]} -gt 0 ] && "${apt[@]}" install --no-install-recommends "${known[@]}" >>"$log" 2>&1; then
    echo "done in $(( $(date +%s) - t0 )) s"
  else
    echo "failed after $(( $(date +%s) - t0 )) s; the end of the log:"
    tail -n 15 "$log" | sed 's/^/    /'
  fi
  mapfile -t missing < <(missing_now)
  why_cannot="apt-get could not install them, see build/system-deps.log"
fi

# the packaged services (started by their install, or at boot) must not run beside the suite's own
if [ -n "$can" ]; then
  for i in "${!pkgs[@]}"; do
    svc=${services[$i]}
    [ "$svc" != - ] || continue
    [ -e "/etc/init.d/$svc" ] || [ -e "/lib/systemd/system/$svc.service" ] || continue
    if "${sudo_[@]}" service "$svc" status >/dev/null 2>&1; then
      "${sudo_[@]}" service "$svc" stop >/dev/null 2>&1 || true
      say "stopped the packaged $svc service (the tests start their own on free ports)"
    fi
  done
fi

if [ ${#missing[@]} -eq 0 ]; then
  if [ -n "$stamp" ]; then mkdir -p "$(dirname "$stamp")"; printf '%s\n' "$table" >"$stamp"; fi
  exit 0
fi

say "missing: $(names "${missing[@]}")${why_cannot:+ (not installed: ${why_cannot})}"
if [ "${TINYLARGE_REQUIRE_ALL:-}" = 1 ]; then
  say "tests that fail under TINYLARGE_REQUIRE_ALL=1, by marker (missing packages): $(markers_of "${missing[@]}")"
  exit 1
fi
say "tests that will skip, by marker (missing packages): $(markers_of "${missing[@]}")"
if command -v apt-get >/dev/null 2>&1; then
  say "to run them too: sudo apt-get install --no-install-recommends $(names "${missing[@]}")"
else
  say "to run them too: install your system's equivalents of those Debian packages"
fi
[ "$mode" = check ] && exit 1
exit 0
