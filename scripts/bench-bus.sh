# shellcheck shell=bash
# Sourced by scripts/bench.sh and scripts/bench-activated.sh: the private bus
# both time the process tables against, never the host's buses.
#
#   bench_bus DIR PREFIX
#
# writes DIR/bus.conf and four services named PREFIX1..PREFIX4 that run
# `/bin/sleep` (so the bus keeps a babysitter and a service for each), starts
# dbus-daemon from that config (its pid in BENCH_BUS_PID, the caller's to
# kill), and asks it to activate each service. The services never claim
# their names: each call times out and the activated process stays.
bench_bus() {
  local d=$1 prefix=$2
  mkdir -p "$d/services"
  cat >"$d/bus.conf" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>custom</type>
  <listen>unix:path=$d/bus.sock</listen>
  <servicedir>$d/services</servicedir>
  <auth>EXTERNAL</auth>
  <limit name="service_start_timeout">600000</limit>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
    <allow user="*"/>
  </policy>
</busconfig>
EOF
  local i
  for i in 1 2 3 4; do
    printf '[D-BUS Service]\nName=%s%s\nExec=/bin/sleep 86400 %s\n' "$prefix" "$i" "$i" \
      >"$d/services/$prefix$i.service"
  done
  dbus-daemon --config-file="$d/bus.conf" --nofork --print-address=1 >"$d/address" 2>"$d/bus.log" &
  # shellcheck disable=SC2034 # read by the scripts that source this file
  BENCH_BUS_PID=$!
  for _ in $(seq 50); do [[ -s $d/address ]] && break; sleep 0.1; done
  local addr
  addr=$(head -1 "$d/address")
  for i in 1 2 3 4; do
    # dbus-send is a child of this shell, not of the bus.
    timeout 5 dbus-send --bus="$addr" --print-reply --reply-timeout=100 \
      --dest="$prefix$i" / org.freedesktop.DBus.Peer.Ping >/dev/null 2>&1 || true
  done
}
