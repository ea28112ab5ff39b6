"""What every benchmark piece measures the same way (the method in
docs/benchmarks.md):

- a process's RSS (VmRSS of /proc/PID/status) and its CPU time, all threads,
  from the scheduler's own accounting (/proc/PID/task/*/schedstat, in
  nanoseconds; utime+stime of /proc/PID/stat, in clock ticks, where
  schedstat is missing);
- the machine's load while a figure was measured: the share of all cores
  busy (/proc/stat), the share of it not spent by the benchmark's own
  processes (other people's work on a shared machine), and the 1-minute
  load average;
- repeated runs summed up as min / median / max.

No figure is ever typed in: the pieces print what these functions return.
"""
import os
import statistics
import time

TICK = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _stat_cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        st = f.read()
    fields = st[st.rfind(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def cpu_s(pid):
    """CPU seconds the process's live threads have run (schedstat,
    nanoseconds; the servers measured keep their threads for their whole
    life); utime+stime where schedstat is missing."""
    total = 0
    try:
        tasks = os.listdir("/proc/%d/task" % pid)
        for t in tasks:
            with open("/proc/%d/task/%s/schedstat" % (pid, t)) as f:
                total += int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return _stat_cpu_s(pid)
    return total / 1e9


def wakeups(pid):
    """Context switches of all threads (voluntary + involuntary): how often
    the process was scheduled; an idle event loop with no timers has none."""
    n = 0
    for t in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/status" % (pid, t)) as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt")):
                        n += int(line.split()[1])
        except OSError:
            pass
    return n


def _machine_jiffies():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)  # idle + iowait
    total = sum(v[:8])  # guest time is already in user/nice
    return total - idle, total


def loadavg1():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


class MachineLoad:
    """Machine load over an interval: start() ... stop(). `pids` are the
    benchmark's own processes alive over the whole interval (server and
    clients): what they spent is not counted as others' load."""

    def __init__(self, pids=()):
        self.pids = list(pids)

    def _own(self):
        s = 0.0
        for p in self.pids:
            try:
                s += cpu_s(p)
            except OSError:
                pass
        return s

    def start(self):
        self.t0 = time.monotonic()
        self.m0 = _machine_jiffies()
        self.own0 = self._own()
        return self

    def stop(self):
        wall = time.monotonic() - self.t0
        m1 = _machine_jiffies()
        busy = (m1[0] - self.m0[0]) / TICK
        total = (m1[1] - self.m0[1]) / TICK or 1e-9
        own = self._own() - self.own0
        self.result = {
            "busy_pct": 100.0 * busy / total,
            # unknown when the benchmark's own processes were not given
            "others_pct": max(0.0, 100.0 * (busy - own) / total) if self.pids else None,
            "loadavg": loadavg1(),
            "wall_s": wall,
        }
        return self.result


def summary(values):
    """min, median, max of the runs (None when there are none)."""
    v = [x for x in values if x is not None and x == x]
    if not v:
        return None
    return {"min": min(v), "median": statistics.median(v), "max": max(v), "n": len(v)}


def fmt3(values, fmt="%.2f", unit=""):
    """'min / median / max unit' of the runs, the median in bold."""
    s = summary(values)
    if not s:
        return "-"
    u = (" " + unit) if unit else ""
    if s["n"] == 1:
        return (fmt % s["median"]) + u + " (1 run)"
    return "%s / **%s** / %s%s" % (fmt % s["min"], fmt % s["median"], fmt % s["max"], u)


def fmt_load(loads):
    """The machine load of a figure's runs: the share of both cores busy
    (others' share in brackets) and the load average, each as a range."""
    if not loads:
        return "-"

    def rng(k, fmt):
        v = [x[k] for x in loads if x.get(k) is not None]
        if not v:
            return None
        lo, hi = min(v), max(v)
        return fmt % lo if fmt % lo == fmt % hi else (fmt % lo) + "–" + (fmt % hi)
    others = rng("others_pct", "%.0f")
    return "busy %s %%%s, load %s" % (rng("busy_pct", "%.0f"),
                                      " (others %s %%)" % others if others else "",
                                      rng("loadavg", "%.1f"))


LOAD_NOTE = ("**Machine load** is that of the whole machine while the figure was measured: "
             "the share of all %d cores busy (/proc/stat), in brackets the part of it not "
             "spent by the benchmark's own processes (other people's builds and tests on this "
             "shared machine; left out where those processes are short-lived), then the "
             "1-minute load average; each a range over the runs. "
             "Server CPU per operation is the server's own (scheduler accounting, hardly "
             "affected by others); wall-clock rates and latencies are what was reached "
             "under that load." % NCPU)
