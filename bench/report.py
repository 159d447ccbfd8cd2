#!/usr/bin/python3
"""bench/report.py RAW.jsonl META.tsv: bench/RESULTS.md on stdout.

RAW has one JSON line per sgbench run, with round, test and contender added by
bench/run.sh. For each test and contender the report gives the median over the
rounds of the value, and the median of the ratios against the direct
connection of the same round (with their range), then sockgate's targets.
"""
import json
import statistics
import os
import sys

raw_path, meta_path = sys.argv[1], sys.argv[2]
meta = {}
with open(meta_path) as f:
    for line in f:
        k, _, v = line.rstrip("\n").partition("\t")
        meta[k] = v
rows = []
with open(raw_path) as f:
    for line in f:
        line = line.strip()
        if line:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                pass

contenders = meta.get("contenders", "").split()
cores = int(meta.get("cores", "1"))
check_ms = float(meta.get("check_ms", "nan"))


def cpu_per_gb(r):
    if "daemon_cpu_ms" not in r or not r.get("bytes"):
        return None
    return r["daemon_cpu_ms"] / (r["bytes"] / 1e9)


def cpu_per_rtt(r):
    if "daemon_cpu_ms" not in r or not r.get("samples"):
        return None
    return r["daemon_cpu_ms"] * 1000 / r["samples"]


def cpu_per_conn(r):
    return r.get("daemon_cpu_us_per_conn")


def idle_kib(r):
    """Memory per session: PSS splits pages that fork-based relays share, so it
    compares processes fairly; the larger of RSS and PSS for a lone process."""
    if r.get("procs_during", 1) > 1:
        return r.get("pss_kib_per_session")
    return max(r.get("pss_kib_per_session", 0), r.get("rss_kib_per_session", 0))


STORM_COLS = [("p50 before µs", "base_p50_us", False), ("p99 before µs", "base_p99_us", False),
              ("p50 during µs", "storm_p50_us", False), ("p99 during µs", "storm_p99_us", False),
              ("p99 rise", "p99_ratio", False), ("logins/s", "storm_logins_per_s", True)]

