#!/usr/bin/env python3
"""Fails when a source includes a layer that is not below its own.

Usage: scripts/check-layers.py [REPO]   (run by the build: the check_layers target, src/CMakeLists.txt)

A file's layer is its directory: src/<layer>/, include/acp/<layer>/, and proxy/ (layer proxy).
Each layer may include its own headers and those of the layers under it, as
docs/architecture.md ("Layers") draws them; LAYERS below is that drawing, and the CMake
libraries (src/CMakeLists.txt) link in the same direction.
"""
import os
import re
import sys

# Each layer and the layers directly under it.
LAYERS = {
    "util": [],
    "cgroup": ["util"],
    "kernel": ["cgroup"],
    "launch": ["util"],
    "proxy": ["util"],
    "backend": ["kernel"],
    "session": ["backend", "launch", "proxy"],
    "daemon": ["session"],
    "export": ["kernel", "proxy"],
    "k8s": ["kernel", "proxy"],
    "cli": ["daemon", "export", "k8s"],
}

INCLUDE = re.compile(r'\s*#\s*include\s+"acp/([A-Za-z0-9_]+)/')

# Third-party headers that belong to one layer only: the command line is the CLI's.
EXTERNAL = {"CLI/": {"cli"}}
EXTERNAL_INCLUDE = re.compile(r'\s*#\s*include\s+<([^>]+)>')


def below(layer, seen=None):
    """Every layer under `layer`, directly or through another."""
    seen = set() if seen is None else seen
    for dep in LAYERS[layer]:
        if dep not in seen:
            seen.add(dep)
            below(dep, seen)
    return seen


def layer_of(rel):
    parts = rel.split(os.sep)
    if parts[0] == "proxy":
        return "proxy"
    if parts[0] == "src" and len(parts) > 2:
        return parts[1]
    if parts[:2] == ["include", "acp"] and len(parts) > 3:
        return parts[2]
    return None


def main():
    repo = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
    errors = []
    for top in ("src", "proxy", os.path.join("include", "acp")):
        for dirpath, _, files in os.walk(os.path.join(repo, top)):
            for name in sorted(files):
                if not name.endswith((".cpp", ".hpp", ".h")):
                    continue
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, repo)
                layer = layer_of(rel)
                if layer is None:
                    continue
                if layer not in LAYERS:
                    errors.append(f"{rel}: layer '{layer}' is not in scripts/check-layers.py's LAYERS")
                    continue
                allowed = below(layer) | {layer}
                with open(path, encoding="utf-8", errors="replace") as f:
                    for lineno, line in enumerate(f, 1):
                        ext = EXTERNAL_INCLUDE.match(line)
                        for prefix, owners in EXTERNAL.items():
                            if ext and ext.group(1).startswith(prefix) and layer not in owners:
                                errors.append(
                                    f"{rel}:{lineno}: includes <{ext.group(1)}>, which only layer "
                                    f"{', '.join(sorted(owners))} may include")
                        m = INCLUDE.match(line)
                        if m and m.group(1) not in allowed:
                            errors.append(
                                f"{rel}:{lineno}: includes acp/{m.group(1)}/, but layer '{layer}' "
                                f"may include only {', '.join(sorted(allowed))} "
                                "(docs/architecture.md, Layers)")
    for e in errors:
        print(e, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
