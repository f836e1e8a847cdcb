"""The documentation site: the reference written from the code lists every command and flag, the site builds with
`mkdocs build --strict`, and its pages show their key text in Debian's headless Chromium."""

from __future__ import annotations

import argparse
import importlib.util
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import cifarkit
from cifarkit.cli.main import build_parser
from cifarkit.config.train_config import PRESETS, SETTINGS

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


def load(name: str, folder: Path):
    """docs/generate.py or benchmarks/records.py as a module (neither is part of the package)."""
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))  # hooks.py imports both by name
    spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


generate = load("generate", DOCS)


def need(tool: str, reason: str) -> None:
    """Skip on a machine without a docs tool, with the reason; in CI (which installs them), fail."""
    if os.environ.get("CI"):
        pytest.fail(f"CI must build and check the documentation: {reason}")
    pytest.skip(reason)


def parser_commands() -> dict[str, argparse.ArgumentParser]:
    return dict(build_parser().commands)


def test_the_reference_has_a_page_for_every_command_listing_every_flag():
    pages = generate.commands()
    assert list(pages) == list(parser_commands())
    for name, parser in parser_commands().items():
        summary, generated_parser = pages[name]
        page = generate.command_page(name, summary, generated_parser)
        assert page.startswith(f"# cifarkit {name}\n")
        for action in parser._actions:  # argparse has no public list of a parser's flags
            if "--help" in action.option_strings:
                continue
            for flag in action.option_strings or [str(action.metavar or action.dest).upper()]:
                assert f"`{flag}`" in page, f"cifarkit {name}: {flag} missing from its reference page"


def test_a_setting_flag_shows_its_group_default_and_every_presets_value():
    page = generate.command_page("train", *generate.commands()["train"])
    row = next(line for line in page.splitlines() if line.startswith("| `--max-lr` |"))
    assert "| 0.0451 |" in row  # TrainConfig's default, the S10 notebook's peak
    for preset in PRESETS:
        assert preset in row
    assert "fast-cpu: 1.66" in row or "fast, fast-cpu: 1.66" in row
    group_of = {line[3:].lower(): i for i, line in enumerate(page.splitlines()) if line.startswith("## ")}
    assert any(title.startswith("optimiser") for title in group_of)  # the setting's group is a section
    preset_row = next(line for line in page.splitlines() if line.startswith("| `--preset` |"))
    assert "fast-cpu" in preset_row and "all:" not in preset_row  # the presets to choose from, not a value of each
    # a switch shows on/off and both forms
    assert "| `--flip`, `--no-flip` |" in page


def test_the_presets_table_and_the_package_map_come_from_the_code():
    table = generate.presets_table()
    for preset in PRESETS:
        assert f"`{preset}`" in table.splitlines()[0]
    assert "| epochs | `--epochs` |" in table
    modules = [m.name for m in pkgutil.walk_packages(cifarkit.__path__, "cifarkit.")]
    package_map = generate.package_map()
    for name in modules:
        assert f"| `{name}` |" in package_map
    assert generate.cell("a | b <i>") == "a \\| b &lt;i&gt;"


def test_the_run_folder_and_checkpoint_pages_name_what_the_code_writes():
    from cifarkit.rundir import run_dir as rundir

    files = generate.run_folder_files()
    for name in rundir.RUN_FILES:
        assert f"`{name}`" in files
    keys = generate.checkpoint_keys()
    assert keys[:3] == ["format", "cifarkit", "model_name"]
    assert {"model", "optimizer", "scheduler", "state", "classes", "mean", "std", "image_size"} <= set(keys)
    assert "Checkpoint format **" in generate.checkpoint_table()


