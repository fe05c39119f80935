#!/usr/bin/env bash
# edgecam installer for Raspberry Pi OS Bookworm/Trixie (aarch64) and plain Debian 12/13 (amd64/arm64).
#
#   sudo ./install.sh                      install (or update) and start the service
#   sudo ./install.sh --offline DIR        install from a bundle: DIR/wheels, DIR/models, optional DIR/debs
#   ./install.sh --bundle DIR [--arch aarch64] [--python 3.11] [--numpy V] [--models-from DIR]
#                                          make such a bundle on a networked machine
#   sudo ./install.sh --uninstall [--purge]
#   ./install.sh --show-config [FILE]      print the config the installer would install (made from FILE)
#
# Options: --dry-run (print every action, change nothing), --no-start, --coral / --no-coral (default: install
# Edge TPU support when a Coral is plugged in), --coral-std (the cooler, reduced-clock libedgetpu),
# --coral-deb FILE (a libedgetpu .deb you bring), --coral-wheel FILE (a tflite_runtime wheel you bring, used
# instead of LiteRT), --log FILE. A second run changes nothing and says so. A failing step is rolled back;
# the service is enabled only after the config has been validated. Run with --help for this text.
set -Eeuo pipefail
umask 022

# ---- layout -------------------------------------------------------------------------------------------------
PREFIX=/opt/edgecam
VENV=$PREFIX/venv
STAMP=$PREFIX/.install-stamp
ETC=/etc/edgecam
CONFIG=$ETC/config.yaml
AUTH_FILE=$ETC/auth
STATE=/var/lib/edgecam
MODELS=$STATE/models
WRITABLE=$STATE/state  # the only directory the service may write (the unit's ReadWritePaths/StateDirectory)
SNAPSHOTS=$WRITABLE/snapshots
UNIT=/etc/systemd/system/edgecam.service
DROPIN_DIR=/etc/systemd/system/edgecam.service.d
UDEV_RULES=/etc/udev/rules.d/71-edgecam-edgetpu.rules
SERVICE_USER=edgecam
PY=/usr/bin/python3  # apt's Python: the venv must see apt's packages (never a pyenv/conda python3 on PATH)
SRC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CAMERA_ORDER="the Pi camera (picamera2), else the first USB camera (/dev/videoN), else the sample video, else a test pattern"

# ---- pins ---------------------------------------------------------------------------------------------------
# The TFLite runtime is LiteRT (ai-edge-litert): wheels for Python 3.10-3.13 on x86-64 and aarch64 that need
# numpy >= 1.23, so apt's numpy (1.24 on Bookworm, 2.x on Trixie) serves it. It ran the int8 detectors 16-25x
# faster than PyPI's last tflite-runtime (2.14.0, 2023, Python <= 3.11, numpy < 2), which is only a fallback
# where LiteRT cannot be installed. The app looks for them in the same order: LiteRT, then tflite_runtime,
# then tensorflow.lite.
LITERT_PYPI='ai-edge-litert>=1.2,<3'
TFLITE_PYPI=tflite-runtime==2.14.0
LITERT_PYTHONS="3.10 3.11 3.12 3.13"
# apt's numpy on the targets (Raspberry Pi OS uses Debian's): a bundle's wheels are resolved against it.
APT_NUMPY_BOOKWORM=1.24.2
APT_NUMPY_TRIXIE=2.2.4
# With a Coral: the Edge TPU delegate (libedgetpu) must be built against a TensorFlow the runtime is compatible
# with, or it segfaults (Google's own 16.0 builds are not; no build exists for tflite-runtime 2.14). feranick's
# libedgetpu 16.0 builds (the maintained ones; Frigate ships 16.0tf2.17.1) work with ai-edge-litert, as he states:
# LiteRT loads it with its load_delegate, so no separate tflite_runtime wheel is needed. Checksums: not recorded
# yet (the release assets could not be reached when this was written). While a CORAL_DEB_SHA256_* below is
# empty the .deb is fetched over HTTPS from the pinned URL and its sha256 is printed for you to compare; once
# it is filled in, a mismatch stops the install.
CORAL_DEB_VERSION=16.0tf2.17.1-1
CORAL_DEB_DIST=bookworm
CORAL_DEB_URL=https://github.com/feranick/libedgetpu/releases/download/16.0TF2.17.1-1
CORAL_DEB_SHA256_arm64=""
CORAL_DEB_SHA256_amd64=""
CORAL_USB_IDS=("1a6e:089a" "18d1:9302")  # before and after the firmware load (it re-enumerates)
# Models brought besides the embedded ones (those models/models.yaml marks `embedded: true`, committed in
# models/ and copied from the checkout or bundle): optional downloads; one that fails is reported, not fatal.
OPTIONAL_MODELS=(ssd_mobilenet_v1_coco ssdlite_mobilenet_v2_a050_coco sample_video)
CORAL_MODELS=(ssd_mobilenet_v2_coco ssd_mobilenet_v2_coco_edgetpu)

# ---- options ------------------------------------------------------------------------------------------------
DRY_RUN=0 NO_START=0 UNINSTALL=0 PURGE=0 SHOW_CONFIG=0 SHOW_CONFIG_FROM=""
OFFLINE="" BUNDLE="" BUNDLE_ARCH="" BUNDLE_PY="" BUNDLE_NUMPY="" CORAL_MODE=auto CORAL_CLOCK=max CORAL_DEB="" CORAL_WHEEL=""
MODELS_FROM=()
LOG=/var/log/edgecam-install.log

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 2; }
need_arg() { if [ $# -lt 2 ] || [ -z "$2" ]; then die "$1 needs a value"; fi; }

while [ $# -gt 0 ]; do
    case $1 in
        --dry-run) DRY_RUN=1 ;;
        --no-start) NO_START=1 ;;
        --offline) need_arg "$@"; OFFLINE=$(realpath -m "$2"); shift ;;
        --bundle) need_arg "$@"; BUNDLE=$(realpath -m "$2"); shift ;;
        --arch) need_arg "$@"; BUNDLE_ARCH=$2; shift ;;
        --python) need_arg "$@"; BUNDLE_PY=$2; shift ;;
        --numpy) need_arg "$@"; BUNDLE_NUMPY=$2; shift ;;
        --models-from) need_arg "$@"; MODELS_FROM+=("$(realpath -m "$2")"); shift ;;
        --coral) CORAL_MODE=yes ;;
        --no-coral) CORAL_MODE=no ;;
        --coral-std) CORAL_CLOCK=std ;;
        --coral-deb) need_arg "$@"; CORAL_DEB=$(realpath -m "$2"); CORAL_MODE=yes; shift ;;
        --coral-wheel) need_arg "$@"; CORAL_WHEEL=$(realpath -m "$2"); CORAL_MODE=yes; shift ;;
        --uninstall) UNINSTALL=1 ;;
        --purge) UNINSTALL=1; PURGE=1 ;;
        --show-config)
            SHOW_CONFIG=1
            if [ $# -ge 2 ] && [ "${2#-}" = "$2" ]; then SHOW_CONFIG_FROM=$(realpath -m "$2"); shift; fi ;;
        --log) need_arg "$@"; LOG=$2; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
    shift
done

# ---- output, actions, rollback --------------------------------------------------------------------------------
STEP=0 TOTAL=9 STEP_NAME="" CHANGED=0 FINISHED=0
UNDO=()

