"""A hand-rolled Python event loop on the fds crpy restores: one epoll set (select.epoll) waiting
on a periodic timerfd (20 ms), an eventfd other code bumps, a signalfd for SIGUSR1 (blocked) and
a pipe the loop writes to itself.  Each wakeup is counted by its epoll data; after the restore
the loop must go on: the timer keeps ticking, a SIGUSR1 sent then is read from the signalfd, the
eventfd and the pipe still carry what was written; checked on SIGTERM."""

import ctypes
import os
import select
import signal
import struct

from common import Target

libc = ctypes.CDLL(None, use_errno=True)
t = Target()
TIMER, EVENT, SIGNALS, PIPE = 1, 2, 3, 4

timer = libc.timerfd_create(1, os.O_NONBLOCK)                     # CLOCK_MONOTONIC
libc.timerfd_settime(timer, 0, (ctypes.c_long * 4)(0, 20_000_000, 0, 20_000_000), None)
event = os.eventfd(0, os.EFD_NONBLOCK)
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
signals = libc.signalfd(-1, ctypes.byref(ctypes.c_uint64(1 << (signal.SIGUSR1 - 1))), os.O_NONBLOCK)
r, w = os.pipe2(os.O_NONBLOCK)
if min(timer, signals) < 0:
    raise SystemExit(f"timerfd/signalfd: {os.strerror(ctypes.get_errno())}")
ep = select.epoll()
tag_of = {timer: TIMER, event: EVENT, signals: SIGNALS, r: PIPE}   # epoll reports the fd number
for fd in tag_of:
    ep.register(fd, select.EPOLLIN)
ticks = bumps = usr1 = piped = rounds = 0
t.ready()
while not t.term:
    for fd, _ in ep.poll(0.05):
        tag = tag_of[fd]
        if tag == TIMER:
            ticks += struct.unpack("Q", os.read(timer, 8))[0]
        elif tag == EVENT:
            bumps += os.eventfd_read(event)
        elif tag == SIGNALS:
            usr1 += len(os.read(signals, 128 * 8)) // 128
        else:
            piped += len(os.read(r, 4096))
    rounds += 1
    os.eventfd_write(event, 1)
    if rounds % 10 == 0:
        os.write(w, b"x")
    t.progress(ticks)


def check():
    global usr1
    problems = []
    start = (ticks, bumps, piped)
    for drain in (lambda: os.eventfd_read(event), lambda: os.read(r, 4096)):   # the last round's
        try:
            drain()
        except BlockingIOError:
            pass
    os.kill(os.getpid(), signal.SIGUSR1)
    os.eventfd_write(event, 5)
    os.write(w, b"yy")
    seen = {TIMER: 0, EVENT: 0, SIGNALS: 0, PIPE: 0}
    for _ in range(40):
        for fd, _ in ep.poll(0.05):
            seen[tag_of[fd]] += 1
            if tag_of[fd] == SIGNALS:
                usr1 += len(os.read(signals, 128 * 8)) // 128
            elif tag_of[fd] == TIMER:
                os.read(timer, 8)
            elif tag_of[fd] == EVENT:
                seen["bump"] = os.eventfd_read(event)
            else:
                seen["piped"] = os.read(r, 4096)
    if t.breaking:
        seen[TIMER] = 0
    if not seen[TIMER]:
        problems.append("the timerfd no longer wakes the loop")
    if seen.get("bump") != 5:
        problems.append(f"the eventfd gave {seen.get('bump')}, not the 5 written")
    if usr1 < 1:
        problems.append("SIGUSR1 was not read from the signalfd")
    if seen.get("piped") != b"yy":
        problems.append(f"the pipe gave {seen.get('piped')!r}")
    if start[0] < 10:
        problems.append(f"only {start[0]} timer ticks before the check")
    return problems


t.finish(check)
