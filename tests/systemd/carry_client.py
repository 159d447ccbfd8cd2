#!/usr/bin/env python3
"""carry_client.py HOST PORT USER PASSWORD N: N sessions logged in through
sockgate to an echo upstream, driven by commands on stdin, one answer line
each on stdout:

  pump SECONDS [any]
                every session sends a stream of its own (at most 64 KiB in
                flight) and checks each echoed byte against it, for SECONDS
                -> "pumped SENT_BYTES"; "error ..." at the first wrong byte,
                closed session or stall. With "any", what comes back is only
                counted (a crash may lose bytes in flight).
  drain         stop sending; wait (bounded) until every byte sent came back
                -> "exact N BYTES" when each session got back exactly what it
                sent, else "error ..."
  resync        after a crash bytes may be lost: each session sends a marker
                and reads until it comes back -> "resynced N"
  open          -> "open K": sessions the peer has not closed
  halfclose BYTES
                one more session, with a 4 KiB receive buffer, sends BYTES of
                its stream, half-closes and reads nothing: the upstream's
                answer and its close wait in sockgate and the kernel, so the
                upstream socket is shut both ways with bytes still queued
                -> "halfclosed"
  readhalf      reads that session to its end -> "halfexact BYTES" when it got
                back exactly what it sent, then its end
Used by test_systemd.sh (restarts and crashes under the fd store) and by
bench/carry.sh (1,000 sessions). Loopback only."""
import os
import random
import selectors
import socket
import sys
import time

BLOCK = random.Random(7).randbytes(1 << 16)
CHUNK = 4096
IN_FLIGHT = 1 << 16
TIMEOUT = 30.0


def stream(conn, off, n):
    """Bytes off..off+n of session conn's stream."""
    out = bytearray()
    while n > 0:
        k = (off + conn * 131) % len(BLOCK)
        take = min(n, len(BLOCK) - k)
        out += BLOCK[k:k + take]
        off += take
        n -= take
    return bytes(out)


class Session:
    def __init__(self, i, sock):
        self.i, self.sock = i, sock
        self.sent = self.recv = 0
        self.closed = False


def login(host, port, user, password, i):
    s = socket.create_connection((host, port), timeout=TIMEOUT)
    buf = b""
    s.sendall(("%s\n%s\n" % (user, password)).encode())
    while b"You are now logged in.\n" not in buf:
        d = s.recv(4096)
        if not d:
            raise SystemExit("error: session %d closed during its login: %r" % (i, buf))
        buf += d
    s.setblocking(False)
    return Session(i, s)


def pump(sessions, seconds, sending=True, verify=True):
    sel = selectors.DefaultSelector()
    for s in sessions:
        if not s.closed:
            sel.register(s.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, s)
    end = time.monotonic() + seconds
    last_progress = time.monotonic()
    while True:
        now = time.monotonic()
        if sending and now >= end:
            break
        if not sending and all(s.recv == s.sent or s.closed for s in sessions):
            break
        if now - last_progress > TIMEOUT:
            stalled = [s.i for s in sessions if s.recv != s.sent and not s.closed]
            return "error: no progress for %ds; sessions waiting: %s" % (TIMEOUT, stalled[:10])
        for key, ev in sel.select(timeout=0.2):
            s = key.data
            if ev & selectors.EVENT_READ:
                try:
                    d = s.sock.recv(65536)
                except (BlockingIOError, InterruptedError):
                    d = None
                except OSError as e:
                    return "error: session %d: %s" % (s.i, e)
                if d == b"":
                    s.closed = True
                    sel.unregister(s.sock)
                    return "error: session %d closed by the peer" % s.i
                if d:
                    want = stream(s.i, s.recv, len(d)) if verify else d
                    if d != want:
                        return "error: session %d: wrong byte after %d bytes" % (s.i, s.recv)
                    s.recv += len(d)
                    last_progress = time.monotonic()
            if ev & selectors.EVENT_WRITE and sending and (not verify or s.sent - s.recv < IN_FLIGHT):
                try:
                    n = s.sock.send(stream(s.i, s.sent, CHUNK))
                    s.sent += n
                    last_progress = time.monotonic()
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError as e:
                    return "error: session %d: %s" % (s.i, e)
    sel.close()
    return None


def resync(sessions):
    """Each session sends a marker and reads until it comes back."""
    done = 0
    for s in sessions:
        if s.closed:
            continue
        mark = ("\nMARK-%d-%d\n" % (s.i, os.getpid())).encode()
        s.sock.setblocking(True)
        s.sock.settimeout(TIMEOUT)
        try:
            s.sock.sendall(mark)
            buf = b""
            while mark not in buf:
                d = s.sock.recv(65536)
                if not d:
                    s.closed = True
                    break
                buf = (buf + d)[-4 * len(mark):]
            else:
                done += 1
        except OSError:
            s.closed = True
        s.sock.setblocking(False)
        # The streams start over after the marker.
        s.sent = s.recv = 0
    return done


def login_small(host, port, user, password):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(TIMEOUT)
    s.connect((host, port))
    buf = b""
    s.sendall(("%s\n%s\n" % (user, password)).encode())
    while b"You are now logged in.\n" not in buf:
        d = s.recv(4096)
        if not d:
            raise SystemExit("error: the half-closing session closed during its login")
        buf += d
    return s


def main():
    host, port, user, password, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
    sessions = [login(host, port, user, password, i) for i in range(n)]
    print("ready %d" % len(sessions), flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "pump":
            err = pump(sessions, float(words[1]), verify=words[2:] != ["any"])
            print(err or "pumped %d" % sum(s.sent for s in sessions), flush=True)
        elif words[0] == "drain":
            err = pump(sessions, 0, sending=False)
            ok = all(s.recv == s.sent and not s.closed for s in sessions)
            print(err or ("exact %d %d" % (len(sessions), sum(s.sent for s in sessions))
                          if ok else "error: not every byte came back"), flush=True)
        elif words[0] == "resync":
            print("resynced %d" % resync(sessions), flush=True)
        elif words[0] == "halfclose":
            half = login_small(host, port, user, password)
            half_len = int(words[1])
            half.sendall(stream(9999, 0, half_len))
            half.shutdown(socket.SHUT_WR)
            print("halfclosed", flush=True)
        elif words[0] == "readhalf":
            got = bytearray()
            while True:
                d = half.recv(65536)
                if not d:
                    break
                got += d
            ok = bytes(got) == stream(9999, 0, half_len)
            print("halfexact %d" % len(got) if ok else "error: the half-closed session got %d bytes, not its %d" % (len(got), half_len), flush=True)
            half.close()
        elif words[0] == "open":
            print("open %d" % sum(not s.closed for s in sessions), flush=True)
    for s in sessions:
        s.sock.close()


if __name__ == "__main__":
    main()
