#!/usr/bin/env bash
# Install or upgrade aicctv as a systemd service on a Raspberry Pi, a Jetson or a server.
# Run `deploy/install.sh --help`. Idempotent: a re-run upgrades what changed and leaves every
# other file byte for byte as it was.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: deploy/install.sh [OPTIONS]        (as root, from a checkout of the project)

Install or upgrade aicctv as a systemd service:
  1. system user and group `aicctv` (edge: also in group video)
  2. a virtual environment /opt/aicctv/venv with the aicctv wheel (pip install --upgrade)
  3. the models in /opt/aicctv/models (edge: the detector extracted by `python -m edge.vision.fetch`,
     sha256-checked, and the age/gender model from this checkout)
  4. the configuration /etc/aicctv/<role>.toml (kept if present), the credentials folder,
     `aicctv` on the PATH and `aicctv-provision` (deploy/provision)
  5. the unit aicctv-<role>.service in /etc/systemd/system: daemon-reload, enable, start
Re-running it with nothing new changes no file.

Several cameras on one board: run it once per camera with --instance NAME. Each instance is
aicctv-edge@NAME.service (the template aicctv-edge@.service) with its own configuration
/etc/aicctv/edge-NAME.toml, its own [device] id (give --device-id), log
/var/lib/aicctv/edge-NAME.db and password credentials/mqtt-password-NAME (aicctv-provision
--instance NAME). Steps 1-3 are shared and done once.

Options:
  --role edge|central   what to install (default: edge)
  --instance NAME       an edge daemon for one of several cameras (see above): 1-32 of
                        A-Z a-z 0-9 _ -
  --wheel PATH          the aicctv wheel to install (default: build one from this checkout)
  --wheelhouse DIR      install offline: pip --no-index --find-links DIR, with --wheel
                        (pip download -d DIR "WHEEL[central]" setuptools wheel; docs/deploy.md)
  --python PATH         Python 3.11+ for the venv (default: python3)
  --system-site-packages
                        let the venv see apt's Python packages (needed for picamera2 on Raspberry
                        Pi OS: apt install python3-picamera2); re-run without it to turn it off
  --models-from DIR     copy the models from DIR instead of extracting the detector from the
                        mediapipe wheel (hashes still checked)
  --config FILE         install FILE as the configuration if there is none yet (see --force-config)
  --force-config        replace an existing configuration (with FILE, or a fresh one from the flags)
  --device-id ID        for a fresh edge configuration: [device] id
  --broker URL          for a fresh configuration: [mqtt] broker (mqtt://HOST or mqtts://HOST:8883)
  --source SPEC         for a fresh edge configuration: [source] spec (picamera2, /dev/video0, rtsp://…)
  --root DIR            install into the tree DIR instead of / (images, tests): the user is added
                        to DIR/etc/passwd and DIR/etc/group, `systemctl --root=DIR enable` is
                        used and nothing is started
  --no-start            enable the unit but do not start or restart it
  -h, --help            this help

Identity and broker credentials of an installed device: deploy/provision (aicctv-provision).
Exit status: 0 done, 1 a step failed, 2 usage error.
EOF
}

die() { echo "install.sh: error: $*" >&2; exit 1; }
usage_error() { echo "install.sh: error: $* (see --help)" >&2; exit 2; }
step() { printf '%-9s %s\n' "$1:" "$2"; }

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROLE=edge WHEEL="" WHEELHOUSE="" PYTHON=python3 SYSTEM_SITE=false MODELS_FROM="" CONFIG=""
FORCE_CONFIG=false DEVICE_ID="" BROKER="" SOURCE="" ROOT="" NO_START=false INSTANCE=""

need_value() { [[ $# -ge 2 && -n $2 ]] || usage_error "$1 needs a value"; }
while [[ $# -gt 0 ]]; do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --role) need_value "$@"; ROLE=$2; shift 2 ;;
        --instance) need_value "$@"; INSTANCE=$2; shift 2 ;;
        --wheel) need_value "$@"; WHEEL=$2; shift 2 ;;
        --wheelhouse) need_value "$@"; WHEELHOUSE=$2; shift 2 ;;
        --python) need_value "$@"; PYTHON=$2; shift 2 ;;
        --system-site-packages) SYSTEM_SITE=true; shift ;;
        --models-from) need_value "$@"; MODELS_FROM=$2; shift 2 ;;
        --config) need_value "$@"; CONFIG=$2; shift 2 ;;
        --force-config) FORCE_CONFIG=true; shift ;;
        --device-id) need_value "$@"; DEVICE_ID=$2; shift 2 ;;
        --broker) need_value "$@"; BROKER=$2; shift 2 ;;
        --source) need_value "$@"; SOURCE=$2; shift 2 ;;
        --root) need_value "$@"; ROOT=$2; shift 2 ;;
        --no-start) NO_START=true; shift ;;
        *) usage_error "unknown option $1" ;;
    esac
