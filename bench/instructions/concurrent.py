"""Drives one guidstore-server for bench/instructions-shared.sh: creates one record, then sends
GETS GET /guid/{guid} in all over CONNECTIONS keep-alive connections at once (one thread each, one
request at a time on each), checking every status, so that reads overlap and share freshness
rounds. Prints nothing. Usage: concurrent.py ADDRESS GETS CONNECTIONS"""
import http.client
import sys
import threading

host, port = sys.argv[1].rsplit(":", 1)
gets, connections = int(sys.argv[2]), int(sys.argv[3])
guid = "9094E4C980C74043A4B586B420E69DDF"
body = b'{"user":"bench","n":12345,"f":1.5,"big":12345678901234567890,"list":[1,2,3]}'

first = http.client.HTTPConnection(host, int(port), timeout=600)
first.request("POST", f"/guid/{guid}", body=body)
response = first.getresponse()
response.read()
assert response.status == 201, response.status
first.close()

failures = []


def reader(count):
    connection = http.client.HTTPConnection(host, int(port), timeout=600)
    try:
        for _ in range(count):
            connection.request("GET", f"/guid/{guid}")
            response = connection.getresponse()
            response.read()
            assert response.status == 200, response.status
    except Exception as error:  # reported below: a failed run must not count
        failures.append(error)
    finally:
        connection.close()


threads = [
    threading.Thread(target=reader, args=(gets // connections + (1 if i < gets % connections else 0),))
    for i in range(connections)
]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
if failures:
    sys.exit(f"{len(failures)} readers failed: {failures[0]!r}")
