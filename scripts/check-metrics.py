#!/usr/bin/python3
"""Parses a Prometheus /metrics answer with prometheus_client's parser and checks its shape.

Usage: scripts/check-metrics.py URL|FILE|-

Prints one JSON object: {"families": {name: {"type", "help"}}, "samples": {"name{a=\"x\"}": value},
"problems": [...]}, and exits 1 when there are problems: a sample outside its family (the parser
then makes an "untyped" family of it), a family twice, a counter sample not ending in _total,
a negative counter, a histogram whose buckets are not cumulative, lack +Inf, or disagree with
_count. Sample keys list labels sorted by name. The vmtests (daemon and node agent metrics) and
tests/util_prometheus_text_test.cpp run it with Debian's python3-prometheus-client.
"""
import json
import math
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def key(name, labels):
    inner = ",".join('%s="%s"' % (k, labels[k]) for k in sorted(labels))
    return name + "{" + inner + "}" if inner else name


def check_histogram(family, problems):
    series = {}
    for s in family.samples:
        labels = {k: v for k, v in s.labels.items() if k != "le"}
        series.setdefault(key("", labels), {"buckets": [], "sum": None, "count": None})
        entry = series[key("", labels)]
        if s.name.endswith("_bucket"):
            entry["buckets"].append((float(s.labels["le"]), s.value))
        elif s.name.endswith("_sum"):
            entry["sum"] = s.value
        elif s.name.endswith("_count"):
            entry["count"] = s.value
    for labels, e in series.items():
        where = family.name + labels
        bounds = [b for b, _ in e["buckets"]]
        if bounds != sorted(bounds):
            problems.append(where + ": buckets not in ascending le order")
        if not bounds or not math.isinf(bounds[-1]):
            problems.append(where + ": no le=\"+Inf\" bucket")
        counts = [c for _, c in e["buckets"]]
        if any(b < a for a, b in zip(counts, counts[1:])):
            problems.append(where + ": bucket counts are not cumulative")
        if e["sum"] is None or e["count"] is None:
            problems.append(where + ": _sum or _count missing")
        elif counts and counts[-1] != e["count"]:
            problems.append(where + ": +Inf bucket %s != _count %s" % (counts[-1], e["count"]))


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else "-"
    if src == "-":
        text = sys.stdin.read()
    elif src.startswith("http://"):
        with urllib.request.urlopen(src, timeout=10) as r:
            text = r.read().decode()
    else:
        with open(src) as f:
            text = f.read()
    out = {"families": {}, "samples": {}, "problems": []}
    problems = out["problems"]
    try:
        families = list(text_string_to_metric_families(text))
    except Exception as e:  # the parser raises ValueError (and others) on malformed lines
        problems.append("parse error: %s" % e)
        families = []
    for f in families:
        if f.type == "untyped":
            problems.append("%s: sample outside its family (no HELP/TYPE before it)" % f.name)
        if f.name in out["families"]:
            problems.append("%s: family appears twice" % f.name)
        out["families"][f.name] = {"type": f.type, "help": f.documentation}
        for s in f.samples:
            k = key(s.name, s.labels)
            if k in out["samples"]:
                problems.append("%s: sample appears twice" % k)
            out["samples"][k] = s.value
            if f.type == "counter" and (not s.name.endswith("_total") or s.value < 0):
                problems.append("%s: a counter sample must end in _total and be >= 0" % k)
        if f.type == "histogram":
            check_histogram(f, problems)
    print(json.dumps(out, sort_keys=True))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
