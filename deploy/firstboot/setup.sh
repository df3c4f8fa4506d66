#!/usr/bin/env bash
# First-boot set-up of an edge device, run as root by user-data (cloud-init) or by the
# aicctv-firstboot.service that firstrun.sh installs, once the project is in /opt/aicctv/src:
#   deploy/firstboot/setup.sh /etc/aicctv/firstboot/settings
# Installs the apt packages, runs deploy/install.sh and deploy/provision with the settings file
# (KEY=value lines: DEVICE_ID, BROKER, SOURCE, MQTT_USERNAME, optional EXTRA_INSTALL_ARGS),
# the password file and CA beside it, then overwrites every other copy of the password
# (deploy/firstboot/forget-password), deletes its own and starts the service.
set -euo pipefail

if [[ ${1:-} == -h || ${1:-} == --help || $# -ne 1 ]]; then
    sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
    [[ $# -eq 1 ]] && exit 0 || exit 2
fi
SETTINGS=$1
DIR=$(dirname "$SETTINGS")
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
[[ -f $SETTINGS ]] || { echo "setup.sh: error: $SETTINGS not found" >&2; exit 2; }

DEVICE_ID="" BROKER="" SOURCE="" MQTT_USERNAME="" EXTRA_INSTALL_ARGS=""
while IFS= read -r line || [[ -n $line ]]; do
    [[ $line =~ ^([A-Z_]+)=(.*)$ ]] || continue
    value=${BASH_REMATCH[2]}
    [[ $value == @*@ ]] && { echo "setup.sh: error: ${BASH_REMATCH[1]} is still the placeholder $value" >&2; exit 2; }
    case ${BASH_REMATCH[1]} in
        DEVICE_ID) DEVICE_ID=$value ;;
        BROKER) BROKER=$value ;;
        SOURCE) SOURCE=$value ;;
        MQTT_USERNAME) MQTT_USERNAME=$value ;;
        EXTRA_INSTALL_ARGS) EXTRA_INSTALL_ARGS=$value ;;
    esac
done <"$SETTINGS"
[[ -n $DEVICE_ID && -n $BROKER ]] || { echo "setup.sh: error: DEVICE_ID and BROKER are required in $SETTINGS" >&2; exit 2; }

echo "firstboot: apt packages"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q python3 python3-venv python3-pip ca-certificates
install_args=(--no-start --device-id "$DEVICE_ID" --broker "$BROKER")
[[ -n $SOURCE ]] && install_args+=(--source "$SOURCE")
if [[ $SOURCE == picamera2 ]]; then
    # picamera2 and libcamera come from Raspberry Pi OS's apt, not from PyPI.
    apt-get install -y -q python3-picamera2
    install_args+=(--system-site-packages)
fi
# shellcheck disable=SC2206 # word splitting wanted: extra flags for install.sh
[[ -n $EXTRA_INSTALL_ARGS ]] && install_args+=($EXTRA_INSTALL_ARGS)

echo "firstboot: deploy/install.sh ${install_args[*]}"
"$SRC/deploy/install.sh" "${install_args[@]}"

provision_args=(--device-id "$DEVICE_ID" --broker "$BROKER" --no-restart)
if [[ -n $MQTT_USERNAME ]]; then
    if grep -q "^@MQTT_PASSWORD@" "$DIR/mqtt-password"; then
        echo "setup.sh: error: $DIR/mqtt-password is still the placeholder" >&2
        exit 2
    fi
    provision_args+=(--username "$MQTT_USERNAME" --password-file "$DIR/mqtt-password")
fi
# Left empty (or as the placeholder) when the broker's certificate needs no private CA.
grep -q "BEGIN CERTIFICATE" "$DIR/ca.crt" 2>/dev/null && provision_args+=(--ca-file "$DIR/ca.crt")
echo "firstboot: deploy/provision ${provision_args[*]}"
"$SRC/deploy/provision" "${provision_args[@]}"
# The password now lives only in /etc/aicctv/credentials (root, 0600): overwrite the copies on
# the boot partition and in cloud-init's folder, then delete our own.
if [[ -s $DIR/mqtt-password ]]; then
    "$SRC/deploy/firstboot/forget-password" "$DIR/mqtt-password"
fi
rm -f "$DIR/mqtt-password"

if [[ -f /etc/aicctv/credentials/mqtt-password ]]; then
    systemctl restart aicctv-edge.service
    echo "firstboot: aicctv-edge started; check with: systemctl status aicctv-edge"
else
    echo "firstboot: no MQTT credentials given: aicctv-edge is enabled but waits for aicctv-provision"
fi
