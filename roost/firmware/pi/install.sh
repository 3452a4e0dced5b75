#!/bin/sh
# Install a roost node on a Raspberry Pi (Raspberry Pi OS Bookworm or later), as root, from
# the fleet's plan (made once with 'roost plan --dir class ...' and copied to the Pi):
#   sudo sh roost/firmware/pi/install.sh --plan class --node-id n01
# The plan gives the node its board, broker, members and replica group; its fleet.key is
# copied to /etc/roost/fleet.key and its MQTT password to /etc/roost/mqtt.password (mode
# 0600), never shown.
# Idempotent: run it again to upgrade the code or change the config.
set -eu

NODE_ID="" PLAN="" SRC="$(cd "$(dirname "$0")/../../.." && pwd)"
while [ $# -gt 0 ]; do
    case "$1" in
        --node-id|--plan)
            [ $# -ge 2 ] || { echo "install.sh: $1 needs a value" >&2; exit 2; }
            if [ "$1" = --node-id ]; then NODE_ID="$2"; else PLAN="$2"; fi
            shift 2 ;;
        *) echo "install.sh: unknown option $1 (see the comment at the top)" >&2; exit 2 ;;
    esac
done
[ -n "$PLAN" ] || { echo "install.sh: give --plan DIR, the fleet's plan from 'roost plan'" >&2; exit 2; }
[ -f "$PLAN/fleet.json" ] && [ -f "$PLAN/fleet.key" ] || { echo "install.sh: $PLAN holds no plan (fleet.json and fleet.key from 'roost plan')" >&2; exit 2; }
[ -n "$NODE_ID" ] || { echo "install.sh: give --node-id, e.g. --node-id n01" >&2; exit 2; }
# before apt and pip, which take minutes on a Pi Zero
python3 -c 'import json, sys; sys.exit(sys.argv[2] not in json.load(open(sys.argv[1]))["nodes"])' \
    "$PLAN/fleet.json" "$NODE_ID" \
    || { echo "install.sh: the plan in $PLAN has no node $NODE_ID" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "install.sh: run it as root (sudo)" >&2; exit 2; }

# 1. system packages: Python, venv, I2C tools; enable I2C for the BME280
apt-get install -y python3-venv python3-dev i2c-tools >/dev/null
# the GPIO library: libgpiod2 on Bookworm, libgpiod3 on the releases after it
apt-get install -y libgpiod2 >/dev/null 2>&1 || apt-get install -y libgpiod3 >/dev/null
command -v raspi-config >/dev/null && raspi-config nonint do_i2c 0 || true

# 2. a dedicated user with access to the buses
id roost >/dev/null 2>&1 || useradd --system --home /var/lib/roost --shell /usr/sbin/nologin roost
for g in i2c gpio; do getent group "$g" >/dev/null && usermod -aG "$g" roost; done

# 3. the code in a venv, with Blinka and the sensor drivers (the 'pi' extra)
mkdir -p /opt/roost
python3 -m venv /opt/roost/venv
/opt/roost/venv/bin/pip install --quiet --upgrade pip
/opt/roost/venv/bin/pip install --quiet "$SRC[pi]"
cp -r "$SRC/docs" /opt/roost/ 2>/dev/null || true

# 4. the node's config from the plan (one sentence and exit 2 if the node is not in it),
#    and the fleet key, readable by roost only
install -d -m 0755 /etc/roost
/opt/roost/venv/bin/roost plan --dir "$PLAN" --node-config "$NODE_ID" \
    --key-file /etc/roost/fleet.key > /etc/roost/node.json.new
mv /etc/roost/node.json.new /etc/roost/node.json
umask 077
cp "$PLAN/fleet.key" /etc/roost/fleet.key
chown roost:roost /etc/roost/fleet.key
if [ -f "$PLAN/mqtt.json" ]; then  # the node's own MQTT user (roost broker --plan)
    /opt/roost/venv/bin/roost plan --dir "$PLAN" --mqtt-password "$NODE_ID" \
        > /etc/roost/mqtt.password
    chown roost:roost /etc/roost/mqtt.password
fi
umask 022

# 5. the service
install -m 0644 "$SRC/roost/firmware/pi/roost-node.service" /etc/systemd/system/roost-node.service
systemctl daemon-reload
systemctl enable --now roost-node.service
systemctl restart roost-node.service
echo "roost: node $NODE_ID installed; follow it with: journalctl -u roost-node -f"
