#!/usr/bin/env python3
"""Assembles docs/benchmarks.md from the sections bench/run.sh collected.

usage: assemble.py --doc FILE --dir OUTDIR --order p1,p2,... --ran p1,...

OUTDIR holds, per piece that ran: PIECE.md (its stdout), PIECE.meta (JSON:
title, command, reproduce, rc, seconds, date, sha) and header.md (the machine).
Pieces that did not run this time keep their section from the existing FILE
(between <!-- bench:PIECE:begin --> and <!-- bench:PIECE:end -->).
"""
import argparse
import json
import os
import re


def marker(piece, which):
    return "<!-- bench:%s:%s -->" % (piece, which)


def old_sections(path):
    out = {}
    if not os.path.exists(path):
        return out
    with open(path) as f:
        text = f.read()
    for m in re.finditer(r"<!-- bench:([\w-]+):begin -->\n(.*?)<!-- bench:\1:end -->", text,
                         re.S):
        out[m.group(1)] = m.group(2)
    return out


def section(piece, body, meta):
    body = body.strip("\n")
    lines = body.splitlines()
    heading = "## " + meta["title"]
    if lines and lines[0].startswith("## "):
        heading, lines = lines[0], lines[1:]
    status = "" if meta["rc"] == 0 else (
        " **The command exited with status %d: the figures below may be incomplete.**"
        % meta["rc"])
    load = (" Machine while it ran: %s." % meta["load"]) if meta.get("load") else ""
    info = ("Measured %s at commit `%s` in %d s by `%s`, which runs `%s`.%s%s" % (
        meta["date"], meta["sha"], meta["seconds"], meta["reproduce"], meta["command"], load,
        status))
    parts = [heading, "", info, ""]
    if lines:
        parts += lines
    else:
        parts.append("(no output)")
    if meta["rc"] != 0 and meta.get("stderr_tail"):
        parts += ["", "Last lines of its standard error:", ""]
        parts += ["    " + x for x in meta["stderr_tail"].splitlines()]
    return "\n".join(parts).rstrip("\n") + "\n\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--doc", required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--order", required=True)
    ap.add_argument("--ran", required=True)
    a = ap.parse_args()
    order = [p for p in a.order.split(",") if p]
    ran = [p for p in a.ran.split(",") if p]
    old = old_sections(a.doc)
    with open(os.path.join(a.dir, "header.md")) as f:
        doc = f.read().rstrip("\n") + "\n\n"
    for piece in order + [p for p in ran if p not in order] + \
            [p for p in old if p not in order and p not in ran]:
        if piece in ran:
            with open(os.path.join(a.dir, piece + ".meta")) as f:
                meta = json.load(f)
            with open(os.path.join(a.dir, piece + ".md")) as f:
                body = f.read()
            text = section(piece, body, meta)
        elif piece in old:
            text = old[piece]
        else:
            continue
        doc += marker(piece, "begin") + "\n" + text + marker(piece, "end") + "\n\n"
    doc = re.sub(r"\n{3,}", "\n\n", doc)
    tmp = a.doc + ".tmp"
    with open(tmp, "w") as f:
        f.write(doc.rstrip("\n") + "\n")
    os.replace(tmp, a.doc)


if __name__ == "__main__":
    main()
