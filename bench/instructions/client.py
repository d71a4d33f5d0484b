"""Drives one guidstore-server for bench/instructions.sh: creates one record, then sends GETS
GET /guid/{guid} and METRICS GET /metrics, one at a time on one keep-alive connection, checking
every status. Usage: client.py ADDRESS GETS METRICS"""
import http.client
import sys

host, port = sys.argv[1].rsplit(":", 1)
gets, metrics = int(sys.argv[2]), int(sys.argv[3])
connection = http.client.HTTPConnection(host, int(port), timeout=120)
guid = "9094E4C980C74043A4B586B420E69DDF"
connection.request("POST", f"/guid/{guid}", body=b'{"user":"bench"}')
response = connection.getresponse()
response.read()
assert response.status == 201, response.status
for path, count in ((f"/guid/{guid}", gets), ("/metrics", metrics)):
    for _ in range(count):
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        assert response.status == 200, (path, response.status)
connection.close()
