#!/usr/bin/python3
"""bench/tls_report.py RAW.jsonl META.tsv: bench/RESULTS-TLS.md on stdout.

RAW has one JSON line per sgbench run with round, test and contender added by
bench/tls.sh. Per test and contender: the median over the rounds, the median of
the per-round ratios against the direct path (bulk rows) and against HAProxy,
then issue 16's floors.
"""
import json
import statistics
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
tls_contenders = [c for c in contenders if c != "direct"]

# A ratio within this of 1 is the same as HAProxy: the per-round spread of one
# contender against itself on this machine is of this order (see the table's
# ranges).
NOISE = 0.05


def idle_kib(r):
    """PSS splits the pages processes share, so it is fair to forking relays;
    for a lone process the larger of RSS and PSS."""
    if r.get("procs_during", 1) > 1:
        return r.get("pss_kib_per_session")
    return max(r.get("pss_kib_per_session", 0), r.get("rss_kib_per_session", 0))


# test: (title, value, unit, higher is better, extra column)
TESTS = {
    "tlsbulk1": ("bulk, 1 connection", lambda r: r.get("MBps"), "MB/s", True,
                 ("CPU ms/GB", lambda r: r.get("daemon_cpu_ms_per_gb"))),
    "tlsbulk8": ("bulk, 8 connections", lambda r: r.get("MBps"), "MB/s", True,
                 ("CPU ms/GB", lambda r: r.get("daemon_cpu_ms_per_gb"))),
    "hs_full": ("full handshakes, 8 threads", lambda r: r.get("handshakes_per_s"), "/s", True,
                ("CPU µs/handshake", lambda r: r.get("daemon_cpu_us_per_handshake"))),
    "hs_resumed": ("resumed handshakes, 8 threads", lambda r: r.get("handshakes_per_s"), "/s",
                   True, ("CPU µs/handshake", lambda r: r.get("daemon_cpu_us_per_handshake"))),
    "idle1000": ("idle, 1,000 sessions", idle_kib, "KiB/session", False, None),
    "idle9000": ("idle, 9,000 sessions", idle_kib, "KiB/session", False, None),
}

# the DIRECT bulk rows are measured by sgbench bulk (plain TCP)
bulk_value = {"tlsbulk1": lambda r: r.get("MBps"), "tlsbulk8": lambda r: r.get("MBps")}


def value(test, r):
    if not r.get("ok"):
        return None
    v = TESTS[test][1](r)
    return v if isinstance(v, (int, float)) else None


def by_round(test, contender):
    out = {}
    for r in rows:
        if r.get("test") == test and r.get("contender") == contender:
            out[r["round"]] = r
    return out


def fmt(v, digits=0):
    if v is None:
        return "–"
    if abs(v) >= 100 or digits == 0:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


def ratios(test, c, against):
    mine, theirs = by_round(test, c), by_round(test, against)
    out = []
    for rnd, r in mine.items():
        o = theirs.get(rnd)
        if o is None:
            continue
        a, b = value(test, r), value(test, o)
        if a is not None and b:
            out.append(a / b)
    return out


def ratio_text(rs):
    if not rs:
        return "–"
    med = statistics.median(rs)
    if len(rs) == 1:
        return f"{med:.2f}"
    return f"{med:.2f} ({min(rs):.2f}–{max(rs):.2f})"


print("# TLS benchmark results\n")
print(f"`bench/tls.sh`, run {meta.get('stamp', '?')}: {meta.get('rounds', '?')} round(s) of "
      f"{meta.get('seconds', '?')}-second runs on {meta.get('cores', '?')} cores "
      f"({meta.get('cpu', '?')}), kernel {meta.get('kernel', '?')}, {meta.get('openssl', '?')}, "
      f"{meta.get('haproxy', '?')}, {meta.get('stunnel', '?')}; sockgate "
      f"{meta.get('sockgate', '?')}. Every relay terminates TLS with the same ECDSA P-256 "
      "certificate and relays in clear to the same upstream on loopback; `direct` is the "
      "upstream itself without TLS. Values are medians over the rounds; ratios are medians of "
      "the per-round ratios (range in brackets). sockgate's sessions log in first "
      "(bcrypt cost 4); HAProxy's and stunnel's have no login.\n")