done

[[ $ROLE == edge || $ROLE == central ]] || usage_error "--role $ROLE: expected edge or central"
[[ -z $WHEEL || -f $WHEEL ]] || usage_error "--wheel $WHEEL: no such file"
[[ -z $WHEELHOUSE || -d $WHEELHOUSE ]] || usage_error "--wheelhouse $WHEELHOUSE: no such directory"
[[ -z $MODELS_FROM || -d $MODELS_FROM ]] || usage_error "--models-from $MODELS_FROM: no such directory"
[[ -z $CONFIG || -f $CONFIG ]] || usage_error "--config $CONFIG: no such file"
if [[ -n $CONFIG && -n $DEVICE_ID$BROKER$SOURCE ]]; then
    usage_error "--config and --device-id/--broker/--source exclude each other (edit FILE instead)"
fi
if [[ $ROLE == central && -n $DEVICE_ID$SOURCE$INSTANCE ]]; then
    usage_error "--device-id, --source and --instance are for --role edge"
fi
# The same rule as deploy/provision's: a unit instance and part of file names, nothing to escape.
[[ -z $INSTANCE || $INSTANCE =~ ^[A-Za-z0-9_-]{1,32}$ ]] ||
    usage_error "--instance $INSTANCE: use 1-32 of A-Z a-z 0-9 _ -"
if [[ -n $ROOT ]]; then
    [[ -d $ROOT ]] || usage_error "--root $ROOT: no such directory"
    ROOT=$(cd "$ROOT" && pwd)
    [[ $ROOT != / ]] || ROOT=""
fi
[[ $EUID -eq 0 || -n $ROOT ]] || die "run as root (sudo), or with --root DIR"

APP=/opt/aicctv
VENV=$APP/venv
MODELS=$APP/models
ETC=/etc/aicctv
if [[ -n $INSTANCE ]]; then
    CONF=$ETC/edge-$INSTANCE.toml
    UNIT_FILE=aicctv-edge@.service
    UNIT=aicctv-edge@$INSTANCE.service
    CREDENTIAL=$ETC/credentials/mqtt-password-$INSTANCE
else
    CONF=$ETC/$ROLE.toml
    UNIT_FILE=aicctv-$ROLE.service
    UNIT=$UNIT_FILE
    CREDENTIAL=$ETC/credentials/mqtt-password
    [[ $ROLE == central ]] && CREDENTIAL=$ETC/credentials/central-mqtt-password
fi
# Left to its default, every instance's id would be the host name: their records would mix.
if [[ -n $INSTANCE && -z $DEVICE_ID$CONFIG && ( ! -f $ROOT$CONF || $FORCE_CONFIG == true ) ]]; then
    usage_error "--instance $INSTANCE: a new instance needs its own --device-id (or --config FILE)"
fi
USER_NAME=aicctv
R=$ROOT # prefix of every path written
CHANGED=false # anything the running service would need a restart for

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# Install $1 as $2 with mode $3 unless identical; prints "installed" or "unchanged".
put() {
    local src=$1 dest=$2 mode=$3
    if [[ -f $dest ]] && cmp -s "$src" "$dest" && [[ $(stat -c %a "$dest") == "${mode#0}" ]]; then
        echo unchanged
        return
    fi
    mkdir -p "$(dirname "$dest")"
    install -m "$mode" "$src" "$dest.new.$$"
    mv -f "$dest.new.$$" "$dest"
    echo installed
}

# ---- 1. system user -------------------------------------------------------------------------
id_free() { # first free id in 100..999 in an /etc/passwd or /etc/group file
    local file=$1 id
    for ((id = 999; id >= 100; id--)); do
        cut -d: -f3 "$file" | grep -qx "$id" || { echo "$id"; return; }
    done
    die "no free system id in $file"
}
if [[ -z $ROOT ]]; then
    made=()
    if ! getent group "$USER_NAME" >/dev/null; then groupadd --system "$USER_NAME"; made+=("group $USER_NAME"); fi
    if ! getent passwd "$USER_NAME" >/dev/null; then
        useradd --system --gid "$USER_NAME" --home-dir /var/lib/aicctv --no-create-home \
            --shell /usr/sbin/nologin --comment "aicctv daemons" "$USER_NAME"
        made+=("user $USER_NAME")
    fi
    if [[ $ROLE == edge ]]; then
        getent group video >/dev/null || { groupadd --system video; made+=("group video"); }
        if ! id -nG "$USER_NAME" | tr ' ' '\n' | grep -qx video; then
            usermod -a -G video "$USER_NAME"
            made+=("$USER_NAME in video")
        fi
    fi
