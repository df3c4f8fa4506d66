#!/bin/bash
# aicctv edge device, first boot, for Raspberry Pi OS images without cloud-init (Bookworm and
# older, as written by Raspberry Pi Imager 1.x): Imager's "OS customisation" runs
# /boot/firmware/firstrun.sh once, early, from `systemd.run=` in cmdline.txt, before the network
# is up. This script stores the settings and installs a one-shot aicctv-firstboot.service that
# does the real work after the network is online (fetch the project, deploy/firstboot/setup.sh).
# Replace every @PLACEHOLDER@ (see user-data for their meaning), or use:
#   deploy/firstboot/render --template firstrun.sh … --out /media/$USER/bootfs/firstrun.sh
# and add to the end of the single line in cmdline.txt:
#   systemd.run=/boot/firmware/firstrun.sh systemd.run_success_action=reboot systemd.unit=kernel-command-line.target
# (If Imager already wrote a firstrun.sh, append this one's body before its last lines instead.)
# Progress after boot: journalctl -u aicctv-firstboot
set -euo pipefail
[[ ${1:-} == -h || ${1:-} == --help ]] && { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0; }

BOOT=/boot/firmware
[[ -d $BOOT ]] || BOOT=/boot

install -d -m 0700 /etc/aicctv/firstboot
cat >/etc/aicctv/firstboot/settings <<'SETTINGS'
DEVICE_ID=@DEVICE_ID@
BROKER=@BROKER@
SOURCE=@SOURCE@
MQTT_USERNAME=@MQTT_USERNAME@
REPO_URL=@REPO_URL@
REF=@REF@
SETTINGS
(umask 077 && cat >/etc/aicctv/firstboot/mqtt-password <<'PASSWORD'
@MQTT_PASSWORD@
PASSWORD
)
cat >/etc/aicctv/firstboot/ca.crt <<'CA'
@CA_PEM@
CA
chmod 0600 /etc/aicctv/firstboot/settings
hostnamectl set-hostname "$(sed -n 's/^DEVICE_ID=//p' /etc/aicctv/firstboot/settings)" 2>/dev/null ||
    sed -n 's/^DEVICE_ID=//p' /etc/aicctv/firstboot/settings >/etc/hostname

cat >/etc/aicctv/firstboot/run.sh <<'RUN'
#!/bin/bash
# Run once by aicctv-firstboot.service, with the network up: fetch the project, set it up.
set -euo pipefail
settings=/etc/aicctv/firstboot/settings
get() { sed -n "s/^$1=//p" "$settings"; }
apt-get update -q
apt-get install -y -q git
if [ ! -d /opt/aicctv/src ]; then
    mkdir -p /opt/aicctv/src
    archive=$(ls /boot/firmware/aicctv-src.tar.gz /boot/aicctv-src.tar.gz 2>/dev/null | head -n1 || true)
    if [ -n "$archive" ]; then
        tar -xzf "$archive" -C /opt/aicctv/src
    else
        git clone --depth 1 --branch "$(get REF)" "$(get REPO_URL)" /opt/aicctv/src
    fi
fi
/opt/aicctv/src/deploy/firstboot/setup.sh "$settings"
RUN
cat >/etc/systemd/system/aicctv-firstboot.service <<'UNIT'
[Unit]
Description=aicctv first boot: install and provision the edge daemon
Wants=network-online.target
After=network-online.target time-sync.target
ConditionPathExists=/etc/aicctv/firstboot/settings

[Service]
Type=oneshot
TimeoutStartSec=1h
ExecStart=/bin/bash /etc/aicctv/firstboot/run.sh
ExecStartPost=/bin/systemctl disable aicctv-firstboot.service
ExecStartPost=/bin/rm -f /etc/aicctv/firstboot/settings /etc/aicctv/firstboot/run.sh

[Install]
WantedBy=multi-user.target
UNIT
ln -sf /etc/systemd/system/aicctv-firstboot.service \
    /etc/systemd/system/multi-user.target.wants/aicctv-firstboot.service

# Run once: take ourselves off the kernel command line, as Imager's own script does.
rm -f "$BOOT/firstrun.sh"
sed -i 's| systemd.run.*||g' "$BOOT/cmdline.txt"
exit 0
