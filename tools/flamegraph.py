#!/usr/bin/env python3
"""Fold `perf script` output into stacks and draw a flame graph (python3 stdlib only).

Debian ships neither flamegraph.pl nor inferno, so this does the two steps they do:
  1. fold: each sample's call chain becomes one "root;...;leaf N" line (flamegraph.pl's
     folded format), kernel and user frames alike, offsets and addresses stripped; the dso
     is kept, in brackets, only for frames whose symbol perf could not resolve;
  2. draw: a self-contained SVG (no script), one rectangle per frame, width proportional
     to samples, coloured by kind (kernel / the program / shared libraries), a <title>
     tooltip "symbol (N samples, P%)" on each; frames under --min-pct are merged away.
It also prints the top symbols by self time (the leaf) and by total time (anywhere on
the stack), and self time by kind and by dso.

Usage:
  perf record -e cpu-clock -g -p PID -o perf.data -- sleep 5
  perf script -i perf.data | tools/flamegraph.py --svg out.svg --folded out.folded
  tools/flamegraph.py perf.txt --svg out.svg --top 30
  tools/flamegraph.py --self-test

Frame-pointer unwinding (`perf record -g`) of code built without frame pointers walks off
the real stack after the first user frame or two and reports junk callers. A user frame
perf cannot map to any dso, or a caller whose return address is a function's first byte
(+0x0, impossible for a real return address), marks that point: the chain is cut there
(the leaf and the kernel part stay exact). --no-trim keeps everything.
"""
import argparse
import collections
import os
import re
import sys
import zlib
from xml.sax.saxutils import escape

KERNEL_START = 0xFFFF800000000000  # x86-64: addresses in the upper half are the kernel's
FRAME_RE = re.compile(r'^\s*([0-9a-fA-F]+)\s+(.*?)\s+\(([^()]*)\)\s*$')  # addr sym+off (dso)
OFFSET_RE = re.compile(r'\+0x[0-9a-fA-F]+$')
HEADER_RE = re.compile(r'^(.*?)\s+\d+(?:/\d+)?\s')  # "comm pid[/tid] ..." (comm may hold spaces)


def frame_kind(addr, dso):
    if addr >= KERNEL_START or dso == '[kernel.kallsyms]':
        return 'kernel'
    if dso in ('[unknown]', ''):
        return 'unknown'
    base = os.path.basename(dso)
    return 'lib' if '.so' in base or base == '[vdso]' else 'user'


def parse_frame(line):
    """One frame line -> (name, kind, dso, offset is +0x0) or None if it is no frame."""
    m = FRAME_RE.match(line)
    if not m:
        return None
    addr, sym, dso = int(m.group(1), 16), m.group(2), m.group(3)
    at_start = sym.endswith('+0x0')
    sym = OFFSET_RE.sub('', sym).replace(';', ':')  # ';' is the folded separator
    if sym in ('[unknown]', ''):  # unresolved: the dso is the only name we have
        base = os.path.basename(dso)
        sym = base if base.startswith('[') else '[%s]' % base
    return sym, frame_kind(addr, dso), os.path.basename(dso), at_start


def fold(lines, trim=True, comm=False):
    """perf script lines -> (Counter of root-first stacks, kind per name, leaf-dso Counter)."""
    stacks, kinds, leaf_dso = collections.Counter(), {}, collections.Counter()
    header, frames = None, []

    def flush():
        if header is None:
            return
        chain = []  # perf prints leaf first
        for i, (name, kind, dso, at_start) in enumerate(frames):
            # Past a junk frame the fp walk is reading stale stack words: stop there
            # (an unmapped leaf itself is kept: it is where the CPU really was).
            if trim and kind != 'kernel' and (kind == 'unknown' or (i > 0 and at_start)) and chain:
                break
            chain.append(name)
            kinds.setdefault(name, kind)
        if not chain:  # a sample without a call chain still counts
            chain = ['[no stack]']
            kinds.setdefault(chain[0], 'unknown')
        if comm:  # optional thread-name root, to split the graph per thread
            chain.append(header)
            kinds.setdefault(header, 'unknown')
        stacks[';'.join(reversed(chain))] += 1
        leaf_dso[frames[0][2] if frames else '[none]'] += 1

    for raw in lines:
        line = raw.rstrip('\n')
        if not line.strip() or line.startswith('#'):
            continue
        if line[0] in ' \t':
            f = parse_frame(line)
            if f and header is not None:
                frames.append(f)
        else:  # a new sample's header line
            flush()
            m = HEADER_RE.match(line)
            header, frames = (m.group(1) if m else line.split()[0]), []
    flush()
    return stacks, kinds, leaf_dso