else
    # An image or test tree: the same entries, written into its own passwd/group files.
    made=()
    mkdir -p "$R/etc"
    touch "$R/etc/passwd" "$R/etc/group"
    if ! grep -q "^$USER_NAME:" "$R/etc/group"; then
        echo "$USER_NAME:x:$(id_free "$R/etc/group"):" >>"$R/etc/group"
        made+=("group $USER_NAME")
    fi
    gid=$(grep "^$USER_NAME:" "$R/etc/group" | cut -d: -f3)
    if ! grep -q "^$USER_NAME:" "$R/etc/passwd"; then
        uid=$gid
        cut -d: -f3 "$R/etc/passwd" | grep -qx "$uid" && uid=$(id_free "$R/etc/passwd")
        echo "$USER_NAME:x:$uid:$gid:aicctv daemons:/var/lib/aicctv:/usr/sbin/nologin" >>"$R/etc/passwd"
        made+=("user $USER_NAME")
    fi
    if [[ $ROLE == edge ]]; then
        if ! grep -q "^video:" "$R/etc/group"; then
            echo "video:x:44:$USER_NAME" >>"$R/etc/group"
            made+=("group video")
        elif ! grep "^video:" "$R/etc/group" | cut -d: -f4 | tr ',' '\n' | grep -qx "$USER_NAME"; then
            sed -i -E "/^video:/ { s/:$/:$USER_NAME/; t; s/$/,$USER_NAME/ }" "$R/etc/group"
            made+=("$USER_NAME in video")
        fi
    fi
