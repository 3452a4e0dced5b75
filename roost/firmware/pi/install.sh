#!/bin/sh
# Install a roost node on a Raspberry Pi (Raspberry Pi OS Bookworm or later), as root:
#   sudo sh roost/firmware/pi/install.sh --node-id n01 --broker mqtt://192.168.4.1:1883 [--fleet lab]
# Secrets are read from the environment (ROOST_FLEET_KEY), never from the command line:
#   sudo ROOST_FLEET_KEY=... sh roost/firmware/pi/install.sh ...
# Idempotent: run it again to upgrade the code or change the config.
set -eu

NODE_ID="" BROKER="" FLEET="roost" SRC="$(cd "$(dirname "$0")/../../.." && pwd)"
while [ $# -gt 0 ]; do
    case "$1" in
        --node-id) NODE_ID="$2"; shift 2 ;;
        --broker) BROKER="$2"; shift 2 ;;
        --fleet) FLEET="$2"; shift 2 ;;
        *) echo "install.sh: unknown option $1 (see the comment at the top)" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "install.sh: run it as root (sudo)" >&2; exit 2; }
[ -n "$NODE_ID" ] || { echo "install.sh: give --node-id, e.g. --node-id n01" >&2; exit 2; }
[ -n "$BROKER" ] || { echo "install.sh: give --broker mqtt://HOST:1883" >&2; exit 2; }
[ -n "${ROOST_FLEET_KEY:-}" ] || { echo "install.sh: set ROOST_FLEET_KEY in the environment" >&2; exit 2; }

# 1. system packages: Python, venv, I2C tools; enable I2C for the BME280
apt-get install -y python3-venv python3-dev i2c-tools libgpiod2 >/dev/null
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

# 4. config and secrets (the secrets file readable by roost only)
install -d -m 0755 /etc/roost
cat > /etc/roost/node.json <<JSON
{"node_id": "$NODE_ID", "fleet": "$FLEET", "board": "pi-4", "broker": "$BROKER"}
JSON
umask 077
printf '{"fleet_key": "%s"}\n' "$ROOST_FLEET_KEY" > /etc/roost/secrets.json
chown roost:roost /etc/roost/secrets.json
umask 022

# 5. the service
install -m 0644 "$SRC/roost/firmware/pi/roost-node.service" /etc/systemd/system/roost-node.service
systemctl daemon-reload
systemctl enable --now roost-node.service
systemctl restart roost-node.service
echo "roost: node $NODE_ID installed; follow it with: journalctl -u roost-node -f"