# test, title, [(column, key or function, unit, higher is better)], cpu column
TESTS = [
    ("bulk1", "Bulk throughput, one way, 1 connection (every byte checked by the upstream)",
     [("MB/s", "MBps", True)], ("daemon CPU ms/GB", cpu_per_gb)),
    ("bulk8", "Bulk throughput, one way, 8 connections",
     [("MB/s", "MBps", True)], ("daemon CPU ms/GB", cpu_per_gb)),
    ("bulk2_1", "Bulk throughput, both ways (echo), 1 connection",
     [("MB/s echoed", "MBps", True)], ("daemon CPU ms/GB", cpu_per_gb)),
    ("bulk2_8", "Bulk throughput, both ways (echo), 8 connections",
     [("MB/s echoed", "MBps", True)], ("daemon CPU ms/GB", cpu_per_gb)),
    ("pingpong1", "Ping-pong, 64 bytes, 1 connection (round-trip time)",
     [("p50 µs", "p50_us", False), ("p99 µs", "p99_us", False), ("p999 µs", "p999_us", False)],
     ("daemon CPU µs/round trip", cpu_per_rtt)),
    ("pingpong1_cpu0", "Ping-pong, 64 bytes, 1 connection, generator, upstream and contender "
     "all on CPU 0 (the path's cost without cross-CPU wake-ups)",
     [("p50 µs", "p50_us", False), ("p99 µs", "p99_us", False)],
     ("daemon CPU µs/round trip", cpu_per_rtt)),
    ("pingpong50", "Ping-pong, 64 bytes, 50 connections (round-trip time)",
     [("p50 µs", "p50_us", False), ("p99 µs", "p99_us", False), ("p999 µs", "p999_us", False),
      ("round trips/s", "rtt_per_s", True)],
     ("daemon CPU µs/round trip", cpu_per_rtt)),
    ("pingpong50_paced", "Ping-pong, 64 bytes, 50 connections at 200 round trips per second "
     "each (light load: the latency a relay adds while the CPUs are mostly idle)",
     [("p50 µs", "p50_us", False), ("p99 µs", "p99_us", False), ("p999 µs", "p999_us", False)],
     ("daemon CPU µs/round trip", cpu_per_rtt)),
    ("connrate", "Connection rate: connect, one 64-byte round trip, close; 16 at once, no login",
     [("conn/s", "conns_per_s", True)], ("daemon CPU µs/conn", cpu_per_conn)),
    ("connrate_login", "Connection rate with the login (bcrypt cost 4 user); 16 at once",
     [("conn/s", "conns_per_s", True)], ("daemon CPU µs/conn", cpu_per_conn)),
    ("logins", "Logins per second (yescrypt user): connect, log in, close; 32 at once",
     [("logins/s", "logins_per_s", True)], ("daemon CPU µs/login", cpu_per_conn)),
    ("idle1000", "Idle sessions: daemon memory per session, 1,000 sessions",
     [("KiB/session", idle_kib, False), ("RSS KiB", "rss_kib_per_session", False),
      ("PSS KiB", "pss_kib_per_session", False), ("fds/session", "fds_per_session", False),
      ("processes", "procs_during", False)], None),
    ("idle9900", "Idle sessions: daemon memory per session, 9,900 sessions",
     [("KiB/session", idle_kib, False), ("RSS KiB", "rss_kib_per_session", False),
      ("PSS KiB", "pss_kib_per_session", False), ("fds/session", "fds_per_session", False),
      ("processes", "procs_during", False)], None),
    ("storm", "Relayed sessions' latency during a login storm (10 sessions, 100 pings/s each)",
     STORM_COLS, None),
    ("storm_noag", "The same login storm with the kernel's autogroups off "
     "(`kernel.sched_autogroup_enabled = 0`)",
     STORM_COLS, None),
]
# run.sh measures these again behind the forking upstream, as TEST_fork; their
# tables go before the storm's.
FORK_TESTS = ("bulk1", "bulk8", "pingpong1", "pingpong50")
_storm = next(i for i, t in enumerate(TESTS) if t[0] == "storm")
TESTS[_storm:_storm] = [(f"{t}_fork", "Forking upstream: " + title[0].lower() + title[1:], cols, cpu)
                        for t, title, cols, cpu in TESTS if t in FORK_TESTS]
RATIO_TESTS = {"bulk1", "bulk8", "bulk2_1", "bulk2_8", "pingpong1", "pingpong1_cpu0", "pingpong50",
               "pingpong50_paced", "connrate"} | {f"{t}_fork" for t in FORK_TESTS}


def get(r, key):
    v = key(r) if callable(key) else r.get(key)
    return v if isinstance(v, (int, float)) else None


def by(test):
    """{contender: {round: row}} of the successful runs of test."""
    out = {}
    for r in rows:
        if r.get("test") == test and r.get("ok"):
            out.setdefault(r["contender"], {})[r["round"]] = r
    return out


def failures(test):
    return [r for r in rows if r.get("test") == test and not r.get("ok")]


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(v, digits=None):
    if v is None:
        return "–"
    if digits is None:
        a = abs(v)
        digits = 0 if a >= 100 else 1 if a >= 10 else 2
    return f"{v:,.{digits}f}"


def ratios(test, key):
    """{contender: [ratio per round]} against direct of the same round."""
    t = by(test)
    direct = t.get("direct", {})
    out = {}
    for c, rounds in t.items():
        for rnd, r in rounds.items():
            d = direct.get(rnd)
            v, dv = get(r, key), get(d, key) if d else None
            if v is not None and dv:
                out.setdefault(c, []).append(v / dv)
    return out


out = []
w = out.append
w("# sockgate benchmark results\n")
w(f"Written by `bench/run.sh` on {meta.get('date', '?')}"
  f"{' (--quick)' if meta.get('quick') == '1' else ''}; raw results in "
  f"`{meta.get('raw', '?')}`.\n")
