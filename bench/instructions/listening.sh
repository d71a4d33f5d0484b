# Sourced by bench/instructions*.sh. wait_listening PID DIR: waits (up to 120 s: callgrind starts
# slowly) for the server PID to print "listening on http://ADDR" to DIR/stdout, then prints ADDR;
# fails with the server's stderr if it exits first.
wait_listening() {
    for _ in $(seq 1200); do
        grep -q '^listening on ' "$2/stdout" 2>/dev/null && break
        kill -0 "$1" 2>/dev/null || { cat "$2/stderr" >&2; exit 1; }
        sleep 0.1
    done
    sed -n 's|^listening on http://||p' "$2/stdout"
}
