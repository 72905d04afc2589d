"""The README and docs/ say what is true: the command blocks marked runnable run, every results
file and picture they name exists, the README stays short, its command table names every
command and `show` view, and every benchmark results file says when and where it was made.

A block is marked runnable by the line ``<!-- runnable -->`` right before its fence. A
```` ```bash ```` block holds `cnnlab ...` command lines only; each is run through the console
script's entry point (`cnnlab.cli.main`, in this process: a new Python per command would cost
seconds of imports each) and must exit with 0. A ```` ```python ```` block is executed as it
stands. Both run in an empty temporary folder with `$CNNLAB_DATA` set."""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
from pathlib import Path

import pytest
from conftest import REPO

from cnnlab.cli import build_parser, main

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
MARKER = "<!-- runnable -->"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def runnable_blocks() -> list[tuple[str, str, str]]:
    """(id, language, code) of every block marked runnable in README.md and docs/*.md."""
    blocks = []
    for path in DOCS:
        text = path.read_text()
        for number, start in enumerate(m.end() for m in re.finditer(re.escape(MARKER), text)):
            fence = FENCE.match(text, start + 1)
            assert fence, f"{path.name}: {MARKER} must stand right before a fenced code block"
            language, code = fence.groups()
            assert language in ("bash", "python"), f"{path.name}: runnable {language!r} block"
            blocks.append((f"{path.relative_to(REPO)}#{number + 1}", language, code))
    return blocks


BLOCKS = runnable_blocks()


def command_lines(code: str) -> list[list[str]]:
    """The argument lists of a bash block's `cnnlab` commands (continuations joined)."""
    commands = []
    for line in code.replace("\\\n", " ").splitlines():
        words = shlex.split(os.path.expandvars(line), comments=True)
        if words:
            assert words[0] == "cnnlab", f"a runnable bash block holds cnnlab commands only: {line}"
            commands.append(words[1:])
    return commands


def test_the_readme_and_the_api_page_have_runnable_blocks():
    ids = [block_id for block_id, _, _ in BLOCKS]
    assert any(i.startswith("README.md#") for i in ids)
    assert sum(i.startswith("docs/api.md#") for i in ids) >= 5


@pytest.mark.parametrize(("block_id", "language", "code"), BLOCKS, ids=[b[0] for b in BLOCKS])
def test_runnable_block(block_id, language, code, data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CNNLAB_DATA", str(data_dir))
    monkeypatch.chdir(tmp_path)
    if language == "python":
        exec(compile(code, block_id, "exec"), {"__name__": "__main__"})
        return
    commands = command_lines(code)
    assert commands, f"{block_id} holds no command"
    for argv in commands:
        code_ = main(argv)
        assert code_ == 0, f"{block_id}: cnnlab {shlex.join(argv)} exited {code_}\n" + (
            capsys.readouterr().err
        )


def _named_paths(path: Path) -> list[tuple[str, Path]]:
    """(as written, resolved) of the local files a doc names: benchmarks/results/... files
    (glob patterns allowed), docs/img/... pictures, and every relative Markdown link."""
    text = path.read_text()
    named = [
        (name, REPO / name)
        for name in re.findall(r"(?:benchmarks/results|docs/img)/[\w.*-]*[\w*]", text)
    ]
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        target = target.split("#")[0]
        if target and not re.match(r"\w+:", target):
            named.append((target, path.parent / target))
    return named


@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
def test_every_named_file_and_picture_exists(doc: Path):
    missing = []
    for name, resolved in _named_paths(doc):
        if "*" in name:
            found = list(resolved.parent.glob(resolved.name))
        else:
            found = [resolved] if resolved.exists() else []
        if not found:
            missing.append(name)
    assert not missing, f"{doc.name} names files that do not exist: {missing}"


def test_the_readme_pictures_are_committed_under_docs_img():
    pictures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", (REPO / "README.md").read_text())
    assert len(pictures) >= 3
    assert all(p.startswith("docs/img/") for p in pictures), pictures


COPIES = {  # docs/img/NAME: the file it copies (a screenshot refresh or a rerun must recopy it)
    "explorer-trace.png": "docs/explorer/explorer-1280.png",
    "reproduce-e6.png": "benchmarks/results/reproduce-e4-e6-e6-cifar-residual-pool.png",
}


@pytest.mark.parametrize("name", sorted(COPIES))
def test_the_readme_pictures_copy_their_sources(name: str):
    source = REPO / COPIES[name]
    assert (REPO / "docs" / "img" / name).read_bytes() == source.read_bytes(), (
        f"docs/img/{name} is stale: copy {COPIES[name]} over it"
    )


def test_the_readme_is_short_and_no_diary():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 260, "README.md is over 260 lines; move details to docs/"
    diary = re.findall(r"\b(?:now|is now|used to|we changed|new)\b", text, re.IGNORECASE)
    assert not diary, f"README.md reads like a changelog: {diary}"


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_the_command_table_names_every_command_and_view():
    rows = [
        line
        for line in (REPO / "README.md").read_text().splitlines()
        if line.startswith("| `cnnlab")
    ]
    named = " ".join(re.findall(r"`(cnnlab [^`]*)`", " ".join(rows)))
    commands = _subcommands(build_parser())
    assert {"train", "show", "lessons", "export"} <= set(commands)
    wanted = [f"cnnlab {name}" for name in commands]
    for group, parser in commands.items():
        wanted += [f"cnnlab {group} {action}" for action in _subcommands(parser)]
    assert "cnnlab show cam" in wanted and "cnnlab graph train" in wanted
    missing = [w for w in wanted if not re.search(re.escape(w) + r"(?![\w-])", named)]
    assert not missing, f"the README's command table lacks {missing}"
    assert "cnnlab --version" in named


def test_every_results_file_records_its_provenance():
    files = sorted((REPO / "benchmarks" / "results").glob("*.json"))
    assert files
    for path in files:
        data = json.loads(path.read_text())
        records = data if isinstance(data, list) else [data]
        for record in records:
            provenance = record.get("provenance")
            assert provenance, f"{path.name} has no provenance block"
            assert {"date", "commit", "cpu_model", "cpu_count", "torch", "torch_threads"} <= set(
                provenance
            ), path.name
            assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d", provenance["date"]), path.name
            assert re.fullmatch(r"[0-9a-f]{7,40}(\+dirty)?", provenance["commit"]), path.name


def test_the_benchmark_writer_adds_provenance(tmp_path, monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "bench_common", REPO / "benchmarks" / "_common.py"
    )
    common = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(common)
    out = common.write_json(tmp_path / "result.json", {"figure": 1.5})
    saved = json.loads(out.read_text())
    assert saved["figure"] == 1.5
    provenance = saved["provenance"]
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$", provenance["date"])
    assert provenance["commit"] == "not recorded" or re.fullmatch(
        r"[0-9a-f]{7,40}(\+dirty)?", provenance["commit"]
    )
    import torch

    assert provenance["torch"] == torch.__version__
    assert provenance["torch_threads"] == torch.get_num_threads()
    assert provenance["cpu_count"] == os.cpu_count() and provenance["cpu_model"]
