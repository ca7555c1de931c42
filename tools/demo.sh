#!/bin/sh
# `make demo`: start a counter, dump it, show that it is gone, restore it, show it counting on.
set -e
dir=$(mktemp -d /tmp/crpy-demo.XXXXXX)
gcc -O2 -o "$dir/counter" "$(dirname "$0")/demo-counter.c"
cd "$dir"
./counter > counter.log 2>&1 < /dev/null &
pid=$!
sleep 1
echo "== counter running as pid $pid; its last line: $(tail -n1 counter.log)"
crpy dump -t "$pid" -D imgs -v4 -o dump.log
wait "$pid" 2>/dev/null || true
if kill -0 "$pid" 2>/dev/null; then echo "pid $pid still alive after dump"; exit 1; fi
echo "== dumped to $dir/imgs ($(du -sh imgs | cut -f1)); pid $pid is gone; last line: $(tail -n1 counter.log)"
sleep 1
echo "== still gone one second later; last line: $(tail -n1 counter.log)"
crpy restore -D imgs -d -v4 -o restore.log --pidfile restored.pid
echo "== restored as pid $(cat restored.pid)"
sleep 1
echo "== one second later it has counted on: $(tail -n1 counter.log)"
grep -q "^count" counter.log
kill "$(cat restored.pid)"
echo "== demo done (images and logs in $dir)"