def summary(stacks, leaf_dso, kinds, top, out):
    total = sum(stacks.values()) or 1
    self_t, total_t, kind_t = collections.Counter(), collections.Counter(), collections.Counter()
    for stack, n in stacks.items():
        names = stack.split(';')
        self_t[names[-1]] += n
        kind_t[kinds.get(names[-1], 'unknown')] += n
        for name in set(names):  # once per stack, so recursion is not counted twice
            total_t[name] += n
    pct = lambda n: 100.0 * n / total
    out.write('%d samples\n' % total)
    for title, c, k in (('self time by symbol', self_t, top), ('total time by symbol', total_t, top),
                        ('self time by kind', kind_t, None), ('self time by dso', leaf_dso, 15)):
        out.write('\n%s:\n' % title)
        for name, n in c.most_common(k):
            out.write('  %6.2f%% %7d  %s\n' % (pct(n), n, name))


# Colours by kind, varied per name by a stable hash so one symbol keeps its colour.
PALETTE = {'kernel': ((230, 255), (120, 170), (40, 70)),   # orange
           'user': ((60, 110), (180, 230), (60, 110)),      # green: the program's own code
           'lib': ((80, 130), (150, 200), (220, 255)),      # blue: shared libraries
           'unknown': ((170, 200), (170, 200), (170, 200))}  # grey: unresolved / merged


