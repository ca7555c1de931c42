"""An asyncio program: timers (call_later chains), a SIGUSR1 handler (loop.add_signal_handler)
and a task awaiting a subprocess's output.  asyncio's loop wakes itself through a UNIX socket
pair (its self-pipe, also the signal wakeup fd), which crpy does not dump yet: the test expects
the dump to refuse it and the program to run on untouched.  On SIGTERM it checks the timers kept
their order and the signal handler still runs."""

import asyncio
import os
import signal

from common import Target

t = Target()
fired = []
usr1 = 0


def on_usr1():
    global usr1
    usr1 += 1


async def main():
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, on_usr1)
    proc = await asyncio.create_subprocess_exec("echo", "from a child", stdout=asyncio.subprocess.PIPE)
    child_said = (await proc.communicate())[0]
    n = 0

    def tick():
        nonlocal n
        fired.append(n)
        n += 1
        loop.call_later(0.01, tick)
    loop.call_later(0.01, tick)
    t.ready()
    while not t.term:
        await asyncio.sleep(0.02)
        t.progress(len(fired))
    before = usr1
    os.kill(os.getpid(), signal.SIGUSR1)
    await asyncio.sleep(0.1)
    return child_said, usr1 - before


child_said, handled = asyncio.run(main())


def check():
    problems = []
    if t.breaking:
        fired.reverse()
    if fired != sorted(fired) or fired != list(range(len(fired))):
        problems.append("the timers fired out of order")
    if handled != 1:
        problems.append(f"SIGUSR1 handled {handled} times after the dump")
    if child_said != b"from a child\n":
        problems.append(f"the subprocess said {child_said!r}")
    return problems


t.finish(check)
