"""Drives one guidstore-server for bench/instructions.sh: creates one record, then sends GETS
GET /guid/{guid}, METRICS GET /metrics, POSTS POST /guid (each a new record) and HEADS HEAD
/guid/{guid}, one at a time on one keep-alive connection, checking every status. The records carry numbers (an integer, a
fraction, one past 64 bits, a list), so parsing and rendering numbers is part of what is counted.
Usage: client.py ADDRESS GETS METRICS [POSTS [HEADS]]"""
import http.client
import sys

host, port = sys.argv[1].rsplit(":", 1)
gets, metrics = int(sys.argv[2]), int(sys.argv[3])
posts = int(sys.argv[4]) if len(sys.argv) > 4 else 0
heads = int(sys.argv[5]) if len(sys.argv) > 5 else 0
connection = http.client.HTTPConnection(host, int(port), timeout=120)
guid = "9094E4C980C74043A4B586B420E69DDF"
body = b'{"user":"bench","n":12345,"f":1.5,"big":12345678901234567890,"list":[1,2,3]}'
connection.request("POST", f"/guid/{guid}", body=body)
response = connection.getresponse()
response.read()
assert response.status == 201, response.status
for path, count in ((f"/guid/{guid}", gets), ("/metrics", metrics)):
    for _ in range(count):
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        assert response.status == 200, (path, response.status)
for _ in range(posts):
    connection.request("POST", "/guid", body=body)
    response = connection.getresponse()
    response.read()
    assert response.status == 201, response.status
for _ in range(heads):
    connection.request("HEAD", f"/guid/{guid}")
    response = connection.getresponse()
    response.read()
    assert response.status == 200, response.status
    assert int(response.getheader("Content-Length")) > 0
connection.close()
