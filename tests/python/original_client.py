#coding=utf-8
# The tutorial's TCP client (../../../shared/seed/000_*.txt), re-indented.
#
# Changed only where the tests need it (each change is marked "TEST:"):
#   - HOST and PORT come from argv (python3 original_client.py [HOST [PORT [BUFSIZE]]]),
#     so it can reach a server on a port picked by the system;
#   - BUFSIZE may come from argv too (default 1024, the original's). The
#     original reads each reply with ONE recv(1024), so a reply longer than
#     1024 bytes is cut (and, cut inside a UTF-8 character, crashes decode());
#     a test that sends a long line raises it to see the whole first reply.
#
# Everything else is the original: it prompts "> " (input() writes the prompt
# to stdout when stdin is a pipe), an empty line or end of input ends it, it
# sends the text without a newline, reads the reply with one recv, prints it.
import socket
import sys
HOST = sys.argv[1] if len(sys.argv) > 1 else '127.0.0.1'  # TEST: from argv
PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 8080    # TEST: from argv
BUFSIZE = int(sys.argv[3]) if len(sys.argv) > 3 else 1024  # TEST: from argv
ADDR=(HOST,PORT)
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sock.connect((HOST, PORT))
while True:
    try:
        data = input('> ')
    except EOFError:  # TEST: end of piped input ends it like an empty line
        break
    if not data:
        break
    sock.send(data.encode())
    data = sock.recv(BUFSIZE).decode()
    if not data:
        break
    print(data)
sock.close()