failures = []
for test, (title, _, unit, higher, extra) in TESTS.items():
    if not any(r.get("test") == test for r in rows):
        continue
    print(f"## {title} ({unit})\n")
    cols = ["contender", unit]
    if extra:
        cols.append(extra[0])
    if test in bulk_value:
        cols.append("vs direct")
    cols.append("vs HAProxy")
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    shown = (["direct"] if test in bulk_value else []) + tls_contenders
    for c in shown:
        rs = by_round(test, c)
        vals = [value(test, r) for r in rs.values()]
        vals = [v for v in vals if v is not None]
        bad = [r for r in rs.values() if not r.get("ok")]
        med = statistics.median(vals) if vals else None
        cells = [c, fmt(med, 1 if not higher else 0)]
        if bad:
            cells[1] += f" ({len(bad)} failed: {bad[0].get('error', 'rc ' + str(bad[0].get('rc')))})"
        if extra:
            ev = [extra[1](r) for r in rs.values() if r.get("ok") and extra[1](r) is not None]
            cells.append(fmt(statistics.median(ev), 1) if ev else "–")
        if test in bulk_value:
            cells.append("1" if c == "direct" else ratio_text(ratios(test, c, "direct")))
        cells.append("–" if c in ("direct", "haproxy") else ratio_text(ratios(test, c, "haproxy")))
        print("| " + " | ".join(cells) + " |")
    print()
    # The floor: sockgate no worse than HAProxy.
    rs = ratios(test, "sockgate", "haproxy")
    if rs:
        med = statistics.median(rs)
        ok = med >= 1 - NOISE if higher else med <= 1 + NOISE
        if not ok:
            failures.append(f"{title}: sockgate/HAProxy {med:.2f}")

print("## Reading\n")
print("- Two vCPUs carry the generator (which encrypts and decrypts as much as the relay), "
      "the upstream and the relay: every figure is a share of the same two CPUs, and the "
      "relay's CPU per GB or per handshake says more than its rate alone.\n"
      "- HAProxy runs with `nbthread 2` and its defaults, among them `tune.bufsize` 16 KiB "
      "(at most 16 KiB per read); sockgate reads up to `relay_buffer` (256 KiB) per wakeup. "
      "stunnel runs a thread per connection, hence its memory per session.\n"
      "- sockgate's handshake rows include what its sessions do after the handshake (the "
      "username prompt, then the client's close); HAProxy and stunnel connect to the "
      "upstream instead. Resumed handshakes resume a TLS 1.3 ticket (with a fresh ECDHE "
      "exchange, as OpenSSL does by default).\n"
      "- stunnel 5.68 crashed (SIGSEGV) each time it was stopped after an idle run; its "
      "figures are taken before, and bench/tls.sh logs it.\n")
print("## Floors (issue 16)\n")
print("| floor | measured | verdict |")
print("|---|---|---|")
for test, (title, _, unit, higher, _) in TESTS.items():
    rs = ratios(test, "sockgate", "haproxy")
    if not rs:
        continue
    med = statistics.median(rs)
    ok = med >= 1 - NOISE if higher else med <= 1 + NOISE
    want = "≥" if higher else "≤"
    print(f"| {title}: sockgate {want} HAProxy (within {NOISE:.0%}) | {med:.2f}× | "
          f"{'PASS' if ok else 'FAIL'} |")
for test in ("idle1000", "idle9000"):
    vals = [value(test, r) for r in by_round(test, "sockgate").values()]
    vals = [v for v in vals if v is not None]
    if vals:
        med = statistics.median(vals)
        print(f"| {TESTS[test][0]}: sockgate < 16 KiB per TLS session | {med:.1f} KiB | "
              f"{'PASS' if med < 16 else 'FAIL'} |")
print()
