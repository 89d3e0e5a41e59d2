#!/usr/bin/env python3
"""The top-level modules of src/ must not import each other in a circle.

For each top-level module (src/NAME.rs and everything under src/NAME/), list
the other top-level modules its code names through `crate::` and `super::`
paths, in `use` lines and inline. Comments, string literals and test code
(`#[cfg(test)]` items, as dev-dependencies may loop) are not counted; the
crate root (src/lib.rs) is the facade that re-exports, so it is not a module
here, and a root re-export (`crate::Error`) counts as the module it comes from.

Exit 1 naming a cycle (with the file and line of each step) when there is one;
otherwise exit 0 and print the layer order, bottom first (each module uses
only modules on lower layers).

    scripts/check-layers.py [--edges] [SRC_DIR]
    scripts/check-layers.py --self-test

--edges also prints every dependency with where it is first named.
--self-test checks the checker: on a small crate written for it, a circle
through a `use` line, an inline `super::super::` path and a root re-export
is found, while the same names in comments, strings and test code are not.
"""

import os
import re
import sys


def strip(text):
    """Blank out comments, string and char literals, keeping newlines."""
    out = []
    i, n = 0, len(text)

    def blank(chunk):
        return "".join("\n" if c == "\n" else " " for c in chunk)

    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(blank(text[i:j]))
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(blank(text[i:j]))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:i + 300]) and not (i and (text[i - 1].isalnum() or text[i - 1] == "_")) or (
            c == "b" and text.startswith("br", i) and re.match(r'br#*"', text[i:i + 300])
        ):
            m = re.match(r'b?r(#*)"', text[i:])
            end = text.find('"' + m.group(1), i + len(m.group(0)))
            end = n if end < 0 else end + 1 + len(m.group(1))
            out.append(blank(text[i:end]))
            i = end
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(blank(text[i:j + 1]))
            i = j + 1
        elif c == "'":
            # A char literal ('a', '\n', '\u{..}') or a lifetime ('a).
            if i + 1 < n and text[i + 1] == "\\":
                j = text.find("'", i + 3)  # past an escaped quote: '\''
                out.append(blank(text[i:j + 1]))
                i = j + 1
            elif i + 2 < n and text[i + 2] == "'":
                out.append("   ")
                i += 3
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def skip_item(text, i):
    """The end of the item starting at i: its `;` or its balanced `{...}`."""
    n = len(text)
    while i < n and text[i] not in ";{":
        i += 1
    if i < n and text[i] == "{":
        depth = 0
        while i < n:
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    return i + 1
            i += 1
    return i + 1


CFG_TEST = re.compile(r"#\[cfg\(\s*(test|all\(\s*test\b[^\]]*)\)\]")


def drop_test_code(text):
    """Blank out every item under #[cfg(test)], keeping newlines."""
    while True:
        m = CFG_TEST.search(text)
        if not m:
            return text
        # Any further attributes belong to the same item.
        end = skip_item(text, m.end())
        text = text[: m.start()] + "".join("\n" if c == "\n" else " " for c in text[m.start():end]) + text[end:]


def expand_use(tree):
    """`a::{b, c::{d, e}}` -> [a::b, a::c::d, a::c::e]."""
    tree = re.sub(r"\s+", "", tree)
    paths = []

    def walk(prefix, s):
        # Split s at top-level commas.
        parts, depth, start = [], 0, 0
        for k, ch in enumerate(s):
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            elif ch == "," and depth == 0:
                parts.append(s[start:k])
                start = k + 1
        parts.append(s[start:])
        for part in parts:
            if not part:
                continue
            brace = part.find("{")
            if brace >= 0 and part.endswith("}"):
                walk(prefix + part[:brace], part[brace + 1:-1])
            else:
                paths.append(prefix + part)

    walk("", tree)
    return [re.sub(r"\bas\w+$", "", p) for p in paths]


PATH = re.compile(r"(?<![\w:])((?:crate|super|self)(?:::[A-Za-z_]\w*|::\{)*)")
USE = re.compile(r"\buse\s+([^;]*);")


def module_files(src):
    """{top-level module: [(file, module path)]}."""
    mods = {}
    for entry in sorted(os.listdir(src)):
        full = os.path.join(src, entry)
        if entry.endswith(".rs") and entry not in ("lib.rs", "main.rs"):
            name = entry[:-3]
            mods.setdefault(name, []).append((full, [name]))
        elif os.path.isdir(full) and entry != "bin":
            for root, _, files in os.walk(full):
                for f in sorted(files):
                    if not f.endswith(".rs"):
                        continue
                    rel = os.path.relpath(os.path.join(root, f), src)[:-3].split(os.sep)
                    if rel[-1] == "mod":
                        rel = rel[:-1]
                    mods.setdefault(entry, []).append((os.path.join(root, f), rel))
    return mods


def test_files(src, mods):
    """Files that are whole test modules (`#[cfg(test)] mod tests;`)."""
    skipped = set()
    for files in mods.values():
        for path, modpath in files:
            text = strip(open(path, encoding="utf-8").read())
            for m in re.finditer(r"#\[cfg\(test\)\]\s*(?:#\[[^\]]*\]\s*)*mod\s+(\w+)\s*;", text):
                base = os.path.dirname(path) if os.path.basename(path) == "mod.rs" else path[:-3]
                skipped.add(os.path.join(base, m.group(1) + ".rs"))
                skipped.add(os.path.join(base, m.group(1), "mod.rs"))
    return skipped


