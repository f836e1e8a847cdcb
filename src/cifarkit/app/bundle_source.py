"""The exported bundle's app.py, generated from cifarkit's own source (`inline`): the definitions it runs
(bundle_app.py's `main` and everything it uses in cifarkit: the model classes, read_image, normalize, GradCAM,
the page) copied definition by definition, so the bundle runs the same code as `cifarkit app` and cannot drift
from it, and imports no cifarkit.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

from ..errors import UserError

PACKAGE = Path(__file__).resolve().parents[1]  # src/cifarkit
ROOTS = ("main",)  # what app.py must define; the rest follows from what these use
MODULE = "app.bundle_app"  # the module that defines ROOTS (dotted, below cifarkit)


class _Names(ast.NodeVisitor):
    """The global names a definition uses, annotations left out (app.py never evaluates them)."""

    def __init__(self):
        self.names: set[str] = set()
        self.relative: list[str] = []

    def visit_Name(self, node: ast.Name) -> None:
        self.names.add(node.id)

    def visit_arg(self, node: ast.arg) -> None:
        pass  # its annotation

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        for child in (*node.decorator_list, node.args, *node.body):
            self.visit(child)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        for child in (node.target, node.value):
            if child is not None:
                self.visit(child)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            self.relative.append(node.module or "")


def _resolve(name: str, level: int, module: str | None) -> str:
    """The dotted module (below cifarkit) that `from {'.' * level}{module} import ...` in module `name` names."""
    package = name.split(".")[:-1]
    base = package[: len(package) - (level - 1)]
    return ".".join(base + (module.split(".") if module else []))


def _module(name: str) -> tuple[str, dict[str, ast.stmt], dict[str, tuple[str, str]], dict[str, ast.stmt]]:
    """(source, top-level definitions by name, relative imports: name -> (module, name), absolute imports)."""
    source = (PACKAGE.joinpath(*name.split(".")).with_suffix(".py")).read_text()
    defs, relative, imports = {}, {}, {}
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defs[node.name] = node
        elif isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets):
            defs.update({t.id: node for t in node.targets})
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            defs[node.target.id] = node
        elif isinstance(node, ast.ImportFrom) and node.level:
            for alias in node.names:
                if alias.asname and alias.asname != alias.name:
                    raise UserError(f"bundle: {name}.py imports {alias.name} as {alias.asname}; app.py cannot")
                relative[alias.name] = (_resolve(name, node.level, node.module), alias.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)) and getattr(node, "module", "") != "__future__":
            imports.update({(a.asname or a.name).split(".")[0]: node for a in node.names})
    return source, defs, relative, imports


def inline(roots: tuple[str, ...] = ROOTS, module: str = MODULE) -> str:
    """app.py: `roots` of `module` and, transitively, every cifarkit definition they use, each copied from its
    module's source, modules in dependency order; a definition that imports cifarkit in its body is refused."""
    used = _definitions_used(roots, module)
    head, body = _copied_source(used, _dependency_order(used))
    return (
        '"""A CIFAR classifier with GradCAM and a Gradio page, exported by cifarkit: the model definition,\n'
        "inference and the page only. Generated from cifarkit's source; imports no cifarkit.\n\n"
        "    python app.py                      serve the page (127.0.0.1:7860 unless told otherwise)\n"
        '    python app.py --predict IMAGE...   top-k classes as JSON\n"""\n'
        "from __future__ import annotations\n\n"
        + "\n".join(sorted(set(head)))
        + "\n\n\n"
        + "\n\n\n".join(body)
        + '\n\n\nif __name__ == "__main__":\n    sys.exit(main())\n'
    )


@dataclasses.dataclass
class _Used:
    """What app.py copies, found by following names from its roots, each by module (dotted, below cifarkit)."""

    modules: dict[str, tuple] = dataclasses.field(default_factory=dict)  # module -> _module(module)
    wanted: dict[str, set[str]] = dataclasses.field(default_factory=dict)  # module -> its definitions to copy
    imports: dict[str, set[int]] = dataclasses.field(default_factory=dict)  # module -> id() of its imports to copy
    after: dict[str, set[str]] = dataclasses.field(default_factory=dict)  # module -> the modules whose names it uses


def _definitions_used(roots: tuple[str, ...], module: str) -> _Used:
    """Every definition `roots` of `module` use, transitively through cifarkit's relative imports, and the
    imports of other packages they need."""
    used = _Used()
    todo = [(module, name) for name in roots]
    while todo:
        mod, name = todo.pop()
        if name in used.wanted.setdefault(mod, set()):
            continue
        _, defs, relative, absolute = used.modules.setdefault(mod, _module(mod))
        if name in relative:  # imported from another cifarkit module: its definition there is the one copied
            target, original = relative[name]
            used.after.setdefault(mod, set()).add(target)
            todo.append((target, original))
            continue
        if name not in defs:
            raise UserError(f"bundle: {mod}.py has no top-level {name}")
        used.wanted[mod].add(name)
        todo.extend(_names_to_follow(mod, name, defs, relative, absolute, used.imports))
    return used


def _names_to_follow(
    mod: str,
    name: str,
    defs: dict[str, ast.stmt],
    relative: dict[str, tuple[str, str]],
    absolute: dict[str, ast.stmt],
    imports: dict[str, set[int]],
) -> list[tuple[str, str]]:
    """The names of `mod` that definition `name` uses (its own definitions and cifarkit imports), to copy next;
    the other packages' imports it uses are added to `imports`."""
    visitor = _Names()
    visitor.visit(defs[name])
    if visitor.relative:
        raise UserError(f"bundle: {mod}.{name} imports .{visitor.relative[0]} in its body; app.py cannot")
    follow = []
    for used in visitor.names:
        if used in defs or used in relative:
            follow.append((mod, used))
        elif used in absolute:
            imports.setdefault(mod, set()).add(id(absolute[used]))
    return follow


def _dependency_order(used: _Used) -> list[str]:
    """The modules, each after the modules whose definitions it uses (app.py defines a name before its use)."""
    order: list[str] = []

    def place(mod: str) -> None:
        if mod not in order:
            for dep in sorted(used.after.get(mod, ())):
                place(dep)
            order.append(mod)

    for mod in sorted(used.modules):
        place(mod)
    return order


def _copied_source(used: _Used, order: list[str]) -> tuple[list[str], list[str]]:
    """(import statements, definitions) as app.py holds them: each copied from its module's source in the module's
    order, a definition headed by the file it comes from."""
    head, body, seen = [], [], {}
    for mod in order:
        source, defs, _, absolute = used.modules[mod]
        lines = source.splitlines()
        nodes = {
            id(n): n
            for n in (
                *[defs[name] for name in used.wanted.get(mod, ())],
                *[n for n in absolute.values() if id(n) in used.imports.get(mod, ())],
            )
        }
        for node in sorted(nodes.values(), key=lambda n: n.lineno):
            start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
            text = "\n".join(lines[start - 1 : node.end_lineno])
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                head.append(text)  # the same import in two modules: written once (inline sorts a set of them)
                continue
            _refuse_a_second_definition(seen, [n for n, d in defs.items() if d is node], text, mod)
            body.append(f"# from cifarkit/{mod.replace('.', '/')}.py\n{text}")
    return head, body


def _refuse_a_second_definition(seen: dict[str, str], names: list[str], text: str, mod: str) -> None:
    """app.py has one namespace: a name defined differently in two modules cannot be in it twice."""
    for name in names:
        if seen.setdefault(name, text) != text:
            raise UserError(f"bundle: two different definitions of {name} ({mod}.py and another)")