w("## Machine and versions\n")
w("| | |\n|---|---|")
for k, label in [("cpu", "CPU"), ("cores", "cores"), ("memory", "memory"), ("kernel", "kernel"),
                 ("os", "system"), ("load_start", "load average at start (1, 5, 15 min)"),
                 ("load_end", "load average at end"), ("nofile", "descriptor limit"),
                 ("autogroup", "kernel.sched_autogroup_enabled"),
                 ("sockgate", "sockgate (git describe)"), ("compiler", "compiler"),
                 ("haproxy", "HAProxy"), ("nginx", "nginx"), ("socat", "socat")]:
    w(f"| {label} | {meta.get(k, '?')} |")
w("")
w("## Method\n")
up_threads = meta.get("upstream_threads", "2")
w(f"""- All traffic is on loopback. The epoll upstream, `sgbench serve` (epoll, {up_threads} thread{'' if up_threads == '1' else 's'}, SO_REUSEPORT),
  serves every contender: it echoes, or checks a one-way stream against the pattern and reports
  the byte count, according to each connection's first line. **direct** is the upstream itself.
- The tables headed "Forking upstream" measure the same through a second upstream, `sgbench serve
  --fork`: the same echo and check, in a process per connection, as `sockgate-server` and many
  classic services work. sockgate, HAProxy and nginx listen for both upstreams in the same
  process (sockgate with two more gateways); socat and forkrelay run a second instance. The
  epoll upstream is the cheapest direct path there is, so a relay's own cost weighs most in its
  ratios; behind the forking one, every party wakes a process per connection, as a relay's users
  often see.
- Contenders: **sockgate** (Release build; the `bench` gateway with the login, the `bench-open`
  gateway with `authenticate = false` when this sockgate has it), **haproxy** (`mode tcp`,
  `nbthread 2`), **haproxy-splice** (the same with `option splice-request/splice-response`; full
  runs only), **nginx** (stream module, `worker_processes 2`), **socat** (`TCP-LISTEN,fork`) and
  **forkrelay** (`sgbench forkrelay`: accept, fork, then poll() and copy with a buffer per
  direction).
- `sgbench`, the load generator, logs in when the contender asks for it and starts the clock when
  every session is ready. Bulk data is a pseudo-random stream, each connection at its own offset,
  and every byte is checked (by the upstream one way, by the generator on the echo). Ping-pong
  sends 64 bytes and waits for them back, in a closed loop on each connection (the "paced" table:
  each connection sends at a fixed rate, staggered, and the clock runs from each send).
- Every process of the benchmark (upstream, contenders, generator) ran at nice
  {meta.get('nice', '0')}.
- {meta.get('rounds', '?')} rounds of {meta.get('seconds', '?')} s runs after
  {meta.get('warmup', '?')} s of warm-up. In each round every contender runs every measurement
  once, in an order that rotates from round to round. A ratio is the contender's value over the
  direct connection's value **of the same round**; tables give the median over the rounds (and
  the range of the ratios). "daemon CPU" is the contender's CPU time (all its processes) during
  the run; for direct it is the upstream's.
- For sockgate, every measurement except `logins` and `storm` logs in as a user with a bcrypt
  cost-4 hash, so that the relay is measured rather than the hash; `logins` and `storm` use a
  yescrypt user as `sockgate-passwd` writes it. One yescrypt check took
  {fmt(check_ms)} ms here (median of 30, one thread, `crypt_r()` as libxcrypt makes it: it maps
  and faults in the hash's 16 MiB every time). sockgate's check threads keep that memory
  while checks are queued, so a check inside sockgate costs less: the `logins` table's daemon
  CPU per login is the figure to compare. `logins` warms up for 1.5 s: sockgate
  leaves a CPU to relaying sessions until a second after their last byte, and the measurement
  before it relays.
- Idle memory: each contender is restarted, then holds the sessions (one 16-byte round trip each)
  while the memory of its whole process tree is read from `/proc` (VmRSS, and Pss from
  `smaps_rollup`); the result is (during − before) / sessions. "KiB/session" is PSS for
  multi-process relays (it splits shared pages), the larger of RSS and PSS for one process.
  9,900 sessions are measured in the first round only (in `--quick`, for direct and sockgate).
- Storm: 10 logged-in sessions send 64 bytes 100 times a second each; their round trips are
  measured first alone, then while 32 other connections log in (yescrypt) as fast as sockgate
  lets them, for twice the usual run length. The upstream and every contender are started in a
  session of their own (as systemd starts services), the generator in the script's; when the
  kernel has autogroups on, the storm is measured a second time with them off.

### Caveats

- Ping-pong on 1 connection is decided by where the scheduler puts the threads: on this virtual
  machine a wake-up on the other CPU costs tens of microseconds, one on the same CPU a few. The
  direct path itself measures about 6 µs or about 60 µs from run to run, so the per-round
  ratios spread widely; read their range, and the one-CPU table, which pins generator,
  upstream and contender to CPU 0 and shows the path's own cost steadily.
- Ping-pong on 50 connections keeps every party busy: the round-trip time is then the CPU each
  round trip costs everybody, and the tails (p99, p999) come from the scheduler's time slices.
  With more busy threads than CPUs on the direct path too (`--upstream-threads 2`), the
  direct path's own tail is in milliseconds and relays show p99 ratios below 1.
- The paced table is light load: the CPUs are mostly idle, and a round trip's time is mostly
  the wake-ups of idle vCPUs (see "Reading the targets").
- CPU load from outside the benchmark, even at SCHED_IDLE priority, inflates wake-up latency on
  this machine: the login rate and the storm depend on how quiet the machine is.
- sockgate's password checks run at SCHED_BATCH, nice 19, which counts only inside sockgate's
  own scheduling group. With autogroups on (Debian's default when the cpu cgroup controller is
  not in use), every session is a group, and under systemd every service is a cgroup: the
  upstream and the clients would share the CPU with checks by group weight. While sessions relay
  data sockgate leaves them one CPU (`auth_threads_relaying`), in both storm tables.
""")
try:
    load = float(meta.get("load_start", "0").split()[0])
