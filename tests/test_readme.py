"""The README's examples run, and its two set-up commands are the ones CI and users run."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_readme_examples_run(tmp_path, monkeypatch):
    blocks = python_blocks()
    assert blocks, "the README shows the API in a python block"
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), scope)  # noqa: S102 - our own README


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    test_cmd = re.search(r"Run the tests:\s*```bash\n(.*?)\n```", README, flags=re.S).group(1).strip()
    assert test_cmd in ci
    assert "pytest" in test_cmd


def test_readme_main_job_command_runs_snakemake():
    main_cmd = re.search(r"Run the main job:\s*```bash\n(.*?)\n```", README, flags=re.S).group(1).strip()
    assert main_cmd.endswith("snakemake --cores 8")
