#!/bin/bash
# Command agent of the IPVS test VM, on the virtio-serial port named "lvf.agent".
# It runs argument vectors, never shell strings (a caller wanting a shell passes sh -c itself):
#   host -> guest:  "EXEC <nargs> <nstdin>\n", then <nargs> lines (one argument each; arguments
#                   cannot contain a newline), then <nstdin> bytes of standard input
#                   or the line "POWEROFF"
#   guest -> host:  "RESULT <rc> <nout> <nerr>\n" <stdout bytes> <stderr bytes>
# One request at a time; each command is killed after 60 s (rc 124).
unset LANG LC_ALL LC_CTYPE                  # byte semantics for read -N
dev=
for i in $(seq 100); do
  for d in /sys/class/virtio-ports/*; do
    [ -r "$d/name" ] && [ "$(cat "$d/name")" = lvf.agent ] && dev=/dev/${d##*/}
  done
  [ -n "$dev" ] && break; sleep 0.1
done
[ -n "$dev" ] || { echo "LVF: agent port not found"; exit 1; }
# Keep the port open all the time: virtio_console drops data that arrives while it is closed.
exec 3<>"$dev"
O=/tmp/.lvf-out E=/tmp/.lvf-err I=/tmp/.lvf-in
mkfifo /tmp/.lvf-idle && exec 5<>/tmp/.lvf-idle   # fork-free idle wait (saves emulated CPU)
echo "LVF-AGENT-READY $dev uptime=$(cut -d' ' -f1 /proc/uptime)"
while :; do
  if ! IFS= read -r line <&3; then read -t 0.05 -u 5 _; continue; fi   # EOF: no host client yet
  if [ "$line" = POWEROFF ]; then printf 'BYE\n' >&3; exit 0; fi
  set -- $line
  [ "$1" = EXEC ] || continue
  nargs=$2 nin=$3 args=()
  for ((i = 0; i < nargs; i++)); do IFS= read -r a <&3; args+=("$a"); done
  : >$I
  if [ "$nin" -gt 0 ]; then IFS= read -r -d '' -N "$nin" data <&3; printf '%s' "$data" >$I; fi
  # Resolve through PATH here: busybox's timeout would run its own applet (e.g. its limited ip).
  if [[ ${args[0]} != */* ]] && hash "${args[0]}" 2>/dev/null; then args[0]=${BASH_CMDS[${args[0]}]}; fi
  timeout 60 "${args[@]}" <$I >$O 2>$E; rc=$?
  s=$(stat -c %s $O $E)
  { printf 'RESULT %d %d %d\n' $rc $s; cat $O $E; } >&3
done
