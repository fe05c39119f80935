#!/usr/bin/env bash
# System test: install edgecam into a fresh Debian root (debootstrap, entered with chroot) from an offline
# bundle made on this host, then check it from inside: imports, config, user and permissions, a detection,
# the unit's ExecStart serving the stream on loopback as the edgecam user, a no-op second run, a kept edited
# config, and --uninstall.
#
#   sudo tests/system/chroot_install.sh [--arch amd64|arm64] [--suite bookworm] [--keep] [--workdir DIR]
#
# arm64 runs under qemu-user-static (binfmt); it is slow, so CI runs amd64 only. Needs root and the network,
# reached only through the tools' own settings: debootstrap's default mirror (or $DEBIAN_MIRROR), the host's
# apt sources, and pip's configured index for the bundle's wheels (the bundle is made on the host; the root
# installs offline from it). Skips (exit 77) when pip or apt cannot reach them.
# /var/cache/edgecam-test, if it exists, keeps the debootstrap root and apt's downloads for faster reruns.
set -Eeuo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SHARED=${EDGECAM_SHARED:-$REPO/../shared}
ARCH=amd64 SUITE=bookworm KEEP=0 WORK=""
MIRROR=${DEBIAN_MIRROR:-}  # empty: debootstrap's own default mirror
CACHE=/var/cache/edgecam-test
while [ $# -gt 0 ]; do
    case $1 in
        --arch) ARCH=$2; shift ;;
        --suite) SUITE=$2; shift ;;
        --keep) KEEP=1 ;;
        --workdir) WORK=$2; shift ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
case $ARCH in amd64) PYARCH=x86_64 ;; arm64) PYARCH=aarch64 ;; *) echo "--arch amd64|arm64" >&2; exit 2 ;; esac
case $SUITE in bookworm) PYVER=3.11 ;; trixie) PYVER=3.13 ;; *) echo "--suite bookworm|trixie" >&2; exit 2 ;; esac