def colour(name, kind):
    h = zlib.crc32(name.encode())
    chans = [lo + (h >> (8 * i) & 0xFF) * (hi - lo) // 255 for i, (lo, hi) in enumerate(PALETTE[kind])]
    return 'rgb(%d,%d,%d)' % tuple(chans)


def svg(stacks, kinds, title, min_pct, width=1200):
    """Render the folded stacks as an SVG string (root at the bottom, like flamegraph.pl)."""
    tree = {'n': 0, 'c': {}}
    for stack, n in stacks.items():
        node = tree
        node['n'] += n
        for name in stack.split(';'):
            node = node['c'].setdefault(name, {'n': 0, 'c': {}})
            node['n'] += n
    total = tree['n'] or 1
    thr = total * min_pct / 100.0
    rects = []  # (depth, x in samples, samples, name, kind)

    def walk(node, depth, x):
        kids = sorted(node['c'].items(), key=lambda kv: (kv[1]['n'] < thr, kv[0]))
        small = [(k, v) for k, v in kids if v['n'] < thr]
        for name, child in kids:
            if child['n'] < thr:
                break  # the narrow ones sit together at the end: one merged rect below
            rects.append((depth, x, child['n'], name, kinds.get(name, 'unknown')))
            walk(child, depth + 1, x)
            x += child['n']
        n_small = sum(v['n'] for _, v in small)
        if small and n_small >= thr:
            rects.append((depth, x, n_small, '[%d narrow frames]' % len(small), 'unknown'))

    rects.append((0, 0, total, 'all', 'unknown'))
    walk(tree, 1, 0)
    depth = max(r[0] for r in rects) + 1
    fh, pad, top_h, font = 16, 10, 48, 11
    height = top_h + depth * fh + pad
    scale = (width - 2 * pad) / total
    out = ['<?xml version="1.0" standalone="no"?>',
           '<svg version="1.1" width="%d" height="%d" viewBox="0 0 %d %d" '
           'xmlns="http://www.w3.org/2000/svg">' % (width, height, width, height),
           '<style>text{font-family:monospace;font-size:%dpx;fill:#000}rect:hover{stroke:#000}'
           '</style>' % font,
           '<rect x="0" y="0" width="%d" height="%d" fill="#f8f8f0"/>' % (width, height),
           '<text x="%d" y="20" text-anchor="middle" style="font-size:16px">%s</text>'
           % (width // 2, escape(title)),
           '<text x="%d" y="38">%d samples; orange: kernel, green: program, blue: libraries, '
           'grey: unresolved or merged (&lt; %.2g%%); hover for counts</text>' % (pad, total, min_pct)]
    for d, x, n, name, kind in rects:
        rx, rw, ry = pad + x * scale, n * scale, height - pad - (d + 1) * fh
        tip = '%s (%d samples, %.2f%%)' % (name, n, 100.0 * n / total)
        chars = int((rw - 4) / (font * 0.6))  # monospace glyphs are about 0.6 em wide
        label = name if len(name) <= chars else (name[:chars - 2] + '..' if chars > 3 else '')
        text = '<text x="%.2f" y="%d">%s</text>' % (rx + 3, ry + fh - 4, escape(label)) if label else ''
        out.append('<g><title>%s</title><rect x="%.2f" y="%d" width="%.2f" height="%d" fill="%s" '
                   'rx="2"/>%s</g>' % (escape(tip), rx, ry, max(rw - 0.5, 0.1), fh - 1,
                                       colour(name, kind), text))
    out.append('</svg>')
    return '\n'.join(out) + '\n'


SELF_TEST_INPUT = """\
up-worker-0  4035 100.000001:     250000 cpu-clock: 
\tffffffff81b63d64 io_recv+0x164 ([kernel.kallsyms])
\tffffffff81b4834f __do_sys_io_uring_enter+0x20f ([kernel.kallsyms])
\tffffffff81000130 entry_SYSCALL_64_after_hwframe+0x76 ([kernel.kallsyms])
\t            2b95 [unknown] (/usr/lib/x86_64-linux-gnu/liburing.so.2.3)
\t               1 [unknown] ([unknown])
\t           3ebc0 up::Worker::dns_unpoll+0x0 (/work/main/build/uringproxy)

up-worker-1  4036 100.000251:     250000 cpu-clock: 
\tffffffff81b63d64 io_recv+0x10 ([kernel.kallsyms])
\tffffffff81b4834f __do_sys_io_uring_enter+0x20f ([kernel.kallsyms])
\tffffffff81000130 entry_SYSCALL_64_after_hwframe+0x76 ([kernel.kallsyms])
\t            2b95 [unknown] (/usr/lib/x86_64-linux-gnu/liburing.so.2.3)

my thread  4037/4038 100.000501:     250000 cpu-clock: 
\t           3ebd0 (anonymous namespace)::f(int, char)+0x12 (/work/main/build/uringproxy)
\t           3ec00 up::Worker::run+0x40 (/work/main/build/uringproxy)
\t           3ed00 up::Worker::dns_unpoll+0x0 (/work/main/build/uringproxy)
\t           3ee00 main+0x10 (/work/main/build/uringproxy)

up-worker-0  4035 100.000751:     250000 cpu-clock: 
\t           83632 _IO_no_init+0x2 (/usr/lib/x86_64-linux-gnu/libc.so.6)
\t              6a [unknown] ([unknown])
\t               0 [unknown] ([unknown])
"""
SELF_TEST_FOLDED = {
    '[liburing.so.2.3];entry_SYSCALL_64_after_hwframe;__do_sys_io_uring_enter;io_recv': 2,
    'up::Worker::run;(anonymous namespace)::f(int, char)': 1,
    '_IO_no_init': 1,
}


def self_test():
    stacks, kinds, leaf = fold(SELF_TEST_INPUT.splitlines(True))
    assert dict(stacks) == SELF_TEST_FOLDED, dict(stacks)
    assert kinds['io_recv'] == 'kernel' and kinds['up::Worker::run'] == 'user'
    assert kinds['[liburing.so.2.3]'] == 'lib' and leaf['libc.so.6'] == 1
    untrimmed, _, _ = fold(SELF_TEST_INPUT.splitlines(True), trim=False)
    assert sum(untrimmed.values()) == 4 and len(untrimmed) == 4, untrimmed
    assert any(s.startswith('up::Worker::dns_unpoll;[unknown];') for s in untrimmed), untrimmed
    with_comm, _, _ = fold(SELF_TEST_INPUT.splitlines(True), comm=True)
    assert with_comm['my thread;up::Worker::run;(anonymous namespace)::f(int, char)'] == 1, with_comm
    import xml.etree.ElementTree as ET
    root = ET.fromstring(svg(stacks, kinds, 'self <test> & check', 0.1))
    titles = [t.text for t in root.iter('{http://www.w3.org/2000/svg}title')]
    assert 'io_recv (2 samples, 50.00%)' in titles, titles
    print('self-test ok')


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('input', nargs='?', default='-', help='perf script text (default: stdin)')
    ap.add_argument('--folded', metavar='FILE', help='write folded stacks ("a;b;c count" lines)')
    ap.add_argument('--svg', metavar='FILE', help='write the SVG flame graph')
    ap.add_argument('--title', default='CPU flame graph (perf cpu-clock)', help='SVG title')
    ap.add_argument('--min-pct', type=float, default=0.1, help='merge frames narrower than this %% (0.1)')
    ap.add_argument('--top', type=int, default=20, help='symbols in each summary list (20)')
    ap.add_argument('--width', type=int, default=1200, help='SVG width in pixels (1200)')
    ap.add_argument('--comm', action='store_true', help='root each stack at its thread name')
    ap.add_argument('--no-trim', action='store_true', help='keep frames past a junk user frame')
    ap.add_argument('--self-test', action='store_true', help='check the parser on a built-in sample')
    a = ap.parse_args()
    if a.self_test:
        return self_test()
    if a.input == '-':
        sys.stdin.reconfigure(errors='replace')  # perf may print non-UTF-8 symbol bytes
    src = sys.stdin if a.input == '-' else open(a.input, errors='replace')
    stacks, kinds, leaf_dso = fold(src, trim=not a.no_trim, comm=a.comm)
    if not stacks:
        sys.exit('flamegraph.py: no samples in the input (is it `perf script` output?)')
    if a.folded:
        with open(a.folded, 'w') as f:
            f.writelines('%s %d\n' % kv for kv in sorted(stacks.items()))
    if a.svg:
        with open(a.svg, 'w') as f:
            f.write(svg(stacks, kinds, a.title, a.min_pct, a.width))
    summary(stacks, leaf_dso, kinds, a.top, sys.stdout)


if __name__ == '__main__':
    try:
        main()
    except BrokenPipeError:  # `| head` closed stdout early: not worth a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
