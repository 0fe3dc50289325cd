"""The house plan: each layer imports only from its own layer or those below it.

    phr.lib, phr.core          helpers with no app of ours below them
    phr.vault                  the patient's studies, files and the one access policy
    phr.sharing, phr.hospital  who else may see them, and who may send them
    phr.rights, viewer, accounts, phr.demo   the pages and commands built on all that
    phr.urls, phr.settings, phr.wsgi, phr.asgi   the site itself

vault knows nothing of shares: sharing registers itself with phr.vault.access when it starts.
A plain walk over every module's import statements (in functions too), so the plan stays true.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = {
    "phr.lib": 0,
    "phr.core": 0,
    "phr.vault": 1,
    "phr.sharing": 2,
    "phr.hospital": 2,
    "phr.dicomweb": 3,
    "phr.rights": 3,
    "viewer": 3,
    "accounts": 3,
    "phr.demo": 3,
    "phr.urls": 4,
    "phr.settings": 4,
    "phr.wsgi": 4,
    "phr.asgi": 4,
    "phr": 0,  # the package's own __init__ only: every app in it is listed above
}


def layer_of(module: str) -> int | None:
    matches = [
        name
        for name in LAYERS
        if module == name or (name != "phr" and module.startswith(name + "."))
    ]
    return LAYERS[max(matches, key=len)] if matches else None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's own package
                base = module.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def upward_imports() -> list[str]:
    wrong = []
    for top in ("phr", "viewer", "accounts"):
        for path in sorted((ROOT / top).rglob("*.py")):
            module = module_name(path)
            own = layer_of(module)
            assert own is not None, f"{module} belongs to no layer: add it to LAYERS"
            tree = ast.parse(path.read_text(), filename=str(path))
            for target in sorted(imported(tree, module, path.name == "__init__.py")):
                theirs = layer_of(target)
                if theirs is not None and theirs > own:
                    wrong.append(f"{module} (layer {own}) imports {target} (layer {theirs})")
    return wrong


def test_no_module_imports_from_a_layer_above_its_own():
    assert upward_imports() == []


def test_the_walk_sees_an_upward_import(tmp_path):
    # The check itself: vault importing sharing, in a function, is caught.
    tree = ast.parse("def f():\n    from phr.sharing import doctor\n")
    targets = imported(tree, "phr.vault.access", is_package=False)
    assert "phr.sharing.doctor" in targets
    assert layer_of("phr.sharing.doctor") > layer_of("phr.vault.access")
