#!/usr/bin/env python3
"""One client replaying a TLS ClientHello as fast as it can: each connection sends the same
captured ClientHello and closes, which costs the client a few microseconds and the server a
whole handshake (a signature). Usage: tls_flood.py PORT SECONDS [CONNECTIONS_AT_ONCE]
Prints how many connections it opened."""
import socket, ssl, sys, time

port, seconds = int(sys.argv[1]), float(sys.argv[2])
width = int(sys.argv[3]) if len(sys.argv) > 3 else 32

# Capture one ClientHello with a memory BIO (no network).
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
obj = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
try:
    obj.do_handshake()
except ssl.SSLWantReadError:
    pass
hello = outgoing.read()

opened = 0
end = time.monotonic() + seconds
socks = []
while time.monotonic() < end:
    try:
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        socks.append(s)
    except OSError:
        pass
    if len(socks) >= width:
        for s in socks:
            try:
                s.setblocking(True)
                s.settimeout(0.5)
                s.sendall(hello)
                opened += 1
            except OSError:
                pass
        for s in socks:
            s.close()
        socks = []
print(opened)
