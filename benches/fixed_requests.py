"""Sends exactly N keep-alive requests with a bearer token over C connections and fails on any
answer other than 200. Used by benches/instructions.sh, where the count must be exact.

Usage: fixed_requests.py PORT N CONNECTIONS TOKEN
"""
import socket
import sys
import threading

port, total, conns, token = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
request = f"GET /api/bench HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
refused = []


def client(count):
    s = socket.create_connection(("127.0.0.1", port))
    buf = b""
    for _ in range(count):
        s.sendall(request)
        while True:
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                head = buf[:end].decode("latin-1")
                length = next(int(l.split(":", 1)[1]) for l in head.split("\r\n")
                              if l.lower().startswith("content-length:"))
                if len(buf) >= end + 4 + length:
                    if not head.startswith("HTTP/1.1 200"):
                        refused.append(head.split("\r\n")[0])
                    buf = buf[end + 4 + length:]
                    break
            chunk = s.recv(65536)
            if not chunk:
                raise SystemExit("connection closed early")
            buf += chunk
    s.close()


threads = [threading.Thread(target=client, args=(total // conns,)) for _ in range(conns)]
for t in threads:
    t.start()
for t in threads:
    t.join()
if refused:
    sys.exit(f"{len(refused)} answers were not 200, e.g. {refused[0]}")
