"""A threaded Python program: 4 workers counting under one lock, a producer and a consumer joined
by a queue.Queue, thread-local data and an Event to stop them.  After the restore every thread
still runs with its TID, the counts add up and the queue lost and invented nothing."""

import queue
import threading

from common import Target

t = Target()
NWORKERS = 4
lock = threading.Lock()
stop = threading.Event()
shared = {"total": 0}
counts = [0] * NWORKERS
tids, tids_after = {}, {}
local = threading.local()
q = queue.Queue(maxsize=1000)
produced = [0, 0]          # how many, their sum
consumed = [0, 0]


def worker(k):
    local.name = f"worker-{k}"
    tids[k] = threading.get_native_id()
    while not stop.is_set():
        for _ in range(200):
            with lock:
                shared["total"] += 1
                counts[k] += 1
        stop.wait(0.001)
    tids_after[k] = (threading.get_native_id(), local.name)


def producer():
    n = 0
    while not stop.is_set():
        try:
            q.put(n, timeout=0.05)
        except queue.Full:
            continue
        produced[0] += 1
        produced[1] += n
        n += 1


def consumer():
    while not stop.is_set():
        try:
            item = q.get(timeout=0.05)
        except queue.Empty:
            continue
        consumed[0] += 1
        consumed[1] += item


threads = [threading.Thread(target=worker, args=(k,), name=f"worker-{k}") for k in range(NWORKERS)]
threads += [threading.Thread(target=producer, name="producer"), threading.Thread(target=consumer, name="consumer")]
for th in threads:
    th.start()
while len(tids) < NWORKERS:
    stop.wait(0.01)
t.ready()
while not t.term:
    stop.wait(0.05)
    t.progress(min(counts))
stop.set()


def check():
    problems = []
    for th in threads:
        th.join(10)
        if th.is_alive():
            problems.append(f"{th.name} did not stop")
    if t.breaking:
        shared["total"] += 1
    if shared["total"] != sum(counts):
        problems.append(f"total {shared['total']} != sum of the workers' counts {sum(counts)}")
    for k in range(NWORKERS):
        if tids_after.get(k) != (tids[k], f"worker-{k}"):
            problems.append(f"worker {k}: tid/local {tids_after.get(k)}, was {tids[k]}")
    left = []
    while not q.empty():
        left.append(q.get_nowait())
    if consumed[0] + len(left) != produced[0] or consumed[1] + sum(left) != produced[1]:
        problems.append(f"queue: produced {produced}, consumed {consumed}, {len(left)} left")
    if produced[1] != produced[0] * (produced[0] - 1) // 2:
        problems.append("the producer skipped numbers")
    if threading.active_count() != 1:
        problems.append(f"{threading.active_count()} threads left")
    return problems


t.finish(check)
