#!/usr/bin/env bash
# walkthrough.sh: every route of the guidstore HTTP API, with curl, against a running server —
# the happy paths and the error cases (invalid GUID, past expire, duplicate create, 404, 412, 413,
# 405, HEAD, healthz, metrics). Each request is echoed as a curl command before its answer.
#
#   examples/walkthrough.sh [BASE_URL]     # default $GUIDSTORE_URL, else http://127.0.0.1:8080
#
# Set GUIDSTORE_TOKEN when the server requires a bearer token (the walkthrough then also shows the
# 401 of a request without it). Exits 1 if any answer has a status other than the one expected,
# 2 if curl is missing. Uses only curl and coreutils; the records it creates use fresh random GUIDs,
# so it can run any number of times against the same server.

set -uo pipefail

base="${1:-${GUIDSTORE_URL:-http://127.0.0.1:8080}}"
base="${base%/}"
token="${GUIDSTORE_TOKEN:-}"

command -v curl >/dev/null || { echo "walkthrough.sh: curl is required" >&2; exit 2; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 2   # request files (big.json) are named relative to it

requests=0
unexpected=0
status=""   # status of the last answer
body=""     # body of the last answer
etag=""     # ETag of the last answer

# Quotes an argument for the echoed command line only when it needs it.
quote() {
    if [[ "$1" =~ ^[A-Za-z0-9_./:@=-]+$ ]]; then
        printf '%s' "$1"
    else
        printf "'%s'" "${1//\'/\'\\\'\'}"
    fi
}

# request EXPECTED_STATUS METHOD PATH [curl arguments...]
# Echoes the request, sends it, prints the answer's status line, headers and body, and counts an
# answer whose status is not EXPECTED_STATUS.
request() {
    local expected="$1" method="$2" path="$3"
    shift 3
    local args=(-sS -X "$method")
    [[ "$method" == GET ]] && args=(-sS)
    [[ "$method" == HEAD ]] && args=(-sS --head)
    args+=("$@")
    local auth=()
    [[ -n "$token" && "${NO_TOKEN:-}" != 1 ]] && auth=(-H "Authorization: Bearer $token")

    requests=$((requests + 1))
    printf '\n$ curl'
    local arg
    for arg in "${args[@]:1}"; do printf ' %s' "$(quote "$arg")"; done
    [[ ${#auth[@]} -gt 0 ]] && printf " -H 'Authorization: Bearer ***'"
    printf ' %s   # expect %s\n' "$(quote "$base$path")" "$expected"

    status="$(curl "${args[@]}" "${auth[@]}" -D "$work/headers" -o "$work/body" -w '%{http_code}' "$base$path")" \
        || status="000"
    tr -d '\r' <"$work/headers" 2>/dev/null | sed -e '/^$/d' -e '/^[Dd]ate:/d' -e 's/^/< /'
    body=""
    [[ "$method" != HEAD ]] && body="$(cat "$work/body" 2>/dev/null)"
    etag="$(tr -d '\r' <"$work/headers" 2>/dev/null | sed -n 's/^[Ee][Tt][Aa][Gg]: *//p' | tail -n 1)"
    if [[ -n "$body" ]]; then
        if [[ "$path" == /metrics ]]; then
            grep '^# TYPE' <<<"$body" | sed 's/^/  /'
            grep -m 3 '^guidstore_http_requests_total' <<<"$body" | sed 's/^/  /'
            echo "  ... ($(wc -l <<<"$body") lines)"
        elif [[ ${#body} -gt 400 ]]; then
            printf '%s... (%d bytes)\n' "${body:0:400}" "${#body}"
        else
            printf '%s\n' "$body"
        fi
    fi
    if [[ "$status" != "$expected" ]]; then
        unexpected=$((unexpected + 1))
        echo "!! expected $expected, got $status"
    fi
}

# 32 random uppercase hex digits: a fresh GUID.
random_guid() {
    od -An -N16 -tx1 /dev/urandom | tr -d ' \n' | tr 'a-f' 'A-F'
}

# The guid field of the last answer's body.
guid_of_body() {
    sed -n 's/.*"guid":"\([0-9A-F]\{32\}\)".*/\1/p' <<<"$body"
}

section() {
    printf '\n## %s\n' "$*"
}

echo "guidstore walkthrough against $base"
future=$(( $(date +%s) + 3600 ))
guid="$(random_guid)"
missing="$(random_guid)"

section "Operations"
request 200 GET /healthz

section "Create"
request 201 POST /guid -d '{"user":"Jay Patel"}'
generated="$(guid_of_body)"
request 201 POST "/guid/$guid" -d "{\"expire\":\"$future\",\"user\":\"Jay Patel\",\"team\":\"ops\"}"
first_etag="$etag"
request 409 POST "/guid/$guid" -d '{"user":"Someone Else"}'
request 201 POST /guid/ -H 'Transfer-Encoding: chunked' -d '{"note":"trailing slash, chunked body"}'
request 201 POST /guid

section "Read"
request 200 GET "/guid/$guid"
request 200 HEAD "/guid/$guid"
request 404 GET "/guid/$missing"

section "Update (JSON Merge Patch) and If-Match"
request 200 PATCH "/guid/$guid" -H "If-Match: $first_etag" -d '{"team":null,"tags":["a","b"]}'
request 412 PATCH "/guid/$guid" -H "If-Match: $first_etag" -d '{"user":"Stale Writer"}'
request 200 PATCH "/guid/$guid" -d '{}'
request 200 PATCH "/guid/$guid" -d "{\"expire\":$((future + 60))}"
request 400 PATCH "/guid/$guid" -d "{\"guid\":\"$missing\"}"
request 400 PATCH "/guid/$guid" -d '{"expire":null}'
request 404 PATCH "/guid/$missing" -d '{"user":"Nobody"}'

section "Invalid input"
request 400 GET /guid/9094e4c980c74043a4b586b420e69ddf
request 400 GET /guid/9094E4C9-80C7-4043-A4B5-86B420E69DDF
request 400 GET /guid/%39094E4C980C74043A4B586B420E69DDF
request 400 POST /guid -d '{"expire":1427736345}'
request 400 POST /guid -d '{"expire":1e10}'
request 400 POST /guid -d '{"user":""}'
request 400 POST /guid -d '[1,2]'
request 400 POST /guid -d '{"a":1,"a":2}'
request 400 POST /guid -d '{"user":'
request 400 POST "/guid/$missing" -d "{\"guid\":\"$guid\"}"
head -c 71680 /dev/zero | tr '\0' 'x' | sed 's/^/{"pad":"/; s/$/"}/' >big.json
echo
echo "# big.json: a JSON object of $(wc -c <big.json) bytes (70 KiB of padding); the limit is 65536"
request 413 POST /guid --data-binary @big.json

section "Methods and paths"
request 405 PUT "/guid/$guid" -d '{}'
request 405 GET /guid
request 404 GET /no/such/path

if [[ -n "$token" ]]; then
    section "Authorization"
    NO_TOKEN=1 request 401 GET "/guid/$guid"
fi

section "Delete"
request 412 DELETE "/guid/$guid" -H "If-Match: $first_etag"
request 204 DELETE "/guid/$guid"
request 404 GET "/guid/$guid"
request 404 DELETE "/guid/$guid"
request 204 DELETE "/guid/$generated" -H 'If-Match: *'

section "Metrics"
request 200 GET /metrics

echo
if [[ "$unexpected" -ne 0 ]]; then
    echo "walkthrough: $unexpected of $requests answers had an unexpected status"
    exit 1
fi
echo "walkthrough: all $requests answers as expected"