[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root (debootstrap, chroot, mounts)" >&2; exit 77; }
command -v debootstrap >/dev/null || { echo "SKIP: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 77; }
if [ ! -d "$SHARED/models" ] || [ ! -d "$SHARED/media" ]; then echo "SKIP: $SHARED/models and media not found" >&2; exit 77; fi

export PYTHON=${PYTHON:-$REPO/.venv/bin/python}
# The network, asked through the clients themselves (no host is named here): pip's configured index and apt.
PROBE=$(mktemp -d)
if ! timeout 120 "$PYTHON" -m pip download --disable-pip-version-check --no-deps --quiet -d "$PROBE" flatbuffers >/dev/null 2>&1; then
    rm -rf "$PROBE"; echo "SKIP: pip cannot reach its package index (pip config list)" >&2; exit 77
fi
rm -rf "$PROBE"
if ! timeout 300 apt-get update -qq >/dev/null 2>&1; then echo "SKIP: apt cannot reach its sources (apt-get update failed)" >&2; exit 77; fi

WORK=${WORK:-$(mktemp -d /var/tmp/edgecam-chroot.XXXXXX)}
ROOT=$WORK/root BUNDLE=$WORK/bundle
mkdir -p "$WORK"
T0=$(date +%s)
TIMINGS=()
log() { printf '\n=== [%4ss] %s\n' "$(($(date +%s) - T0))" "$*"; }
timed() {  # label cmd...: run, record the duration
    local label=$1 start rc=0; shift
    start=$(date +%s)
    "$@" || rc=$?
    TIMINGS+=("$label: $(($(date +%s) - start)) s")
    return "$rc"
}
check() { printf '  check: %s\n' "$1"; }

MOUNTS=()
cleanup() {
    local i
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do umount -l "${MOUNTS[i]}" 2>/dev/null || true; done
    if ((KEEP)); then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
bind() { mkdir -p "$2"; mount "${@:3}" "$1" "$2"; MOUNTS+=("$2"); }
# Under qemu, emulate the Pi 4's CPU (Cortex-A72) rather than qemu's "max" CPU, and give the root no sysfs: the
# host's x86 /sys/devices/system/cpu makes LiteRT's cpuinfo (XNNPACK) segfault in allocate_tensors() under
# qemu-user (seen with qemu 7.2; a real Pi has its own sysfs). Nothing the test checks needs /sys there.
QEMU_ENV=() EMULATED=0
[ "$ARCH" = arm64 ] && [ "$(uname -m)" != aarch64 ] && QEMU_ENV=(QEMU_CPU=cortex-a72) EMULATED=1
in_root() { chroot "$ROOT" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "${QEMU_ENV[@]}" "$@"; }

# ---- the fresh root -----------------------------------------------------------------------------------------
if [ "$ARCH" = arm64 ] && [ "$(uname -m)" != aarch64 ]; then
    log "Enabling qemu-aarch64 (binfmt)"
    command -v qemu-aarch64-static >/dev/null || { echo "SKIP: qemu-user-static is not installed" >&2; exit 77; }
    [ -e /proc/sys/fs/binfmt_misc/status ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    update-binfmts --enable qemu-aarch64 2>/dev/null || true
    [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || { echo "SKIP: cannot register qemu-aarch64 with binfmt_misc" >&2; exit 77; }
fi
TARBALL=$CACHE/debootstrap-$SUITE-$ARCH.tar
if [ -f "$TARBALL" ]; then
    log "Unpacking the cached $SUITE/$ARCH root ($TARBALL)"
    mkdir -p "$ROOT"
    timed "debootstrap (cached)" tar -C "$ROOT" -xf "$TARBALL"
else
    log "debootstrap --variant=minbase --arch=$ARCH $SUITE ${MIRROR:-(its default mirror)}"
    timed "debootstrap" debootstrap --variant=minbase --arch="$ARCH" "$SUITE" "$ROOT" ${MIRROR:+"$MIRROR"} >"$WORK/debootstrap.log" 2>&1 ||
        { tail -20 "$WORK/debootstrap.log"; exit 1; }
    [ -d "$CACHE" ] && tar -C "$ROOT" -cf "$TARBALL" . && echo "cached the root in $TARBALL"
fi
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
bind proc "$ROOT/proc" -t proc
((EMULATED)) || bind sysfs "$ROOT/sys" -t sysfs
bind /dev "$ROOT/dev" --bind
bind devpts "$ROOT/dev/pts" -t devpts
if [ -d "$CACHE" ]; then
    mkdir -p "$CACHE/apt-$SUITE-$ARCH"
    bind "$CACHE/apt-$SUITE-$ARCH" "$ROOT/var/cache/apt/archives" --bind
fi

# ---- the bundle (wheels for the target, models), made on the host -----------------------------------------------
log "Making the offline bundle for $PYARCH / Python $PYVER"
[ -x "$REPO/.venv/bin/edgecam" ] && export EDGECAM_BIN=$REPO/.venv/bin/edgecam
timed "bundle" "$REPO/install.sh" --bundle "$BUNDLE" --arch "$PYARCH" --python "$PYVER" \
    --models-from "$SHARED/models" --models-from "$SHARED/media"
cp -r "$BUNDLE" "$ROOT/root/bundle"
cp "$SHARED/media/cat.bmp" "$ROOT/tmp/cat.bmp"  # /root is 0700: the edgecam user reads it here

# ---- install ------------------------------------------------------------------------------------------------
log "install.sh --no-start --offline /root/bundle (inside the root)"
timed "first install" in_root /root/bundle/install.sh --no-start --offline /root/bundle >"$WORK/install1.log" 2>&1 ||
    { cat "$WORK/install1.log"; echo "FAIL: the install failed"; exit 1; }
cat "$WORK/install1.log"
grep -q 'Logs:   journalctl -u edgecam -f' "$WORK/install1.log"
grep -q '^Runtime: ai_edge_litert ' "$WORK/install1.log" || { echo "FAIL: the installer did not report LiteRT as the runtime"; exit 1; }
PASSWORD=$(sed -n 's/^Stream password (shown only this once; user: edgecam): //p' "$WORK/install1.log")
[ -n "$PASSWORD" ] || { echo "FAIL: no stream password printed"; exit 1; }

log "Checking the installed box"
check "the venv imports edgecam and LiteRT, with apt's numpy (1.24 on Bookworm)"
in_root /opt/edgecam/venv/bin/python - "$SUITE" <<'EOF'
import sys, subprocess
import numpy, edgecam, cv2
from edgecam.detect.runtime import find_runtime
apt = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "python3-numpy"], capture_output=True, text=True).stdout
assert numpy.__file__.startswith("/usr/lib/python3/dist-packages/"), numpy.__file__
assert apt.split(":")[-1].startswith(numpy.__version__), (apt, numpy.__version__)
if sys.argv[1] == "bookworm":
    assert numpy.__version__.startswith("1.24."), numpy.__version__
runtime = find_runtime()  # what the app picks: LiteRT, then tflite_runtime, then tensorflow.lite
assert runtime.name == "ai_edge_litert", runtime
import ai_edge_litert
assert ai_edge_litert.__file__.startswith("/opt/edgecam/venv/"), ai_edge_litert.__file__
import pydantic, scipy
assert pydantic.VERSION.startswith("2."), pydantic.VERSION
assert scipy.__file__.startswith("/opt/edgecam/venv/"), scipy.__file__
print(f"    edgecam {edgecam.__version__}, runtime {runtime.describe()}, numpy {numpy.__version__} (apt), "
      f"OpenCV {cv2.__version__} (apt), pydantic {pydantic.VERSION}, scipy {scipy.__version__} (venv)")
EOF
check "edgecam check-config /etc/edgecam/config.yaml (as the edgecam user)"
in_root runuser -u edgecam -- /opt/edgecam/venv/bin/edgecam check-config /etc/edgecam/config.yaml | sed 's/^/    /'
check "the installed config: stream password, writable snapshot folder, mqtt.password_file untouched"
in_root /opt/edgecam/venv/bin/python - <<'EOF'
from pathlib import Path
from edgecam.config import load_config
c = load_config(Path("/etc/edgecam/config.yaml")).config
assert c.detector.model_dir == "/var/lib/edgecam/models", c.detector.model_dir
assert (c.stream.auth, c.stream.password_file) == ("basic", "/etc/edgecam/auth"), c.stream
assert c.mqtt.password_file is None, c.mqtt.password_file
assert c.snapshots.dir == "/var/lib/edgecam/state/snapshots", c.snapshots.dir
recording = getattr(c, "recording", None)
assert recording is None or recording.dir == "/var/lib/edgecam/state", recording
print(f"    stream.auth {c.stream.auth}, snapshots in {c.snapshots.dir}"
      + (f", recordings in {recording.dir}" if recording is not None else ""))
EOF
check "user, groups and permissions"
in_root id edgecam | grep -q '(video)'
[ "$(in_root getent passwd edgecam | cut -d: -f7)" = /usr/sbin/nologin ]
expect_stat() { local got; got=$(in_root stat -c '%a %U:%G' "$1"); [ "$got" = "$2" ] || { echo "FAIL: $1 is $got, want $2"; exit 1; }; }
expect_stat /etc/edgecam/config.yaml "640 root:edgecam"
expect_stat /etc/edgecam/auth "640 root:edgecam"
expect_stat /etc/edgecam "750 root:edgecam"
expect_stat /var/lib/edgecam/models "750 root:edgecam"
expect_stat /var/lib/edgecam/state "750 edgecam:edgecam"
expect_stat /var/lib/edgecam/state/snapshots "750 edgecam:edgecam"
expect_stat /opt/edgecam "755 root:root"
in_root grep -q '^scrypt\$' /etc/edgecam/auth
if in_root grep -qF "$PASSWORD" /etc/edgecam/auth; then echo "FAIL: the password is stored in clear"; exit 1; fi
cmp "$REPO/systemd/edgecam.service" "$ROOT/etc/systemd/system/edgecam.service"
check "the embedded model came from the bundle, verified"
in_root runuser -u edgecam -- /opt/edgecam/venv/bin/edgecam models list --model-dir /var/lib/edgecam/models |
    tee "$WORK/models.txt" | sed 's/^/    /'
grep -qE '^ssdlite_mobilenet_v2_coco +model +verified' "$WORK/models.txt" || { echo "FAIL: the embedded model is not verified"; exit 1; }
check "LiteRT runs the models: edgecam detect cat.bmp finds the cat"
for model in ssdlite_mobilenet_v2_coco ssdlite_mobilenet_v2_a050_coco; do
    in_root runuser -u edgecam -- /opt/edgecam/venv/bin/edgecam detect /tmp/cat.bmp --model "$model" \
        --model-dir /var/lib/edgecam/models 2>"$WORK/detect.err" | tee "$WORK/detect.txt" | sed "s/^/    $model: /" || true
    grep -qE "^\s+cat\s" "$WORK/detect.txt" || { cat "$WORK/detect.err"; echo "FAIL: $model found no cat"; exit 1; }
done

check "the unit's ExecStart, as the edgecam user, serves the stream on loopback (private network namespace)"
EXEC=$(sed -n 's/^ExecStart=//p' "$ROOT/etc/systemd/system/edgecam.service")
cat >"$ROOT/root/serve_check.py" <<'EOF'
import base64, json, subprocess, sys, time, urllib.request
password, exec_start = sys.argv[1], sys.argv[2].split()
proc = subprocess.Popen(["setpriv", "--reuid=edgecam", "--regid=edgecam", "--init-groups", "--", *exec_start], stdout=open("/root/run.log", "wb"), stderr=subprocess.STDOUT)
auth = {"Authorization": "Basic " + base64.b64encode(f"edgecam:{password}".encode()).decode()}
def get(path, n=None, timeout=5):
    try:
        with urllib.request.urlopen(urllib.request.Request("http://127.0.0.1:8080" + path), timeout=timeout) as r:
            return r.read(n) if n else r.read()
    except urllib.error.HTTPError as e:
        if e.code != 401:
            raise
        with urllib.request.urlopen(urllib.request.Request("http://127.0.0.1:8080" + path, headers=auth), timeout=timeout) as r:
            return r.read(n) if n else r.read()
try:
    deadline = time.monotonic() + 240
    status = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"edgecam exited with {proc.returncode}:\n" + open("/root/run.log").read())
        try:
            status = json.loads(get("/api/status"))
            if status["inference"]["frames"] > 0:
                break
        except OSError:
            pass
        time.sleep(1)
    else:
        sys.exit("no inference result within 240 s:\n" + open("/root/run.log").read()[-3000:])
    chunk = get("/stream.mjpg", n=200_000, timeout=60)
    assert b"\xff\xd8" in chunk, "no JPEG in the stream"
    print(f"    serving: source {status['source']['name']} ({status['source']['state']}), model {status['detector']['model']}, "
          f"{status['inference']['frames']} inference(s), stream JPEG received")
finally:
    proc.terminate()
    rc = proc.wait(timeout=30)
    print(f"    SIGTERM: exit code {rc}")
    assert rc == 0, open("/root/run.log").read()[-3000:]
EOF
unshare --net sh -c "ip link set lo up && chroot '$ROOT' /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 ${QEMU_ENV[*]} python3 /root/serve_check.py '$PASSWORD' '$EXEC'"

# ---- idempotence ------------------------------------------------------------------------------------------------
snapshot() {
    in_root find /opt/edgecam /etc/edgecam /var/lib/edgecam /etc/systemd/system/edgecam.service /etc/passwd /etc/group \
        -not -path '*/__pycache__*' -printf '%p %s %T@ %m %u %g\n' | sort
}
log "Second run: must change nothing"
snapshot >"$WORK/before.txt"
timed "second install" in_root /root/bundle/install.sh --no-start --offline /root/bundle >"$WORK/install2.log" 2>&1 ||
    { cat "$WORK/install2.log"; exit 1; }
snapshot >"$WORK/after.txt"
grep -q '^Nothing to change: edgecam is already installed as requested.' "$WORK/install2.log" ||
    { cat "$WORK/install2.log"; echo "FAIL: the second run did not say it changed nothing"; exit 1; }
diff "$WORK/before.txt" "$WORK/after.txt" || { echo "FAIL: the second run changed files"; exit 1; }
if grep -q 'Stream password' "$WORK/install2.log"; then echo "FAIL: a second password was made"; exit 1; fi
sed -n '/^\[9\/9\]/,$p' "$WORK/install2.log" | sed 's/^/    /'

log "An edited config is kept; the new default goes beside it"
echo "# edited by the test" >>"$ROOT/etc/edgecam/config.yaml"
in_root /root/bundle/install.sh --no-start --offline /root/bundle >"$WORK/install3.log" 2>&1 || { cat "$WORK/install3.log"; exit 1; }
grep -q 'config.yaml.new' "$WORK/install3.log"
tail -1 "$ROOT/etc/edgecam/config.yaml" | grep -q 'edited by the test'
[ -f "$ROOT/etc/edgecam/config.yaml.new" ]

# ---- uninstall ------------------------------------------------------------------------------------------------
log "--uninstall keeps the config and models"
in_root /root/bundle/install.sh --uninstall | sed 's/^/    /'
[ ! -e "$ROOT/opt/edgecam" ] && [ ! -e "$ROOT/etc/systemd/system/edgecam.service" ]
[ -f "$ROOT/etc/edgecam/config.yaml" ] && [ -f "$ROOT/etc/edgecam/auth" ]
[ -f "$ROOT/var/lib/edgecam/models/detect.tflite" ]

log "A failing step is rolled back: a bundle without the runtime wheel (LiteRT; the fallback is not in it either)"
cp -r "$ROOT/root/bundle" "$ROOT/root/broken"
rm "$ROOT"/root/broken/wheels/ai_edge_litert-*.whl
if compgen -G "$ROOT/root/broken/wheels/tflite_runtime-*.whl" >/dev/null; then echo "FAIL: the bundle carries tflite_runtime besides LiteRT"; exit 1; fi
if in_root /root/broken/install.sh --no-start --offline /root/broken >"$WORK/install4.log" 2>&1; then
    cat "$WORK/install4.log"; echo "FAIL: the install succeeded without a runtime"; exit 1
fi
if ! grep -q '^\[4/9\] FAILED: pip could not install' "$WORK/install4.log" || ! grep -q 'rolling back step 4' "$WORK/install4.log"; then
    cat "$WORK/install4.log"; echo "FAIL: no rollback message"; exit 1
fi
sed -n '/FAILED/,/rm -rf/p' "$WORK/install4.log" | sed 's/^/    /'
if [ -e "$ROOT/opt/edgecam/venv" ] || [ -e "$ROOT/etc/systemd/system/edgecam.service" ]; then
    echo "FAIL: a half-installed venv or service was left behind"; exit 1
fi
in_root /root/bundle/install.sh --uninstall >/dev/null
in_root /root/bundle/install.sh --uninstall | grep -q 'Nothing to remove'

log "PASS ($SUITE/$ARCH)"
printf '  %s\n' "${TIMINGS[@]}" "total: $(($(date +%s) - T0)) s"