def root_reexports(src):
    """{name re-exported at the crate root: the top-level module it comes from}."""
    names = {}
    text = strip(open(os.path.join(src, "lib.rs"), encoding="utf-8").read())
    for m in USE.finditer(drop_test_code(text)):
        for p in expand_use(m.group(1)):
            segs = p.split("::")
            if segs[0] in ("crate", "self"):
                segs = segs[1:]
            if len(segs) >= 2:
                names[segs[-1]] = segs[0]
    return names


def resolve(path, modpath):
    """An absolute module path for `crate::`/`super::`/`self::` paths."""
    segs = [s for s in path.split("::") if s and s != "{"]
    if not segs:
        return None
    if segs[0] == "crate":
        return segs[1:]
    here = list(modpath)
    while segs and segs[0] in ("super", "self"):
        if segs[0] == "super":
            if not here:
                return None
            here = here[:-1]
        segs = segs[1:]
    return here + segs


def graph(src):
    mods = module_files(src)
    skipped = test_files(src, mods)
    reexports = root_reexports(src)
    edges = {m: {} for m in mods}
    for top, files in mods.items():
        for path, modpath in files:
            if path in skipped:
                continue
            text = drop_test_code(strip(open(path, encoding="utf-8").read()))
            found = []
            for m in USE.finditer(text):
                line = text.count("\n", 0, m.start()) + 1
                found += [(p, line) for p in expand_use(m.group(1))]
            used = set()
            for m in USE.finditer(text):
                used.update(range(m.start(), m.end()))
            for m in PATH.finditer(text):
                if m.start() not in used:
                    found.append((m.group(1), text.count("\n", 0, m.start()) + 1))
            for p, line in found:
                abs_path = resolve(p, modpath)
                if not abs_path:
                    continue
                target = abs_path[0]
                if target not in mods:
                    target = reexports.get(target)
                if target and target != top and target in mods:
                    edges[top].setdefault(target, f"{os.path.relpath(path, os.path.dirname(src))}:{line}")
    return edges


def find_cycle(edges):
    """A shortest cycle, as a list of modules, or None."""
    best = None
    for start in sorted(edges):
        # Breadth first from start back to start.
        prev, queue = {start: None}, [start]
        while queue:
            nxt = []
            for m in queue:
                for d in sorted(edges[m]):
                    if d == start:
                        cycle = [m]
                        while prev[cycle[-1]] is not None:
                            cycle.append(prev[cycle[-1]])
                        cycle = list(reversed(cycle)) + [start]
                        if best is None or len(cycle) < len(best):
                            best = cycle
                        nxt = []
                        queue = []
                        break
                    if d not in prev:
                        prev[d] = m
                        nxt.append(d)
                else:
                    continue
                break
            queue = nxt
    return best


def layers(edges):
    level = {}

    def depth(m):
        if m not in level:
            level[m] = 1 + max((depth(d) for d in edges[m]), default=-1)
        return level[m]

    for m in edges:
        depth(m)
    out = {}
    for m, lv in level.items():
        out.setdefault(lv, []).append(m)
    return [sorted(out[k]) for k in sorted(out)]


def self_test():
    import tempfile

    files = {
        "lib.rs": "mod a;\nmod b;\nmod c;\npub use a::Thing;\n",
        "a.rs": "//! Names [`crate::c::Other`] in a comment only.\nuse crate::b::{self, inner::Deep};\npub struct Thing;\n",
        "b.rs": "pub mod inner;\nconst S: &str = \"crate::c::X\";\n#[cfg(test)]\nmod tests {\n    use crate::c::Other;\n}\n",
        "b/inner.rs": "pub struct Deep;\npub fn f() -> super::super::c::Other { todo!() }\n",
        "c.rs": "pub struct Other;\nfn g(_: &crate::Thing) {}\n",
    }
    with tempfile.TemporaryDirectory() as src:
        for name, text in files.items():
            os.makedirs(os.path.dirname(os.path.join(src, name)), exist_ok=True)
            with open(os.path.join(src, name), "w", encoding="utf-8") as f:
                f.write(text)
        edges = graph(src)
        want = {"a": {"b"}, "b": {"c"}, "c": {"a"}}
        got = {m: set(d) for m, d in edges.items()}
        assert got == want, f"self-test: edges {got}, expected {want}"
        cycle = find_cycle(edges)
        assert cycle and set(cycle) == {"a", "b", "c"}, f"self-test: cycle {cycle}"
        # Without c's use of the root re-export, there is no circle.
        with open(os.path.join(src, "c.rs"), "w", encoding="utf-8") as f:
            f.write("pub struct Other;\n")
        edges = graph(src)
        assert find_cycle(edges) is None, "self-test: a circle found where there is none"
        assert layers(edges) == [["c"], ["b"], ["a"]], f"self-test: layers {layers(edges)}"
    print("check-layers: self-test passed (a circle is found; comments, strings and test code are not counted)")
    return 0


def main(argv):
    if "--self-test" in argv:
        return self_test()
    show_edges = "--edges" in argv
    args = [a for a in argv if a != "--edges"]
    src = args[0] if args else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
    src = os.path.normpath(src)
    edges = graph(src)
    if show_edges:
        for m in sorted(edges):
            for d, where in sorted(edges[m].items()):
                print(f"{m} -> {d}  ({where})")
    cycle = find_cycle(edges)
    if cycle:
        print("check-layers: the top-level modules of src/ import each other in a circle:", file=sys.stderr)
        print("  " + " -> ".join(cycle), file=sys.stderr)
        for a, b in zip(cycle, cycle[1:]):
            print(f"  {a} -> {b}: {edges[a][b]}", file=sys.stderr)
        return 1
    print("check-layers: no circle among the top-level modules of src/; layers, bottom first:")
    for k, names in enumerate(layers(edges)):
        print(f"  {k}: {', '.join(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
