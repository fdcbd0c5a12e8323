#!/bin/sh
# A client that inserts one row per connection, as fast as it can, until told to stop; it
# records each insert the server acknowledged (psql exited 0 after the INSERT's commit).
# Usage: writer.sh SOCKET_DIR PORT DATABASE ACKED_FILE STOP_FILE
set -u
dir=$1 port=$2 db=$3 acked=$4 stop=$5
i=0
: > "$acked"
while [ ! -e "$stop" ]; do
    i=$((i + 1))
    if runuser -u postgres -- psql -X -q -At -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -d "$db" \
        -c "INSERT INTO writes (n) VALUES ($i)" >/dev/null 2>&1; then
        echo "$i" >> "$acked"
    fi
done
