#coding=utf-8
# The tutorial's TCP timestamp server (../../../shared/seed/000_*.txt), re-indented.
#
# Changed only where the tests need it (each change is marked "TEST:"):
#   - HOST and PORT come from argv (python3 original_server.py [HOST [PORT]]),
#     so a test can pass port 0 and let the system pick a free port;
#   - once listening it prints "listening on HOST:PORT" with the real bound
#     address and flushes, so a test waits for that line instead of sleeping.
#
# Everything else is the original, defects included:
#   - recv(BUFSIZE) once per message: whatever one recv returns is "a message";
#   - decode() is strict: a UTF-8 character split across two recv(1024) calls
#     raises UnicodeDecodeError and kills the server;
#   - `sock, addr = sock.accept()` overwrites the listening socket, so after the
#     first client leaves, the next accept() fails with
#     "OSError: [Errno 9] Bad file descriptor": it serves ONE client, then dies.
#     Kept on purpose: it is the behaviour our crate is compared against.
import socket
import sys
import time
from time import ctime
HOST = sys.argv[1] if len(sys.argv) > 1 else '127.0.0.1'  # TEST: from argv
PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 8080    # TEST: from argv
BUFSIZE=1024
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sock.bind((HOST, PORT))
sock.listen(5)
addr=(HOST,PORT)
print('listening on %s:%d' % sock.getsockname()[:2], flush=True)  # TEST: readiness
while True:
    print('waiting for connection...')
    sock,addr =sock.accept()
    print('...connected from:',addr)
    while True:
        data =sock.recv(BUFSIZE).decode()
        print('date=',data)
        if not data:
            break
        sock.send(('[%s] %s' %(ctime(),data)).encode())
    sock.close()