except ValueError:
    load = 0
if load > cores * 0.5:
    w(f"> **Warning:** the load average was {meta.get('load_start')} when the run started and "
      f"{meta.get('load_end')} at its end on {cores} cores: other work shared the machine, so "
      "absolute numbers are low and noisy. Ratios within a round are more robust, but tail "
      "latencies (p99, p999) are dominated by that other work.\n")

for test, title, cols, cpu in TESTS:
    t = by(test)
    fails = failures(test)
    if not t and not fails:
        continue
    w(f"## {title}\n")
    has_ratio = test in RATIO_TESTS
    head = ["contender", "runs"]
    for col, key, hib in cols:
        head.append(col)
        if has_ratio:
            head.append(f"ratio ({col})")
    if cpu:
        head.append(cpu[0])
    w("| " + " | ".join(head) + " |")
    w("|" + "---|" * len(head))
    rat = {key_name: ratios(test, key) for key_name, key, _ in cols} if has_ratio else {}
    for c in contenders + sorted(set(t) - set(contenders)):
        if c not in t:
            continue
        rs = list(t[c].values())
        cells = [f"**{c}**" if c.startswith("sockgate") else c, str(len(rs))]
        for col, key, hib in cols:
            cells.append(fmt(med(get(r, key) for r in rs)))
            if has_ratio:
                rr = rat[col].get(c, [])
                if c == "direct" or not rr:
                    cells.append("1" if c == "direct" else "–")
                else:
                    cells.append(f"{med(rr):.2f} ({min(rr):.2f}–{max(rr):.2f})")
        if cpu:
            cells.append(fmt(med(cpu[1](r) for r in rs)))
        w("| " + " | ".join(cells) + " |")
    if fails:
        w("")
        for r in fails[:5]:
            w(f"- failed: round {r.get('round')} {r.get('contender')}: "
              f"{r.get('error', 'exit ' + str(r.get('rc')))}")
        if len(fails) > 5:
            w(f"- ... {len(fails) - 5} more failures")
    w("")


# --- targets ---