fi
if [[ ${#made[@]} -gt 0 ]]; then
    step user "created: $(IFS=,; echo "${made[*]}" | sed 's/,/, /g')"
else
    step user "$USER_NAME exists$([[ $ROLE == edge ]] && echo ", in group video")"
fi
# The numeric group for file ownership, from the tree being installed into.
GID=$(grep "^$USER_NAME:" "$R/etc/group" 2>/dev/null | cut -d: -f3 || true)
[[ -n $GID ]] || GID=$(getent group "$USER_NAME" | cut -d: -f3)

# ---- 2. venv and package --------------------------------------------------------------------
command -v "$PYTHON" >/dev/null || die "$PYTHON not found: apt install python3 python3-venv (or pass --python)"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
    die "$PYTHON is Python $("$PYTHON" -c 'import platform; print(platform.python_version())'); aicctv needs 3.11+ (pass --python python3.11)"
venv_ok() { [[ -x $R$VENV/bin/python ]] && "$R$VENV/bin/python" -I -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; }
if venv_ok; then
    cfg=$R$VENV/pyvenv.cfg
    if ! grep -qx "include-system-site-packages = $SYSTEM_SITE" "$cfg"; then
        sed -i -E "s/^include-system-site-packages = .*/include-system-site-packages = $SYSTEM_SITE/" "$cfg"
        step venv "$VENV reused; system site packages now $SYSTEM_SITE"
    else
        step venv "$VENV reused"
    fi
else
    rm -rf "$R${VENV:?}" # absent, or broken by an upgrade of the system's Python
    mkdir -p "$R$APP"
    flags=()
    [[ $SYSTEM_SITE == true ]] && flags+=(--system-site-packages)
    "$PYTHON" -m venv "${flags[@]}" "$R$VENV" ||
        die "cannot create a venv: apt install python3-venv"
    step venv "$VENV created ($("$R$VENV/bin/python" -I -c 'import platform; print("Python", platform.python_version())'))"
fi
PIP=("$R$VENV/bin/python" -I -m pip --disable-pip-version-check --no-input --quiet)
INDEX=() # pip install/wheel options
[[ -n $WHEELHOUSE ]] && INDEX=(--no-index --find-links "$WHEELHOUSE")

if [[ -z $WHEEL ]]; then
    # Reproducible: fixed timestamps, so the same checkout builds the same wheel.
    SOURCE_DATE_EPOCH=315532800 "${PIP[@]}" wheel "${INDEX[@]}" --no-deps --wheel-dir "$TMP/wheel" "$SRC" >/dev/null ||
        die "could not build a wheel from $SRC (pass --wheel PATH)"
    WHEEL=$(ls "$TMP"/wheel/aicctv-*.whl)
    step wheel "built $(basename "$WHEEL") from $SRC"
fi
# What a wheel contains, independent of its timestamps: the hash of its RECORD.
read -r WHEEL_VERSION WHEEL_PRINT < <("$PYTHON" - "$WHEEL" <<'EOF'
import hashlib, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel:
    record = next(n for n in wheel.namelist() if n.endswith(".dist-info/RECORD"))
    version = record.split("/")[0].removesuffix(".dist-info").split("-")[1]
    print(version, hashlib.sha256(wheel.read(record)).hexdigest())
EOF
) || die "$WHEEL is not a wheel"
STAMP=$R$APP/installed-wheel
WANT="aicctv $WHEEL_VERSION $WHEEL_PRINT"
if [[ -f $STAMP && $(cat "$STAMP") == "$WANT" && -x $R$VENV/bin/aicctv ]]; then
    step package "aicctv $WHEEL_VERSION already installed (same wheel contents)"
else
    had=$("$R$VENV/bin/python" -I -c 'import importlib.metadata as m; print(m.version("aicctv"))' 2>/dev/null || true)
    # The role's extra: a camera board gets the vision stack, a central server the database and
    # web stack, neither the other's.
    "${PIP[@]}" install "${INDEX[@]}" --upgrade "$WHEEL[$ROLE]" || die "pip could not install $WHEEL[$ROLE] and its dependencies"
    if [[ $had == "$WHEEL_VERSION" ]]; then
        # Same version number, other contents (a rebuilt checkout): pip would skip it.
        "${PIP[@]}" install "${INDEX[@]}" --force-reinstall --no-deps "$WHEEL" || die "pip could not reinstall $WHEEL"
    fi
    echo "$WANT" >"$STAMP.new" && mv -f "$STAMP.new" "$STAMP"
    CHANGED=true
    step package "aicctv $WHEEL_VERSION installed$([[ -n $had ]] && echo " (was $had)")"
fi
"$R$VENV/bin/aicctv" --help >/dev/null || die "$VENV/bin/aicctv does not run"

# ---- 3. models --------------------------------------------------------------------------------
if [[ $ROLE == edge ]]; then
    mkdir -p "$R$MODELS"
    changed=()
    own_src=${MODELS_FROM:-$SRC/models/tflite}
    for name in $("$R$VENV/bin/python" -I -c 'from edge.vision.model_files import OWN_MODEL_FILES; print(" ".join(OWN_MODEL_FILES))'); do
        src=$own_src/$name
        if [[ ! -f $src ]]; then
            [[ $name == *.md ]] && continue  # a card is documentation; a model is not optional
            die "$src not found (our models ship in the checkout's models/tflite)"
        fi
        [[ $(put "$src" "$R$MODELS/$name" 0644) == installed ]] && changed+=("$name")
    done
    detectors=$("$R$VENV/bin/python" -I -c 'from edge.vision.model_files import DETECTOR_FILES; print(" ".join(DETECTOR_FILES))')
    if [[ -n $MODELS_FROM ]]; then
        for name in $detectors; do
            [[ -f $MODELS_FROM/$name ]] || die "--models-from $MODELS_FROM has no $name"
            [[ $(put "$MODELS_FROM/$name" "$R$MODELS/$name" 0644) == installed ]] && changed+=("$name")
        done
    else
        # Extracted from the pinned mediapipe wheel, downloaded once into ~/.cache/aicctv/wheels.
        for name in $(env AICCTV_MODELS_DIR="$R$MODELS" "$R$VENV/bin/python" -I -c \
            'from edge.vision.fetch import fetch; from edge.vision.model_files import models_dir; print(" ".join(fetch(models_dir())))'); do
            changed+=("$name")
        done
        for name in $detectors; do
            [[ $(stat -c %a "$R$MODELS/$name") == 644 ]] || chmod 0644 "$R$MODELS/$name"
        done
    fi
    bad=$(env AICCTV_MODELS_DIR="$R$MODELS" "$R$VENV/bin/python" -I -c \
        'from edge.vision.fetch import missing_models; from edge.vision.model_files import models_dir; print(" ".join(missing_models(models_dir())))')
    [[ -z $bad ]] || die "wrong sha256 or missing in $MODELS: $bad"
    if [[ ${#changed[@]} -gt 0 ]]; then
        CHANGED=true
        step models "$MODELS: installed ${changed[*]} (detector sha256 verified)"
    else
        step models "$MODELS: unchanged (detector sha256 verified)"
    fi
fi

# ---- 4. configuration, commands ---------------------------------------------------------------
mkdir -p "$R$ETC"
[[ -d $R$ETC/credentials ]] || install -d -m 0700 "$R$ETC/credentials"
[[ $(stat -c %a "$R$ETC/credentials") == 700 ]] || chmod 0700 "$R$ETC/credentials"
config_flags=()
[[ -n $DEVICE_ID ]] && config_flags+=(--device-id "$DEVICE_ID")
[[ -n $BROKER ]] && config_flags+=(--broker "$BROKER")
[[ -n $SOURCE ]] && config_flags+=(--source "$SOURCE")
if [[ -f $R$CONF && $FORCE_CONFIG == false ]]; then
    note=""
    [[ -n $CONFIG || ${#config_flags[@]} -gt 0 ]] && note="; given settings not applied: use aicctv-provision, or --force-config"
    step config "$CONF kept$note"
else
    if [[ -n $CONFIG ]]; then
        cp "$CONFIG" "$TMP/config"
    else
        cp "$SRC/deploy/$ROLE.toml" "$TMP/config"
    fi
    if [[ ${#config_flags[@]} -gt 0 ]]; then
        "$PYTHON" "$SRC/deploy/provision" --role "$ROLE" --config "$TMP/config" --no-restart "${config_flags[@]}" >/dev/null
    fi
    state=$(put "$TMP/config" "$R$CONF" 0640)
    [[ $state == installed ]] && CHANGED=true
    step config "$CONF $state"
fi
# Readable by the service's group, writable by root only.
[[ $(stat -c %g "$R$CONF") == "$GID" ]] || chgrp "$GID" "$R$CONF"
# The documented defaults and the README beside the installed code.
put "$SRC/deploy/$ROLE.toml" "$R$APP/$ROLE.toml.example" 0644 >/dev/null
put "$SRC/README.md" "$R$APP/README.md" 0644 >/dev/null
put "$SRC/deploy/provision" "$R/usr/local/sbin/aicctv-provision" 0755 >/dev/null
cat >"$TMP/aicctv" <<EOF
#!/bin/sh
# aicctv on the PATH, with the installed models (written by deploy/install.sh).
: "\${AICCTV_MODELS_DIR:=$MODELS}"
export AICCTV_MODELS_DIR
exec $VENV/bin/aicctv "\$@"
EOF
put "$TMP/aicctv" "$R/usr/local/bin/aicctv" 0755 >/dev/null
step commands "/usr/local/bin/aicctv, /usr/local/sbin/aicctv-provision, $APP/$ROLE.toml.example"

# ---- 5. systemd unit --------------------------------------------------------------------------
UNIT_DIR=/etc/systemd/system
unit_state=$(put "$SRC/systemd/$UNIT_FILE" "$R$UNIT_DIR/$UNIT_FILE" 0644)
# The file, and the instance enabled from it where they differ (aicctv-edge@.service, …@door).
installed_as="$UNIT_DIR/$UNIT_FILE $unit_state"
[[ $UNIT == "$UNIT_FILE" ]] || installed_as+=", instance $UNIT"
provision_hint="aicctv-provision${INSTANCE:+ --instance $INSTANCE}"
if [[ -n $ROOT ]]; then
    systemctl --root="$ROOT" --quiet enable "$UNIT" 2>/dev/null ||
        die "systemctl --root=$ROOT enable $UNIT failed"
    step unit "$installed_as; enabled in $ROOT (not started: --root)"
else
    systemctl daemon-reload
    systemctl --quiet enable "$UNIT"
    if [[ $NO_START == true ]]; then
        step unit "$installed_as; enabled, not started (--no-start)"
    elif [[ ! -f $CREDENTIAL ]]; then
        step unit "$installed_as; enabled, not started: no $CREDENTIAL yet (run $provision_hint)"
    elif systemctl --quiet is-active "$UNIT" && [[ $unit_state == unchanged && $CHANGED == false ]]; then
        step unit "$installed_as; enabled, running (nothing changed)"
    else
        systemctl restart "$UNIT" || die "$UNIT did not start: journalctl -u $UNIT"
        step unit "$installed_as; enabled, (re)started"
    fi
fi
