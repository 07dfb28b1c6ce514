#!/usr/bin/env bash
# A five-minute tour: run the driver on a local directory and drive it with svctl, the way a
# Kubernetes node would (create, stage+publish, use, unpublish, delete). Needs root: it mounts.
# Run it with `npm run demo` (builds first). Everything lives in one temp dir, removed at the end.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DRIVER_JS=$ROOT/dist/bundle/sharedvolume-csi.js
DRIVER_BIN=$ROOT/bin/sharedvolume-csi
SVCTL_JS=$ROOT/dist/src/cli/svctl.js

if [ "$(id -u)" -ne 0 ]; then
  echo "demo.sh: run as root: publishing a volume is a bind mount" >&2
  exit 1
fi
if [ ! -f "$DRIVER_JS" ] || [ ! -f "$SVCTL_JS" ]; then
  echo "demo.sh: $ROOT/dist is missing; run \`npm run demo\` (it builds first)" >&2
  exit 1
fi

DIR=$(mktemp -d /tmp/sharedvolume-demo.XXXXXX)
SOCKET=$DIR/csi.sock
DRIVER_PID=
FAILED_COMMAND=

if [ -t 1 ]; then BOLD=$'\033[1m' PLAIN=$'\033[0m'; else BOLD='' PLAIN=''; fi

step() { printf '\n%s==> %s%s\n' "$BOLD" "$*" "$PLAIN"; }

# Shows the command as a newcomer would type it, then runs it.
svctl() {
  printf '$ svctl %s\n' "$*"
  node "$SVCTL_JS" --endpoint "unix://$SOCKET" --staging-dir "$DIR/staging" "$@"
}

mounts_under() { awk -v dir="$1" '$5 == dir || index($5, dir "/") == 1 { print $5 }' /proc/self/mountinfo; }

stop_driver() {
  [ -n "$DRIVER_PID" ] || return 0
  if kill -0 "$DRIVER_PID" 2>/dev/null; then
    kill -TERM "$DRIVER_PID"
    for _ in $(seq 100); do kill -0 "$DRIVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$DRIVER_PID" 2>/dev/null && kill -KILL "$DRIVER_PID"
  fi
  wait "$DRIVER_PID" 2>/dev/null || true
  DRIVER_PID=
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_driver
  # A failed step may leave the volume published: unmount (deepest first) before deleting the files.
  for mnt in $(mounts_under "$DIR" | sort -r); do umount "$mnt" 2>/dev/null || umount -l "$mnt"; done
  if [ "$rc" -ne 0 ] && [ -f "$DIR/driver.log" ]; then
    echo "demo.sh: failed (exit $rc)${FAILED_COMMAND:+ at: $FAILED_COMMAND}; the driver's last log lines:" >&2
    tail -n 20 "$DIR/driver.log" >&2
  fi
  rm -rf "$DIR"
  exit "$rc"
}
trap cleanup EXIT
trap 'FAILED_COMMAND=$BASH_COMMAND' ERR
trap 'exit 130' INT
trap 'exit 143' TERM

step "Start the driver on a local directory (the smallest invocation)"
mkdir -p "$DIR/volumes"
echo "\$ sharedvolume-csi --endpoint unix://$SOCKET --node-id demo-node --local-root $DIR/volumes --log-format text"
"$DRIVER_BIN" --endpoint "unix://$SOCKET" --node-id demo-node --local-root "$DIR/volumes" --log-format text \
  >"$DIR/driver.log" 2>&1 &
DRIVER_PID=$!
for _ in $(seq 150); do
  [ -S "$SOCKET" ] && break
  kill -0 "$DRIVER_PID" 2>/dev/null || { echo "demo.sh: the driver exited before serving" >&2; exit 1; }
  sleep 0.1
done
[ -S "$SOCKET" ] || { echo "demo.sh: no socket at $SOCKET after 15 s" >&2; exit 1; }
echo "driver running as PID $DRIVER_PID, serving CSI on $SOCKET"

step "Ask the driver who it is and what it can do"
svctl info

step "Create a 1Gi shared volume (what the provisioner does for a PVC)"
svctl create demo --size 1Gi

step "List volumes"
svctl list

step "Publish it to $DIR/mnt/app (what kubelet does before a pod starts)"
svctl publish local/demo "$DIR/mnt/app"
findmnt --target "$DIR/mnt/app" 2>/dev/null || grep " $DIR/mnt/app " /proc/self/mountinfo

step "Write a file through the mount and read it back"
message="hello from the sharedvolume demo"
echo "$message" >"$DIR/mnt/app/hello.txt"
echo "\$ cat $DIR/mnt/app/hello.txt"
cat "$DIR/mnt/app/hello.txt"
[ "$(cat "$DIR/mnt/app/hello.txt")" = "$message" ]

step "Usage as the node reports it to kubelet"
svctl stat local/demo --path "$DIR/mnt/app"

step "The same file in the backing directory on the local root"
echo "\$ ls -l $DIR/volumes/demo"
ls -l "$DIR/volumes/demo"
[ "$(cat "$DIR/volumes/demo/hello.txt")" = "$message" ]

step "Unpublish (what kubelet does after the pod is gone)"
svctl unpublish local/demo "$DIR/mnt/app"
if [ -n "$(mounts_under "$DIR")" ]; then
  echo "demo.sh: mounts left after unpublish:" >&2
  mounts_under "$DIR" >&2
  exit 1
fi
echo "nothing is mounted under $DIR any more"

step "Delete the volume"
svctl delete local/demo

step "List again: it is gone"
svctl list
[ ! -e "$DIR/volumes/demo" ]

step "The driver logged one line per call"
grep ' rpc ' "$DIR/driver.log" | tail -n 4

step "Stop the driver"
stop_driver
echo "driver stopped; removing $DIR"
echo
echo "Demo finished. See docs/cli.md for everything svctl can do."