def test_every_setting_has_a_flag_in_the_train_reference():
    page = generate.command_page("train", *generate.commands()["train"])
    for name, s in SETTINGS.items():
        if s.cli:
            assert f"`{s.flag}`" in page, name


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site built with `mkdocs build --strict` into a temporary folder."""
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None:
        need("mkdocs", "mkdocs and mkdocs-material are not installed (pip install -e '.[docs]')")
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def test_the_site_builds_strict_with_a_page_per_command(site):
    for name in parser_commands():
        assert (site / "reference" / "commands" / name / "index.html").is_file(), name
    results = (site / "results" / "index.html").read_text(encoding="utf-8")
    assert "94.02 ± 0.13" in results  # fast on the AVX512-BF16 CPU, computed from its record's five seeds
    assert "{{" not in results


def need_browser() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if importlib.util.find_spec("selenium") is None:
        missing.append("selenium (pip install 'cifarkit[test]')")
    if missing:
        need(
            "chromium",
            f"no browser to open the site in: {', '.join(missing)} absent (apt-get install chromium chromium-driver)",
        )


def open_in_chromium(tmp_path: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)


def test_the_home_and_train_pages_show_their_key_text_in_chromium(site, tmp_path):
    need_browser()
    from selenium.webdriver.common.by import By

    browser = open_in_chromium(tmp_path)
    try:
        browser.get((site / "index.html").as_uri())
        home = browser.find_element(By.TAG_NAME, "article").text
        assert "cifarkit trains image classifiers" in home
        assert "94.02 ± 0.13 %" in home and "Getting started" in home
        browser.get((site / "reference" / "commands" / "train" / "index.html").as_uri())
        assert browser.find_element(By.TAG_NAME, "h1").text.startswith("cifarkit train")
        train = browser.find_element(By.TAG_NAME, "article").text
        for text in ("--max-lr", "--preset", "--resume", "fast-cpu", "One Cycle"):
            assert text in train, text
        nav = browser.find_element(By.CSS_SELECTOR, "nav.md-nav--primary").get_attribute("textContent")
        assert "cifarkit sweep" in nav  # every command's page is in the navigation
    finally:
        browser.quit()


def documented_commands() -> list[tuple[str, str]]:
    """(file, command line) for every `cifarkit ...` line in the README's and the docs' code blocks."""
    import re

    found = []
    for path in [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]:
        text = path.read_text(encoding="utf-8")
        for block in re.findall(r"```(?:bash)?\n(.*?)```", text, flags=re.DOTALL):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.split(" #")[0].strip()
                at = line.find("cifarkit ")
                if line.startswith("cifarkit ") or line.startswith("torchrun ") and "-m cifarkit " in line:
                    found.append((path.name, line[at:]))
    return found


def test_every_command_line_in_the_docs_parses_with_todays_flags(tmp_path, monkeypatch):
    import shlex

    monkeypatch.chdir(tmp_path)  # where the exclude lists the lines name are written: --exclude reads its file
    lines = documented_commands()
    assert len(lines) > 30
    for name, line in lines:
        words = [w for w in shlex.split(line)[1:] if w != "..."]
        if "[" in line or "|" in line or "PATH" in line:  # a usage pattern, not a command to run
            continue
        for flag, value in zip(words, words[1:]):
            if flag == "--exclude" and not Path(value).is_absolute():
                Path(value).parent.mkdir(parents=True, exist_ok=True)
                Path(value).write_text("0\n")
        try:
            build_parser().parse_args(words)
        except SystemExit:
            pytest.fail(f"{name}: `{line}` does not parse with today's flags")


def test_the_readme_results_are_the_records_numbers():
    import re

    records = load("records", ROOT / "benchmarks")
    every = records.load()
    tables = "\n".join(records.markdown_table(every, q) for q in records.QUESTIONS)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    results = readme.split("## Results", 1)[1].split("\n## ", 1)[0]
    accuracies = re.findall(r"\| (\d\d\.\d\d(?: ± \d\.\d\d)?) % \|", results)
    assert len(accuracies) >= 8
    for accuracy in accuracies:
        assert f"**{accuracy}**" in tables, f"README's {accuracy} % is in no benchmark record"