say() { printf '%s\n' "$*"; }
note() { printf '      %s\n' "$*"; }
changed() { CHANGED=1; ((DRY_RUN)) || printf '      %s\n' "$*"; }
step() {
    STEP=$((STEP + 1)) STEP_NAME=$1 UNDO=()
    printf '[%d/%d] %s…\n' "$STEP" "$TOTAL" "$1"
}
fail() {
    printf '\n[%d/%d] FAILED: %s\n' "$STEP" "$TOTAL" "$*" >&2
    exit 1
}
quote() { local out="" a; for a in "$@"; do out+=" $(printf '%q' "$a")"; done; printf '%s' "${out# }"; }
# Run a command, its output going to the log; with --dry-run only print it.
run() {
    if ((DRY_RUN)); then note "would run: $(quote "$@")"; return 0; fi
    printf '+ %s\n' "$(quote "$@")" >>"$LOG"
    "$@" >>"$LOG" 2>&1
}
# Register how to undo what the current step just did (run in reverse order if the step fails).
on_undo() { UNDO+=("$(quote "$@")"); }
rollback() {
    local i
    for ((i = ${#UNDO[@]} - 1; i >= 0; i--)); do
        printf '      undo: %s\n' "${UNDO[i]}" >&2
        eval "${UNDO[i]}" >>"$LOG" 2>&1 || printf '      (undo failed: %s)\n' "${UNDO[i]}" >&2
    done
}
on_exit() {
    local rc=$?
    [ "$rc" -eq 0 ] || [ "$STEP" -eq 0 ] || ((FINISHED)) || {
        [ -z "${ERR_AT:-}" ] || printf '      (stopped at %s)\n' "$ERR_AT" >&2
        if ((${#UNDO[@]})); then
            printf '      rolling back step %d (%s)\n' "$STEP" "$STEP_NAME" >&2
            rollback
        fi
        if [ -f "$LOG" ] && ! ((DRY_RUN)); then
            printf '      last lines of %s:\n' "$LOG" >&2
            tail -n 15 "$LOG" | sed 's/^/        | /' >&2
        fi
        if [ -n "$BUNDLE" ]; then printf 'The bundle is incomplete; fix the problem above and run it again.\n' >&2
        else printf 'edgecam was not (fully) installed; fix the problem above and run the installer again.\n' >&2; fi
    }
    [ -z "${TMP_DIR:-}" ] || rm -rf "$TMP_DIR"
}
trap on_exit EXIT
trap 'ERR_AT="line $LINENO: $BASH_COMMAND"' ERR
TMP_DIR=$(mktemp -d)

have() { command -v "$1" >/dev/null 2>&1; }
systemd_running() { [ -d /run/systemd/system ]; }
pkg_installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]; }
pkg_candidate() {  # the version apt would install, or nothing
    apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ { if ($2 != "(none)") print $2 }'
}
file_sha256() { sha256sum "$1" | cut -d' ' -f1; }

# Put CONTENT (a file) at DEST with MODE and OWNER:GROUP; report whether anything changed.
install_file() {
    local src=$1 dest=$2 mode=$3 owner=$4
    if [ -f "$dest" ] && cmp -s "$src" "$dest"; then
        fix_perms "$dest" "$mode" "$owner"
        return 0
    fi
    if ((DRY_RUN)); then note "would write $dest ($mode $owner)"; return 0; fi
    local tmp
    tmp=$(mktemp "$dest.XXXXXX")
    cat "$src" >"$tmp"
    chmod "$mode" "$tmp"
    chown "$owner" "$tmp"
    mv -f "$tmp" "$dest"
    changed "wrote $dest"
}
fix_perms() {
    local path=$1 mode=$2 owner=$3 cur
    cur="$(stat -c '%a %U:%G' "$path")"
    [ "$cur" != "${mode#0} $owner" ] || return 0
    if ((DRY_RUN)); then note "would set $path to $mode $owner (now $cur)"; return 0; fi
    chmod "$mode" "$path"
    chown "$owner" "$path"
    changed "set $path to $mode $owner"
}
ensure_dir() {
    local path=$1 mode=$2 owner=$3
    if [ -d "$path" ]; then fix_perms "$path" "$mode" "$owner"; return 0; fi
    if ((DRY_RUN)); then note "would create $path ($mode $owner)"; return 0; fi
    mkdir -p "$path"
    on_undo rmdir "$path"
    chmod "$mode" "$path"
    chown "$owner" "$path"
    changed "created $path"
}

# ---- facts about this machine ---------------------------------------------------------------------------------
MACHINE=$(uname -m)
case $MACHINE in aarch64) DEB_ARCH=arm64 ;; x86_64) DEB_ARCH=amd64 ;; *) DEB_ARCH=$MACHINE ;; esac
OS_ID="" OS_CODENAME="" OS_NAME="" IS_RPI_OS=0
if [ -r /etc/os-release ]; then
    # shellcheck disable=SC1091
    OS_ID=$(. /etc/os-release && echo "${ID:-}")
    # shellcheck disable=SC1091
    OS_CODENAME=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    # shellcheck disable=SC1091
    OS_NAME=$(. /etc/os-release && echo "${PRETTY_NAME:-}")
fi
# Raspberry Pi OS: its issue file, or its archive keyring package (apt sources are not read for the host).
if [ -f /etc/rpi-issue ] \
    || dpkg-query -W -f='${Status}' raspberrypi-archive-keyring 2>/dev/null | grep -q 'install ok installed'; then
    IS_RPI_OS=1
fi

python_version() {  # X.Y of the system python3, or nothing
    if [ -x "$PY" ]; then "$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true; fi
}
ver_le() { [ "$(printf '%s\n' "$1" "$2" | sort -V | head -1)" = "$1" ]; }  # X.Y <= X.Y
# The runtimes to try for Python X.Y, in order, one pip requirement (or wheel file) a line: LiteRT, then
# tflite-runtime 2.14 where it has wheels (Python <= 3.11), never with a Coral (no libedgetpu exists for 2.14).
runtime_candidates() {
    local py=$1 coral=$2
    if [ -n "$CORAL_WHEEL" ]; then echo "$CORAL_WHEEL"; return; fi
    echo "$LITERT_PYPI"
    if [ "$coral" != yes ] && ver_le "$py" 3.11; then echo "$TFLITE_PYPI"; fi
}
runtime_module() { case ${1##*/} in ai-edge-litert*|ai_edge_litert*) echo ai_edge_litert ;; *) echo tflite_runtime ;; esac; }
runtime_label() {
    case ${1##*/} in
        ai-edge-litert*|ai_edge_litert*) echo "LiteRT (ai-edge-litert)" ;;
        tflite-runtime==*) echo "tflite-runtime ${1#*==}" ;;
        *) echo "${1##*/}" ;;
    esac
}
litert_has_wheel() {  # Python X.Y, machine: LiteRT publishes a wheel for them
    [[ " $LITERT_PYTHONS " == *" $1 "* ]] && { [ "$2" = aarch64 ] || [ "$2" = x86_64 ]; }
}
describe_runtime() {  # Python X.Y, coral yes/no: one line for the user
    local py=$1 coral=$2 text
    if [ -n "$CORAL_WHEEL" ]; then text="$(basename "$CORAL_WHEEL") (your --coral-wheel, instead of LiteRT)"
    elif litert_has_wheel "$py" "$MACHINE"; then text="LiteRT (ai-edge-litert)"
    else text="LiteRT if pip finds a wheel for Python $py on $MACHINE (it publishes 3.10-3.13, x86_64/aarch64)"; fi
    if [ "$coral" = yes ]; then text+=", with libedgetpu $CORAL_DEB_VERSION loaded through its load_delegate"
    elif [ -z "$CORAL_WHEEL" ] && ver_le "$py" 3.11; then text+="; fallback if it cannot be installed: $TFLITE_PYPI"; fi
    echo "$text"
}

# ---- the model manifest (models/models.yaml), read without Python or PyYAML (it may not be installed yet) ----
# Prints "kind id file labels embedded archive sha256 git_blob" per entry (kind: models|assets; "-" for an empty
# field; archive: the download's file name when the file is a member of it, as `--from DIR` looks for it). The
# manifest is ours: two-space ids, four-space keys, scalar values on one line.
manifest_table() {
    awk '
        function val(line) { sub(/^[^:]*:[ \t]*/, "", line); sub(/[ \t]+#.*$/, "", line); gsub(/^["\047]|["\047]$/, "", line); return line }
        function flush() {
            if (id == "") return
            if (npm != "") { zip = npm; sub(/^@/, "", zip); v = zip; sub(/@[^@]*$/, "", zip); sub(/.*@/, "", v); gsub(/\//, "-", zip); zip = zip "-" v ".tgz" }
            print kind, id, file, labels, emb, (member != "" ? zip : "-"), sha, blob; id = ""
        }
        /^[a-z_]+:/ { flush(); kind = $1; sub(/:.*/, "", kind); next }
        /^  [A-Za-z0-9_.-]+:[ \t]*(#.*)?$/ { flush(); id = $1; sub(/:$/, "", id); file = "-"; labels = "-"; emb = "-"; member = ""; zip = "-"; npm = ""; sha = "-"; blob = "-"; next }
        /^    file:/ { file = val($0) }
        /^    labels:/ { labels = val($0) }
        /^    embedded:/ { emb = val($0) }
        /^    member:/ { member = val($0) }
        /^    url:/ { zip = val($0); sub(/.*\//, "", zip) }
        /^    npm:/ { npm = val($0) }
        /^    sha256:/ { sha = val($0) }
        /^    git_blob:/ { blob = val($0) }
        END { flush() }
    ' "$1"
}
manifest_field() {  # manifest id column(3 file, 4 labels, 6 archive, 7 sha256, 8 git_blob)
    awk -v id="$2" -v col="$3" '$2 == id { print $col; exit }' < <(manifest_table "$1")
}
# The embedded files (committed in models/, installed without a download): the entries marked `embedded: true`
# (models and assets); a manifest without that key at all: the models whose file is in FROM_DIR.
embedded_models() {  # manifest from_dir
    local table
    table=$(manifest_table "$1")
    if awk '$5 != "-" { found = 1 } END { exit !found }' <<<"$table"; then
        awk '$5 == "true" { print $2 }' <<<"$table"
    else
        local id file
        while read -r id file; do [ -f "$2/$file" ] && echo "$id"; done < <(awk '$1 == "models" { print $2, $3 }' <<<"$table")
    fi
    return 0
}

# USB devices as "vendor:product speed busdir" lines, from sysfs.
usb_devices() {
    local d
    for d in /sys/bus/usb/devices/*; do
        [ -r "$d/idVendor" ] || continue
        printf '%s:%s %s %s\n' "$(cat "$d/idVendor")" "$(cat "$d/idProduct")" "$(cat "$d/speed" 2>/dev/null || echo ?)" "$d"
    done
}
coral_usb() {  # prints "id speed" of the first Coral on USB
    local id
    for id in "${CORAL_USB_IDS[@]}"; do
        usb_devices | awk -v id="$id" '$1 == id { print $1, $2; exit }' | grep . && return 0
    done
    return 1
}

# ---- models -------------------------------------------------------------------------------------------------
REQUIRED_IDS=() OPTIONAL_IDS=() LOCAL_DIRS=() EDGECAM_CMD=() MANIFEST="" MODEL_OWNER=root:root
# Which files to bring: the embedded models and their labels are required; the others optional. Sets
# REQUIRED_IDS and OPTIONAL_IDS from MANIFEST; FROM_DIR is where the embedded files are committed.
plan_models() {  # from_dir coral(yes/no)
    local from_dir=$1 coral=$2 id labels embedded=()
    REQUIRED_IDS=() OPTIONAL_IDS=()
    [ -f "$MANIFEST" ] || fail "no model manifest at $MANIFEST"
    mapfile -t embedded < <(embedded_models "$MANIFEST" "$from_dir")
    for id in "${embedded[@]}"; do
        labels=$(manifest_field "$MANIFEST" "$id" 4)
        add_id REQUIRED_IDS "$id"
        [ -z "$labels" ] || [ "$labels" = - ] || add_id REQUIRED_IDS "$labels"
    done
    local optional=("${OPTIONAL_MODELS[@]}")
    [ "$coral" = yes ] && optional+=("${CORAL_MODELS[@]}")
    for id in "${optional[@]}"; do
        labels=$(manifest_field "$MANIFEST" "$id" 4)
        [ -z "$labels" ] || [ "$labels" = - ] || add_id OPTIONAL_IDS "$labels"
        add_id OPTIONAL_IDS "$id"
    done
    if [ ${#REQUIRED_IDS[@]} -eq 0 ]; then  # no embedded model in this manifest: the CPU models are needed
        note "the manifest marks no embedded model: the downloaded CPU models are required"
        REQUIRED_IDS=("${OPTIONAL_IDS[@]}") OPTIONAL_IDS=()
        if [ "$coral" = yes ]; then
            for id in "${CORAL_MODELS[@]}"; do drop_id REQUIRED_IDS "$id"; add_id OPTIONAL_IDS "$id"; done
        fi
    else
        for id in "${REQUIRED_IDS[@]}"; do drop_id OPTIONAL_IDS "$id"; done
        note "embedded (copied from $from_dir, no download): ${REQUIRED_IDS[*]}"
    fi
    return 0
}
add_id() { local -n list=$1; [[ " ${list[*]} " == *" $2 "* ]] || list+=("$2"); }
# shellcheck disable=SC2178  # a nameref to an array
drop_id() { local -n list=$1; local keep=() x; for x in "${list[@]}"; do [ "$x" = "$2" ] || keep+=("$x"); done; list=("${keep[@]}"); }

# The file's digest as the manifest pins it (sha256, else git's blob id); 0 when it matches.
matches_manifest() {  # file id
    local sha blob
    sha=$(manifest_field "$MANIFEST" "$2" 7) blob=$(manifest_field "$MANIFEST" "$2" 8)
    if [ -n "$sha" ] && [ "$sha" != - ]; then [ "$(file_sha256 "$1")" = "${sha,,}" ]
    elif [ -n "$blob" ] && [ "$blob" != - ]; then
        [ "$({ printf 'blob %s\0' "$(stat -c %s "$1")"; cat "$1"; } | sha1sum | cut -d' ' -f1)" = "${blob,,}" ]
    else return 1; fi
}
# Copy a manifest file from the first of LOCAL_DIRS that has it into DEST, checked against the manifest first
# (embedded files: no download, no edgecam code needed).
copy_verified() {  # id dest
    local id=$1 dest=$2 file d src=""
    file=$(manifest_field "$MANIFEST" "$id" 3)
    for d in "${LOCAL_DIRS[@]}"; do [ -f "$d/$file" ] && { src=$d/$file; break; }; done
    [ -n "$src" ] || fail "$file not found in ${LOCAL_DIRS[*]}"
    matches_manifest "$src" "$id" || fail "$src does not match the checksum in $MANIFEST; not installed"
    local before=$CHANGED
    CHANGED=0
    install_file "$src" "$dest/$file" 0644 "$MODEL_OWNER"
    if ((CHANGED)); then note "copied $id from $(dirname "$src") (checksum verified)"; else CHANGED=$before; fi
}

# Bring REQUIRED_IDS and OPTIONAL_IDS into DEST, each verified against the manifest: from the first of LOCAL_DIRS
# that has it, else downloaded (when allowed). A required file that cannot be brought stops the install; an
# optional one is reported and skipped.
bring_models() {  # dest allow_download(0/1)
    local dest=$1 allow_download=$2 id file zip d where group
    local req_local=() req_dl=() opt_local=() opt_dl=() req_missing=() opt_missing=() from=()
    for d in "${LOCAL_DIRS[@]}"; do [ -d "$d" ] && from+=(--from "$d"); done
    for id in "${REQUIRED_IDS[@]}" "${OPTIONAL_IDS[@]}"; do
        group=opt; [[ " ${REQUIRED_IDS[*]} " == *" $id "* ]] && group=req
        file=$(manifest_field "$MANIFEST" "$id" 3) zip=$(manifest_field "$MANIFEST" "$id" 6)
        if [ -z "$file" ]; then
            [ "$group" = req ] && fail "'$id' is not in $MANIFEST"
            note "$id: not in this manifest, skipped"; continue
        fi
        where=""
        for d in "${LOCAL_DIRS[@]}"; do
            if [ -f "$d/$file" ] || { [ "$zip" != - ] && [ -f "$d/$zip" ]; }; then where=$d; break; fi
        done
        if [ -n "$where" ] || [ -f "$dest/$file" ] || ((allow_download)); then
            if ! ((DRY_RUN)); then :
            elif [ -f "$dest/$file" ]; then note "$id: $dest/$file is there (checked against the manifest on a real run)"
            elif [ -n "$where" ]; then note "would copy $id ($file) from $where"
            else note "would download $id ($file)"; fi
            if [ -n "$where" ] && [ "$group" = req ]; then req_local+=("$id")
            elif [ -n "$where" ]; then opt_local+=("$id")
            elif [ "$group" = req ]; then req_dl+=("$id")
            else opt_dl+=("$id"); fi
        elif [ "$group" = req ]; then req_missing+=("$id")
        else opt_missing+=("$id"); fi
    done
    [ ${#req_missing[@]} -eq 0 ] || fail "not found in ${LOCAL_DIRS[*]}: ${req_missing[*]} (needed without a download)"
    for id in "${req_local[@]}"; do copy_verified "$id" "$dest"; done
    if [ ${#req_dl[@]} -gt 0 ]; then
        note "downloading and verifying ${req_dl[*]} (unless already there)"
        run "${EDGECAM_CMD[@]}" models fetch --model-dir "$dest" "${req_dl[@]}" ||
            fail "could not download and verify ${req_dl[*]} (no network? see $LOG)"
    fi
    if [ ${#opt_local[@]} -gt 0 ]; then
        note "copying and verifying the optional ${opt_local[*]}"
        run "${EDGECAM_CMD[@]}" models fetch --model-dir "$dest" "${from[@]}" "${opt_local[@]}" ||
            note "WARNING: could not copy ${opt_local[*]} (see $LOG); carrying on without them"
    fi
    if [ ${#opt_dl[@]} -gt 0 ]; then
        note "downloading the optional models ${opt_dl[*]} (unless already there; a few MB each)"
        if ! run "${EDGECAM_CMD[@]}" models fetch --model-dir "$dest" "${opt_dl[@]}"; then
            note "WARNING: some optional models could not be downloaded (see $LOG):"
            grep -o 'fetch failed: .*' "$LOG" 2>/dev/null | tail -1 | sed 's/^/        /' || true
            note "edgecam runs with the models it has; fetch the rest later:"
            note "  sudo $VENV/bin/edgecam models fetch --model-dir $dest ${opt_dl[*]}"
        fi
    fi
    [ ${#opt_missing[@]} -eq 0 ] || note "not brought (not in ${LOCAL_DIRS[*]}, no download offline): ${opt_missing[*]}"
    return 0
}

# =============================================================================================================
# --bundle: make an offline bundle on a networked machine
# =============================================================================================================
make_bundle() {
    local arch=${BUNDLE_ARCH:-$MACHINE} py=${BUNDLE_PY:-} pip_py=${PYTHON:-python3} coral=no
    [ -n "$py" ] || py=$("$pip_py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    case $arch in aarch64|arm64) arch=aarch64 ;; x86_64|amd64) arch=x86_64 ;; *) die "--arch: aarch64 or x86_64 (got $arch)" ;; esac
    [[ $py =~ ^3\.[0-9]+$ ]] || die "--python: X.Y, e.g. 3.11 (got $py)"
    [ "$CORAL_MODE" = yes ] && coral=yes
    local abi="cp${py/./}" numpy_pin=${BUNDLE_NUMPY:-}
    # The target's apt numpy: pip resolves LiteRT, scipy (and the rest) for it, and never replaces it.
    [ -n "$numpy_pin" ] || case $py in 3.11) numpy_pin=$APT_NUMPY_BOOKWORM ;; 3.13) numpy_pin=$APT_NUMPY_TRIXIE ;; esac
    [ -n "$numpy_pin" ] || die "--numpy X.Y.Z: the numpy version apt installs on the target (Python $py)"
    TOTAL=4
    say "Making an offline bundle in $BUNDLE for $arch, Python $py, numpy $numpy_pin"
    note "runtime: $(MACHINE=$arch describe_runtime "$py" "$coral")"
    "$pip_py" -m pip --version >/dev/null 2>&1 || die "$pip_py has no pip (apt-get install python3-pip, or set PYTHON=)"

    step "Copying the installer, unit, default config and model manifest"
    run mkdir -p "$BUNDLE/wheels" "$BUNDLE/models" "$BUNDLE/systemd"
    run cp "$SRC_DIR/install.sh" "$BUNDLE/install.sh"
    run cp "$SRC_DIR/config.yaml" "$BUNDLE/config.yaml"
    run cp "$SRC_DIR/systemd/edgecam.service" "$BUNDLE/systemd/edgecam.service"
    run cp "$SRC_DIR/models/models.yaml" "$BUNDLE/models/models.yaml"
    [ ! -f "$SRC_DIR/models/NOTICE" ] || run cp "$SRC_DIR/models/NOTICE" "$BUNDLE/models/NOTICE"

    step "Building edgecam's wheel and downloading every pip dependency for $arch / Python $py"
    note "pip downloads about 100 MB (LiteRT, scipy, pydantic, …) for the target; log: $LOG"
    run rm -f "$BUNDLE"/wheels/edgecam-*.whl
    run "$pip_py" -m pip wheel --quiet --no-deps --disable-pip-version-check -w "$BUNDLE/wheels" "$SRC_DIR"
    local platforms=() v
    for v in 36 34 31 28 27 26 24 17; do platforms+=(--platform "manylinux_2_${v}_$arch"); done
    platforms+=(--platform "manylinux2014_$arch" --platform "linux_$arch")
    local wheel rt runtime=""
    wheel=$(find "$BUNDLE/wheels" -name 'edgecam-*.whl' -print -quit 2>/dev/null || true)
    ((DRY_RUN)) && wheel=${wheel:-$BUNDLE/wheels/edgecam-0-py3-none-any.whl}
    [ -z "$CORAL_WHEEL" ] || run cp "$CORAL_WHEEL" "$BUNDLE/wheels/"
    while read -r rt; do
        [ -z "$CORAL_WHEEL" ] || rt=$BUNDLE/wheels/$(basename "$CORAL_WHEEL")
        if run "$pip_py" -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
            "${platforms[@]}" --python-version "$py" --implementation cp --abi "$abi" \
            --find-links "$BUNDLE/wheels" -d "$BUNDLE/wheels" "$wheel" "$rt" "numpy==$numpy_pin"; then
            runtime=$rt; break
        fi
        note "pip found no $(runtime_label "$rt") for $arch / Python $py with numpy $numpy_pin (see $LOG)"
    done < <(runtime_candidates "$py" "$coral")
    [ -n "$runtime" ] || fail "pip could not download edgecam's dependencies with a TFLite runtime for $arch / Python $py (see $LOG)"
    note "runtime in the bundle: $(runtime_label "$runtime")"
    if [ "$coral" = yes ]; then
        local deb_arch=arm64; [ "$arch" = x86_64 ] && deb_arch=amd64
        run mkdir -p "$BUNDLE/debs"
        local deb="libedgetpu1-${CORAL_CLOCK}_${CORAL_DEB_VERSION}.${CORAL_DEB_DIST}_$deb_arch.deb"
        if [ -n "$CORAL_DEB" ]; then run cp "$CORAL_DEB" "$BUNDLE/debs/"
        else note "downloading $deb"; download "$CORAL_DEB_URL/$deb" "$BUNDLE/debs/$deb" "$(coral_deb_sha "$deb_arch")"; fi
    fi

    step "Bringing and verifying the models (the embedded ones from the checkout, the others downloaded)"
    local d
    if [ -n "${EDGECAM_BIN:-}" ]; then EDGECAM_CMD=("$EDGECAM_BIN")
    elif have edgecam; then EDGECAM_CMD=(edgecam)
    else
        note "a throwaway venv for edgecam's model tool"
        run "$pip_py" -m venv "$TMP_DIR/venv"
        run "$TMP_DIR/venv/bin/pip" install --quiet --disable-pip-version-check "$wheel"
        EDGECAM_CMD=("$TMP_DIR/venv/bin/edgecam")
    fi
    MANIFEST=$SRC_DIR/models/models.yaml
    LOCAL_DIRS=("$SRC_DIR/models")
    for d in "${MODELS_FROM[@]}"; do LOCAL_DIRS+=("$d"); done
    plan_models "$SRC_DIR/models" "$coral"
    MODEL_OWNER="$(id -un):$(id -gn)"
    bring_models "$BUNDLE/models" 1

    step "Writing the bundle's description"
    if ! ((DRY_RUN)); then
        {
            echo "edgecam offline bundle"
            echo "target: $arch python $py numpy $numpy_pin coral $coral runtime $(runtime_label "$runtime")"
            echo "made: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -m)"
            (cd "$BUNDLE" && { find wheels models debs -type f 2>/dev/null || true; } | sort | xargs -r sha256sum)
        } >"$BUNDLE/BUNDLE.txt"
    fi
    FINISHED=1
    say ""
    say "Bundle ready: $BUNDLE ($(du -sh "$BUNDLE" 2>/dev/null | cut -f1))."
    say "Copy it to the Pi and run:  sudo $BUNDLE/install.sh --offline $BUNDLE"
    say "apt packages are not in it: the Pi needs them from its apt sources, or put their .deb files in $BUNDLE/debs/"
    say "(e.g. apt-get download on a machine of the same OS and architecture)."
}

coral_deb_sha() { case $1 in arm64) echo "$CORAL_DEB_SHA256_arm64" ;; amd64) echo "$CORAL_DEB_SHA256_amd64" ;; esac; }

# Download URL to DEST over HTTPS; verify SHA256 when one is pinned, else print it for the user to compare.
download() {
    local url=$1 dest=$2 sha=${3:-}
    if ((DRY_RUN)); then note "would download $url"; return 0; fi
    local py=$PY
    [ -x "$py" ] || py=python3
    have "$py" || fail "python3 is needed to download $url"
    "$py" - "$url" "$dest.part" <<'EOF' >>"$LOG" 2>&1 || fail "could not download $url (no network? bring the file with --coral-deb FILE, or use --offline)"
import shutil, sys, urllib.request
req = urllib.request.Request(sys.argv[1], headers={"User-Agent": "edgecam-install"})
with urllib.request.urlopen(req, timeout=60) as r, open(sys.argv[2], "wb") as out:
    shutil.copyfileobj(r, out)
EOF
    check_sha "$dest.part" "$sha" "$url"
    mv -f "$dest.part" "$dest"
}
check_sha() {
    local file=$1 sha=$2 what=$3 actual
    actual=$(file_sha256 "$file")
    if [ -n "$sha" ]; then
        [ "$actual" = "$sha" ] || { rm -f "$file"; fail "$what: sha256 $actual does not match the pinned $sha; not installed"; }
        note "sha256 verified: $(basename "$what")"
    else
        note "sha256 of $(basename "$what"): $actual"
        note "(no checksum is pinned for it yet: compare with the one published beside the release)"
    fi
}

# =============================================================================================================
# --uninstall
# =============================================================================================================
uninstall() {
    TOTAL=3
    step "Stopping and removing the service"
    if [ -f "$UNIT" ] || [ -d "$DROPIN_DIR" ]; then
        if have systemctl; then
            if systemd_running; then run systemctl disable --now edgecam.service || true
            else run systemctl disable edgecam.service || true; fi
        fi
        run rm -rf "$UNIT" "$DROPIN_DIR" /etc/systemd/system/multi-user.target.wants/edgecam.service
        systemd_running && run systemctl daemon-reload
        changed "removed $UNIT"
    else
        note "no service installed"
    fi
    step "Removing the code, venv and udev rules"
    local p
    for p in "$PREFIX" "$UDEV_RULES"; do
        if [ -e "$p" ]; then run rm -rf "$p"; changed "removed $p"; fi
    done
    step "Config, models and the edgecam user"
    if ((PURGE)); then
        for p in "$ETC" "$STATE"; do
            if [ -e "$p" ]; then run rm -rf "$p"; changed "removed $p"; fi
        done
        if id "$SERVICE_USER" >/dev/null 2>&1; then run userdel "$SERVICE_USER"; changed "removed user $SERVICE_USER"; fi
    else
        note "kept $ETC (config, password hash), $STATE (models, state) and the $SERVICE_USER user; --purge removes them"
    fi
    note "apt packages (python3-numpy, python3-opencv, …) are left installed: other software may use them"
    FINISHED=1
    if ((CHANGED)); then say "edgecam removed."; else say "Nothing to remove: edgecam is not installed."; fi
}

# =============================================================================================================
# install
# =============================================================================================================
FAILS=0 HAS_CORAL=0 CORAL_DESC=""
check_line() {  # status what [advice]
    local status=$1 what=$2 advice=${3:-}
    printf '      %-4s %s\n' "$status" "$what"
    [ -z "$advice" ] || printf '           → %s\n' "$advice"
    [ "$status" != FAIL ] || FAILS=$((FAILS + 1))
}

# Can pip reach its package index (whatever this machine configures: pip.conf, PIP_INDEX_URL, a proxy)? Asked
# through pip itself, for the runtime we are about to install; no host is named here.
check_pip_index() {  # python X.Y
    local py=$1 out
    if [ -z "$py" ] || ! "$PY" -m pip --version >/dev/null 2>&1; then
        check_line ok "network: checked when the venv's pip first runs (step 4; python3-pip is not installed here)"
        return 0
    fi
    if out=$(timeout 90 "$PY" -m pip index versions --disable-pip-version-check ai-edge-litert 2>/dev/null) &&
        [ -n "$out" ]; then
        check_line ok "network: pip's package index answers ($(head -1 <<<"$out") for Python $py)"
    elif timeout 90 "$PY" -m pip download --disable-pip-version-check --no-deps --quiet -d "$TMP_DIR/pip-probe" flatbuffers >/dev/null 2>&1; then
        if ver_le "$py" 3.11; then
            check_line warn "network: pip's index answers but has no LiteRT for Python $py on $MACHINE" "the fallback $TFLITE_PYPI is installed instead (slower)"
        else
            check_line FAIL "network: pip's index has no LiteRT for Python $py on $MACHINE, and there is no fallback for it" \
                "use Python 3.10-3.13 (Raspberry Pi OS Bookworm or Trixie)"
        fi
    else
        check_line FAIL "network: pip cannot reach its package index" \
            "connect the box to the internet (check pip's index/proxy settings: pip config list), or install from a bundle: --offline DIR"
    fi
}

preflight() {
    step "Checking this machine"
    # root
    if [ "$(id -u)" -eq 0 ]; then check_line ok "running as root"
    elif ((DRY_RUN)); then check_line warn "not root (fine for --dry-run)"
    else check_line FAIL "not running as root" "run it with sudo: sudo $0"; fi
    # OS and version
    if ! have apt-get || ! have dpkg-query; then
        check_line FAIL "no apt/dpkg: ${OS_NAME:-unknown OS}" "edgecam installs on Raspberry Pi OS or Debian 12/13"
    else
        local what="${OS_NAME:-unknown OS}"; ((IS_RPI_OS)) && what="Raspberry Pi OS ($OS_NAME)"
        case "$OS_ID:$OS_CODENAME" in
            debian:bookworm|debian:trixie|raspbian:bookworm|raspbian:trixie) check_line ok "$what" ;;
            *) check_line warn "$what: not a tested release" "tested: Raspberry Pi OS / Debian bookworm (12) and trixie (13); carrying on" ;;
        esac
    fi
    # architecture
    case $MACHINE in
        aarch64|x86_64) check_line ok "architecture $MACHINE" ;;
        armv7l|armv6l) check_line FAIL "32-bit OS ($MACHINE)" "TFLite wheels exist for 64-bit only: install the 64-bit Raspberry Pi OS" ;;
        *) check_line FAIL "architecture $MACHINE" "edgecam supports aarch64 (Pi 4/5) and x86_64" ;;
    esac
    # Python
    local py; py=$(python_version)
    if [ -z "$py" ]; then check_line ok "Python 3: not installed yet (apt installs python3 in step 2)"
    elif [ "$(printf '%s\n' "$py" 3.10 | sort -V | head -1)" != 3.10 ]; then
        check_line FAIL "Python $py is too old" "edgecam needs Python ≥ 3.10 (Bookworm has 3.11)"
    elif litert_has_wheel "$py" "$MACHINE"; then check_line ok "Python $py → $(describe_runtime "$py" "$CORAL_MODE")"
    else check_line warn "Python $py → $(describe_runtime "$py" "$CORAL_MODE")" "LiteRT publishes wheels for Python 3.10-3.13 (Bookworm has 3.11, Trixie 3.13)"; fi
    # free disk
    local free_mb
    free_mb=$(df -Pm "$(dirname "$PREFIX")" | awk 'NR == 2 { print $4 }')
    if [ "${free_mb:-0}" -lt 800 ]; then check_line FAIL "only ${free_mb} MB free on $(dirname "$PREFIX")" "free at least 1.5 GB (apt's OpenCV and the venv)"
    elif [ "$free_mb" -lt 2000 ]; then check_line warn "${free_mb} MB free on $(dirname "$PREFIX")" "about 1.5 GB is needed; it may get tight"
    else check_line ok "${free_mb} MB free disk"; fi
    # network or bundle
    if [ -n "$OFFLINE" ]; then
        if [ -d "$OFFLINE/wheels" ] && [ -d "$OFFLINE/models" ] && compgen -G "$OFFLINE/wheels/edgecam-*.whl" >/dev/null; then
            check_line ok "offline bundle $OFFLINE ($(find "$OFFLINE/wheels" -name '*.whl' | wc -l) wheels)"
        else
            check_line FAIL "offline bundle $OFFLINE is incomplete (needs wheels/edgecam-*.whl and models/)" \
                "make one on a networked machine: ./install.sh --bundle DIR --arch $MACHINE --python X.Y"
        fi
    elif ((DRY_RUN)); then check_line ok "network: not checked (--dry-run); a real run asks pip for LiteRT through its configured index"
    elif ((FAILS)); then check_line ok "network: not checked (fix the failures above first)"
    else check_pip_index "$py"; fi
    # camera
    local videos cams=""
    videos=$(compgen -G '/dev/video*' | tr '\n' ' ' || true)
    for cmd in rpicam-hello libcamera-hello; do
        if have "$cmd"; then cams=$(timeout 15 "$cmd" --list-cameras 2>/dev/null | grep -cE '^[0-9]+ : ' || true); break; fi
    done
    if [ -n "$cams" ] && [ "$cams" -gt 0 ]; then check_line ok "camera: $cams libcamera camera(s)"
    elif [ -n "$videos" ]; then check_line ok "camera: ${videos% }"
    else check_line warn "no camera found (no libcamera camera, no /dev/video*)" "edgecam still runs: camera.source auto takes $CAMERA_ORDER"; fi
    # Coral
    local usb
    if usb=$(coral_usb); then
        HAS_CORAL=1
        local id=${usb%% *} speed=${usb##* }
        CORAL_DESC="USB Coral $id"
        if [ "$speed" = "?" ]; then check_line ok "Coral USB accelerator ($id)"
        elif [ "${speed%%.*}" -ge 5000 ]; then check_line ok "Coral USB accelerator ($id) on USB 3 (${speed} Mb/s)"
        else check_line warn "Coral USB accelerator ($id) at ${speed} Mb/s (USB 2)" "plug it into a blue USB 3 port: USB 2 makes inference several times slower"; fi
    elif compgen -G '/dev/apex_*' >/dev/null; then
        HAS_CORAL=1 CORAL_DESC="PCIe/M.2 Coral (/dev/apex_0)"
        check_line ok "Coral PCIe/M.2 accelerator (/dev/apex_0)"
    else
        check_line ok "no Coral Edge TPU found (CPU models)"
    fi
    case $CORAL_MODE in
        auto) ((HAS_CORAL)) && CORAL_MODE=yes || CORAL_MODE=no ;;
        yes) ((HAS_CORAL)) || note "--coral: installing Edge TPU support without a Coral plugged in" ;;
    esac
    if [ "$CORAL_MODE" = yes ] && [ -z "$CORAL_DEB" ] && [ -n "$OS_CODENAME" ] && [ "$OS_CODENAME" != "$CORAL_DEB_DIST" ]; then
        check_line warn "Coral on $OS_CODENAME: the pinned libedgetpu $CORAL_DEB_VERSION is feranick's $CORAL_DEB_DIST build" \
            "it usually installs on $OS_CODENAME too; if it does not, bring his $OS_CODENAME build with --coral-deb FILE"
    fi
    # systemd
    if systemd_running; then check_line ok "systemd is running"
    else check_line warn "systemd is not running here (container or chroot)" "the service is installed but not started"; fi
    ((FAILS == 0)) || fail "$FAILS check(s) failed; nothing was changed"
}

APT_PKGS=()
apt_step() {
    step "Installing system packages (apt)"
    # Not python3-scipy: on Debian 12 it depends on pythran and so on g++ and boost (~500 MB); scipy's wheel
    # (~35 MB) goes into the venv instead, built for apt's numpy.
    # procps: /bin/kill for the unit's ExecReload (minimal images lack it). python3-aiohttp: the web server.
    # python3-av (PyAV): recordings (picamera2 depends on it too on Raspberry Pi OS).
    APT_PKGS=(python3 python3-venv python3-numpy python3-opencv python3-yaml python3-aiohttp python3-av procps)
    [ -n "$OFFLINE" ] || APT_PKGS+=(ca-certificates)
    local cand
    cand=$(pkg_candidate python3-picamera2)
    if [ -n "$cand" ] || pkg_installed python3-picamera2; then APT_PKGS+=(python3-picamera2)
    else
        note "python3-picamera2 is not in this distribution's apt sources (plain Debian): the Pi camera is"
        note "unavailable; V4L2 (USB) cameras, RTSP/HTTP streams and video files work"
    fi
    cand=$(pkg_candidate python3-pydantic)
    if [ -n "$cand" ] && [ "${cand%%.*}" -ge 2 ] 2>/dev/null; then APT_PKGS+=(python3-pydantic)
    else note "apt's python3-pydantic is ${cand:-missing} (v1): pydantic 2 goes into the venv with pip"; fi
    [ "$CORAL_MODE" = yes ] && APT_PKGS+=(libusb-1.0-0)
    local missing=() p
    for p in "${APT_PKGS[@]}"; do pkg_installed "$p" || missing+=("$p"); done
    if [ ${#missing[@]} -eq 0 ]; then note "already installed: ${APT_PKGS[*]}"; return 0; fi
    export DEBIAN_FRONTEND=noninteractive
    if [ -n "$OFFLINE" ] && compgen -G "$OFFLINE/debs/*.deb" >/dev/null; then
        note "installing from $OFFLINE/debs"
        run apt-get install -y --no-install-recommends "$OFFLINE"/debs/*.deb ||
            fail "apt could not install the bundle's .deb files (see $LOG)"
        missing=(); for p in "${APT_PKGS[@]}"; do pkg_installed "$p" || missing+=("$p"); done
        [ ${#missing[@]} -eq 0 ] && { changed "installed from the bundle"; return 0; }
    fi
    note "installing ${missing[*]} (this takes a few minutes)"
    run apt-get update -q || fail "apt-get update failed: check the network and /etc/apt/sources.list (see $LOG)"
    run apt-get install -y -q --no-install-recommends "${missing[@]}" ||
        fail "apt-get install ${missing[*]} failed (see $LOG)"
    changed "installed ${missing[*]}"
}

user_step() {
    step "Creating the $SERVICE_USER user and directories"
    if id "$SERVICE_USER" >/dev/null 2>&1; then note "user $SERVICE_USER exists"
    else
        run useradd --system --user-group --home-dir "$STATE" --no-create-home --shell /usr/sbin/nologin \
            --comment "edgecam camera service" "$SERVICE_USER"
        on_undo userdel "$SERVICE_USER"
        changed "created system user $SERVICE_USER"
    fi
    local groups=(video) g
    if [ "$CORAL_MODE" = yes ]; then
        groups+=(plugdev apex)
        getent group apex >/dev/null || { run groupadd --system apex; changed "created group apex"; }
    fi
    for g in "${groups[@]}"; do
        getent group "$g" >/dev/null || { note "group $g does not exist: skipped"; continue; }
        if id -nG "$SERVICE_USER" 2>/dev/null | tr ' ' '\n' | grep -qx "$g"; then continue; fi
        run usermod -a -G "$g" "$SERVICE_USER"
        changed "added $SERVICE_USER to group $g"
    done
    local grp=$SERVICE_USER
    ((DRY_RUN)) && ! id "$SERVICE_USER" >/dev/null 2>&1 && grp=root
    ensure_dir "$PREFIX" 0755 root:root
    ensure_dir "$ETC" 0750 "root:$grp"
    ensure_dir "$STATE" 0750 "root:$grp"
    ensure_dir "$MODELS" 0750 "root:$grp"
    local owner; owner="$([ "$grp" = root ] && echo root || echo "$SERVICE_USER"):$grp"
    ensure_dir "$WRITABLE" 0750 "$owner"
    ensure_dir "$SNAPSHOTS" 0750 "$owner"
}

# The edgecam wheel (offline) or source tree (online), and a fingerprint of it for the stamp.
edgecam_requirement() {
    if [ -n "$OFFLINE" ]; then
        find "$OFFLINE/wheels" -name 'edgecam-*.whl' -print | sort -V | tail -1
    elif [ -f "$SRC_DIR/pyproject.toml" ]; then echo "$SRC_DIR"
    else fail "no edgecam source here ($SRC_DIR has no pyproject.toml) and no --offline bundle"; fi
}
source_fingerprint() {
    local req=$1
    if [ -f "$req" ]; then file_sha256 "$req"
    else (cd "$req" && find pyproject.toml edgecam -type f \( -name '*.py' -o -name '*.toml' -o -name '*.yaml' -o -path '*/static/*' \) \
        -not -path '*/__pycache__/*' | sort | xargs sha256sum | sha256sum | cut -d' ' -f1); fi
}

RUNTIME="" RUNTIME_DESC=""
venv_step() {
    step "Installing the TFLite runtime (LiteRT) and edgecam into $VENV"
    local py; py=$(python_version)
    if [ -z "$py" ] && ((DRY_RUN)); then py=3.11; fi
    [ -n "$py" ] || fail "python3 is missing after the apt step"
    local runtimes=()
    mapfile -t runtimes < <(runtime_candidates "$py" "$CORAL_MODE")
    note "Python $py → $(describe_runtime "$py" "$CORAL_MODE")"
    local req
    req=$(edgecam_requirement)
    [ -n "$req" ] || fail "no edgecam wheel in $OFFLINE/wheels"
    # pip must never replace apt's numpy (apt's picamera2/simplejpeg/OpenCV are built against it), nor
    # apt's scipy and PyYAML: pin each to the version apt installed.
    local constraints=$TMP_DIR/constraints.txt
    : >"$constraints"
    if [ -x "$PY" ]; then
        "$PY" - >"$constraints" <<'EOF' || true
import importlib.metadata as md
for dist in ("numpy", "scipy", "PyYAML"):
    try:
        print(f"{dist}=={md.version(dist)}")
    except md.PackageNotFoundError:
        pass
EOF
    fi
    local stamp current
    stamp="py=$py runtimes=${runtimes[*]} edgecam=$(source_fingerprint "$req") pins=$(tr '\n' ' ' <"$constraints")"
    if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$stamp" ] &&
        current=$(venv_check "") 2>/dev/null; then
        RUNTIME_DESC=$(sed -n 's/.*runtime \([^,]*\),.*/\1/p' <<<"$current")
        note "already up to date: $current"
        return 0
    fi
    local pip_opts=(--disable-pip-version-check --no-input --prefer-binary --constraint "$constraints")
    [ -n "$OFFLINE" ] && pip_opts+=(--no-index --find-links "$OFFLINE/wheels")
    if [ -e "$VENV" ]; then
        run rm -rf "$VENV.old"
        run mv "$VENV" "$VENV.old"
        on_undo mv "$VENV.old" "$VENV"
    fi
    on_undo rm -rf "$VENV"
    note "creating the venv (it sees apt's numpy, OpenCV and picamera2)"
    run "$PY" -m venv --system-site-packages "$VENV"
    local rt i check=""
    for ((i = 0; i < ${#runtimes[@]}; i++)); do
        rt=${runtimes[i]}
        if ((i > 0)); then
            note "falling back to $(runtime_label "$rt") (slower than LiteRT; the app finds it after LiteRT)"
            ((DRY_RUN)) && note "(on a real run only if the step above fails)"
        fi
        note "pip install edgecam and $(runtime_label "$rt")$([ -n "$OFFLINE" ] && echo " from $OFFLINE/wheels") — a few minutes on a Pi (log: $LOG)"
        if ! run "$VENV/bin/pip" install "${pip_opts[@]}" "$req" "$rt"; then
            note "pip could not install $(runtime_label "$rt") (see $LOG)"
            continue
        fi
        ((DRY_RUN)) && { RUNTIME=$rt; continue; }
        if check=$(venv_check "$(runtime_module "$rt")" 2>>"$LOG"); then RUNTIME=$rt; break; fi
        note "$(runtime_label "$rt") was installed but does not load here (see $LOG); removing it"
        run "$VENV/bin/pip" uninstall --yes "$(runtime_module "$rt" | tr _ -)" || true
    done
    if ((DRY_RUN)); then RUNTIME=${runtimes[0]}
    elif [ -z "$RUNTIME" ]; then
        local tried=() x; for x in "${runtimes[@]}"; do tried+=("$(runtime_label "$x")"); done
        pip_index_hint
        local joined; joined=$(printf '%s, ' "${tried[@]}")
        fail "pip could not install edgecam with a TFLite runtime (tried: ${joined%, }; see $LOG)"
    else
        note "$check"
        RUNTIME_DESC=$(sed -n 's/.*runtime \([^,]*\),.*/\1/p' <<<"$check")
        echo "$stamp" >"$STAMP"
    fi
    run rm -rf "$VENV.old"
    changed "installed edgecam and $(runtime_label "$RUNTIME") into $VENV"
}

# What the installed app will use: edgecam, the runtime it finds first (LiteRT, then tflite_runtime, then
# tensorflow.lite) and numpy. Fails when EXPECTED (a module name) is given and the app would pick another.
venv_check() {  # expected-module or ""
    "$VENV/bin/python" - "$1" <<'EOF'
import sys
import numpy, edgecam
from edgecam.detect.runtime import find_runtime
rt = find_runtime()
where = "apt" if numpy.__file__.startswith("/usr/lib/python3/") else numpy.__file__
print(f"edgecam {edgecam.__version__}, runtime {rt.describe()}, numpy {numpy.__version__} ({where})")
if sys.argv[1] and rt.name != sys.argv[1]:
    sys.exit(f"the app would use {rt.name}, not {sys.argv[1]}")
EOF
}

# After a failed pip install: say whether pip's index could be reached at all (through pip, not a host name).
pip_index_hint() {
    [ -z "$OFFLINE" ] || { note "the bundle's wheels do not fit this machine (made for another Python or architecture?)"; return 0; }
    if timeout 90 "$VENV/bin/pip" download --disable-pip-version-check --no-deps --quiet -d "$TMP_DIR/pip-probe" flatbuffers >>"$LOG" 2>&1; then
        note "pip reaches its package index, so the runtime has no wheel for Python $(python_version) on $MACHINE"
    else
        note "pip cannot reach its package index: check the network and pip's settings (pip config list)"
    fi
}

coral_step() {
    step "Edge TPU support (libedgetpu, udev rules)"
    if [ "$CORAL_MODE" != yes ]; then note "skipped: no Coral found (use --coral to install its support anyway)"; return 0; fi
    local pkg="libedgetpu1-$CORAL_CLOCK" deb="libedgetpu1-${CORAL_CLOCK}_${CORAL_DEB_VERSION}.${CORAL_DEB_DIST}_$DEB_ARCH.deb" file
    if pkg_installed "$pkg" && [ "$(dpkg-query -W -f='${Version}' "$pkg")" = "$CORAL_DEB_VERSION" ]; then
        note "$pkg $CORAL_DEB_VERSION already installed ($(runtime_label "$RUNTIME") loads it with load_delegate)"
    else
        if [ -n "$CORAL_DEB" ]; then file=$CORAL_DEB; check_sha "$file" "$(coral_deb_sha "$DEB_ARCH")" "$file"
        elif [ -n "$OFFLINE" ] && [ -f "$OFFLINE/debs/$deb" ]; then file=$OFFLINE/debs/$deb
            check_sha "$file" "$(coral_deb_sha "$DEB_ARCH")" "$file"
        elif [ -n "$OFFLINE" ]; then fail "the bundle has no debs/$deb (or pass --coral-deb FILE)"
        else
            run mkdir -p /var/cache/edgecam
            file=/var/cache/edgecam/$deb
            note "downloading $deb (feranick's libedgetpu build)"
            download "$CORAL_DEB_URL/$deb" "$file" "$(coral_deb_sha "$DEB_ARCH")"
        fi
        # The other clock variant conflicts with this one; apt replaces it.
        run apt-get install -y --no-install-recommends "$file" || fail "could not install $file (see $LOG)"
        changed "installed $pkg $CORAL_DEB_VERSION"
    fi
    local rules=$TMP_DIR/rules
    {
        echo "# edgecam: the Coral USB accelerator before (1a6e:089a) and after (18d1:9302) its firmware load, and PCIe Corals"
        echo 'SUBSYSTEM=="usb", ATTRS{idVendor}=="1a6e", ATTRS{idProduct}=="089a", MODE="0660", GROUP="plugdev"'
        echo 'SUBSYSTEM=="usb", ATTRS{idVendor}=="18d1", ATTRS{idProduct}=="9302", MODE="0660", GROUP="plugdev"'
        echo 'SUBSYSTEM=="apex", MODE="0660", GROUP="apex"'
    } >"$rules"
    local before=$CHANGED
    CHANGED=0
    install_file "$rules" "$UDEV_RULES" 0644 root:root
    if ((CHANGED)) && systemd_running && have udevadm; then
        run udevadm control --reload-rules
        run udevadm trigger --subsystem-match=usb --subsystem-match=apex
        note "unplug and replug the Coral if it was plugged in before"
    fi
    ((CHANGED)) || CHANGED=$before
}

models_step() {
    step "Installing the models into $MODELS (the embedded ones from ${OFFLINE:-the checkout}, the others downloaded)"
    MANIFEST=$SRC_DIR/models/models.yaml
    LOCAL_DIRS=()
    if [ -n "$OFFLINE" ]; then
        LOCAL_DIRS+=("$OFFLINE/models")
        [ -f "$OFFLINE/models/models.yaml" ] && MANIFEST=$OFFLINE/models/models.yaml
    fi
    [ -d "$SRC_DIR/models" ] && [ "$SRC_DIR/models" != "${OFFLINE:-}/models" ] && LOCAL_DIRS+=("$SRC_DIR/models")
    if [ ! -f "$MANIFEST" ]; then  # an older bundle: the manifest inside the installed package
        MANIFEST=$(find "$VENV/lib" -path '*/edgecam/data/models.yaml' -print -quit 2>/dev/null || true)
        [ -n "$MANIFEST" ] || MANIFEST=$SRC_DIR/models/models.yaml
    fi
    EDGECAM_CMD=("$VENV/bin/edgecam")
    MODEL_OWNER=root:$SERVICE_USER
    id "$SERVICE_USER" >/dev/null 2>&1 || MODEL_OWNER=root:root  # a dry run on a fresh box
    plan_models "${LOCAL_DIRS[0]:-$SRC_DIR/models}" "$CORAL_MODE"
    local before after allow_download=1
    [ -z "$OFFLINE" ] || allow_download=0
    before=$({ find "$MODELS" -type f -printf '%f %s %T@\n' 2>/dev/null || true; } | sort | sha256sum)
    bring_models "$MODELS" "$allow_download"
    after=$({ find "$MODELS" -type f -printf '%f %s %T@\n' 2>/dev/null || true; } | sort | sha256sum)
    if ((DRY_RUN)); then :
    elif [ "$before" != "$after" ]; then changed "models verified in $MODELS"
    else note "all verified already"; fi
    if ! ((DRY_RUN)); then
        find "$MODELS" -type f ! -perm 0644 -exec chmod 0644 {} +
        find "$MODELS" -type f ! -group "$SERVICE_USER" -exec chown "root:$SERVICE_USER" {} +
    fi
}

# The installed default config: the shipped one with absolute paths, a required stream password, and the
# snapshot/recording folders where the unit lets the service write. Only the named section's key is changed
# (mqtt.password_file is not stream.password_file); a missing key is added to its section, a missing section
# appended. recording.dir is set only where the config or the installed schema has a recording section.
config_settings() {
    printf '%s\n' "detector.model_dir=$MODELS" "stream.auth=basic" "stream.password_file=$AUTH_FILE" \
        "snapshots.dir=$SNAPSHOTS" "recording.dir=$WRITABLE"
}
schema_has_recording() {
    if [ -x "$VENV/bin/python" ]; then
        "$VENV/bin/python" -c 'import sys; from edgecam.config.sections import Config; sys.exit("recording" not in Config.model_fields)' 2>/dev/null
    else
        grep -qs 'recording' "$SRC_DIR"/edgecam/config/sections.py
    fi
}
render_config() {  # src out
    local src=$1 out=$2 py=$PY settings=()
    [ -f "$src" ] || fail "$src is missing"
    [ -x "$VENV/bin/python" ] && py=$VENV/bin/python
    [ -x "$py" ] || py=$(command -v python3 || true)
    [ -n "$py" ] || fail "python3 is needed to write the config"
    mapfile -t settings < <(config_settings)
    local rec=0; schema_has_recording && rec=1
    "$py" - "$src" "$out" "$rec" "${settings[@]}" <<'EOF'
import re, sys

src, out, schema_has_recording, *settings = sys.argv[1:]
lines = open(src, encoding="utf-8").read().splitlines(keepends=True)
if lines and not lines[-1].endswith("\n"):
    lines[-1] += "\n"
HEADER = re.compile(r"^([A-Za-z_]\w*):[ \t]*(#.*)?$")


def section(name):
    """(header index, one past its last indented line), or None when the config has no such section."""
    start = next((i for i, line in enumerate(lines) if (m := HEADER.match(line.rstrip("\n"))) and m.group(1) == name), None)
    if start is None:
        if any(re.match(rf"{name}:[ \t]*[^#\s]", line) for line in lines):
            sys.exit(f"{src}: '{name}:' is written on one line; write it as a block so the installer can set keys in it")
        return None
    last = start
    for i in range(start + 1, len(lines)):
        line = lines[i]
        if line.startswith((" ", "\t")) and line.strip():
            last = i
        elif line.strip() and not line.startswith("#"):
            break  # the next top-level key
    return start, last + 1


def set_key(name, key, value):
    bounds = section(name)
    if bounds is None:
        if lines and lines[-1].strip():
            lines.append("\n")
        lines.extend([f"{name}:\n", f"  {key}: {value}\n"])
        return
    start, end = bounds
    pattern = re.compile(rf"^  {re.escape(key)}:([ \t]*)([^#\n]*?)([ \t]*(?:#.*)?)$")
    for i in range(start + 1, end):
        m = pattern.match(lines[i].rstrip("\n"))
        if m:
            lines[i] = f"  {key}:{m.group(1) or ' '}{value}{m.group(3)}\n"
            return
    lines.insert(end, f"  {key}: {value}\n")


for setting in settings:
    dotted, value = setting.split("=", 1)
    name, key = dotted.split(".", 1)
    if name == "recording" and section(name) is None and schema_has_recording != "1":
        continue  # this edgecam has no recording section yet: an unknown section would fail check-config
    set_key(name, key, value)
with open(out, "w", encoding="utf-8") as fh:
    fh.writelines(lines)
EOF
}

PASSWORD=""
config_step() {
    step "Installing the config and the stream password"
    local fresh=$TMP_DIR/config.yaml setting
    render_config "$SRC_DIR/config.yaml" "$fresh"
    if ((DRY_RUN)); then
        note "the installed config is the shipped one with:"
        while read -r setting; do
            if [ "${setting%%.*}" = recording ] && ! grep -q '^recording:' "$fresh"; then
                note "  (recording.dir: not set, this edgecam has no recording section)"; continue
            fi
            note "  ${setting%%=*}: ${setting#*=}"
        done < <(config_settings)
        note "so the stream asks for a password (user $SERVICE_USER) and snapshots/recordings go to $WRITABLE"
        note "(see it whole: ./install.sh --show-config)"
    fi
    if [ ! -f "$CONFIG" ]; then
        install_file "$fresh" "$CONFIG" 0640 "root:$SERVICE_USER"
        ((DRY_RUN)) || on_undo rm -f "$CONFIG"
    elif cmp -s "$fresh" "$CONFIG"; then
        fix_perms "$CONFIG" 0640 "root:$SERVICE_USER"
        note "$CONFIG is the current default"
    else
        fix_perms "$CONFIG" 0640 "root:$SERVICE_USER"
        if [ -f "$CONFIG.new" ] && cmp -s "$fresh" "$CONFIG.new"; then
            note "$CONFIG was edited: kept; the current default is in $CONFIG.new"
        else
            install_file "$fresh" "$CONFIG.new" 0640 "root:$SERVICE_USER"
            note "$CONFIG was edited: kept it; the new default is beside it as $CONFIG.new (compare: diff $CONFIG $CONFIG.new)"
        fi
    fi
    if [ ! -f "$AUTH_FILE" ]; then
        if ((DRY_RUN)); then note "would run: $VENV/bin/edgecam password set --file $AUTH_FILE --generate"
        else
            PASSWORD=$("$VENV/bin/edgecam" password set --file "$AUTH_FILE" --generate 2>>"$LOG") ||
                fail "could not write $AUTH_FILE"
            on_undo rm -f "$AUTH_FILE"
            chown "root:$SERVICE_USER" "$AUTH_FILE"
            chmod 0640 "$AUTH_FILE"
            changed "generated a stream password (stored as a salted hash in $AUTH_FILE)"
        fi
    else
        fix_perms "$AUTH_FILE" 0640 "root:$SERVICE_USER"
        note "$AUTH_FILE exists: password unchanged (new one: sudo $VENV/bin/edgecam password set --file $AUTH_FILE)"
    fi
    if ((DRY_RUN)); then note "would run: runuser -u $SERVICE_USER -- $VENV/bin/edgecam check-config $CONFIG"; return 0; fi
    local out
    if ! out=$(runuser -u "$SERVICE_USER" -- "$VENV/bin/edgecam" check-config "$CONFIG" 2>&1); then
        printf '%s\n' "$out" | sed 's/^/        /' >&2
        fail "$CONFIG is not valid (above); fix it and run the installer again — the service was not started"
    fi
    note "$CONFIG: valid (checked as the $SERVICE_USER user)"
    # A kept config from an older install may point snapshots (or recordings) where the unit cannot write.
    "$VENV/bin/python" - "$CONFIG" "$WRITABLE" <<'EOF' 2>>"$LOG" | while read -r line; do note "WARNING: $line"; done || true
import sys
from pathlib import Path
from edgecam.config import load_config
path, writable = Path(sys.argv[1]), Path(sys.argv[2])
config = load_config(path).config
recording = getattr(config, "recording", None)
base = {"recording": path.parent, "snapshots": path.parent / recording.dir if recording else path.parent}
for name in ("recording", "snapshots"):  # snapshots.dir is relative to recording.dir where that exists
    section = getattr(config, name, None)
    if section is None or not getattr(section, "enabled", False) or not getattr(section, "dir", None):
        continue
    folder = (base[name] / section.dir).resolve()
    if writable != folder and writable not in folder.parents:
        print(f"{name}.dir is {folder}: the service may only write under {writable} (set {name}.dir: {writable}"
              + ("/snapshots" if name == "snapshots" else "") + ")")
EOF
}

SERVICE_CHANGED=0
service_step() {
    step "Installing the systemd service"
    local before=$CHANGED
    CHANGED=0
    local unit_existed=0; [ -f "$UNIT" ] && unit_existed=1
    install_file "$SRC_DIR/systemd/edgecam.service" "$UNIT" 0644 root:root
    ((unit_existed)) || ((DRY_RUN)) || on_undo rm -f "$UNIT"
    # Restart backoff (RestartSteps=, RestartMaxDelaySec=) needs systemd 254; Bookworm has 252.
    local sd_version=0
    have systemctl && sd_version=$(systemctl --version | awk 'NR == 1 { print $2 + 0 }')
    if [ "$sd_version" -ge 254 ]; then
        ensure_dir "$DROPIN_DIR" 0755 root:root
        printf '[Service]\n# Back off between restarts: 2 s, growing to 2 min over 6 steps (systemd >= 254).\nRestartSteps=6\nRestartMaxDelaySec=120\n' >"$TMP_DIR/backoff.conf"
        install_file "$TMP_DIR/backoff.conf" "$DROPIN_DIR/restart-backoff.conf" 0644 root:root
    fi
    if ((CHANGED)); then SERVICE_CHANGED=1; else CHANGED=$before; fi
    if ! have systemctl; then
        note "systemd is not installed here (a container or chroot): the unit is installed but not enabled or started"
        return 0
    fi
    if systemd_running; then run systemctl daemon-reload; fi
    if ! systemctl is-enabled --quiet edgecam.service 2>/dev/null; then
        run systemctl enable edgecam.service
        on_undo systemctl disable edgecam.service
        changed "enabled edgecam.service (starts at boot)"
    fi
    if ! systemd_running; then
        note "systemd is not running here (a container or chroot): the unit is installed and enabled, not started"
        return 0
    fi
    if ((NO_START)); then note "--no-start: not starting it (sudo systemctl start edgecam)"; return 0; fi
    local action=start
    if systemctl is-active --quiet edgecam.service; then
        ((SERVICE_CHANGED || VENV_OR_CONFIG_CHANGED)) || { note "edgecam.service is running"; return 0; }
        action=restart
    fi
    on_undo systemctl stop edgecam.service
    note "systemctl $action edgecam: waits until it reports ready (models load and the camera opens; up to 3 min)"
    if ! run systemctl "$action" edgecam.service; then
        journalctl -u edgecam.service -n 30 --no-pager >&2 || true
        fail "edgecam.service did not start (journal above); it was disabled again"
    fi
    changed "edgecam.service ${action}ed"
}

summary_step() {
    step "Done"
    FINISHED=1
    ((DRY_RUN)) && { say "Dry run: nothing was changed."; return 0; }
    local port=8080 addrs=() a
    port=$("$VENV/bin/python" -c 'import sys; from edgecam.config import load_config; print(load_config(__import__("pathlib").Path(sys.argv[1])).config.stream.port)' "$CONFIG" 2>/dev/null || echo 8080)
    if have hostname; then
        for a in $(hostname -I 2>/dev/null); do
            case $a in 127.*|::1|fe80:*) ;; *:*) addrs+=("http://[$a]:$port/") ;; *) addrs+=("http://$a:$port/") ;; esac
        done
    fi
    addrs+=("http://$(hostname 2>/dev/null || cat /etc/hostname).local:$port/")
    if ((CHANGED)); then say "edgecam is installed."; else say "Nothing to change: edgecam is already installed as requested."; fi
    say "Open:"
    for a in "${addrs[@]}"; do say "    $a"; done
    if [ -n "$PASSWORD" ]; then
        say "Stream password (shown only this once; user: edgecam): $PASSWORD"
        say "    change it with: sudo $VENV/bin/edgecam password set --file $AUTH_FILE"
    fi
    [ -z "$RUNTIME_DESC" ] || say "Runtime: $RUNTIME_DESC"
    say "Camera: camera.source auto takes $CAMERA_ORDER (set camera.source in $CONFIG)"
    say "Logs:   journalctl -u edgecam -f"
    say "Check:  sudo -u $SERVICE_USER $VENV/bin/edgecam doctor --config $CONFIG"
    [ -z "$CORAL_DESC" ] || say "Coral:  $CORAL_DESC"
}

VENV_OR_CONFIG_CHANGED=0
main() {
    if ((SHOW_CONFIG)); then
        render_config "${SHOW_CONFIG_FROM:-$SRC_DIR/config.yaml}" "$TMP_DIR/config.yaml"
        FINISHED=1; cat "$TMP_DIR/config.yaml"; return
    fi
    if [ -n "$BUNDLE" ]; then LOG=$TMP_DIR/bundle.log; make_bundle; return; fi
    if ((UNINSTALL)); then
        [ "$(id -u)" -eq 0 ] || ((DRY_RUN)) || die "--uninstall needs root: sudo $0 --uninstall"
        uninstall; return
    fi
    if ! ((DRY_RUN)); then
        mkdir -p "$(dirname "$LOG")" 2>/dev/null || true
        { : >>"$LOG"; } 2>/dev/null || LOG=$TMP_DIR/install.log
        printf '\n==== edgecam install %s: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(quote "$0" "$@")" >>"$LOG"
    else
        LOG=$TMP_DIR/install.log
        say "Dry run: every action is printed, nothing is changed."
    fi
    preflight
    apt_step
    user_step
    local c=$CHANGED; CHANGED=0
    venv_step
    coral_step
    models_step
    config_step
    if ((CHANGED)); then VENV_OR_CONFIG_CHANGED=1; fi
    CHANGED=$((CHANGED | c))
    service_step
    summary_step
}

main "$@"