def sg_ratio(test, key, contender="sockgate"):
    rr = ratios(test, key).get(contender, [])
    return med(rr)


def sg_value(test, key, contender="sockgate"):
    return med(get(r, key) for r in by(test).get(contender, {}).values())


login_target = 0.9 * cores / (check_ms / 1000) if check_ms == check_ms and check_ms > 0 else None
targets = [
    ("throughput, 1 connection (bulk1 ratio)", sg_ratio("bulk1", "MBps"), ">=", 0.60, 2),
    ("throughput, 8 connections (bulk8 ratio)", sg_ratio("bulk8", "MBps"), ">=", 0.80, 2),
    ("ping-pong p50, 1 connection (ratio)", sg_ratio("pingpong1", "p50_us"), "<=", 1.3, 2),
    ("(same, all on one CPU: not a target, a steadier view of the path)",
     sg_ratio("pingpong1_cpu0", "p50_us"), "<=", 1.3, 2),
    ("ping-pong p50, 50 connections (ratio)", sg_ratio("pingpong50", "p50_us"), "<=", 1.6, 2),
    ("ping-pong p99, 50 connections (ratio)", sg_ratio("pingpong50", "p99_us"), "<=", 2.0, 2),
    ("forking upstream: throughput, 1 connection (bulk1_fork ratio)",
     sg_ratio("bulk1_fork", "MBps"), ">=", 0.60, 2),
    ("forking upstream: throughput, 8 connections (bulk8_fork ratio)",
     sg_ratio("bulk8_fork", "MBps"), ">=", 0.80, 2),
    ("forking upstream: ping-pong p50, 1 connection (ratio)",
     sg_ratio("pingpong1_fork", "p50_us"), "<=", 1.3, 2),
    ("forking upstream: ping-pong p50, 50 connections (ratio)",
     sg_ratio("pingpong50_fork", "p50_us"), "<=", 1.6, 2),
    ("forking upstream: ping-pong p99, 50 connections (ratio)",
     sg_ratio("pingpong50_fork", "p99_us"), "<=", 2.0, 2),
    ("raw connection rate, no login (sockgate-open ratio)",
     sg_ratio("connrate", "conns_per_s", "sockgate-open"), ">=", 0.50, 2),
    ("idle memory per logged-in session at 1,000 (KiB)", sg_value("idle1000", idle_kib), "<=", 1.0,
     2),
    ("idle memory per logged-in session at 9,900 (KiB)", sg_value("idle9900", idle_kib), "<=", 1.0,
     2),
    (f"logins per second (>= 0.9 × {cores} cores / {fmt(check_ms)} ms)",
     sg_value("logins", "logins_per_s"), ">=", login_target, 0),
    ("p99 latency rise during a login storm, autogroups as found (×)",
     sg_value("storm", "p99_ratio"), "<=", 1.5, 2),
    ("p99 latency rise during a login storm, autogroups off (×)",
     sg_value("storm_noag", "p99_ratio"), "<=", 1.5, 2),
]
w("## sockgate's targets (issue 6)\n")
w("| target | measured | goal | verdict |")
w("|---|---|---|---|")
for name, v, op, goal, digits in targets:
    if v is None or goal is None:
        verdict = "not measured"
    else:
        ok = v >= goal if op == ">=" else v <= goal
        verdict = "PASS" if ok else "**FAIL**"
        # A value that rounds onto the goal gets the digit that shows the verdict.
        while fmt(v, digits) == fmt(goal, digits) and v != goal and digits < 6:
            digits += 1
    w(f"| {name} | {fmt(v, digits)} | {op} {fmt(goal, digits)} | {verdict} |")
w("")
if meta.get("have_open") != "1":
    w("The raw connection rate needs a gateway with `authenticate = false`, which this sockgate "
      "does not accept; the other relays' connection rates are still in the table above.\n")
# Static text kept beside the script: what limits the measurements, and the
# experiments behind sockgate's design.
for name in ("READING.md", "CHANGES.md"):
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), name)
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            w(f.read().rstrip("\n") + "\n")
sys.stdout.write("\n".join(out) + "\n")
