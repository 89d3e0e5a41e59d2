#coding=utf-8
# A threaded equivalent of the tutorial's server, as a baseline for benchmarks:
# one thread per connection, the same reply '[%s] %s' % (ctime(), data) to
# each recv(BUFSIZE), but without the original's fatal defects: it keeps
# listening after a client leaves, serves clients at the same time, and does
# not decode (bytes are echoed as they are, so a UTF-8 character split across
# two reads cannot crash it; a reply may then split that character, as any
# byte-oriented echo would).
#
#   python3 threaded_server.py [HOST [PORT]]   (PORT 0 picks a free port)
#
# Once listening it prints "listening on HOST:PORT" with the real bound
# address and flushes, so a harness can wait for that line.
import socket
import sys
import threading
from time import ctime

HOST = sys.argv[1] if len(sys.argv) > 1 else '127.0.0.1'
PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 8080
BUFSIZE = 1024


def serve(conn):
    with conn:
        while True:
            data = conn.recv(BUFSIZE)
            if not data:
                break
            conn.sendall(b'[' + ctime().encode() + b'] ' + data)


def main():
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((HOST, PORT))
    listener.listen(128)
    print('listening on %s:%d' % listener.getsockname()[:2], flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == '__main__':
    try:
        main()
    except KeyboardInterrupt:
        pass
