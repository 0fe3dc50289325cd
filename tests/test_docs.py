"""Every command the README and docs/ give is one that works: its make target exists, its
management command and options exist, and its script accepts the options shown (issue 16).
Commands are checked by their parsers, not run: running them is what the rest of the suite does."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import get_commands, load_command_class

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# `python manage.py check_vault --fix`, `.venv/bin/python bench/load.py [--duration 60]`, and
# `manage.py hospital node` in a sentence.
COMMAND = re.compile(r"(?:python )?(manage\.py|bench/\w+\.py|scripts/\w+\.py)((?: +[^\s`#]+)*)")
MAKE = re.compile(r"`make ([\w-]+)|^make ([\w-]+)", re.MULTILINE)
OPTION = re.compile(r"--[\w-]+")


def _documented():
    found = []
    for doc in DOCS:
        text = doc.read_text()
        # A command may continue on the next line inside brackets: join those lines.
        text = re.sub(r"\]\n\s+\[", "] [", text)
        for match in COMMAND.finditer(text):
            found.append((doc.name, match.group(1), match.group(2).split()))
    return found


DOCUMENTED = _documented()


def test_the_docs_give_commands_to_check():
    scripts = {script for _, script, _ in DOCUMENTED}
    assert {"manage.py", "bench/load.py", "scripts/backup.py"} <= scripts


def test_every_make_target_in_the_docs_exists():
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([\w-]+):", makefile, re.MULTILINE))
    for doc in DOCS:
        for match in MAKE.finditer(doc.read_text()):
            target = match.group(1) or match.group(2)
            assert target in targets, f"{doc.name}: make {target}"


def _options(parser) -> set[str]:
    return set(parser._option_string_actions)


@pytest.mark.parametrize(
    ("doc", "args"),
    [(doc, args) for doc, script, args in DOCUMENTED if script == "manage.py" and args],
)
def test_every_management_command_in_the_docs_exists_with_its_options(doc, args):
    name = args[0]
    commands = get_commands()
    assert name in commands, f"{doc}: manage.py {name}"
    parser = load_command_class(commands[name], name).create_parser("manage.py", name)
    subparsers = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    options = _options(parser)
    if subparsers and len(args) > 1 and not args[1].startswith("-"):
        choices = subparsers[0].choices
        assert args[1] in choices, f"{doc}: manage.py {name} {args[1]}"
        options |= _options(choices[args[1]])
    for option in OPTION.findall(" ".join(args[1:])):
        assert option in options, f"{doc}: manage.py {name} {option}"


# Scripts that hand their arguments to pytest: `--help` would start the run it wraps.
PYTEST_WRAPPERS = {"scripts/test_prod.py"}


def _script_help(script: str) -> str:
    answer = subprocess.run(
        [sys.executable, script, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert answer.returncode == 0, answer.stderr
    return answer.stdout


@pytest.mark.parametrize(
    "script", sorted({script for _, script, _ in DOCUMENTED if script != "manage.py"})
)
def test_every_script_in_the_docs_takes_the_options_shown(script):
    assert (ROOT / script).is_file(), script
    shown = {
        option
        for _, name, args in DOCUMENTED
        if name == script
        for option in OPTION.findall(" ".join(args))
    }
    if script in PYTEST_WRAPPERS:
        return
    help_text = _script_help(script)
    for option in shown:
        # Whole options only: "--sec" is not "--seconds".
        assert re.search(re.escape(option) + r"(?![\w-])", help_text), f"{script} {option}"
