#!/usr/bin/env python3
"""Quiet-machine gate and timer for the benchmarks (Python stdlib only).

A loaded machine flatters us: PyTorch's and Snakemake's thread pools suffer more from a busy
core than repro does, so a benchmark must not time anything while something else runs.

  quiet.py wait [--max-load 0.15] [--window 3] [--timeout 600]
      Blocks until the other processes on the machine used less than MAX_LOAD cores over a
      WINDOW-second window (from /proc/stat), then prints {"waited_s", "load"} as JSON. Exits 3
      (printing the last load seen) when the machine did not become quiet within TIMEOUT.
  quiet.py run [--max-load 0.15] [--label L] [--limit SECONDS] -- CMD ARGS...
      Waits as above, then runs CMD (stdout and stderr to /dev/null unless --show) and prints one
      JSON line: label, wall_s, user_s, sys_s, max_rss_kib (of CMD and its children), exit code,
      the load before, and `other_load`: the cores used during the run by everything but CMD
      (machine busy time minus CMD's own CPU time), and `self_user_s`/`self_sys_s`: the CPU time
      of CMD's own process alone, without its children (the stages a pipeline tool runs), read
      from /proc/PID/stat while it is a zombie. With --limit, CMD runs in its own process group,
      which gets SIGTERM at the limit (SIGKILL 10 s later) and `timed_out` says so; CMD's
      timings are then those of an unfinished run. `disturbed` is true when other_load exceeded
      MAX_LOAD: such a round must not be quoted. The timer runs in this process around
      fork/exec/wait4, so no interpreter start-up is inside the timed region.
"""
import argparse
import json
import os
import signal
import sys
import time

HZ = os.sysconf("SC_CLK_TCK")


def busy_jiffies():
    """Jiffies all cores spent not idle (user, nice, system, irq, softirq, steal)."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    v = list(map(int, fields))
    idle = v[3] + (v[4] if len(v) > 4 else 0)  # idle + iowait
    guest = sum(v[8:10]) if len(v) > 9 else 0  # already counted in user/nice
    return sum(v) - idle - guest


def load_over(seconds):
    b0, t0 = busy_jiffies(), time.monotonic()
    time.sleep(seconds)
    b1, t1 = busy_jiffies(), time.monotonic()
    return (b1 - b0) / HZ / (t1 - t0)


def wait_quiet(max_load, window, timeout):
    start = time.monotonic()
    while True:
        load = load_over(window)
        if load < max_load:
            return time.monotonic() - start, load
        if time.monotonic() - start > timeout:
            print(json.dumps({"quiet": False, "load": round(load, 3)}))
            sys.exit(3)


def own_cpu(pid):
    """(user, system) seconds of `pid` itself, children excluded (fields 14 and 15 of stat)."""
    with open(f"/proc/{pid}/stat") as f:
        after_comm = f.read().rsplit(")", 1)[1].split()
    return int(after_comm[11]) / HZ, int(after_comm[12]) / HZ


def run(cmd, show, limit=None):
    b0, t0 = busy_jiffies(), time.monotonic()
    pid = os.fork()
    if pid == 0:
        os.setpgid(0, 0)  # its own process group, so a time limit stops what it started too
        if not show:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
        try:
            os.execvp(cmd[0], cmd)
        finally:
            os._exit(127)
    try:
        os.setpgid(pid, pid)  # also from here: whichever runs first
    except OSError:
        pass  # the child already did, or already exec'd
    timed_out = False
    if limit:
        # SIGTERM to the whole group at the limit, SIGKILL 10 s later if it is still there.
        def expire(_signum, _frame):
            nonlocal timed_out
            sig = signal.SIGKILL if timed_out else signal.SIGTERM
            timed_out = True
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                pass
            signal.setitimer(signal.ITIMER_REAL, 10)

        signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, limit)
    # Wait for the exit without reaping, so /proc/PID/stat still holds the process's own CPU
    # time (utime, stime) apart from its children's (cutime, cstime); then reap it.
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    if limit:
        signal.setitimer(signal.ITIMER_REAL, 0)
    self_user, self_sys = own_cpu(pid)
    _, status, ru = os.wait4(pid, 0)
    t1, b1 = time.monotonic(), busy_jiffies()
    wall = t1 - t0
    own = ru.ru_utime + ru.ru_stime
    other = max(0.0, (b1 - b0) / HZ - own) / wall if wall > 0 else 0.0
    return {
        "wall_s": round(wall, 4),
        "user_s": round(ru.ru_utime, 3),
        "sys_s": round(ru.ru_stime, 3),
        "self_user_s": round(self_user, 3),
        "self_sys_s": round(self_sys, 3),
        "max_rss_kib": ru.ru_maxrss,
        "exit": os.waitstatus_to_exitcode(status),
        "other_load": round(other, 3),
        "timed_out": timed_out,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    for name in ("wait", "run"):
        p = sub.add_parser(name)
        p.add_argument("--max-load", type=float, default=0.15)
        p.add_argument("--window", type=float, default=3.0)
        p.add_argument("--timeout", type=float, default=600.0)
        if name == "run":
            p.add_argument("--label", default="")
            p.add_argument("--show", action="store_true")
            p.add_argument("--limit", type=float, default=None,
                           help="stop CMD (and its process group) after this many seconds")
            p.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    waited, load = wait_quiet(a.max_load, a.window, a.timeout)
    if a.what == "wait":
        print(json.dumps({"waited_s": round(waited, 1), "load": round(load, 3)}))
        return
    cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
    if not cmd:
        ap.error("run needs a command after --")
    r = run(cmd, a.show, a.limit)
    r = {"label": a.label, **r, "load_before": round(load, 3), "disturbed": r["other_load"] > a.max_load}
    print(json.dumps(r))


if __name__ == "__main__":
    main()
