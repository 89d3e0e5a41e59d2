#!/usr/bin/env python3
"""The original tutorial's timestamp echo server, made threaded: the baseline
that scripts/compare.sh measures our server against.

Per message it does what the original does: recv(1024) (chunk framing) or
one line (--framing line), then one sendall of '[%s] %s' % (ctime(), data).
Unlike the original it serves many clients at once (a thread each), does not
print each message, and keeps the listening socket. Prints `listening on
HOST:PORT` once it accepts connections; `--port 0` picks a free port.
"""
import argparse
import socketserver
import sys
from time import ctime

BUFSIZE = 1024


class Chunk(socketserver.BaseRequestHandler):
    def handle(self):
        sock = self.request
        while True:
            data = sock.recv(BUFSIZE)
            if not data:
                break
            sock.sendall(('[%s] %s' % (ctime(), data.decode('utf-8'))).encode('utf-8'))


class Line(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            self.request.sendall(('[%s] ' % ctime()).encode('utf-8') + line)


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 128


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--host', default='127.0.0.1')
    parser.add_argument('--port', type=int, default=8080)
    parser.add_argument('--framing', choices=['chunk', 'line'], default='chunk')
    args = parser.parse_args()
    handler = Chunk if args.framing == 'chunk' else Line
    with Server((args.host, args.port), handler) as server:
        host, port = server.server_address[:2]
        print('listening on %s:%d' % (host, port), flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == '__main__':
    sys.exit(main())
